//! The whole local history as one stream of records, in id order: archived
//! (`archive/*.xml.gz`), sealed (`audit_trail/*.xml`) and active files.
//!
//! Readers take no lock. Sealed files never change, and the active file only
//! grows by whole records, so a reader sees a consistent prefix. Files move
//! while the service runs (active → sealed → archived), so directories are
//! listed in that order — a file moving between two listings is seen at least
//! once — and a file that is gone when opened is looked up in its next home.

use std::collections::{HashMap, HashSet};
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
    list_dir_known(dir, want, lenient, seen, out, None)
}

/// [`list_dir`], taking the first id of a file it knows from `known` instead
/// of opening it (and adding the ones it opens).
fn list_dir_known(
    dir: &Path,
    want: FileKind,
    lenient: bool,
    seen: &mut HashSet<String>,
    out: &mut Vec<LogFile>,
    mut known: Option<&mut Known>,
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
        if let Some(&first_id) = known.as_deref().and_then(|k| k.0.get(&stem)) {
            seen.insert(stem.clone());
            out.push(LogFile { path, kind, stem, first_id });
            continue;
        }
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
        if let Some(k) = known.as_deref_mut() {
            k.0.insert(stem.clone(), first_id);
        }
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
/// circular log reaches further back. Only the newest files are opened, as
/// far back as the circular log reaches.
pub fn circular(layout: &Layout, capacity: u64) -> Result<(Vec<LogFile>, u64, u64)> {
    let mut back = Backwards::new(layout)?;
    // Oldest first: the files opened so far.
    let mut files = std::collections::VecDeque::new();
    for _ in 0..2 {
        if let Some(f) = back.older()? {
            files.push_front(f);
        }
    }
    let last = last_id(layout, files.make_contiguous())?;
    if last == 0 {
        return Ok((Vec::new(), 1, 0));
    }
    let mut need = capacity.max(1);
    let mut file_last = last;
    let mut from = circular_from(last, capacity);
    let mut start = files.len();
    let mut manifest = HashMap::new();
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
        if start == 0
            && let Some(older) = back.older()?
        {
            files.push_front(older);
            start += 1;
        }
        if start > 0 {
            file_last = sealed_last_id(layout, &files[start - 1], &mut manifest).unwrap_or(files[start].first_id - 1);
        }
    }
    Ok((files.into_iter().skip(start).collect(), from, last))
}

/// A history file known by its name only.
#[derive(Debug, Clone)]
pub struct Named {
    pub kind: FileKind,
    pub stem: String,
}

/// The time stamp in a stem (`<host>_<YYYYMMDDHHMMSS>`).
fn stamp_of(stem: &str) -> &str {
    stem.rsplit_once('_').map_or("", |(_, s)| s)
}

/// Every file of the history by name, oldest first, without opening any (a
/// plain file is listed instead of its archived twin). The writer gives each
/// new file a stamp later than that of every file before it
/// (`Log::start_file`), so the stamps order the files as their ids do.
pub fn list_names(layout: &Layout) -> Result<Vec<Named>> {
    // With where its stamp starts, found once rather than at every comparison.
    let mut keyed: Vec<(usize, Named)> = Vec::new();
    for kind in [FileKind::Active, FileKind::Sealed, FileKind::Archived] {
        let dir = layout.dir(kind);
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
        };
        for entry in entries {
            let name = entry?.file_name();
            let Some(stem) = name.to_str().and_then(|n| kind.stem_of(n)) else { continue };
            // `x.xml.gz` also ends in `.xml`: only what parses back to this kind.
            if kind_of(name.to_str().unwrap_or_default()).map(|(k, _)| k) != Some(kind) {
                continue;
            }
            keyed.push((stem.len() - stamp_of(stem).len(), Named { kind, stem: stem.to_owned() }));
        }
    }
    // Twins side by side, the plain one first (the order of a file's life, backwards).
    keyed.sort_unstable_by(|(a_at, a), (b_at, b)| {
        a.stem[*a_at..].cmp(&b.stem[*b_at..]).then_with(|| a.stem.cmp(&b.stem)).then_with(|| b.kind.cmp(&a.kind))
    });
    keyed.dedup_by(|(_, later), (_, first)| later.stem == first.stem);
    Ok(keyed.into_iter().map(|(_, n)| n).collect())
}

