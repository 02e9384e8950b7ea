//! The log: the active file, rollover into sealed files, and crash recovery.
//!
//! # On disk
//!
//! The active file is `state/active/<host>_<stamp>.xml.open`. It is the XML
//! document itself, minus its trailer: a header whose `first-id` says which id
//! its first record has, then complete records. Sealing appends
//! `<Seal …/></AuditTrail>`, fsyncs, and renames the file to
//! `audit_trail/<host>_<stamp>.xml`; sealed files are never opened for writing
//! again. Once a record exists there is always exactly one active file (a
//! rotation opens the next one at once), so the next id is always
//! `first-id + records in the active file`: no separate counter can drift.
//!
//! # Durability (what is fsynced when)
//!
//! * An append returns only after `fdatasync` of the active file, so every id
//!   it hands out is on disk. A batch shares one fsync.
//! * Sealing fsyncs the file (trailer included) *before* renaming it, so a
//!   sealed name never points at data that could be lost; the directories
//!   touched by renames and creations are fsynced before the append that
//!   caused them returns.
//! * Writers hold an exclusive lock on `state/lock`, so ids from concurrent
//!   processes are unique and gap-free.
//!
//! # Recovery
//!
//! Opening the log repairs what a crash can leave: a torn tail (cut back to
//! the end of the last complete record), a seal that was written but not yet
//! renamed (the rename is finished), a trailer that was cut short (removed;
//! the file stays active), an empty active file with a torn header (removed).
//! Every repair is reported in [`Log::open`]'s notes.
//!
//! # File names
//!
//! `<host>_<YYYYMMDDHHMMSS>` from the local time a file is started. When that
//! stamp would not be later than the previous file's (several files in one
//! second, or the clock stepping back), the previous stamp plus one second is
//! used instead, so names stay unique and sort in creation order; the real
//! start time is always in the `created` attribute.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use chrono::NaiveDateTime;

use crate::record::Record;
use crate::store::chain::{self, Digest, MacKey, Partial, SealStatement};
use crate::store::layout::Layout;
use crate::store::layout::{ACTIVE_SUFFIX, FileKind};
use crate::store::reader;
use crate::store::xml::read::{Header, XmlReader};
use crate::store::xml::write::{self, FileStart, SealInfo};
use crate::timestamp::{self, Clock};

/// Flush the write buffer to the file beyond this many bytes.
const WRITE_CHUNK: usize = 1 << 20;

struct Active {
    path: PathBuf,
    stem: String,
    file: File,
    first_id: u64,
    count: u64,
    /// Bytes on disk that are known good (end of the last complete record).
    len: u64,
    /// The header's host and created attributes (covered by the seal MAC).
    host: String,
    created: String,
    /// The header's `chain-start`; `None` for a file written before the
    /// format had a chain (it is sealed as it is and never appended to).
    chain_start: Option<Digest>,
    /// The header's format version: from 3 on, the seal is bound into the
    /// chain ([`chain::seal_value`]).
    format: u32,
    /// Chain value after the last record pushed (buffered ones included).
    chain: Option<Digest>,
}

/// A file that was sealed.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub path: PathBuf,
    pub info: SealInfo,
}

/// The open log, held by exactly one writer at a time.
pub struct Log {
    layout: Layout,
    host: String,
    capacity: u64,
    clock: Arc<dyn Clock>,
    _lock: File,
    active: Option<Active>,
    next_id: u64,
    last_stamp: Option<NaiveDateTime>,
    /// Where the next file's chain continues from, and the file before it,
    /// when there is no active file to take them from. `None` starts a new chain.
    chain: Option<Digest>,
    prev_stem: Option<String>,
    key: Option<MacKey>,
    dirs_dirty: bool,
    poisoned: bool,
    /// What went wrong under the writer and was repaired, for the owner to
    /// report loudly and record as self-audit events ([`Log::take_incidents`]).
    incidents: Vec<String>,
    /// The next id last written to the high-water mark file.
    mark_written: u64,
}

/// The largest id ever handed out (the range of a signed 64-bit integer, as
/// JSON readers and SQL databases hold it): appends stop with an error there
/// instead of wrapping around.
pub const MAX_ID: u64 = i64::MAX as u64;

/// How a gap in the ids is worded in the archiver's `Integrity` record: ids
/// handed out whose records are gone (damage `verify` reports) …
pub const GAP_LOST: &str = "were handed out but no file holds them";
/// … or ids handed out by a data directory that `restore --force` replaced
/// (no damage: `verify` notes it).
pub const GAP_REPLACED: &str = "were handed out by the data directory this restore replaced";

