//! The whole local history as one stream of records, in id order: archived
//! (`archive/*.xml.gz`), sealed (`audit_trail/*.xml`) and active files.
//!
//! Readers take no lock. Sealed files never change, and the active file only
//! grows by whole records, so a reader sees a consistent prefix. Files move
//! while the service runs (active → sealed → archived), so directories are
//! listed in that order — a file moving between two listings is seen at least
//! once — and a file that is gone when opened is looked up in its next home.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};

use crate::record::Record;
use crate::store::gzread;
use crate::store::layout::Layout;
use crate::store::layout::{FileKind, kind_of};
use crate::store::xml::read::XmlReader;

/// One file of the history.
#[derive(Debug, Clone)]
pub struct LogFile {
    pub path: PathBuf,
    pub kind: FileKind,
    /// `<host>_<stamp>`.
    pub stem: String,
    /// The id of its first record, from the header.
    pub first_id: u64,
}

const READ_BUF: usize = 256 * 1024;

/// Opens any history file (plain or gzip) for reading. Bytes after the end
/// of a `.gz` file's gzip data are a read error that names them.
pub fn open_any(path: &Path) -> std::io::Result<Box<dyn BufRead + Send>> {
    Ok(open_watched(path, false)?.0)
}

/// Opens any history file for reading; for a `.gz` file, also where its
/// reader reports damage to the compressed data. With `quiet`, bytes after
/// the end of the gzip data end the stream and are only reported there.
pub fn open_watched(path: &Path, quiet: bool) -> std::io::Result<(Box<dyn BufRead + Send>, Option<gzread::Watch>)> {
    let file = File::open(path)?;
    if path.extension().is_some_and(|e| e == "gz") {
        let gz = gzread::GzReader::new(file, quiet);
        let watch = gz.watch();
        Ok((Box::new(BufReader::with_capacity(READ_BUF, gz)), Some(watch)))
    } else {
        Ok((Box::new(BufReader::with_capacity(READ_BUF, file)), None))
    }
}

impl LogFile {
    /// Opens the file, following it to where it moved if it is gone.
    pub fn open(&self, layout: &Layout) -> Result<Box<dyn BufRead + Send>> {
        let candidates =
            [self.path.clone(), layout.file(FileKind::Sealed, &self.stem), layout.file(FileKind::Archived, &self.stem)];
        for p in candidates.iter().skip_while(|p| **p != self.path) {
            match open_any(p) {
                Ok(r) => return Ok(r),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("cannot open {}", p.display())),
            }
        }
        Err(anyhow!("{} disappeared while it was being read", self.path.display()))
    }
}

/// The `first-id` in a file's header, reading only the head of the file.
pub fn first_id_of(path: &Path) -> Result<Option<u64>> {
    let mut head = Vec::with_capacity(1024);
    open_any(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .take(1024)
        .read_to_end(&mut head)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut rd = XmlReader::new(&head[..]);
    Ok(rd.header().ok().and_then(|h| h.first_id))
}

/// The `first-id` the head of a file whose header cannot be read seems to
/// state, to put it where it belongs among the others.
pub fn guess_first_id(path: &Path) -> Option<u64> {
    let mut head = Vec::with_capacity(1024);
    open_any(path).ok()?.take(1024).read_to_end(&mut head).ok()?;
    let at = memchr::memmem::find(&head, b" first-id=\"")? + b" first-id=\"".len();
    let digits: Vec<u8> = head[at..].iter().copied().take_while(u8::is_ascii_digit).collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

/// Whether a file is too long to be a header cut short by a crash (the
/// log's recovery draws the same line).
fn longer_than_a_header(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() >= 512)
}

/// With `lenient`, a file whose header cannot be read (an active one only
/// when too long to be a torn header) is listed, placed by [`guess_first_id`],
/// instead of being an error or skipped (for `verify`, which names what is
/// wrong).
fn list_dir(
    dir: &Path,
    want: FileKind,
    lenient: bool,
    seen: &mut HashSet<String>,
    out: &mut Vec<LogFile>,
) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    for entry in entries {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let Some((kind, stem)) = kind_of(name) else { continue };
        if kind != want || seen.contains(stem) {
            continue;
        }
        let stem = stem.to_owned();
        let first_id = match first_id_of(&path) {
            Ok(Some(id)) => id,
            // Moved away between listing and opening: its next home is listed next.
            Err(_) if !path.exists() => continue,
            // An active file whose header a crash cut short holds no record;
            // the next writer removes it (one this long is damaged instead).
            Ok(None) | Err(_) if kind == FileKind::Active && !(lenient && longer_than_a_header(&path)) => continue,
            Ok(None) | Err(_) if lenient => guess_first_id(&path).unwrap_or(0),
            Ok(None) => return Err(anyhow!("{} has no first-id in its header", path.display())),
            Err(e) => return Err(e),
        };
        seen.insert(stem.clone());
        out.push(LogFile { path, kind, stem, first_id });
    }
    Ok(())
}

