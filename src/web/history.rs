//! The records the web interface shows, held in memory: every file of a
//! data directory or of a set of offboard copies (several hosts, plain or
//! `.gz`, any order), read once and kept per file, with one index of all
//! records by event time (newest first).
//!
//! Sealed and archived files never change, so a refresh reads only files it
//! has not seen and the active file when it grew; the index is rebuilt from
//! the kept files. Memory is about 1.5 times the records' text (about
//! 400 MB for 1,000,000 records of 250 bytes).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Result;

use crate::record::{FIELDS, Field, NFIELDS, Record};
use crate::store::layout::{FileKind, Layout, kind_of};
use crate::store::reader::open_any;
use crate::store::verify::{self, Target};
use crate::store::xml::read::XmlReader;

/// One record, its fields joined in one string.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: u64,
    /// Event time, milliseconds since the epoch (`i64::MIN` when the
    /// timestamp cannot be read).
    pub time: i64,
    /// Index into [`Snapshot::hosts`].
    pub host: u32,
    /// The fields, each followed by `\0`.
    text: Box<str>,
    /// End of each field in `text` (before its `\0`).
    ends: [u32; NFIELDS],
    /// Bit `f` set: field `f` is present.
    present: u16,
    pub chain: Option<[u8; 32]>,
}

impl Entry {
    fn new(r: &Record<'_>, host: u32) -> Entry {
        let mut text = String::with_capacity(256);
        let mut ends = [0u32; NFIELDS];
        let mut present = 0u16;
        for (i, v) in r.fields.iter().enumerate() {
            if let Some(v) = v {
                text.push_str(v);
                present |= 1 << i;
            }
            ends[i] = text.len() as u32;
            text.push('\0');
        }
        let time = r.get(Field::Timestamp).and_then(crate::timestamp::millis).unwrap_or(i64::MIN);
        Entry { id: r.id, time, host, text: text.into_boxed_str(), ends, present, chain: r.chain }
    }

    pub fn get(&self, f: Field) -> Option<&str> {
        let i = f as usize;
        if self.present & (1 << i) == 0 {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize + 1 };
        Some(&self.text[start..self.ends[i] as usize])
    }

    /// The value or "".
    pub fn value(&self, f: Field) -> &str {
        self.get(f).unwrap_or("")
    }

    /// Every field's text, separated by NUL: what full-text search reads.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn to_record(&self) -> Record<'_> {
        let mut r = Record { id: self.id, chain: self.chain, ..Record::default() };
        for spec in &FIELDS {
            if let Some(v) = self.get(spec.field) {
                r.set(spec.field, v);
            }
        }
        r
    }
}

/// The records of one file, as read.
#[derive(Debug)]
pub struct FileRecords {
    pub path: PathBuf,
    pub kind: FileKind,
    pub host: String,
    pub entries: Vec<Entry>,
    /// Why reading stopped before the end (damage is named by `verify`).
    pub error: Option<String>,
    /// Size and modification time when read.
    stamp: (u64, Option<SystemTime>),
}

impl FileRecords {
    /// Stands in for a file gone since the last full build, so that the
    /// places of the others stay valid.
    fn placeholder() -> FileRecords {
        FileRecords {
            path: PathBuf::new(),
            kind: FileKind::Active,
            host: String::new(),
            entries: Vec::new(),
            error: None,
            stamp: (0, None),
        }
    }

    fn is_placeholder(&self) -> bool {
        self.path.as_os_str().is_empty()
    }

    /// `f` with its records under host index `idx` of a snapshot (a copy
    /// only when they are under another).
    fn with_host(f: Arc<FileRecords>, idx: u32) -> Arc<FileRecords> {
        if f.entries.iter().all(|e| e.host == idx) {
            return f;
        }
        let mut owned = FileRecords {
            path: f.path.clone(),
            kind: f.kind,
            host: f.host.clone(),
            entries: f.entries.clone(),
            error: f.error.clone(),
            stamp: f.stamp,
        };
        owned.entries.iter_mut().for_each(|e| e.host = idx);
        Arc::new(owned)
    }
}