/// File under `state/` holding the id high-water mark: the next id that
/// may be handed out. Ids below it were handed out, whatever happens later to
/// the files that held them.
pub const HIGH_WATER: &str = "next-id";

impl Log {
    /// Takes the writer lock (waiting for another writer to finish), creates
    /// the layout if needed and repairs what a crash left. Returns the log and
    /// a note for each repair made. With a key, every file sealed carries a
    /// MAC made with it.
    pub fn open(
        layout: &Layout,
        host: &str,
        capacity: u64,
        clock: Arc<dyn Clock>,
        key: Option<MacKey>,
    ) -> Result<(Log, Vec<String>)> {
        layout.create()?;
        let lock = crate::fsx::open_lock_file(&layout.lock)?;
        lock.lock().with_context(|| format!("cannot lock {}", layout.lock.display()))?;
        // Under the lock: writers starting together must not race on it.
        install_stylesheet(&layout.sealed)?;

        let mut log = Log {
            layout: layout.clone(),
            host: host.to_owned(),
            capacity: capacity.max(1),
            clock,
            _lock: lock,
            active: None,
            next_id: 1,
            last_stamp: None,
            chain: None,
            prev_stem: None,
            key,
            dirs_dirty: false,
            poisoned: false,
            incidents: Vec::new(),
            mark_written: 0,
        };
        let mut notes = log.recover()?;
        log.apply_high_water(&mut notes)?;
        Ok((log, notes))
    }

    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// True after a failed write: the log must be reopened (which repairs it).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Problems found and repaired since the last call (an active file
    /// deleted or replaced under the writer, ids skipped at open). Each is a
    /// sentence for the operator and for a self-audit record.
    pub fn take_incidents(&mut self) -> Vec<String> {
        std::mem::take(&mut self.incidents)
    }

    /// Ids never go back: when the files give a next id below the
    /// high-water mark (an active file deleted while the service was stopped,
    /// `state/` restored from an older copy), the log continues at the mark
    /// and names the gap.
    fn apply_high_water(&mut self, notes: &mut Vec<String>) -> Result<()> {
        let path = self.layout.state.join(HIGH_WATER);
        let mark = read_high_water(&self.layout.state).with_context(|| format!("cannot read {}", path.display()))?;
        let Some(mark) = mark else {
            if path.exists() {
                notes.push(format!(
                    "{} is unreadable or out of range; the next id is taken from the files",
                    path.display()
                ));
            }
            return Ok(());
        };
        self.mark_written = mark;
        if mark > self.next_id {
            let gap = format!(
                "ids {}..{} {GAP_LOST} (the high-water mark {} says {mark}); the log continues at id {mark} and \
                 never hands them out again",
                self.next_id,
                mark - 1,
                path.display()
            );
            notes.push(gap.clone());
            self.incidents.push(gap);
            if let Some(a) = self.active.take() {
                // The ids of the active file's next records are gone: seal it
                // as it is; the next file starts at the mark.
                if a.count == 0 {
                    fs::remove_file(&a.path).with_context(|| format!("cannot remove {}", a.path.display()))?;
                    self.dirs_dirty = true;
                } else {
                    let mut a = a;
                    self.write_seal(&mut a)?;
                    self.finish_seal(a)?;
                }
                self.sync_dirs()?;
            }
            self.next_id = mark;
        }
        Ok(())
    }

    /// Writes the high-water mark when the next id has passed it.
    pub fn save_high_water(&mut self) -> Result<()> {
        self.raise_high_water(self.next_id)
    }

    /// Writes `next` as the high-water mark when it is above the one written.
    fn raise_high_water(&mut self, next: u64) -> Result<()> {
        if next > self.mark_written {
            write_high_water(&self.layout.state, next)?;
            self.mark_written = next;
        }
        Ok(())
    }

