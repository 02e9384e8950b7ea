//! Offboard uploads (SPEC §6): each sealed file goes once to each target.
//!
//! For every target a run:
//! - takes the target's lock (`state/uploads/<target>.lock`), so a manual
//!   upload and the scheduled job never send the same file twice at once;
//! - lists the local files the target's ledger does not hold yet (with
//!   `format = "gz"`, the default, sealed files not archived yet are
//!   archived first);
//! - logs in once and, for each file, writes `.<name>.part`, checks its
//!   size on the server, renames it to `<name>` and appends a ledger line.
//!   A file already on the server under its final name with the right size
//!   (a run that stopped between the rename and the ledger line) is recorded
//!   without sending it again; one with another size is left alone and
//!   reported, never overwritten;
//! - on a failure, reconnects and goes on with doubling delays, `retries`
//!   times; what is still missing is sent by the next run.
//!
//! Nothing local is ever removed here; purge keeps files still pending.

pub mod ftp;
pub mod ledger;
pub mod local;
pub mod remote;
pub mod sftp;
pub mod sftp3;

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use sha2::{Digest, Sha256};

use crate::config::{Config, TargetConfig};
use crate::config::{TargetProtocol, UploadFormat};
use crate::fsx::human_bytes;
use crate::store::layout::{FileKind, Layout};
use crate::timestamp::{self, Clock};
use ledger::LedgerEntry;
pub use remote::{RResult, Remote, RemoteError};

/// Opens a logged-in connection to a target, reporting each step that worked.
pub fn connect(cfg: &TargetConfig, step: &mut dyn FnMut(&str, String)) -> RResult<Box<dyn Remote>> {
    match cfg.protocol {
        TargetProtocol::Sftp => sftp::connect(cfg, step),
        TargetProtocol::Ftp | TargetProtocol::Ftps => ftp::connect(cfg, step),
        TargetProtocol::Local => local::connect(cfg, step),
    }
}

/// What a run shows while it works (a progress bar on a terminal, nothing
/// in the service).
pub trait Progress {
    fn begin(&self, _target: &str, _files: usize, _bytes: u64) {}
    fn file(&self, _name: &str) {}
    fn advance(&self, _bytes: u64) {}
    fn retry(&self, _reason: &str, _delay: Duration) {}
    fn end(&self) {}
}

/// No progress display.
pub struct Quiet;
impl Progress for Quiet {}

/// One local file to send, under the name it gets on the server.
#[derive(Debug, Clone)]
struct LocalFile {
    name: String,
    path: PathBuf,
    /// The path is a `.gz` whose content is sent decompressed.
    gunzip: bool,
    /// Bytes expected on the server, when known without reading the file.
    size: Option<u64>,
    /// SHA-256 the archive manifest recorded for a `.gz` sent as it is:
    /// what is sent must still match it.
    expected_sha256: Option<String>,
}

impl LocalFile {
    fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        let f = BufReader::with_capacity(256 * 1024, File::open(&self.path)?);
        Ok(if self.gunzip { Box::new(flate2::read::MultiGzDecoder::new(f)) } else { Box::new(f) })
    }

    /// SHA-256 and length of what is sent.
    fn digest(&self) -> io::Result<(String, u64)> {
        crate::fsx::sha256_of(self.open()?)
    }
}

/// Bytes read, hashed and handed to the sender at a time: large enough that
/// libssh2 keeps many SFTP writes in flight.
const CHUNK: usize = 1024 * 1024;
/// Chunks read ahead of the sender.
const AHEAD: usize = 4;

/// Reads a local file on a thread of its own, hashing it there, and hands
/// the chunks to the sender: reading and SHA-256 overlap with the network.
/// The sender writes straight from the chunks ([`BufRead`]) and gives them
/// back, so a transfer of any size uses the same few buffers.
struct Prefetch {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    back: std::sync::mpsc::SyncSender<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
    /// The sender has seen the end of the input.
    finished: bool,
}

impl BufRead for Prefetch {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    let used = std::mem::replace(&mut self.chunk, chunk);
                    if used.capacity() > 0 {
                        let _ = self.back.try_send(used);
                    }
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    self.finished = true;
                    return Ok(&[]);
                }
            }
        }
        Ok(&self.chunk[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.chunk.len());
    }
}