/// Newest first: the order of [`Snapshot::by_time`].
fn newer_first(x: &Entry, y: &Entry) -> std::cmp::Ordering {
    (y.time, y.host, y.id).cmp(&(x.time, x.host, x.id))
}

/// Placeholders allowed before a refresh builds everything anew.
const MAX_PLACEHOLDERS: usize = 256;

/// A record's place: file index and entry index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ref {
    pub file: u32,
    pub entry: u32,
}

/// All records at one moment, indexed.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub files: Vec<Arc<FileRecords>>,
    pub hosts: Vec<String>,
    /// Every record once, newest event first (ties: host, then id, higher first).
    pub by_time: Vec<Ref>,
    /// Records met twice (a file and a copy of it): shown once.
    pub duplicates: u64,
    /// Records whose copies differ (same host and id, other content): each copy is shown.
    pub conflicts: u64,
}

impl Snapshot {
    pub fn entry(&self, r: Ref) -> &Entry {
        &self.files[r.file as usize].entries[r.entry as usize]
    }

    pub fn host(&self, e: &Entry) -> &str {
        &self.hosts[e.host as usize]
    }

    /// The record of `host` with `id`.
    pub fn find(&self, host: &str, id: u64) -> Option<(Ref, &Entry)> {
        let h = self.hosts.iter().position(|x| x == host)? as u32;
        for (fi, f) in self.files.iter().enumerate() {
            let (Some(first), Some(last)) = (f.entries.first(), f.entries.last()) else { continue };
            if first.host != h || id < first.id || id > last.id {
                continue;
            }
            if let Ok(i) = f.entries.binary_search_by_key(&id, |e| e.id) {
                let r = Ref { file: fi as u32, entry: i as u32 };
                return Some((r, self.entry(r)));
            }
        }
        None
    }

    /// The records with event times in `from..=to`, as a range of `by_time`.
    pub fn time_range(&self, from: Option<i64>, to: Option<i64>) -> std::ops::Range<usize> {
        // by_time is sorted by time descending.
        let start = to.map_or(0, |to| self.by_time.partition_point(|r| self.entry(*r).time > to));
        let end = from.map_or(self.by_time.len(), |from| self.by_time.partition_point(|r| self.entry(*r).time >= from));
        start..end.max(start)
    }

    /// `self` without the files at `dead` and with `added`: the index is
    /// merged, not sorted again, so a refresh that takes in the active
    /// file's new records costs about one pass over the index. `None` when
    /// a full build is due: a new host, or too many places of gone files.
    /// Records are not checked for copies here (a data directory lists each
    /// file once).
    fn with_changes(&self, dead: &[usize], added: Vec<Arc<FileRecords>>) -> Option<Snapshot> {
        let placeholders = self.files.iter().filter(|f| f.is_placeholder()).count() + dead.len();
        if placeholders > MAX_PLACEHOLDERS.max(self.files.len() / 2) {
            return None;
        }
        let mut files = self.files.clone();
        let mut gone = vec![false; files.len()];
        for &d in dead {
            files[d] = Arc::new(FileRecords::placeholder());
            gone[d] = true;
        }
        let first_new = files.len();
        for f in added {
            if f.entries.is_empty() {
                files.push(f);
                continue;
            }
            let idx = self.hosts.iter().position(|h| *h == f.host)? as u32;
            files.push(FileRecords::with_host(f, idx));
        }
        let at = |r: &Ref| &files[r.file as usize].entries[r.entry as usize];
        let mut new_refs: Vec<Ref> = Vec::new();
        for (fi, f) in files.iter().enumerate().skip(first_new) {
            for i in 0..f.entries.len() {
                new_refs.push(Ref { file: fi as u32, entry: i as u32 });
            }
        }
        new_refs.reverse();
        new_refs.sort_by(|a, b| newer_first(at(a), at(b)));
        let mut by_time = Vec::with_capacity(self.by_time.len() + new_refs.len());
        let mut old = self.by_time.iter().copied().filter(|r| !gone[r.file as usize]).peekable();
        let mut new = new_refs.into_iter().peekable();
        loop {
            let take_new = match (old.peek(), new.peek()) {
                (Some(o), Some(n)) => newer_first(at(n), at(o)) == std::cmp::Ordering::Less,
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (None, None) => break,
            };
            let next = if take_new { new.next() } else { old.next() };
            by_time.extend(next);
        }
        Some(Snapshot {
            files,
            hosts: self.hosts.clone(),
            by_time,
            duplicates: self.duplicates,
            conflicts: self.conflicts,
        })
    }