/// Every file of the history, oldest first.
pub fn list(layout: &Layout) -> Result<Vec<LogFile>> {
    list_all(layout, false)
}

/// Every file of the history, oldest first, an archived copy beside its
/// plain twin too (`verify` checks both: readers take the plain one).
pub fn list_with_twins(layout: &Layout) -> Result<Vec<LogFile>> {
    let mut files = Vec::new();
    for (dir, kind) in
        [(&layout.active, FileKind::Active), (&layout.sealed, FileKind::Sealed), (&layout.archive, FileKind::Archived)]
    {
        list_dir(dir, kind, true, &mut HashSet::new(), &mut files)?;
    }
    files.sort_by_key(|f| (f.first_id, f.kind));
    Ok(files)
}

fn list_all(layout: &Layout, lenient: bool) -> Result<Vec<LogFile>> {
    let (mut files, mut seen) = (Vec::new(), HashSet::new());
    list_dir(&layout.active, FileKind::Active, lenient, &mut seen, &mut files)?;
    list_dir(&layout.sealed, FileKind::Sealed, lenient, &mut seen, &mut files)?;
    list_dir(&layout.archive, FileKind::Archived, lenient, &mut seen, &mut files)?;
    files.sort_by_key(|f| (f.first_id, f.kind));
    Ok(files)
}

/// The end of the newest sealed or archived file.
#[derive(Debug, Clone)]
pub struct LastSealed {
    pub last_id: u64,
    pub stem: String,
    /// Its chain value at the end (`None` for a file without a hash chain).
    pub chain_end: Option<crate::store::chain::Digest>,
}

/// Last id, stem and chain value of the newest sealed or archived file.
pub fn last_sealed(layout: &Layout) -> Result<Option<LastSealed>> {
    let (mut files, mut seen) = (Vec::new(), HashSet::new());
    list_dir(&layout.sealed, FileKind::Sealed, false, &mut seen, &mut files)?;
    list_dir(&layout.archive, FileKind::Archived, false, &mut seen, &mut files)?;
    let Some(newest) = files.into_iter().max_by_key(|f| f.first_id) else { return Ok(None) };
    let mut rd = XmlReader::new(newest.open(layout)?);
    let mut last = newest.first_id.saturating_sub(1);
    let mut chain_end = rd.header().map_err(|e| anyhow!("{}: {e}", newest.path.display()))?.chain_value();
    while let Some(r) = rd.next_record().map_err(|e| anyhow!("{}: {e}", newest.path.display()))? {
        last = r.id;
        chain_end = r.chain.or(chain_end);
    }
    if let Some(seal) = rd.seal() {
        last = last.max(seal.last_id);
        chain_end = seal.chain_end.or(chain_end);
    }
    Ok(Some(LastSealed { last_id: last, stem: newest.stem, chain_end }))
}

/// Streams the records of a list of files in order, starting at `from_id`.
pub struct Records<'l> {
    layout: &'l Layout,
    files: std::vec::IntoIter<LogFile>,
    current: Option<(LogFile, XmlReader<Box<dyn BufRead + Send>>)>,
    from_id: u64,
    /// How many files were opened so far (for progress reports).
    pub files_read: usize,
}