impl Read for Prefetch {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = buf.len().min(avail.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// Sends `src` through `send` while a second thread reads and hashes it;
/// returns what `send` returned and the hex SHA-256 of everything read (an
/// error when reading failed, or when `send` stopped before the end).
fn send_hashed<T>(mut src: Box<dyn Read + Send>, send: impl FnOnce(&mut dyn BufRead) -> T) -> (T, io::Result<String>) {
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(AHEAD);
        let (back, returned) = std::sync::mpsc::sync_channel::<Vec<u8>>(AHEAD + 2);
        let reader = scope.spawn(move || {
            let mut hash = Sha256::new();
            loop {
                let mut chunk = returned.try_recv().unwrap_or_default();
                chunk.clear();
                // A whole chunk (short only at the end of the input).
                match (&mut src).take(CHUNK as u64).read_to_end(&mut chunk) {
                    Ok(0) => return Ok(hex::encode(hash.finalize())),
                    Ok(_) => {
                        hash.update(&chunk);
                        if tx.send(Ok(chunk)).is_err() {
                            return Err(io::Error::other("the transfer stopped"));
                        }
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        let _ = tx.send(Err(e));
                        return Err(io::Error::other(msg));
                    }
                }
            }
        });
        let mut prefetch = Prefetch { rx, back, chunk: Vec::new(), pos: 0, finished: false };
        let out = send(&mut prefetch);
        let finished = prefetch.finished;
        drop(prefetch);
        let hash = reader.join().unwrap_or_else(|_| Err(io::Error::other("the reading thread failed")));
        // The reader may have read to the end while the sender stopped early.
        let hash = hash.and_then(|h| if finished { Ok(h) } else { Err(io::Error::other("the transfer stopped")) });
        (out, hash)
    })
}

/// The files a target receives in its format, sorted by name (which is the
/// order they were written).
fn local_files(layout: &Layout, format: UploadFormat) -> Result<Vec<LocalFile>> {
    let sealed = crate::fsx::dir_names(&layout.sealed)?;
    let archived = crate::fsx::dir_names(&layout.archive)?;
    let mut out = Vec::new();
    let manifest = crate::store::manifest::read_manifest(layout).unwrap_or_default();
    let entry = |gz_name: &str| manifest.iter().find(|e| e.file == gz_name);
    if format == UploadFormat::Gz {
        for name in archived.iter().filter(|n| FileKind::Archived.stem_of(n).is_some()) {
            let path = layout.archive.join(name);
            let size = std::fs::metadata(&path).ok().map(|m| m.len());
            let expected_sha256 = entry(name).map(|e| e.sha256.clone());
            out.push(LocalFile { name: name.clone(), path, gunzip: false, size, expected_sha256 });
        }
    } else {
        let plain: HashSet<&String> = sealed.iter().filter(|n| FileKind::Sealed.stem_of(n).is_some()).collect();
        for name in &plain {
            let path = layout.sealed.join(name);
            let size = std::fs::metadata(&path).ok().map(|m| m.len());
            out.push(LocalFile { name: (*name).clone(), path, gunzip: false, size, expected_sha256: None });
        }
        for name in archived.iter().filter(|n| FileKind::Archived.stem_of(n).is_some()) {
            let plain_name = name.trim_end_matches(".gz").to_owned();
            if plain.contains(&plain_name) {
                continue;
            }
            let size = entry(name).map(|e| e.plain_size);
            let path = layout.archive.join(name);
            out.push(LocalFile { name: plain_name, path, gunzip: true, size, expected_sha256: None });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// What one run did for one target.
#[derive(Debug, Default, Clone)]
pub struct TargetReport {
    pub target: String,
    /// `protocol host:port`.
    pub endpoint: String,
    /// Files sent in this run, with their sizes.
    pub sent: Vec<(String, u64)>,
    /// Files found complete on the server and recorded without sending them.
    pub adopted: Vec<String>,
    /// Files the ledger already held.
    pub already: usize,
    /// Files left alone, with the reason (e.g. a different file of the same name on the server).
    pub refused: Vec<(String, String)>,
    /// Files still to send when the run ended.
    pub pending: usize,
    /// Why the run stopped before sending everything.
    pub error: Option<String>,
    /// Whether that error would meet the next run again (trust, login,
    /// configuration) rather than go away (network, server, disk full).
    pub permanent: bool,
    pub attempts: u32,
    pub elapsed: Duration,
    /// Notes from archiving before the upload.
    pub notes: Vec<String>,
}

impl TargetReport {
    pub fn ok(&self) -> bool {
        self.error.is_none() && self.refused.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.sent.iter().map(|(_, n)| n).sum()
    }
}

impl fmt::Display for TargetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): ", self.target, self.endpoint)?;
        if let Some(e) = &self.error {
            write!(f, "FAILED: {e}")?;
            if self.attempts > 1 {
                write!(f, " (after {} attempts)", self.attempts)?;
            }
            write!(f, "; ")?;
        }
        let secs = self.elapsed.as_secs_f64();
        write!(f, "uploaded {} file(s), {}", self.sent.len(), human_bytes(self.bytes()))?;
        if !self.sent.is_empty() && secs > 0.0 {
            write!(f, " in {secs:.1} s ({}/s)", human_bytes((self.bytes() as f64 / secs) as u64))?;
        }
        if !self.adopted.is_empty() {
            write!(f, "; {} already complete on the server, recorded", self.adopted.len())?;
        }
        write!(f, "; {} uploaded earlier", self.already)?;
        if self.pending > 0 {
            write!(f, "; {} still pending", self.pending)?;
        }
        for (name, why) in &self.refused {
            write!(f, "; {name} NOT uploaded: {why}")?;
        }
        Ok(())
    }
}