    fn recover(&mut self) -> Result<Vec<String>> {
        let mut notes = Vec::new();
        let mut actives = Vec::new();
        for entry in fs::read_dir(&self.layout.active)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            if let Some(stem) = name.strip_suffix(ACTIVE_SUFFIX) {
                actives.push((stem.to_owned(), path));
            }
        }
        let mut parsed = Vec::new();
        for (stem, path) in actives {
            let scanned = match scan_active(&path) {
                Ok(s) => s,
                Err(e) => {
                    // Not a file this log can continue: keep it for the
                    // investigation, never write into it, and go on from the
                    // high-water mark.
                    let aside = displace(&self.layout, &path)?;
                    let what = format!("{e:#}; it was moved to {}", aside.display());
                    notes.push(what.clone());
                    self.incidents.push(format!("the active file {} cannot be read: {what}", path.display()));
                    self.dirs_dirty = true;
                    continue;
                }
            };
            match scanned {
                Some(scan) => parsed.push((stem, path, scan)),
                None => {
                    fs::remove_file(&path)?;
                    notes.push(format!(
                        "removed {}: its header was cut short before any record was written",
                        path.display()
                    ));
                    self.dirs_dirty = true;
                }
            }
        }
        parsed.sort_by_key(|(_, _, s)| s.first_id);
        let newest = parsed.pop();
        // Older active files were on their way to being sealed.
        for (stem, path, scan) in parsed {
            let mut a = self.reopen_active(stem, path, &scan, &mut notes)?;
            if scan.sealed {
                notes.push(format!("finished sealing {} (it was sealed but not yet moved)", a.path.display()));
                self.chain = scan.seal_chain_end.or(a.chain);
            } else {
                self.write_seal(&mut a)?;
                notes.push(format!("sealed {} (a newer file follows it)", a.path.display()));
            }
            self.prev_stem = Some(a.stem.clone());
            self.finish_seal(a)?;
        }
        let mut last_stamp = None;
        if let Some((stem, path, scan)) = newest {
            let mut a = self.reopen_active(stem.clone(), path, &scan, &mut notes)?;
            self.next_id = a.first_id + a.count;
            last_stamp = stem_stamp(&stem);
            self.chain = a.chain;
            self.prev_stem = Some(a.stem.clone());
            if scan.sealed {
                notes.push(format!("finished sealing {} (it was sealed but not yet moved)", a.path.display()));
                self.chain = scan.seal_chain_end.or(a.chain);
                self.finish_seal(a)?;
            } else if a.chain_start.is_none() {
                // Written before files had a hash chain: sealed as it is, and
                // the next record starts a chained file.
                self.write_seal(&mut a)?;
                notes.push(format!(
                    "sealed {} (written without a hash chain); a new file starts the chain",
                    a.path.display()
                ));
                self.finish_seal(a)?;
            } else {
                self.active = Some(a);
            }
        } else {
            // No active file: a brand-new directory, or a crash between
            // sealing a file and opening the next. The sealed files know.
            if let Some(last) = reader::last_sealed(&self.layout)? {
                self.next_id = last.last_id + 1;
                last_stamp = stem_stamp(&last.stem);
                self.chain = last.chain_end;
                self.prev_stem = Some(last.stem);
            }
        }
        self.last_stamp = last_stamp;
        self.sync_dirs()?;
        Ok(notes)
    }

    fn reopen_active(&mut self, stem: String, path: PathBuf, scan: &Scan, notes: &mut Vec<String>) -> Result<Active> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(crate::fsx::NOFOLLOW)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let keep = if scan.sealed { scan.file_len } else { scan.good_end };
        if keep < scan.file_len {
            file.set_len(keep).with_context(|| format!("cannot repair {}", path.display()))?;
            file.sync_all()?;
            let last = if scan.count == 0 {
                "the header".to_string()
            } else {
                format!("record {}", scan.first_id + scan.count - 1)
            };
            notes.push(format!(
                "repaired {}: removed {} bytes of torn tail after {last}{}",
                path.display(),
                scan.file_len - keep,
                scan.problem.as_deref().map(|p| format!(" ({p})")).unwrap_or_default(),
            ));
        }
        Ok(Active {
            path,
            stem,
            file,
            first_id: scan.first_id,
            count: scan.count,
            len: keep,
            host: scan.header.host.clone(),
            created: scan.header.created.clone(),
            chain_start: scan.header.chain_start,
            format: scan.header.format.unwrap_or(1),
            chain: scan.last_chain.or_else(|| scan.header.chain_value()),
        })
    }

    /// Writes the seal at the end of `a` and makes the next file continue
    /// from it (its `chain-end`, its name).
    fn write_seal(&mut self, a: &mut Active) -> Result<SealInfo> {
        let info = self.seal_info(a);
        write_all_at_end(a, &write::seal(&info))?;
        self.chain = info.chain_end;
        self.prev_stem = Some(a.stem.clone());
        Ok(info)
    }

    fn seal_info(&self, a: &Active) -> SealInfo {
        let mut info = SealInfo {
            first_id: a.first_id,
            last_id: (a.first_id + a.count).saturating_sub(1),
            records: a.count,
            sealed: timestamp::format(&self.clock.now()),
            chain_end: a.chain,
            mac: None,
        };
        if a.format >= 3 {
            info.chain_end =
                a.chain.map(|last| chain::seal_value(info.first_id, info.last_id, info.records, &info.sealed, &last));
        }
        if let (Some(key), Some(start), Some(end)) = (&self.key, &a.chain_start, &a.chain) {
            let statement = SealStatement {
                host: &a.host,
                created: &a.created,
                sealed: &info.sealed,
                first_id: info.first_id,
                last_id: info.last_id,
                records: info.records,
                chain_start: start,
                chain_end: end,
            };
            info.mac = Some((key.id().to_owned(), key.mac(&statement)));
        }
        info
    }

    /// Makes the sealed file durable, then gives it its final name.
    fn finish_seal(&mut self, a: Active) -> Result<Sealed> {
        a.file.sync_all().with_context(|| format!("cannot sync {}", a.path.display()))?;
        let dest = self.move_sealed(&a.path, &a.stem)?;
        let info = SealInfo {
            first_id: a.first_id,
            last_id: a.first_id + a.count.max(1) - 1,
            records: a.count,
            sealed: String::new(),
            chain_end: a.chain,
            mac: None,
        };
        Ok(Sealed { path: dest, info })
    }

    /// Gives a durable sealed file its final name under `audit_trail/`.
    fn move_sealed(&mut self, path: &Path, stem: &str) -> Result<PathBuf> {
        let dest = self.layout.file(FileKind::Sealed, stem);
        if dest.exists() {
            bail!("cannot seal {}: {} already exists", path.display(), dest.display());
        }
        fs::rename(path, &dest).with_context(|| format!("cannot move {} to {}", path.display(), dest.display()))?;
        self.dirs_dirty = true;
        // Best effort: a file without its line in the time index is always read.
        let _ = crate::store::index::note_sealed(&self.layout, stem, &dest);
        Ok(dest)
    }

    fn sync_dirs(&mut self) -> Result<()> {
        if self.dirs_dirty {
            for dir in [&self.layout.sealed, &self.layout.active] {
                File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("cannot sync {}", dir.display()))?;
            }
            self.dirs_dirty = false;
        }
        Ok(())
    }

    /// Starts a new active file whose first record will get `next_id`.
    fn start_file(&mut self) -> Result<()> {
        let now = self.clock.now();
        let mut stamp = now.naive_local();
        stamp = stamp.with_nanosecond(0).unwrap_or(stamp);
        if let Some(prev) = self.last_stamp
            && stamp <= prev
        {
            stamp = prev + chrono::Duration::seconds(1);
        }
        let (stem, path) = loop {
            let stem = format!("{}_{}", self.host, stamp.format("%Y%m%d%H%M%S"));
            let taken = self.layout.file(FileKind::Sealed, &stem).exists()
                || self.layout.file(FileKind::Archived, &stem).exists();
            if !taken {
                break (stem.clone(), self.layout.file(FileKind::Active, &stem));
            }
            stamp += chrono::Duration::seconds(1);
        };
        let mut file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .mode(0o640)
            .custom_flags(crate::fsx::NOFOLLOW)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let (chain_start, origin) = match self.chain {
            Some(c) => (c, false),
            None => (chain::genesis()?, true),
        };
        let created = timestamp::format(&now);
        let previous = self.prev_stem.as_deref();
        let start = FileStart { first_id: self.next_id, chain_start: &chain_start, previous, origin };
        let first_value = chain::header_value(&chain::HeaderFacts {
            format: write::FORMAT_VERSION,
            host: &self.host,
            created: &created,
            first_id: self.next_id,
            previous,
            origin,
            chain_start: &chain_start,
        });
        let header = write::header(&self.host, &created, Some(start));
        if let Err(e) = file.write_all(&header).and_then(|()| file.sync_all()) {
            // Never leave half a header behind for the next attempt to trip on.
            let _ = fs::remove_file(&path);
            return Err(e).with_context(|| format!("cannot write {}", path.display()));
        }
        self.dirs_dirty = true;
        self.last_stamp = Some(stamp);
        self.active = Some(Active {
            path,
            stem,
            file,
            first_id: self.next_id,
            count: 0,
            len: header.len() as u64,
            host: self.host.clone(),
            created,
            chain_start: Some(chain_start),
            format: write::FORMAT_VERSION,
            chain: Some(first_value),
        });
        Ok(())
    }

    /// Seals the active file (if it holds records) and starts the next one.
    fn roll(&mut self) -> Result<Option<Sealed>> {
        let sealed = match self.active.take() {
            Some(a) if a.count == 0 => {
                self.active = Some(a);
                return Ok(None);
            }
            Some(mut a) => {
                let info = self.write_seal(&mut a)?;
                let mut s = self.finish_seal(a)?;
                s.info = info;
                Some(s)
            }
            None => None,
        };
        if let Err(e) = self.start_file() {
            // The seal is done and durable; the next append starts the next
            // file (a log may be without an active file: recovery knows).
            if sealed.is_none() {
                return Err(e);
            }
            self.incidents.push(format!("the file after the one just sealed could not be started yet: {e:#}"));
        }
        Ok(sealed)
    }

    /// Appends validated records, assigning consecutive ids, and returns the
    /// first and last id once they are all on disk (`None` for no records).
    pub fn append<'a, I>(&mut self, records: I) -> Result<Option<(u64, u64)>>
    where
        I: IntoIterator<Item = Record<'a>>,
    {
        let mut app = self.begin()?;
        let mut entry = Vec::with_capacity(4096);
        for rec in records {
            entry.clear();
            render_entry(&mut entry, &rec);
            app.push_entry(&entry)?;
        }
        app.commit()
    }

    /// Starts a batch of appends that ends with one fsync in
    /// [`Appender::commit`]. A batch is stored whole or not at all: files it
    /// fills are sealed only at the commit, and a batch that fails or is
    /// dropped without committing is taken back (the log must then be
    /// reopened, which finds it as it was before the batch).
    pub fn begin(&mut self) -> Result<Appender<'_>> {
        if self.poisoned {
            bail!("the log hit a write error earlier; reopen it");
        }
        // Poisoned until committed: an abandoned batch leaves the log unusable.
        self.poisoned = true;
        let first = self.next_id;
        let undo = self.active.as_ref().map(|a| (a.path.clone(), a.len));
        Ok(Appender {
            log: self,
            buf: Vec::with_capacity(WRITE_CHUNK + 64 * 1024),
            pending: 0,
            first,
            undo,
            filled: Vec::new(),
            created: Vec::new(),
            done: false,
        })
    }

    /// Seals the active file now, even if it is not full. Returns what was
    /// sealed, or `None` when the active file holds no record.
    pub fn rotate(&mut self) -> Result<Option<Sealed>> {
        if self.poisoned {
            bail!("the log hit a write error earlier; reopen it");
        }
        if self.active.as_ref().is_none_or(|a| a.count == 0) {
            return Ok(None);
        }
        // A rotation that fails half-way leaves state only recovery can sort out.
        self.poisoned = true;
        let sealed = self.roll()?;
        self.sync_dirs()?;
        self.poisoned = false;
        Ok(sealed)
    }
}

