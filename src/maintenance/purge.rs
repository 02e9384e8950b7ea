//! Retention: removing sealed and archived files sealed more than
//! `retention_days` ago (SPEC §5, the `purge` job).
//!
//! A file's age is when this archiver sealed it, by its own clock: the seal's
//! `sealed` attribute (for a file only in the archive, as the manifest
//! recorded it when archiving, else read from the file). The event times inside are what clients said
//! and are kept as evidence, but never decide retention: a record stamped
//! 1999 by a phone with a reset clock does not make a file sealed today old,
//! and one stamped 2099 does not keep a file forever. A file whose seal time
//! cannot be read is left in place and named in the report.
//!
//! Never removed: the active file; a file still waiting for upload to an
//! enabled target, or holding records an enabled SIEM receiver has not been
//! sent yet (reported instead, with the targets); and, when there is no
//! active file (a crash between sealing a file and starting the next), the
//! newest file, because the log then takes the next id from it. Once a record
//! exists the log always has an active file whose header carries the next
//! first id, so ids are never reused after a purge.
//!
//! The manifest is a list, not evidence: a file the manifest calls old is
//! removed only once the file itself verifies and its own seal gives the same
//! time (an edited manifest or file is named in the report and left).
//!
//! Manifest entries of removed archive files are dropped by rewriting the
//! manifest atomically, after the files are gone: a crash in between leaves
//! entries that name missing files, which the next purge drops.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::Result;

use crate::config::Config;
use crate::fsx::sync_dir;
use crate::maintenance::MaintenanceLock;
use crate::store::layout::Layout;
use crate::store::layout::{ACTIVE_SUFFIX, FileKind};
use crate::store::manifest::ManifestEntry;
use crate::store::xml::scan::seal_time;
use crate::timestamp::{self, Clock};
use crate::upload::ledger::Ledgers;

/// A file removed by a purge.
#[derive(Debug, Clone)]
pub struct RemovedFile {
    /// Path relative to the data directory (`archive/<name>.xml.gz`).
    pub file: String,
    /// When it was sealed (or archived), by the archiver's clock.
    pub sealed: String,
}

/// A file old enough to go that was kept because consumers still wait for it.
#[derive(Debug, Clone)]
pub struct KeptFile {
    pub file: String,
    /// Who waits: `upload to <target>`, or the SIEM receiver.
    pub targets: Vec<String>,
}

/// What a purge did.
#[derive(Debug, Default)]
pub struct PurgeReport {
    pub retention_days: u32,
    /// Files sealed before this instant are removed.
    pub cutoff: Option<String>,
    pub removed: Vec<RemovedFile>,
    pub kept_for_upload: Vec<KeptFile>,
    /// Old enough, but kept because the log takes the next id from it.
    pub kept_newest: Option<String>,
    pub notes: Vec<String>,
}

impl std::fmt::Display for PurgeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Some(cutoff) = &self.cutoff else {
            return write!(f, "retention is off (retention_days = 0); nothing removed");
        };
        write!(
            f,
            "removed {} file(s) sealed before {cutoff} (retention_days = {})",
            self.removed.len(),
            self.retention_days
        )?;
        for r in &self.removed {
            write!(f, "\n  removed {} (sealed {})", r.file, r.sealed)?;
        }
        for k in &self.kept_for_upload {
            write!(f, "\n  kept {}: waiting for {}", k.file, k.targets.join(", "))?;
        }
        if let Some(k) = &self.kept_newest {
            write!(f, "\n  kept {k}: there is no active file, and the next id is taken from it")?;
        }
        Ok(())
    }
}

/// One file of the history under both of its possible names.
#[derive(Default)]
struct Candidate {
    plain: Option<String>,
    gz: Option<String>,
}

