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

use crate::store::layout::Layout;

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

/// The earliest and latest event time in a file's bytes (`<TimeStamp>` only
/// ever occurs as a tag: the writer escapes `<` in text).
pub fn time_span(xml: &[u8]) -> (Option<i64>, Option<i64>) {
    const OPEN: &[u8] = b"<TimeStamp>";
    const CLOSE: &[u8] = b"</TimeStamp>";
    let (mut min, mut max) = (None::<i64>, None::<i64>);
    for at in memchr::memmem::find_iter(xml, OPEN) {
        let start = at + OPEN.len();
        let Some(len) = memchr::memmem::find(&xml[start..(start + 64).min(xml.len())], CLOSE) else { continue };
        let Some(t) = std::str::from_utf8(&xml[start..start + len]).ok().and_then(crate::timestamp::millis) else {
            continue;
        };
        min = Some(min.map_or(t, |m| m.min(t)));
        max = Some(max.map_or(t, |m| m.max(t)));
    }
    (min, max)
}

/// Appends the line of a file just sealed (`path`, plain, under its sealed name). One line in one
/// write; a crash may lose or tear it, and the file is then always read.
pub fn note_sealed(layout: &Layout, stem: &str, path: &Path) -> Result<()> {
    let xml = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut rd = crate::store::xml::read::XmlReader::new(&xml[..]);
    let Some(first_id) = rd.header().ok().and_then(|h| h.first_id) else { return Ok(()) };
    let (min_ms, max_ms) = time_span(&xml);
    let entry = IndexEntry { stem: stem.to_owned(), first_id, min_ms, max_ms };
    let mut line = serde_json::to_vec(&entry)?;
    line.push(b'\n');
    let p = index_path(layout);
    let mut f = crate::fsx::open_append_nofollow(&p).with_context(|| format!("cannot open {}", p.display()))?;
    f.write_all(&line).with_context(|| format!("cannot write {}", p.display()))
}

/// The index by stem (the last line for a stem wins); empty when there is none.
pub fn read(layout: &Layout) -> HashMap<String, IndexEntry> {
    let Ok(bytes) = std::fs::read(index_path(layout)) else { return HashMap::new() };
    let good = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    bytes[..good]
        .split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice::<IndexEntry>(l).ok())
        .map(|e| (e.stem.clone(), e))
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_is_min_and_max_not_first_and_last() {
        let xml = b"<Record id=\"1\"><TimeStamp>2026-01-02T00:00:00.000+00:00</TimeStamp></Record>\
<Record id=\"2\"><TimeStamp>2025-01-01T00:00:00.000+00:00</TimeStamp></Record>\
<Record id=\"3\"><TimeStamp>2027-01-01T00:00:00.000+01:00</TimeStamp></Record>\
<Record id=\"4\"><TimeStamp>2026-06-01T00:00:00.000+00:00</TimeStamp></Record>";
        let (min, max) = time_span(xml);
        assert_eq!(min, crate::timestamp::millis("2025-01-01T00:00:00.000+00:00"));
        assert_eq!(max, crate::timestamp::millis("2027-01-01T00:00:00.000+01:00"));
        let mut index = HashMap::new();
        index.insert("h_1".to_owned(), IndexEntry { stem: "h_1".into(), first_id: 1, min_ms: min, max_ms: max });
        let day = |d: &str| crate::timestamp::millis(d);
        assert!(may_hold(&index, "h_1", 1, day("2025-01-01T00:00:00Z"), day("2025-01-01T00:00:00Z")));
        assert!(!may_hold(&index, "h_1", 1, day("2027-01-02T00:00:00Z"), None));
        assert!(!may_hold(&index, "h_1", 1, None, day("2024-12-31T00:00:00Z")));
        assert!(may_hold(&index, "h_1", 2, day("2030-01-01T00:00:00Z"), None), "another file of that name");
        assert!(may_hold(&index, "h_2", 1, day("2030-01-01T00:00:00Z"), None), "no line: always read");
    }
}