impl<'l> Records<'l> {
    pub fn new(layout: &'l Layout, files: Vec<LogFile>, from_id: u64) -> Self {
        Records { layout, files: files.into_iter(), current: None, from_id, files_read: 0 }
    }
}

impl Iterator for Records<'_> {
    type Item = Result<Record<'static>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.current.is_none() {
                let f = self.files.next()?;
                let rd = match f.open(self.layout) {
                    Ok(r) => XmlReader::new(r),
                    Err(e) => return Some(Err(e)),
                };
                self.files_read += 1;
                self.current = Some((f, rd));
            }
            let (f, rd) = self.current.as_mut()?;
            match rd.next_record() {
                Ok(Some(r)) if r.id < self.from_id => continue,
                Ok(Some(r)) => return Some(Ok(r)),
                Ok(None) => self.current = None,
                // The active file may end in a record still being written.
                Err(_) if f.kind == FileKind::Active => self.current = None,
                Err(e) => {
                    let msg = anyhow!("{}: {e}", f.path.display());
                    self.current = None;
                    return Some(Err(msg));
                }
            }
        }
    }
}

/// The last id of a listed history (0 when it holds no record), read from
/// its newest file.
pub fn last_id(layout: &Layout, files: &[LogFile]) -> Result<u64> {
    Ok(last_record(layout, files)?.0)
}

/// The last id of a listed history (0 when it holds no record) and that
/// record's chain value (the anchor `status` shows).
pub fn last_record(layout: &Layout, files: &[LogFile]) -> Result<(u64, Option<crate::store::chain::Digest>)> {
    // The newest file may hold no record yet (a file just started): the last
    // record is then in the file before it.
    for file in files.iter().rev().take(2) {
        let mut last = None;
        for r in Records::new(layout, vec![file.clone()], 0) {
            let r = r?;
            last = Some((r.id, r.chain));
        }
        if let Some(last) = last {
            return Ok(last);
        }
    }
    Ok((files.last().map_or(0, |f| f.first_id.saturating_sub(1)), None))
}

/// First id of the circular log (the newest `capacity` records) ending at `last`.
pub fn circular_from(last: u64, capacity: u64) -> u64 {
    last.saturating_sub(capacity.max(1) - 1).max(1)
}

/// The files and first id of the circular log: the newest `capacity` records.
/// Also returns the last id (0 when the log is empty). Counted in records,
/// not ids: where the ids have a gap (ids the log skipped, see `log`), the
/// circular log reaches further back.
pub fn circular(layout: &Layout, capacity: u64) -> Result<(Vec<LogFile>, u64, u64)> {
    let files = list(layout)?;
    let last = last_id(layout, &files)?;
    if last == 0 {
        return Ok((Vec::new(), 1, 0));
    }
    let mut need = capacity.max(1);
    let mut file_last = last;
    let mut from = circular_from(last, capacity);
    let mut start = files.len();
    let mut manifest = None;
    while start > 0 && need > 0 {
        start -= 1;
        let f = &files[start];
        let count = if file_last >= f.first_id { file_last - f.first_id + 1 } else { 0 };
        if count >= need {
            from = file_last + 1 - need;
            break;
        }
        need -= count;
        from = f.first_id;
        if start > 0 {
            file_last = sealed_last_id(layout, &files[start - 1], &mut manifest).unwrap_or(f.first_id - 1);
        }
    }
    Ok((files[start..].to_vec(), from, last))
}

/// The last id of a sealed or archived file, from its seal (plain) or the
/// archive manifest; `None` when neither tells.
fn sealed_last_id(
    layout: &Layout,
    f: &LogFile,
    manifest: &mut Option<Vec<crate::store::manifest::ManifestEntry>>,
) -> Option<u64> {
    match f.kind {
        FileKind::Sealed => crate::store::xml::scan::seal_time(&f.path).ok().flatten().map(|(_, last)| last),
        FileKind::Archived => {
            let entries =
                manifest.get_or_insert_with(|| crate::store::manifest::read_manifest(layout).unwrap_or_default());
            let name = f.path.file_name()?.to_str()?;
            entries.iter().find(|e| e.file == name).map(|e| e.last_id)
        }
        FileKind::Active => None,
    }
}
