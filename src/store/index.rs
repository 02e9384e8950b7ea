//! The time index (`state/index.jsonl`): for each sealed file, the earliest
//! and latest event time its records hold, so a time-range export reads only
//! the files that can hold a match. Event times are data from clients and
//! arrive out of order (late or backdated records), so the index keeps the
//! minimum and maximum over every record, never the first and last.
//!
//! A line is appended when the writer seals a file (its stem, first id and
//! times); a file keeps its stem when archived, so the line holds for the
//! archived file too. It lives beside the history and never inside it: the
//! chained files are unchanged. A file without a line (sealed before the
//! index existed, a line lost in a crash: the last line may be torn and is
//! ignored) is always read.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::store::layout::{FileKind, Layout};
use crate::store::manifest::read_manifest;
use crate::store::reader::{self, LogFile};
use crate::store::xml::scan::{ContentScan, read_content};

/// One line of `state/index.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub stem: String,
    pub first_id: u64,
    /// Earliest and latest event time of its records, in milliseconds since
    /// the epoch; `None` when no record has a time that can be read.
    pub min_ms: Option<i64>,
    pub max_ms: Option<i64>,
}

pub fn index_path(layout: &Layout) -> PathBuf {
    layout.state.join("index.jsonl")
}

/// The line of a file whose whole content `scan` has seen.
pub fn entry_of(stem: &str, first_id: u64, scan: &ContentScan) -> IndexEntry {
    IndexEntry { stem: stem.to_owned(), first_id, min_ms: scan.min_ms, max_ms: scan.max_ms }
}

/// Appends the line of a file just sealed (`path`, plain, under its sealed name). One line in one
/// write; a crash may lose or tear it, and the file is then always read.
pub fn note_sealed(layout: &Layout, stem: &str, path: &Path) -> Result<()> {
    // One pass: the seal the scan finds names the file's first id.
    let mut scan = ContentScan::default();
    read_content(path, "read", |chunk| scan.feed(chunk))?;
    let Some((first_id, _, _)) = scan.seal else { return Ok(()) };
    append(layout, &entry_of(stem, first_id, &scan))
}

/// Appends one line. After a line torn by a crash, it starts on a line of
/// its own (the torn one is ignored by [`read`]).
pub fn append(layout: &Layout, entry: &IndexEntry) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let p = index_path(layout);
    let mut f = crate::fsx::open_append_nofollow(&p).with_context(|| format!("cannot open {}", p.display()))?;
    let len = f.metadata().with_context(|| format!("cannot read {}", p.display()))?.len();
    let mut last = [b'\n'];
    if len > 0 {
        f.read_exact_at(&mut last, len - 1).with_context(|| format!("cannot read {}", p.display()))?;
    }
    let mut line = if last[0] == b'\n' { Vec::new() } else { vec![b'\n'] };
    serde_json::to_writer(&mut line, entry)?;
    line.push(b'\n');
    f.write_all(&line).with_context(|| format!("cannot write {}", p.display()))
}

/// The index by stem; empty when there is none. A later line for a stem
/// with another first id wins (another file of that name). Lines for the
/// same file are merged into the span that covers them all, so a line
/// added later never narrows what an earlier one said a file may hold.
pub fn read(layout: &Layout) -> HashMap<String, IndexEntry> {
    let Ok(bytes) = std::fs::read(index_path(layout)) else { return HashMap::new() };
    let good = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut index: HashMap<String, IndexEntry> = HashMap::new();
    for e in bytes[..good].split(|&b| b == b'\n').filter_map(|l| serde_json::from_slice::<IndexEntry>(l).ok()) {
        match index.get_mut(&e.stem) {
            Some(had) if had.first_id == e.first_id => {
                // No readable time in one of them means none can match a range: keep the other's.
                had.min_ms = match (had.min_ms, e.min_ms) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                had.max_ms = match (had.max_ms, e.max_ms) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
            }
            _ => {
                index.insert(e.stem.clone(), e);
            }
        }
    }
    index
}

/// Whether a file (stem, first id) may hold a record with an event time in
/// `from..=to`: false only when its index line says every time it holds is
/// outside (a file with no line, or a line for another file of that name, may).
pub fn may_hold(
    index: &HashMap<String, IndexEntry>,
    stem: &str,
    first_id: u64,
    from: Option<i64>,
    to: Option<i64>,
) -> bool {
    let Some(e) = index.get(stem).filter(|e| e.first_id == first_id) else { return true };
    let (Some(min), Some(max)) = (e.min_ms, e.max_ms) else {
        // No record with a readable time: none can match a time range.
        return from.is_none() && to.is_none();
    };
    !(from.is_some_and(|f| max < f) || to.is_some_and(|t| min > t))
}