/// The file named, with its first id from its header, looked up in its next
/// homes when it moved; `None` when it is gone, or is an active file whose
/// header a crash cut short (as [`list`] skips it).
pub fn resolve(layout: &Layout, named: &Named) -> Result<Option<LogFile>> {
    for kind in [FileKind::Active, FileKind::Sealed, FileKind::Archived] {
        if kind > named.kind {
            continue;
        }
        let path = layout.file(kind, &named.stem);
        match first_id_of(&path) {
            Ok(Some(first_id)) => return Ok(Some(LogFile { path, kind, stem: named.stem.clone(), first_id })),
            Err(_) if !path.exists() => continue,
            Ok(None) | Err(_) if kind == FileKind::Active => return Ok(None),
            Ok(None) => return Err(anyhow!("{} has no first-id in its header", path.display())),
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// The files of the history from the newest back, opening each only when asked for.
pub struct Backwards<'l> {
    layout: &'l Layout,
    names: Vec<Named>,
}

impl<'l> Backwards<'l> {
    pub fn new(layout: &'l Layout) -> Result<Self> {
        Ok(Backwards { layout, names: list_names(layout)? })
    }

    /// Over names already listed (oldest first, as [`list_names`] gives them).
    pub fn over(layout: &'l Layout, names: Vec<Named>) -> Self {
        Backwards { layout, names }
    }

    /// The next older file (the newest at first).
    pub fn older(&mut self) -> Result<Option<LogFile>> {
        while let Some(n) = self.names.pop() {
            if let Some(f) = resolve(self.layout, &n)? {
                return Ok(Some(f));
            }
        }
        Ok(None)
    }
}

/// The last id of a sealed or archived file, from its seal (plain) or the
/// archive manifest; `None` when neither tells.
fn sealed_last_id(layout: &Layout, f: &LogFile, manifest: &mut HashMap<String, Option<u64>>) -> Option<u64> {
    match f.kind {
        FileKind::Sealed => crate::store::xml::scan::seal_time(&f.path).ok().flatten().map(|(_, last)| last),
        FileKind::Archived => {
            let name = f.path.file_name()?.to_str()?;
            let entry = manifest
                .entry(name.to_owned())
                .or_insert_with(|| crate::store::manifest::find_entry(layout, name).ok().flatten().map(|e| e.last_id));
            *entry
        }
        FileKind::Active => None,
    }
}

/// First ids of the files a listing has opened, by stem. A file keeps its
/// stem and header as it moves (active → sealed → archived), so a listing
/// that keeps one opens only the files it has not seen before.
#[derive(Debug, Default)]
pub struct Known(HashMap<String, u64>);

/// Every file of the history, oldest first, opening only the files `known`
/// does not hold yet (and forgetting the ones that are gone).
pub fn list_known(layout: &Layout, known: &mut Known) -> Result<Vec<LogFile>> {
    let (mut files, mut seen) = (Vec::new(), HashSet::new());
    for (dir, kind) in
        [(&layout.active, FileKind::Active), (&layout.sealed, FileKind::Sealed), (&layout.archive, FileKind::Archived)]
    {
        list_dir_known(dir, kind, false, &mut seen, &mut files, Some(known))?;
    }
    known.0.retain(|stem, _| seen.contains(stem));
    files.sort_by_key(|f| (f.first_id, f.kind));
    Ok(files)
}

/// Follows the history from an id on, for a reader that comes back for more
/// (the SIEM forwarder). It keeps the file it is in and the byte offset just
/// past the last record it read, so a look for new records opens one file
/// and reads only what was added since. It follows its file by name when it
/// moves (sealed, archived), and the next file by its first id. The history
/// is listed only at the start, when the position goes back before its file,
/// when its file is gone from every home, or to find the file after a
/// complete one that neither the files it knows nor the active directory
/// hold; that listing opens only files it has not seen before.
#[derive(Debug, Default)]
pub struct Follow {
    at: Option<Spot>,
    known: Known,
    /// How many times the history was listed (tests check the hot path lists nothing).
    pub listings: u64,
}

#[derive(Debug)]
struct Spot {
    file: LogFile,
    /// The file's bytes up to the end of its root start tag, put in front of
    /// the bytes from `offset` on (plain files only; empty until read).
    head: Vec<u8>,
    /// Offset in the plain file just past the last record read (0: from the start).
    offset: u64,
    /// The id after the last record read (`first_id` while `offset` is 0).
    next_id: u64,
}

impl Spot {
    fn at_start(file: LogFile) -> Spot {
        Spot { next_id: file.first_id, file, head: Vec::new(), offset: 0 }
    }
}

/// How reading one file ended.
enum Ended {
    /// `visit` said stop.
    Stopped,
    /// At the end of what an active file holds so far.
    Pending,
    /// Read to its end; the id of its last record (or before its first).
    Complete(u64),
    /// Not found in any of its homes.
    Gone,
}

impl Follow {
    pub fn new() -> Follow {
        Follow::default()
    }

    /// Hands the records with ids from `from` on to `visit`, in order, until
    /// it returns false (that record does not count as read: the next call
    /// starts with it again) or the history holds nothing more.
    pub fn read(&mut self, layout: &Layout, from: u64, visit: &mut dyn FnMut(Record<'static>) -> bool) -> Result<()> {
        let mut relisted = false;
        let mut spot = match self.at.take() {
            Some(s) if from >= s.next_id => s,
            // Back within the file (a replay): read it again from its start.
            Some(s) if from >= s.file.first_id => Spot::at_start(s.file),
            _ => match self.locate(layout, from)? {
                Some(s) => s,
                None => return Ok(()),
            },
        };
        let mut from = from;
        loop {
            let ended = read_spot(layout, &mut spot, from, visit)?;
            // What was read is behind: a file found from here on starts after it.
            from = from.max(spot.next_id);
            match ended {
                Ended::Stopped | Ended::Pending => break,
                Ended::Complete(last) => match self.next_after(layout, &spot.file, last)? {
                    Some(next) => {
                        spot = Spot::at_start(next);
                        relisted = false;
                    }
                    // The newest file is complete and the next has not started yet.
                    None => break,
                },
                Ended::Gone if relisted => {
                    return Err(anyhow!("{} disappeared while it was being read", spot.file.path.display()));
                }
                Ended::Gone => {
                    relisted = true;
                    match self.locate(layout, from)? {
                        Some(s) => spot = s,
                        None => return Ok(()),
                    }
                }
            }
        }
        self.at = Some(spot);
        Ok(())
    }

    fn list(&mut self, layout: &Layout) -> Result<Vec<LogFile>> {
        self.listings += 1;
        list_known(layout, &mut self.known)
    }

    /// The newest file starting at or before `from` (else the oldest file),
    /// found from the newest file back by name, opening only the files it
    /// passes: a position near the end of a long history opens one or two.
    fn locate(&mut self, layout: &Layout, from: u64) -> Result<Option<Spot>> {
        self.listings += 1;
        let mut back = Backwards::new(layout)?;
        let mut oldest = None;
        while let Some(f) = back.older()? {
            self.known.0.insert(f.stem.clone(), f.first_id);
            if f.first_id <= from {
                return Ok(Some(Spot::at_start(f)));
            }
            oldest = Some(f);
        }
        Ok(oldest.map(Spot::at_start))
    }

    /// The file after `file`, whose last record is `last`: the known file
    /// starting at `last + 1` (nothing can lie between), else the active
    /// file if it starts there, else the first file after it in a listing.
    fn next_after(&mut self, layout: &Layout, file: &LogFile, last: u64) -> Result<Option<LogFile>> {
        let want = last + 1;
        if let Some(stem) = self.known.0.iter().find(|(s, id)| **id == want && **s != file.stem).map(|(s, _)| s.clone())
        {
            for kind in [FileKind::Active, FileKind::Sealed, FileKind::Archived] {
                let path = layout.file(kind, &stem);
                if path.exists() {
                    return Ok(Some(LogFile { path, kind, stem, first_id: want }));
                }
            }
        }
        let mut active = Vec::new();
        list_dir_known(
            &layout.active,
            FileKind::Active,
            false,
            &mut HashSet::new(),
            &mut active,
            Some(&mut self.known),
        )?;
        if let Some(f) = active.into_iter().find(|f| f.first_id == want && f.stem != file.stem) {
            return Ok(Some(f));
        }
        let files = self.list(layout)?;
        Ok(files.into_iter().find(|f| f.first_id > file.first_id && f.stem != file.stem))
    }
}

/// Opens the file of `spot` in its home or, when it moved, the next one.
fn open_spot(layout: &Layout, spot: &mut Spot) -> Result<Option<File>> {
    for kind in [FileKind::Active, FileKind::Sealed, FileKind::Archived] {
        if kind > spot.file.kind {
            continue;
        }
        let path = layout.file(kind, &spot.file.stem);
        match File::open(&path) {
            Ok(f) => {
                if kind != spot.file.kind {
                    if kind == FileKind::Archived {
                        // Offsets are into the plain file: read the compressed one from its start.
                        spot.offset = 0;
                        spot.next_id = spot.file.first_id;
                    }
                    spot.file.kind = kind;
                    spot.file.path = path;
                }
                return Ok(Some(f));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
        }
    }
    Ok(None)
}

/// Reads the file of `spot` from its offset, handing records from `from` on to `visit`.
fn read_spot(
    layout: &Layout,
    spot: &mut Spot,
    from: u64,
    visit: &mut dyn FnMut(Record<'static>) -> bool,
) -> Result<Ended> {
    use std::io::{Seek, SeekFrom};
    use std::os::unix::fs::FileExt;
    let Some(mut file) = open_spot(layout, spot)? else { return Ok(Ended::Gone) };
    let path = spot.file.path.clone();
    let plain = spot.file.kind != FileKind::Archived;
    // Offsets the reader gives plus `delta` are offsets in the file.
    let (mut rd, delta): (XmlReader<Box<dyn BufRead + Send>>, i64) =
        if plain && spot.offset > 0 && !spot.head.is_empty() {
            file.seek(SeekFrom::Start(spot.offset)).with_context(|| format!("cannot read {}", path.display()))?;
            let stream = std::io::Cursor::new(spot.head.clone()).chain(file);
            (
                XmlReader::new(Box::new(BufReader::with_capacity(READ_BUF, stream))),
                spot.offset as i64 - spot.head.len() as i64,
            )
        } else {
            spot.offset = 0;
            spot.next_id = spot.file.first_id;
            let twin = if plain {
                Some(file.try_clone().with_context(|| format!("cannot read {}", path.display()))?)
            } else {
                None
            };
            let mut rd = XmlReader::new(if plain {
                Box::new(BufReader::with_capacity(READ_BUF, file)) as Box<dyn BufRead + Send>
            } else {
                Box::new(BufReader::with_capacity(READ_BUF, gzread::GzReader::new(file, false)))
            });
            match (rd.header(), twin) {
                (Ok(_), Some(twin)) => {
                    let mut head = vec![0; rd.good_end() as usize];
                    twin.read_exact_at(&mut head, 0).with_context(|| format!("cannot read {}", path.display()))?;
                    spot.head = head;
                }
                (Ok(_), None) => {}
                // An active file whose header is not complete yet holds nothing.
                (Err(_), _) if spot.file.kind == FileKind::Active => return Ok(Ended::Pending),
                (Err(e), _) => return Err(anyhow!("{}: {e}", path.display())),
            }
            (rd, 0)
        };
    loop {
        match rd.next_record() {
            Ok(Some(r)) => {
                let id = r.id;
                if id >= from && !visit(r) {
                    return Ok(Ended::Stopped);
                }
                if plain {
                    spot.offset = (rd.good_end() as i64 + delta) as u64;
                }
                spot.next_id = id + 1;
            }
            Ok(None) if !rd.closed() && rd.seal().is_none() && spot.file.kind == FileKind::Active => {
                return Ok(Ended::Pending);
            }
            Ok(None) => {
                let last = rd.seal().map_or(0, |s| s.last_id).max(spot.next_id.saturating_sub(1));
                return Ok(Ended::Complete(last));
            }
            // The active file may end in a record still being written.
            Err(_) if spot.file.kind == FileKind::Active => return Ok(Ended::Pending),
            Err(e) => return Err(anyhow!("{}: {e}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::writer::Log;

    fn rec(n: u64) -> Record<'static> {
        let line = format!(r#"{{"app_name":"T","action_type":"A{n}"}}"#);
        let mut r = crate::record::parse_json_line(line.as_bytes()).unwrap().into_owned();
        let defaults = crate::record::Defaults { now: "2026-01-01T00:00:00.000+00:00", node: "h" };
        crate::record::validate(&mut r, &defaults).unwrap();
        r
    }

    fn follow(f: &mut Follow, layout: &Layout, from: u64) -> Vec<u64> {
        let mut ids = Vec::new();
        f.read(layout, from, &mut |r| {
            ids.push(r.id);
            true
        })
        .unwrap();
        ids
    }

    /// What a full listing and read give from `from` on.
    fn expected(layout: &Layout, from: u64) -> Vec<u64> {
        let files = list(layout).unwrap();
        let at = files.iter().rposition(|f| f.first_id <= from).unwrap_or(0);
        Records::new(layout, files[at..].to_vec(), from).map(|r| r.unwrap().id).collect()
    }

    fn archive(layout: &Layout, stem: &str) {
        use std::io::Write;
        let plain = std::fs::read(layout.file(FileKind::Sealed, stem)).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        std::fs::write(layout.file(FileKind::Archived, stem), gz.finish().unwrap()).unwrap();
        std::fs::remove_file(layout.file(FileKind::Sealed, stem)).unwrap();
    }

    #[test]
    fn follow_reads_every_record_once_and_lists_only_when_it_must() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let (mut log, _) = Log::open(&layout, "h", 3, Arc::new(crate::timestamp::SystemClock), None).unwrap();
        for n in 1..=10 {
            log.append([rec(n)]).unwrap();
        }
        let mut f = Follow::new();
        let all = follow(&mut f, &layout, 1);
        assert_eq!(all, expected(&layout, 1));
        assert!(all.len() >= 10 && all.windows(2).all(|w| w[1] == w[0] + 1), "{all:?}");
        let listed = f.listings;
        // One record at a time, into the active file, sealing it and starting the next.
        for n in 11..=20 {
            let next = log.next_id();
            log.append([rec(n)]).unwrap();
            assert_eq!(follow(&mut f, &layout, next), expected(&layout, next), "record {n}");
        }
        assert_eq!(f.listings, listed, "following the log one record at a time lists nothing");
        // A batch, and a reader that stops in the middle: the refused record comes again.
        let next = log.next_id();
        log.append((21..=30).map(rec)).unwrap();
        let mut ids = Vec::new();
        f.read(&layout, next, &mut |r| {
            if r.id == next + 4 {
                return false;
            }
            ids.push(r.id);
            true
        })
        .unwrap();
        assert_eq!(ids, (next..next + 4).collect::<Vec<_>>());
        assert_eq!(follow(&mut f, &layout, next + 4), expected(&layout, next + 4));
        // Files sealed since the last look are found by one listing.
        assert_eq!(f.listings, listed + 1);
        assert_eq!(follow(&mut f, &layout, log.next_id()), Vec::<u64>::new());

        // Going back: within the file, and to before it.
        let end = log.next_id();
        assert_eq!(follow(&mut f, &layout, end - 1), vec![end - 1]);
        assert_eq!(follow(&mut f, &layout, 2), expected(&layout, 2));

        // The file it is in is archived under it.
        let files = list(&layout).unwrap();
        let second = files[1].clone();
        let mut got = Vec::new();
        f.read(&layout, second.first_id, &mut |r| {
            got.push(r.id);
            got.len() < 2
        })
        .unwrap();
        archive(&layout, &second.stem);
        let from = got[1];
        assert_eq!(follow(&mut f, &layout, from), expected(&layout, from));

        // The file it is in is purged: it goes on with the next file there is.
        let third = list(&layout).unwrap()[2].clone();
        f.read(&layout, third.first_id, &mut |_| false).unwrap();
        std::fs::remove_file(&third.path).unwrap();
        let got = follow(&mut f, &layout, third.first_id);
        assert_eq!(got, expected(&layout, third.first_id));
        assert!(got[0] > third.first_id);
    }

    #[test]
    fn names_order_the_history_as_ids_do_and_the_circular_log_opens_only_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let (mut log, _) = Log::open(&layout, "h", 3, Arc::new(crate::timestamp::SystemClock), None).unwrap();
        for n in 1..=20 {
            log.append([rec(n)]).unwrap();
        }
        let files = list(&layout).unwrap();
        // One archived, one archived with its plain twin still there.
        archive(&layout, &files[0].stem);
        let plain = std::fs::read(layout.file(FileKind::Sealed, &files[1].stem)).unwrap();
        archive(&layout, &files[1].stem);
        std::fs::write(layout.file(FileKind::Sealed, &files[1].stem), plain).unwrap();
        let files = list(&layout).unwrap();
        let names = list_names(&layout).unwrap();
        let by_id: Vec<_> = files.iter().map(|f| (f.kind, f.stem.clone())).collect();
        let by_name: Vec<_> = names.iter().map(|n| (n.kind, n.stem.clone())).collect();
        assert_eq!(by_name, by_id);
        let mut back = Backwards::over(&layout, names);
        let mut newest_first = Vec::new();
        while let Some(f) = back.older().unwrap() {
            newest_first.push(f.first_id);
        }
        newest_first.reverse();
        assert_eq!(newest_first, files.iter().map(|f| f.first_id).collect::<Vec<_>>());
        // The circular log, for every capacity, as the whole history gives it.
        let last = last_id(&layout, &files).unwrap();
        for capacity in 1..=25 {
            let (cfiles, from, clast) = circular(&layout, capacity).unwrap();
            assert_eq!(clast, last);
            let ids: Vec<u64> = Records::new(&layout, cfiles, from).map(|r| r.unwrap().id).collect();
            let all: Vec<u64> = Records::new(&layout, files.clone(), 0).map(|r| r.unwrap().id).collect();
            let want = all[all.len().saturating_sub(capacity as usize)..].to_vec();
            assert_eq!(ids, want, "capacity {capacity}");
        }
    }
}
