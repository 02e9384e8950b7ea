//! Backup bundles and restore (SPEC §7).
//!
//! # What a bundle holds
//!
//! One `.tar.gz`, `<host>_<YYYYMMDDHHMMSS>.backup.tar.gz`, whose entries are
//! paths relative to the data directory, laid out as in it:
//!
//! * `state/active/<name>.xml.open`: the active file(s), up to their last
//!   complete record (header and whole records);
//! * `audit_trail/<name>.xml` and `audit_trail/audit-trail.xsl`: sealed files;
//! * `archive/<name>.xml.gz` and `archive/manifest.jsonl`: archived files;
//! * `state/uploads/<target>.ledger`: the upload ledgers;
//! * `audit-trail.toml`: the configuration file, when there is one;
//! * `schedules/<file>`: the schedule files.
//!
//! # A consistent snapshot while the service appends
//!
//! The active files are opened and read first, each up to its last complete
//! record; the bytes copied later come from those open handles, so records
//! appended meanwhile are simply not in the bundle. Sealed and archived files
//! are listed afterwards: a file sealed in between is taken sealed (the more
//! complete copy of the same name). Archive, purge and backup hold the
//! maintenance lock, so no file moves between the sealed and archived sets
//! while a bundle is written. The bundle is thus a prefix of the log: every
//! record up to some id, and the next append after a restore gets the next id.
//!
//! # Restore
//!
//! Every entry is checked before anything is written: only relative paths
//! inside the layout above, no `..`, no links, no devices. The bundle is
//! extracted into a temporary directory beside the data directory, verified
//! like `audit-trail verify`, and only then moved into place.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::Timelike;
use flate2::Compression;

use crate::archive::{self, MANIFEST};
use crate::config::{Config, Layout};
use crate::history;
use crate::ledger;
use crate::log::{ACTIVE_SUFFIX, scan_active_file};
use crate::maintenance::{self, MaintenanceLock, human_bytes, sync_dir};
use crate::timestamp::Clock;
use crate::verify;

/// Suffix of a bundle's file name.
pub const BUNDLE_SUFFIX: &str = ".backup.tar.gz";
/// Name of the configuration file inside a bundle.
pub const CONFIG_ENTRY: &str = "audit-trail.toml";
/// Top-level names a bundle may hold.
const TOP_LEVEL: [&str; 5] = ["audit_trail", "archive", "state", "schedules", CONFIG_ENTRY];

/// Where a backup goes and what else it takes along.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Directory for the bundle (default: `backups/` of the data directory).
    pub out_dir: Option<PathBuf>,
    /// Bundles to keep in that directory (default: `keep_backups`).
    pub keep: Option<usize>,
    /// The configuration file, included when it exists.
    pub config_file: Option<PathBuf>,
    /// The schedules directory; its files are included.
    pub schedules_dir: Option<PathBuf>,
    /// Host name for the bundle's file name.
    pub host: String,
}

/// What a backup wrote.
#[derive(Debug)]
pub struct BackupReport {
    pub bundle: PathBuf,
    /// Entries in the bundle.
    pub files: usize,
    /// Bytes of the bundle.
    pub size: u64,
    /// Records of the active file(s) included.
    pub active_records: u64,
    /// Older bundles removed to keep only the newest `keep`.
    pub removed: Vec<PathBuf>,
}

impl std::fmt::Display for BackupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "wrote {} ({} files, {}; {} record(s) of the active file)",
            self.bundle.display(),
            self.files,
            human_bytes(self.size),
            self.active_records
        )?;
        for r in &self.removed {
            write!(f, "\n  removed older bundle {}", r.display())?;
        }
        Ok(())
    }
}

/// One entry to write: where it comes from and how many bytes of it.
struct Source {
    file: File,
    len: u64,
}