impl Drop for Log {
    /// Leaves the high-water mark at the next id, so ids are never handed
    /// out twice even if the active file is lost while nothing runs. A log
    /// poisoned by a failed batch holds ids that were taken back: not saved.
    fn drop(&mut self) {
        if !self.poisoned {
            let _ = self.save_high_water();
        }
    }
}

/// A batch of appends in progress (see [`Log::begin`]).
pub struct Appender<'l> {
    log: &'l mut Log,
    buf: Vec<u8>,
    /// Records in `buf`, not yet written to the active file.
    pending: u64,
    first: u64,
    /// The active file when the batch began, and its length then.
    undo: Option<(PathBuf, u64)>,
    /// Files this batch filled (path and stem): trailer written and
    /// fsynced, given their sealed name at the commit.
    filled: Vec<(PathBuf, String)>,
    /// Files this batch created.
    created: Vec<PathBuf>,
    done: bool,
}

impl Appender<'_> {
    /// Appends one record given as an entry ([`render_entry`]); returns the
    /// id it gets.
    pub fn push_entry(&mut self, entry: &[u8]) -> Result<u64> {
        let full = self.log.active.as_ref().is_none_or(|a| a.count + self.pending >= self.log.capacity);
        if full {
            self.flush()?;
            self.next_file()?;
        }
        let Some(split) = entry.len().checked_sub(Partial::ENCODED) else {
            bail!("a record entry is shorter than its partial hash")
        };
        let (body, partial) = entry.split_at(split);
        let partial = partial.try_into().ok().and_then(Partial::decode).context("a record entry's partial hash")?;
        let id = self.log.next_id;
        if id > MAX_ID {
            bail!("the log has handed out every id up to {MAX_ID}; no more records can be appended");
        }
        let a = self.log.active.as_mut().context("no active file")?;
        let prev = a.chain.context("the active file has no hash chain")?;
        let c = partial.finish(id, &prev);
        a.chain = Some(c);
        write::record_start(&mut self.buf, id);
        self.buf.extend_from_slice(body);
        write::record_end(&mut self.buf, Some(&c));
        self.log.next_id += 1;
        self.pending += 1;
        if self.buf.len() >= WRITE_CHUNK {
            self.flush()?;
        }
        Ok(id)
    }

    /// Fails when the active file is shorter than what was written to it
    /// (someone cut it in place): what was cut is gone from the file itself.
    /// Nothing more is acknowledged, the incident is kept, and the ids
    /// handed out so far are written to the high-water mark so that the
    /// reopened log never hands them out again.
    fn check_length(&mut self) -> Result<()> {
        let log = &mut *self.log;
        let Some(a) = log.active.as_ref() else { return Ok(()) };
        let on_disk = a.file.metadata().with_context(|| format!("cannot stat {}", a.path.display()))?.len();
        if on_disk >= a.len {
            return Ok(());
        }
        let msg = format!(
            "the active file {} was cut to {on_disk} bytes while records were being written to it ({} expected): \
             records of ids {}..{} may be lost",
            a.path.display(),
            a.len,
            a.first_id,
            self.first.saturating_sub(1)
        );
        log.incidents.push(msg.clone());
        // Best effort: the error below is what matters to the caller.
        let _ = log.raise_high_water(self.first);
        bail!("{msg}")
    }

    /// Writes the trailer of the full active file (it is renamed at the
    /// commit) and starts the next file.
    fn next_file(&mut self) -> Result<()> {
        let log = &mut *self.log;
        if let Some(mut a) = log.active.take() {
            if a.count > 0 {
                log.write_seal(&mut a)?;
                ensure_linked(&log.layout, &mut a, &mut log.incidents)?;
                // Durable now, and closed: a batch of any size holds one file open.
                a.file.sync_all().with_context(|| format!("cannot sync {}", a.path.display()))?;
                self.filled.push((a.path, a.stem));
            } else {
                log.active = Some(a);
                return Ok(());
            }
        }
        log.start_file()?;
        if let Some(a) = &log.active {
            self.created.push(a.path.clone());
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.check_length()?;
        let a = self.log.active.as_mut().context("no active file")?;
        write_all_at_end(a, &self.buf)?;
        a.count += self.pending;
        self.pending = 0;
        self.buf.clear();
        Ok(())
    }

    /// Writes what is buffered and fsyncs; returns the first and last id
    /// appended (`None` when nothing was). On an error nothing of the batch
    /// is stored.
    pub fn commit(mut self) -> Result<Option<(u64, u64)>> {
        self.flush()?;
        if self.log.next_id == self.first {
            self.done = true;
            self.log.poisoned = false;
            return Ok(None);
        }
        // The file the batch wrote to must still be the one under its name.
        if let Some(a) = self.log.active.as_mut() {
            ensure_linked(&self.log.layout, a, &mut self.log.incidents)?;
        }
        if let Some(a) = &self.log.active {
            a.file.sync_data().with_context(|| format!("cannot sync {}", a.path.display()))?;
        }
        self.log.sync_dirs()?;
        // Durable from here: every record is in an fsynced file under a name
        // recovery finds. Giving the filled files their sealed names cannot
        // take it back; if it fails, the next open finishes it.
        self.done = true;
        let ids = Some((self.first, self.log.next_id - 1));
        if !self.created.is_empty()
            && let Err(e) = self.log.save_high_water()
        {
            self.log.incidents.push(format!("{e:#}; the high-water mark follows at the next file"));
        }
        for (path, stem) in std::mem::take(&mut self.filled) {
            if let Err(e) = self.log.move_sealed(&path, &stem) {
                self.log.incidents.push(format!("{e:#}; the next start finishes the seal"));
                return Ok(ids);
            }
        }
        if self.log.sync_dirs().is_err() {
            return Ok(ids);
        }
        self.log.poisoned = false;
        Ok(ids)
    }

    /// Takes the batch back: the active file it began with is cut to its old
    /// length and the files it created are removed. The log stays poisoned
    /// and is reopened from the files.
    fn roll_back(&mut self) -> Result<()> {
        self.log.active = None;
        self.filled.clear();
        if let Some((path, len)) = &self.undo {
            let f =
                OpenOptions::new().write(true).open(path).with_context(|| format!("cannot open {}", path.display()))?;
            f.set_len(*len)
                .and_then(|()| f.sync_all())
                .with_context(|| format!("cannot cut {} back", path.display()))?;
        }
        for path in &self.created {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
            }
        }
        File::open(&self.log.layout.active).and_then(|d| d.sync_all())?;
        Ok(())
    }
}