    fn build(files: Vec<Arc<FileRecords>>) -> Snapshot {
        let mut hosts: Vec<String> = Vec::new();
        let mut host_of: HashMap<String, u32> = HashMap::new();
        // Host indexes are assigned per file when it is read; remap them to
        // this snapshot's list.
        let mut files = files;
        // Places of files gone since an incremental refresh: dropped here.
        files.retain(|f| !f.is_placeholder());
        for f in &mut files {
            if f.entries.is_empty() {
                continue;
            }
            let n = hosts.len() as u32;
            let idx = *host_of.entry(f.host.clone()).or_insert_with(|| {
                hosts.push(f.host.clone());
                n
            });
            *f = FileRecords::with_host(f.clone(), idx);
        }
        let total: usize = files.iter().map(|f| f.entries.len()).sum();
        let mut refs = Vec::with_capacity(total);
        for (fi, f) in files.iter().enumerate() {
            for i in 0..f.entries.len() {
                refs.push(Ref { file: fi as u32, entry: i as u32 });
            }
        }
        let at = |r: &Ref| &files[r.file as usize].entries[r.entry as usize];
        // One record per (host, id): a plain file and its archived copy, or
        // the same offboard file given twice. Files come in id order and
        // hold records in id order, so these stable sorts meet long sorted
        // runs and take about linear time on a refresh.
        refs.sort_by(|a, b| {
            let (x, y) = (at(a), at(b));
            (x.host, x.id).cmp(&(y.host, y.id))
        });
        // Exact copies are shown once; copies that differ are both shown
        // (Verification names the altered file).
        let before = refs.len();
        let mut conflicts = 0u64;
        refs.dedup_by(|a, b| {
            let (x, y) = (at(a), at(b));
            if x.host != y.host || x.id != y.id {
                return false;
            }
            if x.text == y.text && x.chain == y.chain {
                return true;
            }
            conflicts += 1;
            false
        });
        let duplicates = (before - refs.len()) as u64;
        // Newest first: reversed, the id order is nearly the time order.
        refs.reverse();
        refs.sort_by(|a, b| newer_first(at(a), at(b)));
        Snapshot { files, hosts, by_time: refs, duplicates, conflicts }
    }
}

/// Where the records come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A data directory: its sealed, archived and active files.
    DataDir(Layout),
    /// Files and directories given on the command line.
    Paths(Vec<PathBuf>),
}

impl Source {
    /// The files to read, by name alone (nothing is opened): a data
    /// directory's files (the plain one of twins), or the files given and
    /// the history files under the directories given.
    pub fn files(&self) -> Result<Vec<(PathBuf, FileKind)>> {
        match self {
            Source::DataDir(layout) => Ok(crate::store::reader::list_names(layout)?
                .into_iter()
                .map(|n| (layout.file(n.kind, &n.stem), n.kind))
                .collect()),
            Source::Paths(paths) => {
                let mut out = Vec::new();
                for p in paths {
                    if p.is_dir() {
                        for entry in walkdir::WalkDir::new(p).sort_by_file_name() {
                            let entry = entry?;
                            let name = entry.file_name().to_string_lossy();
                            if let Some((kind @ (FileKind::Sealed | FileKind::Archived), _)) = kind_of(&name)
                                && entry.file_type().is_file()
                            {
                                out.push((entry.into_path(), kind));
                            }
                        }
                    } else {
                        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                        out.push((p.clone(), kind_of(&name).map_or(FileKind::Sealed, |(k, _)| k)));
                    }
                }
                Ok(out)
            }
        }
    }