/// Writes a bundle (see the module docs), then removes the oldest bundles
/// beyond `keep`. Waits for other maintenance jobs.
pub fn backup(layout: &Layout, config: &Config, opts: &BackupOptions, clock: &dyn Clock) -> Result<BackupReport> {
    let keep = opts.keep.unwrap_or(config.keep_backups);
    if keep == 0 {
        bail!("keep must be at least 1: keeping 0 bundles would remove the one just written");
    }
    let out_dir = opts.out_dir.clone().unwrap_or_else(|| layout.backups.clone());
    let _lock = MaintenanceLock::acquire(layout)?;
    fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;

    // 1. The active files first, each up to its last complete record.
    let mut entries: BTreeMap<String, Source> = BTreeMap::new();
    let mut actives: BTreeMap<String, (String, u64)> = BTreeMap::new(); // stem → (entry, records)
    for name in maintenance::dir_names(&layout.active)? {
        let Some(stem) = name.strip_suffix(ACTIVE_SUFFIX) else { continue };
        let path = layout.active.join(&name);
        let file = match File::open(&path) {
            Ok(f) => f,
            // Sealed meanwhile: its sealed copy is listed below.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
        };
        let copy = file.try_clone()?;
        let Some(scan) = scan_active_file(file, &path)? else { continue };
        let entry = format!("state/active/{name}");
        actives.insert(stem.to_owned(), (entry.clone(), scan.count));
        entries.insert(entry, Source { file: copy, len: scan.good_end });
    }

    // 2. Sealed files; a file sealed since step 1 replaces its active copy.
    let manifest_files: BTreeSet<String> = archive::read_manifest(layout)?.into_iter().map(|e| e.file).collect();
    for name in maintenance::dir_names(&layout.sealed)? {
        if name.starts_with('.') {
            continue;
        }
        let stem = name.strip_suffix(".xml");
        if stem.is_none() && name != crate::xml_write::STYLESHEET {
            continue;
        }
        if let Some(stem) = stem {
            // Archived and recorded: the compressed copy is taken below.
            if manifest_files.contains(&format!("{stem}.xml.gz"))
                && layout.archive.join(format!("{stem}.xml.gz")).exists()
            {
                continue;
            }
            if let Some((entry, _)) = actives.remove(stem) {
                entries.remove(&entry);
            }
        }
        add_file(&mut entries, &layout.sealed.join(&name), format!("audit_trail/{name}"))?;
    }

    // 3. Archived files and the manifest.
    for name in maintenance::dir_names(&layout.archive)? {
        let Some(stem) = name.strip_suffix(".xml.gz") else { continue };
        if name.starts_with('.') {
            continue;
        }
        if entries.contains_key(&format!("audit_trail/{stem}.xml")) {
            continue; // not yet recorded in the manifest: the plain copy was taken
        }
        add_file(&mut entries, &layout.archive.join(&name), format!("archive/{name}"))?;
    }
    add_complete_lines(&mut entries, &archive::manifest_path(layout), format!("archive/{MANIFEST}"))?;

    // 4. Ledgers, configuration, schedules.
    for name in maintenance::dir_names(&ledger::dir(layout))? {
        if name.ends_with(".ledger") && !name.starts_with('.') {
            add_complete_lines(&mut entries, &ledger::dir(layout).join(&name), format!("state/uploads/{name}"))?;
        }
    }
    if let Some(cfg) = &opts.config_file
        && cfg.is_file()
    {
        add_file(&mut entries, cfg, CONFIG_ENTRY.to_owned())?;
    }
    if let Some(dir) = &opts.schedules_dir {
        for name in maintenance::dir_names(dir)? {
            let p = dir.join(&name);
            if !name.starts_with('.') && p.is_file() {
                add_file(&mut entries, &p, format!("schedules/{name}"))?;
            }
        }
    }

    // 5. Write it under a hidden name, make it durable, then name it.
    let (bundle, partial) = bundle_name(&out_dir, &opts.host, clock)?;
    let files = entries.len();
    if let Err(e) = write_bundle(&partial, entries, clock) {
        let _ = fs::remove_file(&partial);
        return Err(e);
    }
    fs::rename(&partial, &bundle)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), bundle.display()))?;
    sync_dir(&out_dir)?;
    let size = fs::metadata(&bundle)?.len();
    let removed = prune(&out_dir, keep)?;
    let active_records = actives.values().map(|(_, n)| n).sum();
    Ok(BackupReport { bundle, files, size, active_records, removed })
}

fn add_file(entries: &mut BTreeMap<String, Source>, path: &Path, entry: String) -> Result<()> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    let len = file.metadata()?.len();
    entries.insert(entry, Source { file, len });
    Ok(())
}