/// The files a time-range export reads, oldest first: every file of the
/// history ([`reader::list`]) but those whose line puts every event time
/// outside `from..=to`.
pub struct Selection {
    pub files: Vec<LogFile>,
    /// The first and last id of the whole history (0 for the last when it
    /// holds no record).
    pub first_id: u64,
    pub last_id: u64,
}

/// The files of the history that may hold a record with an event time in
/// `from..=to`, found without opening the archived files the index rules
/// out: a line rules out an archived file without opening it when the
/// archive manifest gives that file the line's first id (so the line is
/// about that file, not an earlier one of the same name). Every other file
/// is opened for its header and kept unless its line, for that first id,
/// rules it out. The cost is a directory listing, the index and manifest,
/// and the files kept, whatever the size of the history.
pub fn select(layout: &Layout, from: Option<i64>, to: Option<i64>) -> Result<Selection> {
    let names = reader::list_names(layout)?;
    let index = read(layout);
    // A manifest that cannot be read only means the files are opened.
    let manifest: HashMap<String, u64> =
        read_manifest(layout).unwrap_or_default().into_iter().map(|e| (e.file, e.first_id)).collect();
    // An archived file's first id by the manifest, without opening it.
    let archived_first_id = |n: &reader::Named| {
        (n.kind == FileKind::Archived).then(|| manifest.get(&FileKind::Archived.file_name(&n.stem)).copied()).flatten()
    };
    let mut files = Vec::new();
    for n in &names {
        let ruled_out = |first_id: u64| !may_hold(&index, &n.stem, first_id, from, to);
        if archived_first_id(n).is_some_and(ruled_out) {
            continue;
        }
        if let Some(f) = reader::resolve(layout, n)?
            && !ruled_out(f.first_id)
        {
            files.push(f);
        }
    }
    files.sort_by_key(|f| (f.first_id, f.kind));
    let resolved = |named: &[reader::Named]| -> Result<Vec<LogFile>> {
        let mut out = Vec::new();
        for n in named {
            out.extend(reader::resolve(layout, n)?);
        }
        Ok(out)
    };
    // The oldest file's first id: from the manifest when it is archived, as above.
    let first_id = match names.first().and_then(archived_first_id) {
        Some(id) => id,
        None => resolved(&names[..names.len().min(1)])?.first().map_or(1, |f| f.first_id),
    };
    // The last record is in the newest file, or in the one before when the newest has none yet.
    let last_id = reader::last_id(layout, &resolved(&names[names.len().saturating_sub(2)..])?)?;
    Ok(Selection { files, first_id, last_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_for_one_file_only_widen_and_a_torn_line_does_not_swallow_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir_all(&layout.state).unwrap();
        let line = |first_id, min, max| IndexEntry { stem: "h_1".into(), first_id, min_ms: min, max_ms: max };
        append(&layout, &line(1, Some(100), Some(200))).unwrap();
        // A crash tore the next line.
        let mut f = crate::fsx::open_append_nofollow(&index_path(&layout)).unwrap();
        f.write_all(b"{\"stem\":\"h_2\",\"first").unwrap();
        append(&layout, &line(1, Some(150), Some(160))).unwrap();
        append(&layout, &line(1, None, None)).unwrap();
        let got = read(&layout);
        assert_eq!(got["h_1"], line(1, Some(100), Some(200)), "a narrower line does not narrow");
        append(&layout, &line(1, Some(50), Some(120))).unwrap();
        assert_eq!(read(&layout)["h_1"], line(1, Some(50), Some(200)), "the line after a torn one is read");
        append(&layout, &line(7, Some(5), Some(6))).unwrap();
        assert_eq!(read(&layout)["h_1"], line(7, Some(5), Some(6)), "another file of that name");
    }

    #[test]
    fn a_file_is_skipped_only_when_its_line_puts_every_time_outside() {
        let day = |d: &str| crate::timestamp::millis(d);
        let (min, max) = (day("2025-01-01T00:00:00Z"), day("2027-01-01T00:00:00+01:00"));
        let mut index = HashMap::new();
        index.insert("h_1".to_owned(), IndexEntry { stem: "h_1".into(), first_id: 1, min_ms: min, max_ms: max });
        assert!(may_hold(&index, "h_1", 1, day("2025-01-01T00:00:00Z"), day("2025-01-01T00:00:00Z")));
        assert!(!may_hold(&index, "h_1", 1, day("2027-01-02T00:00:00Z"), None));
        assert!(!may_hold(&index, "h_1", 1, None, day("2024-12-31T00:00:00Z")));
        assert!(may_hold(&index, "h_1", 2, day("2030-01-01T00:00:00Z"), None), "another file of that name");
        assert!(may_hold(&index, "h_2", 1, day("2030-01-01T00:00:00Z"), None), "no line: always read");
    }
}
