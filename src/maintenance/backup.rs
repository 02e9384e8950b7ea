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
//! Only the active files are held open until they are copied; every other
//! file is opened when its turn comes (sealed and archived files do not
//! change while the maintenance lock is held; the manifest, ledgers,
//! configuration and schedules are small and read whole while listing), so
//! a backup holds a handful of descriptors whatever the number of files.
//!
//! The bundle is written under a random name in `state/tmp/` (the same
//! filesystem), fsynced, then renamed into `backups/`, which thus only ever
//! holds complete bundles; with `--out` on another filesystem it is written
//! under a hidden random name in that directory instead. Leftovers of an
//! interrupted backup are removed by the next one.
//!
//! # Restore
//!
//! A bundle is accepted only if it holds exactly the layout above, checked
//! entry by entry before anything is written: relative paths without `..`,
//! regular files only where files belong, with names of the documented form
//! (`<host>_<YYYYMMDDHHMMSS>` stems, ledger names of targets), directory
//! entries only for the directories of the layout, no links, no devices, no
//! name twice. Anything else (`state/serve.lock`, `state/config.seen`,
//! `audit_trail/evil.sh`, a directory named like a file …) refuses the whole
//! bundle, naming each refused entry.
//!
//! Restore never installs state it does not own. The bundle's
//! `audit-trail.toml` is restored as `audit-trail.toml.restored` (mode 0600)
//! and is **not** put in effect: it could point the ingest socket anywhere,
//! with any mode. Restore says where it is; the operator reviews it and
//! renames it to `audit-trail.toml` to use it. With `--force`, the
//! configuration in effect in the replaced data directory is kept, and so are
//! the bundles in its `backups/`.
//!
//! The bundle is extracted into `.<name>.restore-<random>` beside the data
//! directory (created exclusively), made durable, verified like
//! `audit-trail verify`, and only then swapped with the data directory in one
//! step (`renameat2(RENAME_EXCHANGE)`, or a rename that never replaces when
//! there is no data directory yet); the previous contents, now under the
//! temporary name, are removed last. A crash at any point therefore leaves at
//! the path either the previous or the restored data directory, complete,
//! plus at most one `.<name>.restore-*` leftover, which the next `restore` or
//! `serve` removes. A data directory that is a symbolic link stays one: the
//! directory it points to is what is replaced. The replaced directory's
//! owner and mode are given to the restored one. A data directory that is a
//! mount point cannot be swapped and is refused before anything is written.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::Timelike;
use flate2::Compression;

use crate::config::Config;
use crate::fsx;
use crate::fsx::{human_bytes, sync_dir};
use crate::maintenance::MaintenanceLock;
use crate::store::layout::Layout;
use crate::store::layout::{ACTIVE_SUFFIX, ARCHIVED_SUFFIX, FileKind, SEALED_SUFFIX, valid_stem};
use crate::store::manifest::MANIFEST;
use crate::store::reader;
use crate::store::verify;
use crate::store::writer::scan_active_file;
use crate::timestamp::Clock;
use crate::upload::ledger;

/// Suffix of a bundle's file name.
pub const BUNDLE_SUFFIX: &str = ".backup.tar.gz";
/// Name of the configuration file inside a bundle.
pub const CONFIG_ENTRY: &str = "audit-trail.toml";
/// Where the bundle's configuration is restored (see the module docs).
pub const RESTORED_CONFIG: &str = "audit-trail.toml.restored";
/// The directories of the layout, as a bundle may name them.
const DIRS: [&str; 6] = ["audit_trail", "archive", "state", "state/active", "state/uploads", "schedules"];

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

/// One entry to write: where its bytes come from.
enum Source {
    /// An active file, opened while listing: its first `len` bytes (whole
    /// records) are the snapshot.
    Open { file: File, len: u64 },
    /// A sealed or archived file, which does not change while the
    /// maintenance lock is held: opened only when its turn comes.
    Path(PathBuf),
    /// A small file read whole while listing.
    Bytes(Vec<u8>),
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
    // Temporaries of an interrupted archive or backup (the lock is ours).
    crate::maintenance::clean_tmp_dir(layout)?;