    /// The files to verify, as `verify` finds them.
    pub fn targets(&self) -> Result<Vec<(u64, Target)>> {
        match self {
            Source::DataDir(layout) => verify::data_dir_targets(layout),
            Source::Paths(paths) => verify::path_targets(paths),
        }
    }
}

fn stamp(path: &Path) -> (u64, Option<SystemTime>) {
    match std::fs::metadata(path) {
        Ok(m) => (m.len(), m.modified().ok()),
        Err(_) => (0, None),
    }
}

/// Reads every record of one file.
pub fn read_file(path: &Path, kind: FileKind) -> FileRecords {
    let stamp = stamp(path);
    let mut f =
        FileRecords { path: path.to_path_buf(), kind, host: String::new(), entries: Vec::new(), error: None, stamp };
    let input = match open_any(path) {
        Ok(i) => i,
        Err(e) => {
            f.error = Some(format!("cannot open: {e}"));
            return f;
        }
    };
    let mut rd = XmlReader::new(input);
    match rd.header() {
        Ok(h) => f.host = h.host.clone(),
        Err(e) => {
            f.error = Some(e.to_string());
            return f;
        }
    }
    loop {
        match rd.next_record() {
            Ok(Some(r)) => f.entries.push(Entry::new(&r, 0)),
            Ok(None) => break,
            Err(e) => {
                // The active file ends inside its document: that is not damage.
                if !(kind == FileKind::Active && e.cut) {
                    f.error = Some(e.to_string());
                }
                break;
            }
        }
    }
    // Entries of a file are in id order; keep them so for `find`.
    if !f.entries.is_sorted_by_key(|e| e.id) {
        f.entries.sort_by_key(|e| e.id);
    }
    f
}

/// The history, refreshed from its source on demand.
pub struct History {
    source: Source,
    snapshot: std::sync::RwLock<Arc<Snapshot>>,
    refreshing: std::sync::Mutex<()>,
}

impl History {
    /// A history not read yet.
    pub fn empty(source: Source) -> History {
        History {
            source,
            snapshot: std::sync::RwLock::new(Arc::new(Snapshot::default())),
            refreshing: std::sync::Mutex::new(()),
        }
    }