/// Removes files older than `retention_days` (see the module docs for what
/// is kept). Waits for other maintenance jobs.
pub fn purge(layout: &Layout, config: &Config, clock: &dyn Clock) -> Result<PurgeReport> {
    let mut report = PurgeReport { retention_days: config.retention_days, ..PurgeReport::default() };
    if config.retention_days == 0 {
        return Ok(report);
    }
    let _lock = MaintenanceLock::acquire(layout)?;
    let now = clock.now();
    let cutoff = now - chrono::Duration::days(i64::from(config.retention_days));
    let cutoff_ms = cutoff.timestamp_millis();
    report.cutoff = Some(timestamp::format(&cutoff));

    let manifest = crate::store::manifest::read_manifest(layout)?;
    let by_file: BTreeMap<&str, &ManifestEntry> = manifest.iter().map(|e| (e.file.as_str(), e)).collect();
    let mut files: BTreeMap<String, Candidate> = BTreeMap::new();
    for name in crate::fsx::dir_names(&layout.sealed)? {
        if let Some(stem) = FileKind::Sealed.stem_of(&name) {
            files.entry(stem.to_owned()).or_default().plain = Some(name.clone());
        }
    }
    for name in crate::fsx::dir_names(&layout.archive)? {
        if let Some(stem) = FileKind::Archived.stem_of(&name) {
            files.entry(stem.to_owned()).or_default().gz = Some(name.clone());
        }
    }

    // Seal time and last id of each file.
    let mut described = Vec::new();
    for (stem, c) in &files {
        let recorded = c.gz.as_deref().and_then(|g| by_file.get(g)).and_then(|e| Some((e.sealed.clone()?, e.last_id)));
        let known = match (&c.plain, recorded) {
            (Some(p), _) => seal_time(&layout.sealed.join(p))?,
            (None, Some(k)) => Some(k),
            (None, None) => match &c.gz {
                Some(g) => seal_time(&layout.archive.join(g))?,
                None => continue,
            },
        };
        let Some((sealed, last_id)) = known else {
            let name = c.plain.as_deref().map_or_else(
                || format!("archive/{}", c.gz.as_deref().unwrap_or_default()),
                |p| format!("audit_trail/{p}"),
            );
            report.notes.push(format!("{name} has no readable seal time; left in place"));
            continue;
        };
        described.push((stem.clone(), sealed, last_id));
    }

    let history = crate::store::reader::list(layout)?;
    let has_active = crate::fsx::dir_names(&layout.active)?.iter().any(|n| n.ends_with(ACTIVE_SUFFIX));
    let newest_stem =
        if has_active { None } else { described.iter().max_by_key(|(_, _, last)| *last).map(|(s, _, _)| s.clone()) };

    let ledgers = Ledgers::load(layout, config)?;
    // An enabled SIEM receiver still needs every record from its position on.
    let siem_next = match config.siem.as_ref().filter(|s| s.enabled) {
        Some(cfg) => crate::siem::read_state(layout)?
            .map(|st| (cfg.describe(), if st.next_id == 0 { 1 } else { st.next_id }))
            .or(Some((cfg.describe(), 1))),
        None => None,
    };
    let mut removed_gz = HashSet::new();
    let (mut touched_sealed, mut touched_archive) = (false, false);
    for (stem, sealed, last_id) in &described {
        let old = timestamp::millis(sealed).is_some_and(|ms| ms < cutoff_ms);
        if !old {
            continue;
        }
        let c = &files[stem];
        let names: Vec<String> = c
            .plain
            .iter()
            .map(|p| format!("audit_trail/{p}"))
            .chain(c.gz.iter().map(|g| format!("archive/{g}")))
            .collect();
        if newest_stem.as_ref() == Some(stem) {
            report.kept_newest = Some(names.join(", "));
            continue;
        }
        let upload_name = c.gz.as_deref().or(c.plain.as_deref()).unwrap_or_default();
        let mut pending: Vec<String> =
            ledgers.pending(upload_name).into_iter().map(|t| format!("upload to {t}")).collect();
        if let Some((receiver, next)) = &siem_next
            && last_id >= next
        {
            pending.push(format!("the SIEM receiver {receiver} (not yet forwarded from id {next})"));
        }
        if !pending.is_empty() {
            for n in names {
                report.kept_for_upload.push(KeptFile { file: n, targets: pending.clone() });
            }
            continue;
        }
        if let Err(why) = confirm_old(layout, &history, c, sealed) {
            report.notes.push(format!("{why}; left in place"));
            continue;
        }
        if let Some(p) = &c.plain {
            crate::fsx::remove_if_exists(&layout.sealed.join(p))?;
            touched_sealed = true;
            report.removed.push(RemovedFile { file: format!("audit_trail/{p}"), sealed: sealed.clone() });
        }
        if let Some(g) = &c.gz {
            crate::fsx::remove_if_exists(&layout.archive.join(g))?;
            touched_archive = true;
            removed_gz.insert(g.clone());
            report.removed.push(RemovedFile { file: format!("archive/{g}"), sealed: sealed.clone() });
        }
    }
    if touched_sealed {
        sync_dir(&layout.sealed)?;
    }
    if touched_archive {
        sync_dir(&layout.archive)?;
    }

    // The manifest keeps the entries of the files still in the archive.
    let kept: Vec<ManifestEntry> = manifest
        .iter()
        .filter(|e| !removed_gz.contains(&e.file) && layout.archive.join(&e.file).exists())
        .cloned()
        .collect();
    if kept.len() != manifest.len() {
        for e in manifest.iter().filter(|e| !removed_gz.contains(&e.file) && !layout.archive.join(&e.file).exists()) {
            report.notes.push(format!("dropped the manifest entry of {}, which is no longer in the archive", e.file));
        }
        crate::store::manifest::write_manifest(layout, &kept)?;
    }
    Ok(report)
}