/// An append-only text file, up to its last newline (a crash may have cut
/// its last line short).
fn add_complete_lines(entries: &mut BTreeMap<String, Source>, path: &Path, entry: String) -> Result<()> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).with_context(|| format!("cannot read {}", path.display()))?;
    let len = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) as u64;
    entries.insert(entry, Source { file, len });
    Ok(())
}

/// A free `<host>_<stamp>.backup.tar.gz` in `dir` and its hidden partial
/// name. The stamp is the local time, or one second after the newest bundle
/// already there, so the bundle just written always sorts newest (several
/// backups in one second, or a clock stepping back).
fn bundle_name(dir: &Path, host: &str, clock: &dyn Clock) -> Result<(PathBuf, PathBuf)> {
    let mut stamp = clock.now().naive_local();
    stamp = stamp.with_nanosecond(0).unwrap_or(stamp);
    for (existing, _) in bundles_in(dir)? {
        if let Some(t) = crate::timestamp::parse_file_stamp(&existing)
            && t >= stamp
        {
            stamp = t + chrono::Duration::seconds(1);
        }
    }
    let name = format!("{host}_{}{BUNDLE_SUFFIX}", stamp.format("%Y%m%d%H%M%S"));
    Ok((dir.join(&name), dir.join(format!(".{name}.partial"))))
}

/// `(stamp, file name)` of the bundles in `dir`, oldest first.
fn bundles_in(dir: &Path) -> Result<Vec<(String, String)>> {
    let mut bundles = Vec::new();
    for name in maintenance::dir_names(dir)? {
        if let Some(stem) = name.strip_suffix(BUNDLE_SUFFIX).filter(|_| !name.starts_with('.')) {
            let stamp = stem.rsplit_once('_').map(|(_, s)| s.to_owned()).unwrap_or_default();
            bundles.push((stamp, name.clone()));
        }
    }
    bundles.sort();
    Ok(bundles)
}

fn write_bundle(partial: &Path, entries: BTreeMap<String, Source>, clock: &dyn Clock) -> Result<()> {
    let out = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let gz = flate2::write::GzEncoder::new(BufWriter::with_capacity(1 << 20, out), Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mtime = clock.now().timestamp().max(0) as u64;
    for (name, mut src) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_size(src.len);
        src.file.seek(SeekFrom::Start(0))?;
        let mut body = (&mut src.file).take(src.len);
        tar.append_data(&mut header, &name, &mut body).with_context(|| format!("cannot add {name} to the bundle"))?;
        if body.limit() != 0 {
            bail!("{name} became shorter while the bundle was written");
        }
    }
    let gz = tar.into_inner().with_context(|| format!("cannot write {}", partial.display()))?;
    let out = gz.finish().with_context(|| format!("cannot write {}", partial.display()))?;
    let out =
        out.into_inner().map_err(|e| e.into_error()).with_context(|| format!("cannot write {}", partial.display()))?;
    out.sync_all().with_context(|| format!("cannot sync {}", partial.display()))
}

/// Removes leftover partial bundles, and all but the newest `keep` bundles.
fn prune(dir: &Path, keep: usize) -> Result<Vec<PathBuf>> {
    for name in maintenance::dir_names(dir)? {
        if name.starts_with('.') && name.ends_with(&format!("{BUNDLE_SUFFIX}.partial")) {
            maintenance::remove_if_exists(&dir.join(&name))?;
        }
    }
    let bundles = bundles_in(dir)?;
    let excess = bundles.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for (_, name) in bundles.into_iter().take(excess) {
        let p = dir.join(&name);
        maintenance::remove_if_exists(&p)?;
        removed.push(p);
    }
    if !removed.is_empty() {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// What a restore did.
#[derive(Debug)]
pub struct RestoreReport {
    pub bundle: PathBuf,
    pub data_dir: PathBuf,
    /// Files written.
    pub files: usize,
    /// What the data directory held before, when `force` replaced it.
    pub replaced: Option<String>,
    /// The check of the restored files (the same as `verify`).
    pub verify: verify::Report,
    /// The id the next record gets.
    pub next_id: u64,
}

impl std::fmt::Display for RestoreReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(r) = &self.replaced {
            writeln!(f, "replaced the previous contents of {}: {r}", self.data_dir.display())?;
        }
        let range = match (self.verify.first_id, self.verify.last_id) {
            (Some(a), Some(b)) => format!("ids {a}..{b}"),
            _ => "no records".into(),
        };
        write!(
            f,
            "restored {} files from {} into {}; verify OK: {} log files, {} records, {range}; next id {}",
            self.files,
            self.bundle.display(),
            self.data_dir.display(),
            self.verify.files,
            self.verify.records,
            self.next_id
        )
    }
}

