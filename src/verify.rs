//! `verify`: proves the files well-formed, their records complete, ids
//! contiguous within and across files, and each seal consistent with the
//! records it closes. Names the first bad file and record.
//!
//! What it can and cannot tell: a gap *before* the oldest file is normal
//! (retention purges old files) and is not reported; nor can it see records
//! or files removed from the newest end. Edits that keep the XML well-formed
//! and the ids in order are not detected yet.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::history::{self, FileKind, open_any};
use crate::record::Field;
use crate::xml_read::XmlReader;

/// One file to check.
#[derive(Debug, Clone)]
pub struct Target {
    pub path: PathBuf,
    pub kind: FileKind,
}

/// What was found wrong, where.
#[derive(Debug, Clone)]
pub struct Problem {
    pub path: PathBuf,
    pub record: Option<u64>,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(id) = self.record {
            write!(f, ": record {id}")?;
        }
        write!(f, ": {}", self.what)
    }
}

/// The outcome of a check.
#[derive(Debug, Default)]
pub struct Report {
    pub files: usize,
    pub records: u64,
    pub first_id: Option<u64>,
    pub last_id: Option<u64>,
    pub problems: Vec<Problem>,
    /// Not damage: e.g. the torn tail of an active file, repaired at next start.
    pub notes: Vec<String>,
}

/// Ids and seal of one file that parsed.
struct Span {
    first: u64,
    last: u64,
}

fn check_file(t: &Target, report: &mut Report) -> Option<Span> {
    let problem = |record: Option<u64>, what: String| Problem { path: t.path.clone(), record, what };
    let input = match open_any(&t.path) {
        Ok(i) => i,
        Err(e) => {
            report.problems.push(problem(None, format!("cannot open: {e}")));
            return None;
        }
    };
    let mut rd = XmlReader::new(input);
    let header_first = match rd.header() {
        Ok(h) => h.first_id,
        Err(e) => {
            report.problems.push(problem(None, format!("not an audit-trail file: {e}")));
            return None;
        }
    };
    let mut first = None;
    let mut prev: Option<u64> = None;
    let mut count = 0u64;
    loop {
        match rd.next_record() {
            Ok(Some(r)) => {
                let expected = prev.map(|p| p + 1).or(header_first);
                if let Some(exp) = expected
                    && r.id != exp
                {
                    let what = if r.id < exp {
                        format!("id out of order or repeated (expected {exp})")
                    } else {
                        format!("ids {exp}..{} are missing before it", r.id - 1)
                    };
                    report.problems.push(problem(Some(r.id), what));
                    return None;
                }
                for f in [Field::Timestamp, Field::AppName, Field::ActionType] {
                    if r.get(f).is_none_or(str::is_empty) {
                        report.problems.push(problem(Some(r.id), format!("<{}> is missing", f.spec().xml)));
                        return None;
                    }
                }
                first.get_or_insert(r.id);
                prev = Some(r.id);
                count += 1;
            }
            Ok(None) => break,
            Err(e) if t.kind == FileKind::Active => {
                let after = prev.map_or("the header".to_string(), |p| format!("record {p}"));
                report.notes.push(format!(
                    "{}: unfinished tail after {after} ({e}); it held no acknowledged record and is cut at the next start",
                    t.path.display()
                ));
                break;
            }
            Err(e) => {
                let at = prev.map(|p| p + 1);
                report.problems.push(problem(at, format!("malformed {e}")));
                return None;
            }
        }
    }
    report.files += 1;
    report.records += count;
    match (t.kind, rd.seal(), rd.closed()) {
        (FileKind::Active, _, _) => {}
        (_, None, _) | (_, _, false) => {
            report.problems.push(problem(prev, "no seal: the file is truncated or was never sealed".into()));
            return None;
        }
        (_, Some(s), true) => {
            let want = (first.unwrap_or(s.first_id), prev.unwrap_or(s.first_id.saturating_sub(1)), count);
            if (s.first_id, s.last_id, s.records) != want {
                report.problems.push(problem(
                    None,
                    format!(
                        "seal says ids {}..{} ({} records) but the file holds {}..{} ({count} records)",
                        s.first_id, s.last_id, s.records, want.0, want.1
                    ),
                ));
                return None;
            }
        }
    }
    let first = first.or(header_first)?;
    Some(Span { first, last: prev.unwrap_or(first - 1) })
}

/// Checks files in id order, and that each continues where the previous ended.
pub fn verify(mut targets: Vec<(u64, Target)>) -> Report {
    targets.sort_by_key(|(first, t)| (*first, t.kind));
    let mut report = Report::default();
    let mut prev: Option<(u64, PathBuf)> = None;
    for (_, t) in &targets {
        let Some(span) = check_file(t, &mut report) else {
            // Already reported; do not blame the next file for its damage.
            prev = None;
            continue;
        };
        if let Some((last, prev_path)) = &prev
            && span.first != last + 1
        {
            let what = if span.first > last + 1 {
                format!(
                    "ids {}..{} are missing between {} and this file",
                    last + 1,
                    span.first - 1,
                    prev_path.display()
                )
            } else {
                format!("starts at id {} but {} already ends at {last}", span.first, prev_path.display())
            };
            report.problems.push(Problem { path: t.path.clone(), record: Some(span.first), what });
        }
        if span.last >= span.first {
            report.first_id.get_or_insert(span.first);
            report.last_id = Some(span.last);
        }
        prev = Some((span.last, t.path.clone()));
    }
    report
}

/// The files of a data directory, by first id.
pub fn data_dir_targets(layout: &crate::config::Layout) -> Result<Vec<(u64, Target)>> {
    Ok(history::list(layout)?.into_iter().map(|f| (f.first_id, Target { path: f.path, kind: f.kind })).collect())
}

/// Files given on the command line (directories are searched for log files).
pub fn path_targets(paths: &[PathBuf]) -> Result<Vec<(u64, Target)>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            for entry in walkdir::WalkDir::new(p).sort_by_file_name() {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy();
                if entry.file_type().is_file() && (name.ends_with(".xml") || name.ends_with(".xml.gz")) {
                    files.push(entry.into_path());
                }
            }
        } else {
            files.push(p.clone());
        }
    }
    Ok(files
        .into_iter()
        .map(|path| {
            let kind = kind_from_name(&path);
            let first = first_record_id(&path).unwrap_or(0);
            (first, Target { path, kind })
        })
        .collect())
}

fn kind_from_name(path: &Path) -> FileKind {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match crate::log::kind_of(&name) {
        Some((k, _)) => k,
        None => FileKind::Sealed,
    }
}

/// The header's first-id, else the first record's id (for files not written by us).
fn first_record_id(path: &Path) -> Option<u64> {
    if let Ok(Some(id)) = history::first_id_of(path) {
        return Some(id);
    }
    let mut rd = XmlReader::new(open_any(path).ok()?);
    rd.next_record().ok().flatten().map(|r| r.id)
}