    // 1. The active files first, each up to its last complete record.
    let mut entries: BTreeMap<String, Source> = BTreeMap::new();
    let mut actives: BTreeMap<String, (String, u64)> = BTreeMap::new(); // stem → (entry, records)
    for name in crate::fsx::dir_names(&layout.active)? {
        let Some(stem) = name.strip_suffix(ACTIVE_SUFFIX) else { continue };
        let path = layout.active.join(&name);
        let file = match fsx::open_read_nofollow(&path) {
            Ok(f) => f,
            // Sealed meanwhile: its sealed copy is listed below.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
        };
        let copy = file.try_clone()?;
        let Some(scan) = scan_active_file(file, &path)? else { continue };
        let entry = format!("state/active/{name}");
        actives.insert(stem.to_owned(), (entry.clone(), scan.count));
        entries.insert(entry, Source::Open { file: copy, len: scan.good_end });
    }

    // 2. Sealed files; a file sealed since step 1 replaces its active copy.
    let manifest_files: BTreeSet<String> =
        crate::store::manifest::read_manifest(layout)?.into_iter().map(|e| e.file).collect();
    for name in crate::fsx::dir_names(&layout.sealed)? {
        if name.starts_with('.') {
            continue;
        }
        let stem = FileKind::Sealed.stem_of(&name);
        if stem.is_none() && name != crate::store::xml::write::STYLESHEET {
            continue;
        }
        if let Some(stem) = stem {
            // Archived and recorded: the compressed copy is taken below.
            if manifest_files.contains(&FileKind::Archived.file_name(stem))
                && layout.file(FileKind::Archived, stem).exists()
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
    for name in crate::fsx::dir_names(&layout.archive)? {
        let Some(stem) = FileKind::Archived.stem_of(&name) else { continue };
        if name.starts_with('.') {
            continue;
        }
        if entries.contains_key(&format!("audit_trail/{stem}.xml")) {
            continue; // not yet recorded in the manifest: the plain copy was taken
        }
        add_file(&mut entries, &layout.archive.join(&name), format!("archive/{name}"))?;
    }
    add_complete_lines(&mut entries, &crate::store::manifest::manifest_path(layout), format!("archive/{MANIFEST}"))?;

    // 4. Ledgers, configuration, schedules.
    for name in crate::fsx::dir_names(&ledger::dir(layout))? {
        if name.ends_with(".ledger") && !name.starts_with('.') {
            add_complete_lines(&mut entries, &ledger::dir(layout).join(&name), format!("state/uploads/{name}"))?;
        }
    }
    // The configuration and schedules live where the operator put them (often
    // outside the data directory, possibly behind a link): read as they are.
    if let Some(cfg) = &opts.config_file
        && cfg.is_file()
    {
        add_bytes(&mut entries, cfg, CONFIG_ENTRY.to_owned())?;
    }
    if let Some(dir) = &opts.schedules_dir {
        for name in crate::fsx::dir_names(dir)? {
            let p = dir.join(&name);
            if valid_plain_name(&name) && p.is_file() {
                add_bytes(&mut entries, &p, format!("schedules/{name}"))?;
            }
        }
    }

    // 5. Write it aside under a name nobody can prepare, make it durable,
    // then rename it in.
    let bundle = bundle_name(&out_dir, &opts.host, clock)?;
    let staging = crate::maintenance::staging_dir(layout, &out_dir)?;
    let bundle_file = file_name(&bundle);
    let partial = staging.join(format!(".{bundle_file}.{}.partial", fsx::random_hex(8)));
    let files = entries.len();
    if let Err(e) = write_bundle(&partial, entries, clock).and_then(|()| {
        fs::rename(&partial, &bundle)
            .with_context(|| format!("cannot rename {} to {}", partial.display(), bundle.display()))
    }) {
        let _ = fs::remove_file(&partial);
        return Err(e);
    }
    sync_dir(&out_dir)?;
    let size = fs::metadata(&bundle)?.len();
    let removed = prune(&out_dir, keep)?;
    let active_records = actives.values().map(|(_, n)| n).sum();
    Ok(BackupReport { bundle, files, size, active_records, removed })
}

/// A file of the data directory, copied when its turn comes. Only a regular
/// file is taken (a link planted in its place is an error, never followed).
fn add_file(entries: &mut BTreeMap<String, Source>, path: &Path, entry: String) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => {
            entries.insert(entry, Source::Path(path.to_path_buf()));
            Ok(())
        }
        Ok(_) => bail!("{} is not a regular file (a link or a directory is in its place)", path.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// A small file read whole now (configuration, schedules).
fn add_bytes(entries: &mut BTreeMap<String, Source>, path: &Path, entry: String) -> Result<()> {
    match fs::read(path) {
        Ok(bytes) => {
            entries.insert(entry, Source::Bytes(bytes));
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// An append-only text file of the data directory, up to its last newline
/// (a crash may have cut its last line short), read now.
fn add_complete_lines(entries: &mut BTreeMap<String, Source>, path: &Path, entry: String) -> Result<()> {
    let mut file = match fsx::open_read_nofollow(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).with_context(|| format!("cannot read {}", path.display()))?;
    let len = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    bytes.truncate(len);
    entries.insert(entry, Source::Bytes(bytes));
    Ok(())
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// A free `<host>_<stamp>.backup.tar.gz` in `dir`. The stamp is the local time, or one second after the newest bundle
/// already there, so the bundle just written always sorts newest (several
/// backups in one second, or a clock stepping back).
fn bundle_name(dir: &Path, host: &str, clock: &dyn Clock) -> Result<PathBuf> {
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
    Ok(dir.join(name))
}

/// `(stamp, file name)` of the bundles in `dir`, oldest first.
fn bundles_in(dir: &Path) -> Result<Vec<(String, String)>> {
    let mut bundles = Vec::new();
    for name in crate::fsx::dir_names(dir)? {
        if let Some(stem) = name.strip_suffix(BUNDLE_SUFFIX).filter(|_| !name.starts_with('.')) {
            let stamp = stem.rsplit_once('_').map(|(_, s)| s.to_owned()).unwrap_or_default();
            bundles.push((stamp, name.clone()));
        }
    }
    bundles.sort();
    Ok(bundles)
}

fn write_bundle(partial: &Path, entries: BTreeMap<String, Source>, clock: &dyn Clock) -> Result<()> {
    let out = fsx::create_new(partial).with_context(|| format!("cannot create {}", partial.display()))?;
    let gz = flate2::write::GzEncoder::new(BufWriter::with_capacity(1 << 20, out), Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mtime = clock.now().timestamp().max(0) as u64;
    for (name, src) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o640);
        header.set_mtime(mtime);
        let (mut file, len) = match src {
            Source::Bytes(bytes) => {
                header.set_size(bytes.len() as u64);
                tar.append_data(&mut header, &name, bytes.as_slice())
                    .with_context(|| format!("cannot add {name} to the bundle"))?;
                continue;
            }
            Source::Open { mut file, len } => {
                file.seek(SeekFrom::Start(0))?;
                (file, len)
            }
            Source::Path(path) => {
                let file = fsx::open_read_nofollow(&path).with_context(|| format!("cannot open {}", path.display()))?;
                let len = file.metadata()?.len();
                (file, len)
            }
        };
        header.set_size(len);
        let mut body = (&mut file).take(len);
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
    for name in crate::fsx::dir_names(dir)? {
        if name.starts_with('.') && name.contains(BUNDLE_SUFFIX) && name.ends_with(".partial") {
            crate::fsx::remove_if_exists(&dir.join(&name))?;
        }
    }
    let bundles = bundles_in(dir)?;
    let excess = bundles.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for (_, name) in bundles.into_iter().take(excess) {
        let p = dir.join(&name);
        crate::fsx::remove_if_exists(&p)?;
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
    /// Where the bundle's configuration was put (not in effect), if it had one.
    pub config_restored: Option<PathBuf>,
    /// The configuration in effect in the replaced directory, kept.
    pub config_kept: bool,
    /// Bundles of the replaced directory's `backups/`, kept.
    pub backups_kept: usize,
    /// Leftovers of interrupted restores found beside the data directory.
    pub notes: Vec<String>,
}

impl std::fmt::Display for RestoreReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for n in &self.notes {
            writeln!(f, "{n}")?;
        }
        if let Some(r) = &self.replaced {
            writeln!(f, "replaced the previous contents of {}: {r}", self.data_dir.display())?;
        }
        if self.config_kept {
            writeln!(f, "kept the configuration in effect, {}", self.data_dir.join(CONFIG_ENTRY).display())?;
        }
        if self.backups_kept > 0 {
            writeln!(f, "kept the {} bundle(s) in {}", self.backups_kept, self.data_dir.join("backups").display())?;
        }
        if let Some(p) = &self.config_restored {
            writeln!(
                f,
                "the bundle's configuration is restored as {} (mode 0600) and is NOT in effect: review it, then \
                 rename it to {CONFIG_ENTRY} to use it",
                p.display()
            )?;
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

/// A target name (letters, digits, `-`, `_`, `.`; not hidden).
fn valid_target(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A schedule file's name: a plain, visible name of safe characters.
fn valid_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '@'))
}

/// Whether the layout has a file at `parts` (see the module docs).
fn file_allowed(parts: &[&str]) -> bool {
    match parts {
        [n] => *n == CONFIG_ENTRY,
        ["audit_trail", n] => {
            *n == crate::store::xml::write::STYLESHEET || FileKind::Sealed.stem_of(n).is_some_and(valid_stem)
        }
        ["archive", n] => *n == MANIFEST || FileKind::Archived.stem_of(n).is_some_and(valid_stem),
        ["state", "active", n] => n.strip_suffix(ACTIVE_SUFFIX).is_some_and(valid_stem),
        ["state", "uploads", n] => n.strip_suffix(".ledger").is_some_and(valid_target),
        ["schedules", n] => valid_plain_name(n),
        _ => false,
    }
}

/// Names that only files have in the layout (to say "a directory where a
/// file belongs").
fn looks_like_file(name: &str) -> bool {
    [SEALED_SUFFIX, ARCHIVED_SUFFIX, ACTIVE_SUFFIX, ".ledger", ".toml", ".jsonl", ".xsl"]
        .iter()
        .any(|s| name.ends_with(s))
}

/// Why a bundle entry is refused, or `None` when it is acceptable.
fn refuse_entry(path: &Path, kind: tar::EntryType) -> Option<String> {
    let shown = path.display();
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => match p.to_str() {
                Some(p) => parts.push(p),
                None => return Some(format!("{shown:?} is not a valid UTF-8 name")),
            },
            Component::CurDir => {}
            Component::ParentDir => return Some(format!("{shown:?} leaves the data directory (`..`)")),
            Component::RootDir | Component::Prefix(_) => return Some(format!("{shown:?} is an absolute path")),
        }
    }
    if kind.is_symlink() || kind.is_hard_link() {
        return Some(format!("{shown:?} is a link; bundles never hold links"));
    }
    if parts.is_empty() {
        return Some(format!("{shown:?} is an empty path"));
    }
    let joined = parts.join("/");
    let is_dir_of_layout = DIRS.contains(&joined.as_str());
    match kind {
        tar::EntryType::Directory => {
            if is_dir_of_layout {
                None
            } else if file_allowed(&parts) || looks_like_file(parts[parts.len() - 1]) {
                Some(format!("{shown:?} is a directory where a file belongs"))
            } else {
                Some(format!("{shown:?} is not part of an audit-trail data directory"))
            }
        }
        tar::EntryType::Regular => {
            if file_allowed(&parts) {
                None
            } else if is_dir_of_layout {
                Some(format!("{shown:?} is a file where a directory belongs"))
            } else {
                Some(format!("{shown:?} is not part of an audit-trail data directory"))
            }
        }
        _ => Some(format!("{shown:?} is not a regular file or directory")),
    }
}

fn open_bundle(bundle: &Path) -> Result<tar::Archive<flate2::read::GzDecoder<io::BufReader<File>>>> {
    let f = File::open(bundle).with_context(|| format!("cannot open bundle {}", bundle.display()))?;
    Ok(tar::Archive::new(flate2::read::GzDecoder::new(io::BufReader::new(f))))
}

/// Every entry of the bundle, checked; fails naming every refused entry.
pub(crate) fn check_bundle(bundle: &Path) -> Result<usize> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    let mut count = 0;
    let mut ar = open_bundle(bundle)?;
    for entry in ar.entries().with_context(|| format!("{} is not a tar.gz bundle", bundle.display()))? {
        let entry = entry.with_context(|| format!("{} is not a readable tar.gz bundle", bundle.display()))?;
        let path = entry.path().with_context(|| format!("{}: an entry has an unreadable path", bundle.display()))?;
        let kind = entry.header().entry_type();
        if let Some(why) = refuse_entry(&path, kind) {
            problems.push(why);
        } else if kind == tar::EntryType::Regular && !seen.insert(path.components().collect::<PathBuf>()) {
            problems.push(format!("{:?} is twice in the bundle", path.display()));
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
    let entries = crate::fsx::dir_names(dir).unwrap_or_default();
    let Ok(files) = reader::list(&layout) else { return format!("{} entries", entries.len()) };
    let count = |k| files.iter().filter(|f| f.kind == k).count();
    let last = reader::last_id(&layout, &files).unwrap_or(0);
    let mut parts = vec![
        format!("{} sealed", count(FileKind::Sealed)),
        format!("{} archived", count(FileKind::Archived)),
        format!("{} active file(s)", count(FileKind::Active)),
        if last > 0 { format!("records up to id {last}") } else { "no records".into() },
    ];
    if dir.join(CONFIG_ENTRY).exists() {
        parts.push("a configuration file".into());
    }
    parts.join(", ")
}

/// Fails when a running audit-trail holds the directory's log or maintenance lock.
fn ensure_not_in_use(layout: &Layout) -> Result<()> {
    for lock in [layout.lock.clone(), layout.state.join(crate::maintenance::LOCK_NAME)] {
        let Ok(f) = fsx::open_read_nofollow(&lock) else { continue };
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

/// The real directory a data directory path names: its canonical path when
/// it exists (a link is followed, so the directory it points to is what gets
/// replaced), else the canonical parent (created) joined with its name.
fn resolve_data_dir(data_dir: &Path) -> Result<PathBuf> {
    let real = match fs::symlink_metadata(data_dir) {
        Ok(_) => {
            let real = fs::canonicalize(data_dir).with_context(|| {
                format!(
                    "{} is a link to a directory that does not exist; create that directory first",
                    data_dir.display()
                )
            })?;
            if !real.is_dir() {
                bail!("{} is not a directory", data_dir.display());
            }
            real
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let name = data_dir
                .file_name()
                .with_context(|| format!("{} does not name a directory to restore into", data_dir.display()))?;
            let parent = match data_dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
            fs::canonicalize(&parent).with_context(|| format!("cannot resolve {}", parent.display()))?.join(name)
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", data_dir.display())),
    };
    if real.file_name().is_none() || real.parent().is_none() {
        bail!("cannot restore into {}", real.display());
    }
    Ok(real)
}

/// An exclusive `flock` on the directory that holds the data directory, held
/// for a whole restore: two restores never work beside each other, and
/// leftovers are only cleaned when no restore is running.
fn lock_parent(parent: &Path, wait: bool) -> Result<Option<File>> {
    let f = File::open(parent).with_context(|| format!("cannot open {}", parent.display()))?;
    if wait {
        f.lock().with_context(|| format!("cannot lock {}", parent.display()))?;
        return Ok(Some(f));
    }
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", parent.display())),
    }
}

fn restore_prefix(name: &str) -> String {
    format!(".{name}.restore-")
}

/// Removes what an interrupted restore left beside the data directory `real`
/// (the caller holds the parent's lock). A `.<name>.restore-*` directory is
/// either an extracted bundle not yet swapped in, or the previous contents
/// swapped out and not yet removed: as long as the data directory exists,
/// it is complete and the leftover goes. Returns what was done.
fn clean_restores_locked(real: &Path) -> Vec<String> {
    let (Some(parent), Some(name)) = (real.parent(), real.file_name()) else { return Vec::new() };
    let name = name.to_string_lossy();
    let prefix = restore_prefix(&name);
    let legacy = format!(".{name}.replaced-");
    let exists = real.is_dir();
    let mut notes = Vec::new();
    for n in crate::fsx::dir_names(parent).unwrap_or_default() {
        let p = parent.join(&n);
        if n.starts_with(&prefix) {
            if !exists {
                notes.push(format!(
                    "{} was left by an interrupted restore and {} does not exist: it is kept, inspect it",
                    p.display(),
                    real.display()
                ));
                continue;
            }
            match fs::remove_dir_all(&p) {
                Ok(()) => notes.push(format!("removed {}, left by an interrupted restore", p.display())),
                Err(e) => notes.push(format!("cannot remove {}, left by an interrupted restore: {e}", p.display())),
            }
        } else if n.starts_with(&legacy) {
            notes.push(format!(
                "{} holds a data directory set aside by an interrupted restore of an earlier version: it is kept, \
                 inspect it",
                p.display()
            ));
        }
    }
    if notes.iter().any(|n| n.starts_with("removed ")) {
        let _ = sync_dir(parent);
    }
    notes
}

/// Cleans up after an interrupted restore next to `data_dir` (see
/// [`clean_restores_locked`]) unless a restore is running there now; for the
/// start of the service. Returns what to report.
pub fn clean_interrupted_restores(data_dir: &Path) -> Vec<String> {
    let Ok(real) = fs::canonicalize(data_dir) else { return Vec::new() };
    let Some(parent) = real.parent() else { return Vec::new() };
    match lock_parent(parent, false) {
        Ok(Some(_lock)) => clean_restores_locked(&real),
        Ok(None) => vec![format!("a restore is running in {}", parent.display())],
        Err(e) => vec![format!("{e:#}")],
    }
}

/// Restores `bundle` into `data_dir` (see the module docs). A data directory
/// that is not empty is refused unless `force`, which replaces its contents.
pub fn restore(bundle: &Path, data_dir: &Path, force: bool) -> Result<RestoreReport> {
    check_bundle(bundle)?;
    let real = resolve_data_dir(data_dir)?;
    let parent = real.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
    let name = file_name(&real);
    let _lock = lock_parent(&parent, true)?;
    let notes = clean_restores_locked(&real);

    let old_meta = match fs::symlink_metadata(&real) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", real.display())),
    };
    if let Some(m) = &old_meta
        && m.dev() != fs::metadata(&parent)?.dev()
    {
        bail!(
            "{} is a mount point: restore cannot swap it in one step; restore into a new directory on that volume \
             and point the data directory at it",
            data_dir.display()
        );
    }
    let existing = crate::fsx::dir_names(&real)?;
    let replaced = if existing.is_empty() {
        None
    } else if !force {
        bail!(
            "{} is not empty ({}); restore into an empty directory, or add --force to replace its contents",
            data_dir.display(),
            describe(&real)
        );
    } else {
        ensure_not_in_use(&Layout::new(&real))?;
        Some(describe(&real))
    };

    let tmp = create_restore_dir(&parent, &name)?;
    let prepared = (|| {
        let (files, report, next_id, config_restored) = extract_and_verify(bundle, &tmp)?;
        let (config_kept, backups_kept) = if replaced.is_some() { carry_over(&real, &tmp)? } else { (false, 0) };
        // Ids never go back: the replaced directory's ids stay used.
        let next_id = if replaced.is_some() { carry_high_water(&real, &tmp, next_id)? } else { next_id };
        if let Some(m) = &old_meta {
            take_owner_and_mode(&tmp, m)?;
        }
        sync_dir(&tmp)?;
        Ok::<_, anyhow::Error>((files, report, next_id, config_restored, config_kept, backups_kept))
    })();
    let (files, report, next_id, config_restored, config_kept, backups_kept) = match prepared {
        Ok(v) => v,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };

    // Into place in one step: the path holds the old or the new directory,
    // never neither.
    let cwd = rustix::fs::CWD;
    let flags = if old_meta.is_some() { rustix::fs::RenameFlags::EXCHANGE } else { rustix::fs::RenameFlags::NOREPLACE };
    if let Err(e) = rustix::fs::renameat_with(cwd, &tmp, cwd, &real, flags) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(io::Error::from(e))
            .with_context(|| format!("cannot move the restored files into {}", data_dir.display()));
    }
    sync_dir(&parent)?;
    let mut notes = notes;
    if old_meta.is_some() {
        // `tmp` now holds the previous contents. The restore is done: failing
        // to remove them is reported, and the next restore or serve retries.
        match fs::remove_dir_all(&tmp) {
            Ok(()) => sync_dir(&parent)?,
            Err(e) => notes.push(format!(
                "cannot remove the previous contents, now in {}: {e}; the next restore or serve removes them",
                tmp.display()
            )),
        }
    }
    Ok(RestoreReport {
        bundle: bundle.to_path_buf(),
        data_dir: data_dir.to_path_buf(),
        files,
        replaced,
        verify: report,
        next_id,
        config_restored: config_restored.then(|| data_dir.join(RESTORED_CONFIG)),
        config_kept,
        backups_kept,
        notes,
    })
}

/// The next id the replaced directory would have handed out (its high-water
/// mark, or past its newest record): written as the restored directory's
/// high-water mark when it is higher, so the log continues after it and
/// records the gap (see `log`). Returns the restored directory's next id.
fn carry_high_water(old: &Path, new: &Path, next_id: u64) -> Result<u64> {
    let old_layout = Layout::new(old);
    let mark = crate::store::writer::read_high_water(&old_layout.state).ok().flatten().unwrap_or(0);
    let files = reader::list(&old_layout).unwrap_or_default();
    let last = reader::last_id(&old_layout, &files).unwrap_or(0);
    let old_next = mark.max(last + 1);
    if old_next <= next_id {
        return Ok(next_id);
    }
    let state = new.join("state");
    fs::create_dir_all(&state).with_context(|| format!("cannot create {}", state.display()))?;
    crate::store::writer::write_high_water(&state, old_next)?;
    Ok(old_next)
}

/// Creates `parent/.<name>.restore-<random>` exclusively.
fn create_restore_dir(parent: &Path, name: &str) -> Result<PathBuf> {
    for _ in 0..16 {
        let tmp = parent.join(format!("{}{}", restore_prefix(name), fsx::random_hex(8)));
        match fs::create_dir(&tmp) {
            Ok(()) => return Ok(tmp),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", tmp.display())),
        }
    }
    bail!("cannot create a temporary directory in {}: every name tried was taken", parent.display())
}

/// Copies into `new` what the replaced directory `old` holds that is not the
/// bundle's to decide: the configuration in effect and the bundles in
/// `backups/` (hard links, so a crash at any point loses neither). Returns
/// whether a configuration was kept and how many bundles.
fn carry_over(old: &Path, new: &Path) -> Result<(bool, usize)> {
    let cfg = old.join(CONFIG_ENTRY);
    let dest = new.join(CONFIG_ENTRY);
    let kept = match fs::symlink_metadata(&cfg) {
        Ok(m) if m.file_type().is_symlink() => {
            let target = fs::read_link(&cfg).with_context(|| format!("cannot read {}", cfg.display()))?;
            std::os::unix::fs::symlink(target, &dest).with_context(|| format!("cannot create {}", dest.display()))?;
            true
        }
        Ok(m) if m.is_file() => {
            let bytes = fs::read(&cfg).with_context(|| format!("cannot read {}", cfg.display()))?;
            let mut out = fsx::create_new(&dest).with_context(|| format!("cannot create {}", dest.display()))?;
            out.write_all(&bytes)
                .and_then(|()| out.set_permissions(fs::Permissions::from_mode(m.mode() & 0o7777)))
                .and_then(|()| out.sync_all())
                .with_context(|| format!("cannot write {}", dest.display()))?;
            true
        }
        _ => false,
    };
    let mut bundles = 0;
    let (from, to) = (old.join("backups"), new.join("backups"));
    for n in crate::fsx::dir_names(&from)? {
        let p = from.join(&n);
        if !n.ends_with(BUNDLE_SUFFIX) || n.starts_with('.') || !fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()) {
            continue;
        }
        fs::create_dir_all(&to).with_context(|| format!("cannot create {}", to.display()))?;
        fs::hard_link(&p, to.join(&n)).with_context(|| format!("cannot keep {}", p.display()))?;
        bundles += 1;
    }
    if bundles > 0 {
        sync_dir(&to)?;
    }
    Ok((kept, bundles))
}

/// Gives the restored directory the owner and mode of the one it replaces.
fn take_owner_and_mode(dir: &Path, old: &fs::Metadata) -> Result<()> {
    let now = fs::symlink_metadata(dir)?;
    if (now.uid(), now.gid()) != (old.uid(), old.gid()) {
        std::os::unix::fs::chown(dir, Some(old.uid()), Some(old.gid()))
            .with_context(|| format!("cannot give {} the owner of the directory it replaces", dir.display()))?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(old.mode() & 0o7777))
        .with_context(|| format!("cannot set the mode of {}", dir.display()))
}

/// Extracts the bundle into `tmp` (checking every entry again as it goes),
/// makes it durable and verifies it. Returns files written, the verify
/// report, the next id and whether the bundle held a configuration (written
/// as [`RESTORED_CONFIG`]).
fn extract_and_verify(bundle: &Path, tmp: &Path) -> Result<(usize, verify::Report, u64, bool)> {
    let mut dirs = BTreeSet::from([tmp.to_path_buf()]);
    let mut files = 0;
    let mut config = false;
    let mut ar = open_bundle(bundle)?;
    for entry in ar.entries()? {
        let mut entry = entry?;
        let rel = entry.path()?.into_owned();
        let kind = entry.header().entry_type();
        if let Some(why) = refuse_entry(&rel, kind) {
            bail!("bundle {} changed while it was read: {why}", bundle.display());
        }
        let rel: PathBuf = rel.components().collect();
        if kind.is_dir() {
            let dest = tmp.join(&rel);
            fs::create_dir_all(&dest).with_context(|| format!("cannot create {}", dest.display()))?;
            dirs.insert(dest);
            continue;
        }
        let is_config = rel == Path::new(CONFIG_ENTRY);
        let dest = if is_config { tmp.join(RESTORED_CONFIG) } else { tmp.join(&rel) };
        let dir = dest.parent().unwrap_or(tmp).to_path_buf();
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        dirs.insert(dir);
        let mut out = fsx::create_new(&dest)
            .with_context(|| format!("cannot create {} (is it twice in the bundle?)", dest.display()))?;
        if is_config {
            out.set_permissions(fs::Permissions::from_mode(0o600))?;
            config = true;
        }
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
    let listed = reader::list(&layout)?;
    let next_id = reader::last_id(&layout, &listed)? + 1;
    Ok((files, report, next_id, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &str, kind: tar::EntryType) -> Option<String> {
        refuse_entry(Path::new(path), kind)
    }

    #[test]
    fn only_the_documented_layout_is_accepted() {
        use tar::EntryType::{Directory as D, Regular as F};
        for ok in [
            "audit-trail.toml",
            "audit_trail/pbx01_20260101120000.xml",
            "audit_trail/audit-trail.xsl",
            "archive/pbx-01.example.com_20260101120000.xml.gz",
            "archive/manifest.jsonl",
            "state/active/pbx01_20260101120000.xml.open",
            "state/uploads/offsite.ledger",
            "schedules/nightly.toml",
            "./state/active/pbx01_20260101120000.xml.open",
        ] {
            assert_eq!(check(ok, F), None, "{ok}");
        }
        for ok in ["state", "state/active", "state/uploads", "audit_trail", "archive", "schedules", "state/active/"] {
            assert_eq!(check(ok, D), None, "{ok}");
        }
        for (bad, kind, why) in [
            ("state/serve.lock", F, "not part of"),
            ("state/config.seen", F, "not part of"),
            ("state/lock", F, "not part of"),
            ("state/jobs/history.jsonl", F, "not part of"),
            ("state/tmp/x", F, "not part of"),
            ("audit_trail/evil.sh", F, "not part of"),
            ("audit_trail/.pbx01_20260101120000.xml", F, "not part of"),
            ("audit_trail/pbx01_2026.xml", F, "not part of"),
            ("audit_trail/pbx01_20261301120000.xml", F, "not part of"),
            ("audit_trail/x/pbx01_20260101120000.xml", F, "not part of"),
            ("archive/pbx01_20260101120000.xml", F, "not part of"),
            ("state/active/pbx01_20260101120000.xml", F, "not part of"),
            ("state/active/x.xml.open", F, "not part of"),
            ("state/uploads/.hidden.ledger", F, "not part of"),
            ("schedules/.hidden.toml", F, "not part of"),
            ("schedules/sub/x.toml", F, "not part of"),
            ("audit-trail.toml/x", F, "not part of"),
            ("backups/pbx01_20260101120000.backup.tar.gz", F, "not part of"),
            ("ingest.sock", F, "not part of"),
            ("state/active/pbx01_20260101120000.xml.open", D, "directory where a file belongs"),
            ("state/active/zz.xml.open", D, "directory where a file belongs"),
            ("audit-trail.toml", D, "directory where a file belongs"),
            ("archive/manifest.jsonl", D, "directory where a file belongs"),
            ("state/jobs", D, "not part of"),
            ("state/active", F, "file where a directory belongs"),
            ("state/active/pbx01_20260101120000.xml.open", tar::EntryType::Fifo, "not a regular file"),
            ("state/active/pbx01_20260101120000.xml.open", tar::EntryType::Char, "not a regular file"),
            ("state/active/pbx01_20260101120000.xml.open", tar::EntryType::Symlink, "is a link"),
            ("audit_trail/pbx01_20260101120000.xml", tar::EntryType::Link, "is a link"),
            ("state/../../x", F, "leaves the data directory"),
            ("/etc/passwd", F, "absolute path"),
        ] {
            let got = check(bad, kind).unwrap_or_else(|| panic!("{bad} ({kind:?}) accepted"));
            assert!(got.contains(why) && got.contains(bad.trim_end_matches('/')), "{bad}: {got}");
        }
    }
}