/// Runs an upload to `only` (any target, even a disabled one), or to every
/// enabled target. Errors are local problems (ledger, lock, archive); a
/// target that cannot be reached is a report with `error` set.
pub fn run(
    layout: &Layout,
    config: &Config,
    only: Option<&str>,
    clock: &dyn Clock,
    progress: &dyn Progress,
) -> Result<Vec<TargetReport>> {
    let names: Vec<&String> = match only {
        Some(name) => {
            let Some((n, _)) = config.targets.get_key_value(name) else {
                bail!("no target {name:?} in the configuration ({})", target_list(config));
            };
            vec![n]
        }
        None => config.targets.iter().filter(|(_, t)| t.enabled).map(|(n, _)| n).collect(),
    };
    if names.is_empty() {
        bail!("no enabled target in the configuration ({})", target_list(config));
    }
    let mut reports = Vec::new();
    for name in names {
        reports.push(upload_target(layout, name, &config.targets[name], clock, progress)?);
    }
    Ok(reports)
}

fn target_list(config: &Config) -> String {
    if config.targets.is_empty() {
        "none is configured: add a [targets.NAME] section".into()
    } else {
        let names: Vec<String> =
            config.targets.iter().map(|(n, t)| if t.enabled { n.clone() } else { format!("{n} (disabled)") }).collect();
        format!("targets: {}", names.join(", "))
    }
}

/// Holds a target's upload lock.
struct TargetLock {
    _file: File,
}