/// Before a file goes, the file itself must say what the decision relied
/// on: its seal element (read by the XML reader, not found by a text search)
/// gives the time the decision used, which for an archived file came from
/// the manifest; and it verifies together with the file after it (records,
/// chain, seal, and the link the next file's `chain-start` makes). An edited
/// manifest, or a file whose seal was rewritten, thus never gets a file
/// removed.
fn confirm_old(
    layout: &Layout,
    history: &[crate::store::reader::LogFile],
    c: &Candidate,
    sealed: &str,
) -> std::result::Result<(), String> {
    use crate::store::verify::{Options, Target, verify};
    let paths = c.plain.iter().map(|p| (layout.sealed.join(p), format!("audit_trail/{p}")));
    let paths = paths.chain(c.gz.iter().map(|g| (layout.archive.join(g), format!("archive/{g}"))));
    for (path, name) in paths {
        let (first, last, own) = match own_seal(&path) {
            Ok(Some(s)) => s,
            Ok(None) => return Err(format!("{name} has no seal")),
            Err(e) => return Err(format!("{name} cannot be read ({e:#})")),
        };
        if own != sealed {
            return Err(format!(
                "{name} was sealed {own} by its own seal element, not {sealed} as the manifest or the file's text said"
            ));
        }
        let mut targets = vec![(first, Target { path: path.clone(), kind: FileKind::Sealed })];
        if let Some(next) = history.iter().find(|f| f.first_id == last + 1) {
            targets.push((next.first_id, Target { path: next.path.clone(), kind: next.kind }));
        }
        let report = verify(targets, &Options::default());
        if let Some(p) = report.problems.first() {
            return Err(format!("{name} does not verify ({}: {})", p.kind.label(), p.what));
        }
    }
    Ok(())
}

/// First id, last id and seal time of a sealed file, from its seal element.
fn own_seal(path: &Path) -> Result<Option<(u64, u64, String)>> {
    let mut rd = crate::store::xml::read::XmlReader::new(crate::store::reader::open_any(path)?);
    while rd.next_record().map_err(|e| anyhow::anyhow!("{e}"))?.is_some() {}
    Ok(rd.seal().map(|s| (s.first_id, s.last_id, s.sealed.clone())))
}

/// The archiver's own record of a purge that removed files (`None` when
/// nothing was removed).
pub fn audit_event(report: &PurgeReport) -> Option<crate::selfaudit::Event> {
    if report.removed.is_empty() {
        return None;
    }
    let names: Vec<&str> = report.removed.iter().map(|r| r.file.as_str()).collect();
    Some(crate::selfaudit::Event::new(
        "Purge",
        "Delete",
        format!(
            "purge removed {} file(s) sealed before {} (retention_days = {}): {}",
            report.removed.len(),
            report.cutoff.as_deref().unwrap_or_default(),
            report.retention_days,
            names.join(", ")
        ),
    ))
}