/// Why a bundle entry is refused, or `None` when it is acceptable.
fn refuse_entry(path: &Path, kind: tar::EntryType) -> Option<String> {
    let shown = path.display();
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => return Some(format!("{shown:?} leaves the data directory (`..`)")),
            Component::RootDir | Component::Prefix(_) => return Some(format!("{shown:?} is an absolute path")),
        }
    }
    if kind.is_symlink() || kind.is_hard_link() {
        return Some(format!("{shown:?} is a link; bundles never hold links"));
    }
    if !(kind.is_file() || kind.is_dir()) {
        return Some(format!("{shown:?} is not a regular file or directory"));
    }
    let Some(top) = parts.first() else { return Some(format!("{shown:?} is an empty path")) };
    if !TOP_LEVEL.contains(&top.as_str()) || (top == CONFIG_ENTRY && parts.len() != 1) {
        return Some(format!("{shown:?} is not part of an audit-trail data directory"));
    }
    None
}

fn open_bundle(bundle: &Path) -> Result<tar::Archive<flate2::read::GzDecoder<io::BufReader<File>>>> {
    let f = File::open(bundle).with_context(|| format!("cannot open bundle {}", bundle.display()))?;
    Ok(tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(f))))
}

/// Every entry of the bundle, checked; fails naming every refused entry.
fn check_bundle(bundle: &Path) -> Result<usize> {
    let mut problems = Vec::new();
    let mut count = 0;
    let mut ar = open_bundle(bundle)?;
    for entry in ar.entries().with_context(|| format!("{} is not a tar.gz bundle", bundle.display()))? {
        let entry = entry.with_context(|| format!("{} is not a readable tar.gz bundle", bundle.display()))?;
        let path = entry.path().with_context(|| format!("{}: an entry has an unreadable path", bundle.display()))?;
        if let Some(why) = refuse_entry(&path, entry.header().entry_type()) {
            problems.push(why);
        }
        count += 1;
    }
    if !problems.is_empty() {
        bail!("bundle {} is refused and nothing was written: {}", bundle.display(), problems.join("; "));
    }
    Ok(count)
}

/// A short description of a data directory's contents.
fn describe(dir: &Path) -> String {
    let layout = Layout::new(dir);
    let entries = maintenance::dir_names(dir).unwrap_or_default();
    let Ok(files) = history::list(&layout) else { return format!("{} entries", entries.len()) };
    let count = |k| files.iter().filter(|f| f.kind == k).count();
    let last = history::last_id(&layout, &files).unwrap_or(0);
    let mut parts = vec![
        format!("{} sealed", count(history::FileKind::Sealed)),
        format!("{} archived", count(history::FileKind::Archived)),
        format!("{} active file(s)", count(history::FileKind::Active)),
        if last > 0 { format!("records up to id {last}") } else { "no records".into() },
    ];
    if dir.join(CONFIG_ENTRY).exists() {
        parts.push("a configuration file".into());
    }
    parts.join(", ")
}

/// Fails when a running audit-trail holds the directory's log or maintenance lock.
fn ensure_not_in_use(layout: &Layout) -> Result<()> {
    for lock in [layout.lock.clone(), layout.state.join(maintenance::LOCK_NAME)] {
        let Ok(f) = OpenOptions::new().write(true).open(&lock) else { continue };
        match f.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => bail!(
                "{} is in use ({} is held by a running audit-trail); stop it before restoring",
                layout.data_dir.display(),
                lock.display()
            ),
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", lock.display()));
            }
        }
    }
    Ok(())
}