    /// Reads every file of `source` (on up to `threads` threads).
    pub fn load(source: Source, threads: usize) -> Result<History> {
        let h = History::empty(source);
        h.refresh(threads)?;
        Ok(h)
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads files that are new or changed since the last refresh and drops
    /// files that are gone; returns whether anything changed.
    pub fn refresh(&self, threads: usize) -> Result<bool> {
        let _one = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.snapshot();
        let index: HashMap<&Path, usize> = old
            .files
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.is_placeholder())
            .map(|(i, f)| (f.path.as_path(), i))
            .collect();
        let targets = self.source.files()?;
        let mut alive = vec![false; old.files.len()];
        let mut todo = Vec::new();
        for (i, (path, _)) in targets.iter().enumerate() {
            match index.get(path.as_path()) {
                Some(&k) if old.files[k].stamp == stamp(path) => alive[k] = true,
                _ => todo.push(i),
            }
        }
        let dead: Vec<usize> = (0..old.files.len()).filter(|&k| !alive[k] && !old.files[k].is_placeholder()).collect();
        if todo.is_empty() && dead.is_empty() && !old.files.is_empty() {
            return Ok(false);
        }
        let threads = threads.clamp(1, todo.len().max(1));
        let mut read: Vec<(usize, FileRecords)> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|k| {
                    let mine: Vec<usize> = todo.iter().copied().skip(k).step_by(threads).collect();
                    let targets = &targets;
                    s.spawn(move || {
                        mine.into_iter().map(|i| (i, read_file(&targets[i].0, targets[i].1))).collect::<Vec<_>>()
                    })
                })
                .collect();
            workers.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect()
        });
        read.sort_by_key(|(i, _)| *i);
        let added: Vec<Arc<FileRecords>> = read.into_iter().map(|(_, f)| Arc::new(f)).collect();
        let incremental = match self.source {
            Source::DataDir(_) if !old.files.is_empty() => old.with_changes(&dead, added.clone()),
            _ => None,
        };
        let snap = match incremental {
            Some(s) => s,
            None => {
                let mut files: Vec<Arc<FileRecords>> =
                    old.files.iter().enumerate().filter(|(k, _)| alive[*k]).map(|(_, f)| f.clone()).collect();
                files.extend(added);
                Snapshot::build(files)
            }
        };
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snap);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, host: &str, ids: std::ops::Range<u64>, time: impl Fn(u64) -> i64) -> Arc<FileRecords> {
        let entries = ids
            .map(|id| {
                let mut r = Record { id, ..Record::default() };
                r.set(Field::UserName, format!("u{id}"));
                let mut e = Entry::new(&r, 0);
                e.time = time(id);
                e
            })
            .collect();
        Arc::new(FileRecords {
            path: PathBuf::from(name),
            kind: FileKind::Sealed,
            host: host.into(),
            entries,
            error: None,
            stamp: (0, None),
        })
    }

    fn order(s: &Snapshot) -> Vec<(String, u64, i64)> {
        s.by_time.iter().map(|r| s.entry(*r)).map(|e| (s.host(e).to_string(), e.id, e.time)).collect()
    }

    /// Taking in changed files by merging gives the index a full build gives,
    /// with event times out of order (late and backdated records) and ties.
    #[test]
    fn a_merged_refresh_orders_records_as_a_full_build() {
        let mut rng = 0x1234_5678_u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let jitter: Vec<i64> = (0..400).map(|_| (next() % 50) as i64 - 25).collect();
        let t = move |id: u64| id as i64 * 10 + jitter[id as usize % 400];
        let a = file("a", "pbx", 1..101, t.clone());
        let active_then = file("active", "pbx", 101..131, t.clone());
        let old = Snapshot::build(vec![a.clone(), active_then.clone()]);
        // The active file was sealed (gone from its path) with more records,
        // and a new active file started.
        let sealed = file("b", "pbx", 101..201, t.clone());
        let active_now = file("active2", "pbx", 201..230, t.clone());
        let merged = old.with_changes(&[1], vec![sealed.clone(), active_now.clone()]).expect("merged");
        let full = Snapshot::build(vec![a, sealed, active_now]);
        assert_eq!(order(&merged), order(&full));
        assert_eq!(merged.by_time.len(), 229);
        // A host not seen before needs a full build.
        assert!(old.with_changes(&[], vec![file("c", "other", 1..3, t)]).is_none());
    }

    #[test]
    fn fields_read_back_from_the_joined_text() {
        let mut r = Record { id: 7, ..Record::default() };
        r.set(Field::UserName, "alice");
        r.set(Field::ActionData, "a\0b\nc");
        r.set(Field::SessionId, "");
        let e = Entry::new(&r, 0);
        assert_eq!(e.get(Field::UserName), Some("alice"));
        assert_eq!(e.get(Field::ActionData), Some("a\0b\nc"));
        assert_eq!(e.get(Field::SessionId), Some(""));
        assert_eq!(e.get(Field::Tenant), None);
        assert_eq!(e.get(Field::Timestamp), None);
        assert_eq!(e.to_record(), r);
    }
}