impl Drop for Appender<'_> {
    fn drop(&mut self) {
        if !self.done
            && let Err(e) = self.roll_back()
        {
            // Leave it to recovery, and say that this batch may be stored.
            self.log.incidents.push(format!(
                "a failed batch (ids from {}) could not be taken back: {e:#}; recovery keeps what reached the disk",
                self.first
            ));
        }
    }
}

/// Makes sure the file an [`Active`] writes to is the one under its name.
/// When it was deleted or replaced, its content is written again under the
/// name (from the open handle, which still holds every byte), a replacing
/// file is moved to `state/displaced/`, and the event is kept as an incident.
fn ensure_linked(layout: &Layout, a: &mut Active, incidents: &mut Vec<String>) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let ours = a.file.metadata().with_context(|| format!("cannot stat {}", a.path.display()))?;
    let named = fs::symlink_metadata(&a.path);
    let same = matches!(&named, Ok(m) if m.dev() == ours.dev() && m.ino() == ours.ino()) && ours.nlink() > 0;
    if same {
        return Ok(());
    }
    let what = if named.is_ok() {
        let aside = displace(layout, &a.path)?;
        format!("replaced by another file (moved to {})", aside.display())
    } else {
        "deleted".to_owned()
    };
    let (tmp, _) = crate::fsx::create_temp_exclusive(&layout.active, &a.stem)?;
    let mut copy = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(crate::fsx::NOFOLLOW)
        .open(&tmp)
        .with_context(|| format!("cannot open {}", tmp.display()))?;
    a.file.seek(SeekFrom::Start(0))?;
    std::io::copy(&mut std::io::Read::take(&a.file, a.len), &mut copy)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    copy.sync_all().with_context(|| format!("cannot sync {}", tmp.display()))?;
    fs::rename(&tmp, &a.path).with_context(|| format!("cannot put {} back", a.path.display()))?;
    File::open(&layout.active).and_then(|d| d.sync_all())?;
    a.file = copy;
    incidents.push(format!(
        "the active file {} was {what} while records were being written to it; it was written again from the \
         writer's open handle with all {} record(s), ids {}..{}",
        a.path.display(),
        a.count,
        a.first_id,
        a.first_id + a.count.max(1) - 1
    ));
    Ok(())
}