/// Restores `bundle` into `data_dir` (see the module docs). A data directory
/// that is not empty is refused unless `force`, which replaces its contents.
pub fn restore(bundle: &Path, data_dir: &Path, force: bool) -> Result<RestoreReport> {
    check_bundle(bundle)?;
    let existing = maintenance::dir_names(data_dir)?;
    let replaced = if existing.is_empty() {
        None
    } else if !force {
        bail!(
            "{} is not empty ({}); restore into an empty directory, or add --force to replace its contents",
            data_dir.display(),
            describe(data_dir)
        );
    } else {
        ensure_not_in_use(&Layout::new(data_dir))?;
        Some(describe(data_dir))
    };

    let name = data_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "data".into());
    let parent = match data_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let tmp = parent.join(format!(".{name}.restore-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).with_context(|| format!("cannot remove {}", tmp.display()))?;
    }
    let outcome = extract_and_verify(bundle, &tmp);
    let (files, report, next_id) = match outcome {
        Ok(v) => v,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };

    // Move into place: an empty directory is replaced, a non-empty one
    // (with --force) is moved aside first and put back if the move fails.
    let move_in = || {
        fs::rename(&tmp, data_dir)
            .with_context(|| format!("cannot move the restored files into {}", data_dir.display()))
    };
    if !data_dir.exists() {
        move_in()?;
    } else if replaced.is_none() {
        fs::remove_dir(data_dir).with_context(|| format!("cannot replace {}", data_dir.display()))?;
        move_in()?;
    } else {
        let old = parent.join(format!(".{name}.replaced-{}", std::process::id()));
        fs::rename(data_dir, &old).with_context(|| format!("cannot move {} aside", data_dir.display()))?;
        if let Err(e) = move_in() {
            let _ = fs::rename(&old, data_dir);
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        fs::remove_dir_all(&old).with_context(|| format!("cannot remove {}", old.display()))?;
    }
    sync_dir(&parent)?;
    Ok(RestoreReport {
        bundle: bundle.to_path_buf(),
        data_dir: data_dir.to_path_buf(),
        files,
        replaced,
        verify: report,
        next_id,
    })
}

/// Extracts the bundle into `tmp` (checking every entry again as it goes),
/// makes it durable and verifies it. Returns files written, the verify
/// report and the next id.
fn extract_and_verify(bundle: &Path, tmp: &Path) -> Result<(usize, verify::Report, u64)> {
    fs::create_dir(tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut dirs = BTreeSet::from([tmp.to_path_buf()]);
    let mut files = 0;
    let mut ar = open_bundle(bundle)?;
    for entry in ar.entries()? {
        let mut entry = entry?;
        let rel = entry.path()?.into_owned();
        let kind = entry.header().entry_type();
        if let Some(why) = refuse_entry(&rel, kind) {
            bail!("bundle {} changed while it was read: {why}", bundle.display());
        }
        let dest = tmp.join(&rel);
        if kind.is_dir() {
            fs::create_dir_all(&dest).with_context(|| format!("cannot create {}", dest.display()))?;
            dirs.insert(dest);
            continue;
        }
        let dir = dest.parent().unwrap_or(tmp).to_path_buf();
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        dirs.insert(dir);
        let mut out = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&dest)
            .with_context(|| format!("cannot create {} (is it twice in the bundle?)", dest.display()))?;
        io::copy(&mut entry, &mut out).with_context(|| format!("cannot extract {}", rel.display()))?;
        out.sync_all().with_context(|| format!("cannot sync {}", dest.display()))?;
        files += 1;
    }
    for d in dirs.iter().rev() {
        sync_dir(d)?;
    }
    let layout = Layout::new(tmp);
    let report = verify::verify(verify::data_dir_targets(&layout)?, &verify::Options::default());
    if let Some(p) = report.problems.first() {
        let shown = p.to_string().replace(&format!("{}/", tmp.display()), "");
        bail!(
            "bundle {} does not verify, nothing was restored: {shown} ({} problem(s))",
            bundle.display(),
            report.problems.len()
        );
    }
    let listed = history::list(&layout)?;
    let next_id = history::last_id(&layout, &listed)? + 1;
    Ok((files, report, next_id))
}