fn lock_target(layout: &Layout, target: &str) -> Result<TargetLock> {
    let path = ledger::dir(layout).join(format!("{target}.lock"));
    let file = crate::fsx::open_lock_file(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(TargetLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(anyhow!("{target}: another upload to this target is running; try again when it is done"))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

/// Delay before retry number `n` (1-based): doubling from `retry_delay_ms`, at most 60 s.
fn backoff(cfg: &TargetConfig, n: u32) -> Duration {
    let ms = cfg.retry_delay_ms.saturating_mul(1u64 << (n - 1).min(16));
    Duration::from_millis(ms.min(60_000))
}

enum FileOutcome {
    Sent(u64),
    Adopted,
}

enum FileError {
    /// This file cannot go (e.g. another file of that name on the server); the others can.
    Refused(String),
    /// The connection or server failed: reconnect (or stop, when permanent).
    Remote(RemoteError),
    /// A local problem (ledger, reading the file): stop the run.
    Local(anyhow::Error),
}

impl From<RemoteError> for FileError {
    fn from(e: RemoteError) -> Self {
        FileError::Remote(e)
    }
}

fn upload_target(
    layout: &Layout,
    name: &str,
    cfg: &TargetConfig,
    clock: &dyn Clock,
    progress: &dyn Progress,
) -> Result<TargetReport> {
    let started = Instant::now();
    let _lock = lock_target(layout, name)?;
    let mut ledger = ledger::Writer::open(layout, name)?;
    let mut report = TargetReport { target: name.to_owned(), endpoint: cfg.describe(), ..TargetReport::default() };

    if cfg.format == UploadFormat::Gz {
        let sealed = crate::fsx::dir_names(&layout.sealed)?;
        if sealed.iter().any(|n| FileKind::Sealed.stem_of(n).is_some()) {
            let a = crate::maintenance::archive::archive(layout, clock)
                .context("archiving sealed files before the upload")?;
            report.notes.extend(a.notes);
            // The damaged ones stay plain, and are not sent as .gz; the rest go.
            report.notes.extend(a.damaged.iter().map(|d| format!("not archived, damaged: {d}")));
        }
    }
    let done: HashSet<String> =
        ledger::read(layout, name)?.into_iter().map(|e| ledger::stem(&e.file).to_owned()).collect();
    let all = local_files(layout, cfg.format)?;
    let total = all.len();
    let mut queue: VecDeque<LocalFile> = all.into_iter().filter(|f| !done.contains(ledger::stem(&f.name))).collect();
    report.already = total - queue.len();
    if queue.is_empty() {
        report.elapsed = started.elapsed();
        return Ok(report);
    }
    progress.begin(name, queue.len(), queue.iter().map(|f| f.size.unwrap_or(0)).sum());

    let mut failures = 0u32;
    while !queue.is_empty() {
        if failures > cfg.retries {
            break;
        }
        if failures > 0 {
            let delay = backoff(cfg, failures);
            progress.retry(report.error.as_deref().unwrap_or(""), delay);
            std::thread::sleep(delay);
        }
        report.attempts += 1;
        let mut remote = match connect(cfg, &mut |_, _| {}) {
            Ok(r) => r,
            Err(e) => {
                report.error = Some(e.reason);
                report.permanent = e.permanent;
                report.permanent = e.permanent;
                failures += 1;
                if e.permanent {
                    break;
                }
                continue;
            }
        };
        if let Err(e) = remote.ensure_dir(&cfg.remote_dir) {
            report.error = Some(e.reason);
            failures += 1;
            remote.close();
            if e.permanent {
                break;
            }
            continue;
        }
        // One listing tells which files need a size check (a run stopped
        // between rename and ledger line); without it, each file is asked for.
        let existing = remote.list(&cfg.remote_dir).ok();
        let mut stop = false;
        while let Some(file) = queue.front().cloned() {
            progress.file(&file.name);
            let maybe_there = existing.as_ref().is_none_or(|names| names.contains(&file.name));
            match send_one(&mut *remote, &mut ledger, cfg, &file, maybe_there, clock, progress) {
                Ok(FileOutcome::Sent(n)) => {
                    report.sent.push((file.name.clone(), n));
                    report.error = None;
                    failures = 0;
                }
                Ok(FileOutcome::Adopted) => {
                    report.adopted.push(file.name.clone());
                    failures = 0;
                }
                Err(FileError::Refused(why)) => report.refused.push((file.name.clone(), why)),
                Err(FileError::Local(e)) => {
                    remote.close();
                    progress.end();
                    ledger.sync()?;
                    return Err(e);
                }
                Err(FileError::Remote(e)) => {
                    report.error = Some(e.reason);
                    report.permanent = e.permanent;
                    failures += 1;
                    stop = e.permanent;
                    break;
                }
            }
            queue.pop_front();
        }
        remote.close();
        if stop {
            break;
        }
    }
    progress.end();
    ledger.sync()?;
    report.pending = queue.len();
    if queue.is_empty() {
        report.error = None;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

fn send_one(
    remote: &mut dyn Remote,
    ledger: &mut ledger::Writer,
    cfg: &TargetConfig,
    file: &LocalFile,
    maybe_there: bool,
    clock: &dyn Clock,
    progress: &dyn Progress,
) -> Result<FileOutcome, FileError> {
    let final_path = remote::join(&cfg.remote_dir, &file.name);
    let part_path = remote::join(&cfg.remote_dir, &format!(".{}.part", file.name));
    let mut record = |size: u64, sha256: String| -> Result<(), FileError> {
        let entry = LedgerEntry { file: file.name.clone(), size, sha256, time: timestamp::format(&clock.now()) };
        ledger.append(&entry).map_err(FileError::Local)
    };
    let local_err = |e: io::Error| FileError::Local(anyhow!("cannot read {}: {e}", file.path.display()));

    if maybe_there && let Some(on_server) = remote.size(&final_path)? {
        let (sha256, size) = file.digest().map_err(local_err)?;
        if on_server == size {
            progress.advance(size);
            record(size, sha256)?;
            return Ok(FileOutcome::Adopted);
        }
        return Err(FileError::Refused(format!(
            "{final_path} already exists on the server with {on_server} bytes, not the {size} bytes of this \
             file; it is left as it is (move it away on the server to have this file uploaded)"
        )));
    }
    // A `.part` left by a broken transfer is overwritten; a server that
    // refuses to overwrite (proftpd's default `AllowOverwrite off`) has it
    // removed first, and the file is written once more.
    let src = file.open().map_err(local_err)?;
    let (mut sent, mut sha256) = send_hashed(src, |r| remote.put(&part_path, r, &mut |n| progress.advance(n)));
    if sent.is_err() && matches!(remote.size(&part_path), Ok(Some(_))) && remote.remove(&part_path).is_ok() {
        let src = file.open().map_err(local_err)?;
        (sent, sha256) = send_hashed(src, |r| remote.put(&part_path, r, &mut |n| progress.advance(n)));
    }
    // A failed transfer is the connection's problem, even though the reader then stopped too.
    let sent = sent?;
    let sha256 = sha256.map_err(local_err)?;
    if let Some(expected) = file.expected_sha256.as_ref().filter(|e| **e != sha256) {
        let _ = remote.remove(&part_path);
        return Err(FileError::Refused(format!(
            "the local file {} no longer matches the archive manifest (SHA-256 {sha256}, manifest {expected}): \
             it was altered or damaged after archiving; run `audit-trail verify`",
            file.path.display()
        )));
    }
    match remote.size(&part_path)? {
        Some(n) if n == sent => {}
        other => {
            let _ = remote.remove(&part_path);
            let held = other.map_or("no file".to_owned(), |n| format!("{n} bytes"));
            return Err(FileError::Remote(RemoteError::retry(format!(
                "size check failed for {part_path}: the server holds {held}, {sent} bytes were sent"
            ))));
        }
    }
    remote.rename(&part_path, &final_path)?;
    record(sent, sha256)?;
    Ok(FileOutcome::Sent(sent))
}

/// Where a target stands, for `status`: no secret, only counts and times.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TargetStatus {
    pub name: String,
    pub endpoint: String,
    pub enabled: bool,
    /// Files its ledger holds.
    pub uploaded: usize,
    /// Local sealed or archived files it has not received yet.
    pub pending: usize,
    /// When the newest ledger line was written.
    pub last_upload: Option<String>,
}

/// The upload state of every configured target.
pub fn status(layout: &Layout, config: &Config) -> Result<Vec<TargetStatus>> {
    let mut stems: HashSet<String> = HashSet::new();
    for kind in [FileKind::Sealed, FileKind::Archived] {
        for n in crate::fsx::dir_names(layout.dir(kind))? {
            if let Some(stem) = kind.stem_of(&n) {
                stems.insert(stem.to_owned());
            }
        }
    }
    let mut out = Vec::new();
    for (name, t) in &config.targets {
        let entries = ledger::read(layout, name)?;
        let done: HashSet<&str> = entries.iter().map(|e| ledger::stem(&e.file)).collect();
        out.push(TargetStatus {
            name: name.clone(),
            endpoint: t.describe(),
            enabled: t.enabled,
            uploaded: entries.len(),
            pending: stems.iter().filter(|s| !done.contains(s.as_str())).count(),
            last_upload: entries.last().map(|e| e.time.clone()),
        });
    }
    Ok(out)
}

/// One step of `test-target`.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// Connects, logs in, makes sure the remote directory exists, writes a probe
/// file under a temporary name, renames it, reads back its size and removes
/// it, reporting each step; stops at the first failure. True when all worked.
pub fn test_target(cfg: &TargetConfig, on_step: &mut dyn FnMut(&Step)) -> bool {
    // The steps of connecting, in order: a failure belongs to the first one not reported as done.
    let stages: &[&str] = match cfg.protocol {
        TargetProtocol::Sftp => &["connect", "host key", "login", "sftp"],
        TargetProtocol::Ftps => &["connect", "TLS", "login"],
        TargetProtocol::Local => &["directory"],
        TargetProtocol::Ftp => &["connect", "login"],
    };
    let mut passed = 0;
    let connected = connect(cfg, &mut |name, detail| {
        passed += 1;
        on_step(&Step { name: name.into(), ok: true, detail });
    });
    let mut remote = match connected {
        Ok(r) => r,
        Err(e) => {
            let name = stages.get(passed).copied().unwrap_or("connect");
            on_step(&Step { name: name.into(), ok: false, detail: e.reason });
            return false;
        }
    };
    let probe_name = format!(".audit-trail-probe-{}-{}", std::process::id(), chrono::Utc::now().timestamp_millis());
    let probe = remote::join(&cfg.remote_dir, &probe_name);
    let part = remote::join(&cfg.remote_dir, &format!("{probe_name}.part"));
    let content = format!("audit-trail test-target probe {probe_name}\n").into_bytes();
    let len = content.len() as u64;
    let shown_dir = if cfg.remote_dir.is_empty() { "(login directory)".to_owned() } else { cfg.remote_dir.clone() };
    type StepFn<'a> = Box<dyn FnOnce(&mut dyn Remote) -> RResult<String> + 'a>;
    let steps: Vec<(&str, StepFn)> = vec![
        (
            "remote directory",
            Box::new(|r| {
                Ok(if r.ensure_dir(&cfg.remote_dir)? {
                    format!("{shown_dir} created")
                } else {
                    format!("{shown_dir} exists")
                })
            }),
        ),
        (
            "write",
            Box::new(|r| {
                let n = r.put(&part, &mut &content[..], &mut |_| {})?;
                Ok(format!("{n} bytes to {part}"))
            }),
        ),
        (
            "rename",
            Box::new(|r| {
                r.rename(&part, &probe)?;
                Ok(format!("to {probe}"))
            }),
        ),
        (
            "size",
            Box::new(|r| match r.size(&probe)? {
                Some(n) if n == len => Ok(format!("{n} bytes, as written")),
                Some(n) => Err(RemoteError::retry(format!("the server reports {n} bytes, {len} were written"))),
                None => Err(RemoteError::retry(format!("{probe} is not on the server after the rename"))),
            }),
        ),
        (
            "remove",
            Box::new(|r| {
                r.remove(&probe)?;
                Ok(format!("{probe} removed"))
            }),
        ),
    ];
    let mut all_ok = true;
    for (name, step) in steps {
        match step(&mut *remote) {
            Ok(detail) => on_step(&Step { name: name.into(), ok: true, detail }),
            // Uploads never delete: an upload-only (drop-box) account works
            // as a target even when it may not remove the probe.
            Err(e) if name == "remove" => {
                let detail = format!(
                    "not allowed ({}); uploads never delete, so the target works, but the probe {probe} stays on \
                     the server: remove it there",
                    e.reason
                );
                on_step(&Step { name: "remove (note)".into(), ok: true, detail });
            }
            Err(e) => {
                on_step(&Step { name: name.into(), ok: false, detail: e.reason });
                all_ok = false;
                break;
            }
        }
    }
    if !all_ok {
        // Leave nothing behind.
        for p in [&part, &probe] {
            if matches!(remote.size(p), Ok(Some(_))) {
                let _ = remote.remove(p);
            }
        }
    }
    remote.close();
    all_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source that returns at most 7,777 bytes per read, like a decompressor.
    struct Dribble(Vec<u8>, usize);

    impl Read for Dribble {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(7777).min(self.0.len() - self.1);
            buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
            self.1 += n;
            Ok(n)
        }
    }

    #[test]
    fn send_hashed_delivers_every_byte_and_hashes_what_was_read() {
        let data: Vec<u8> = (0..(3 * CHUNK + CHUNK / 2 + 13)).map(|i| (i * 31 % 251) as u8).collect();
        let (sent, hash) = send_hashed(Box::new(Dribble(data.clone(), 0)), |r| {
            let mut out = Vec::new();
            remote::copy(r, &mut out, &mut |_| {}).map(|_| out)
        });
        assert!(sent.ok() == Some(data.clone()), "the receiver got exactly the input");
        assert_eq!(hash.unwrap(), hex::encode(Sha256::digest(&data)));

        // A sender that stops early gets no hash for a file it did not send
        // whole, even when the reader got to the end before it stopped.
        for len in [100, data.len()] {
            let (_, hash) = send_hashed(Box::new(Dribble(data[..len].to_vec(), 0)), |r| {
                let mut first = [0u8; 10];
                r.read_exact(&mut first)
            });
            assert!(hash.is_err(), "{len} bytes");
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let cfg: TargetConfig =
            toml::from_str("protocol = 'local'\nremote_dir = '/x'\nretry_delay_ms = 500\n").unwrap();
        assert_eq!(backoff(&cfg, 1), Duration::from_millis(500));
        assert_eq!(backoff(&cfg, 3), Duration::from_millis(2000));
        assert_eq!(backoff(&cfg, 40), Duration::from_secs(60));
    }
}