/// The high-water mark kept in the state directory `state`: `None` when
/// there is none, or it is not a number in the range of ids (never followed
/// through a link).
pub(crate) fn read_high_water(state: &Path) -> std::io::Result<Option<u64>> {
    let mut text = String::new();
    match crate::fsx::open_read_nofollow(&state.join(HIGH_WATER)) {
        Ok(mut f) => std::io::Read::read_to_string(&mut f, &mut text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(text.trim().parse::<u64>().ok().filter(|m| *m <= MAX_ID + 1))
}

/// Replaces the high-water mark in the state directory `state`, durably.
pub(crate) fn write_high_water(state: &Path, next: u64) -> Result<()> {
    crate::fsx::write_atomic(&state.join(HIGH_WATER), format!("{next}\n").as_bytes())
}

/// Moves a file the log cannot use to `state/displaced/` (kept for an
/// investigation) and returns where it went.
fn displace(layout: &Layout, path: &Path) -> Result<PathBuf> {
    let dir = layout.state.join("displaced");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let aside = dir.join(format!("{name}.{}", crate::fsx::random_hex(4)));
    fs::rename(path, &aside).with_context(|| format!("cannot move {} aside", path.display()))?;
    Ok(aside)
}

/// Renders a record for [`Appender::push_entry`]: its body
/// ([`write::record_body`]) followed by its chain hash up to the id
/// ([`chain::Partial`]). Neither needs the id, so entries are made on any
/// thread, and only the last block or two of the chain hash is left to the
/// single writer.
pub fn render_entry(out: &mut Vec<u8>, rec: &Record<'_>) {
    write::record_body(out, rec);
    FIELDS_BUF.with_borrow_mut(|buf| {
        buf.clear();
        chain::fields(rec, buf);
        Partial::absorb(buf).encode(out);
    });
}

thread_local! {
    /// Scratch space for [`render_entry`], reused record after record.
    static FIELDS_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn write_all_at_end(a: &mut Active, bytes: &[u8]) -> Result<()> {
    a.file.seek(SeekFrom::Start(a.len))?;
    a.file.write_all(bytes).with_context(|| format!("cannot write {}", a.path.display()))?;
    a.len += bytes.len() as u64;
    Ok(())
}

/// The `YYYYMMDDHHMMSS` part of a file stem.
pub fn stem_stamp(stem: &str) -> Option<NaiveDateTime> {
    let (_, stamp) = stem.rsplit_once('_')?;
    timestamp::parse_file_stamp(stamp)
}

/// What a look through an active file found.
pub(crate) struct Scan {
    pub(crate) header: Header,
    /// Chain value of the last complete record in sequence.
    pub(crate) last_chain: Option<Digest>,
    pub(crate) first_id: u64,
    pub(crate) count: u64,
    /// End of the last complete record (of the header when there is none).
    pub(crate) good_end: u64,
    file_len: u64,
    /// Seal and closing tag complete: the file only needs its rename.
    sealed: bool,
    /// The complete seal's `chain-end`: where the next file continues from.
    seal_chain_end: Option<Digest>,
    problem: Option<String>,
}

/// Reads an active file to find its last complete record. `None` when not
/// even the header is there (a crash right after the file was created).
fn scan_active(path: &Path) -> Result<Option<Scan>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    scan_active_file(file, path)
}

/// [`scan_active`] on a file already open (`path` names it in messages).
/// Readers that copy an active file while a writer appends use it on the
/// handle they copy from, so both see the same file.
pub(crate) fn scan_active_file(file: File, path: &Path) -> Result<Option<Scan>> {
    let file_len = file.metadata()?.len();
    let mut rd = XmlReader::new(BufReader::with_capacity(256 * 1024, file));
    let header = match rd.header() {
        Ok(h) => h.clone(),
        Err(_) if file_len < 512 => return Ok(None),
        Err(e) => bail!("{} is not an audit-trail file: {e}", path.display()),
    };
    let first_id = match header.first_id {
        Some(id) => id,
        None => bail!("{} has no first-id attribute; it was not written by audit-trail", path.display()),
    };
    let mut count = 0;
    let mut problem = None;
    let mut before = rd.good_end();
    let mut last_chain = None;
    loop {
        match rd.next_record() {
            Ok(Some(rec)) => {
                if rec.id != first_id + count {
                    problem = Some(format!("record id {} where {} was expected", rec.id, first_id + count));
                    break;
                }
                last_chain = rec.chain.or(last_chain);
                count += 1;
                before = rd.good_end();
            }
            Ok(None) => break,
            Err(e) => {
                problem = Some(format!("cut off {e}"));
                break;
            }
        }
    }
    // The end of the last record that was in sequence: a record with the
    // wrong id is cut along with whatever follows it.
    let good_end = before;
    let sealed = problem.is_none()
        && rd.closed()
        && rd.seal().is_some_and(|s| s.first_id == first_id && s.records == count && count > 0);
    if problem.is_none() && !sealed && rd.seal_end().is_some() {
        problem = Some("trailer cut short".into());
    }
    let seal_chain_end = rd.seal().filter(|_| sealed).and_then(|s| s.chain_end);
    Ok(Some(Scan { header, last_chain, first_id, count, good_end, file_len, sealed, seal_chain_end, problem }))
}

/// Puts the stylesheet next to the sealed files (for xsltproc, or a browser
/// when the files are served over http), and replaces one that this version
/// does not ship (an older version's), so every data directory gets the
/// fixes the stylesheet receives.
fn install_stylesheet(dir: &Path) -> Result<()> {
    let path = dir.join(write::STYLESHEET);
    let current = crate::fsx::open_read_nofollow(&path).ok().and_then(|mut f| {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut text).ok().map(|_| text)
    });
    if current.as_deref() != Some(crate::STYLESHEET_XSL.as_bytes()) {
        // Written aside (created exclusively under a random name, so never
        // through a planted link) and renamed, so a crash never leaves half a
        // stylesheet.
        let (tmp, mut f) = crate::fsx::create_temp_exclusive(dir, write::STYLESHEET)?;
        let written = f
            .write_all(crate::STYLESHEET_XSL.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))
            .and_then(|()| fs::rename(&tmp, &path).with_context(|| format!("cannot create {}", path.display())));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    }
    Ok(())
}

use chrono::Timelike;
