//! Archiving: sealed files compressed into `archive/<name>.xml.gz` and
//! recorded in `archive/manifest.jsonl` (SPEC §5, the `archive` job).
//!
//! # Order of steps, and what a crash leaves
//!
//! For each sealed `audit_trail/<name>.xml`:
//!
//! 1. compress into `state/tmp/.<name>.xml.gz.<random>.partial` (created
//!    exclusively; the same filesystem as `archive/`, which thus only ever
//!    holds complete files) and fsync it;
//! 2. verify it: decompress what is on disk and compare the SHA-256 of the
//!    content with that of the plain file;
//! 3. rename it to `archive/<name>.xml.gz` and fsync the directory;
//! 4. append the manifest line and fsync the manifest;
//! 5. only then remove the plain file, and fsync its directory.
//!
//! A crash therefore leaves the plain file alone, or the plain file and a
//! verified `.gz` (with or without its manifest line). The next run removes
//! leftover partial files (in `state/tmp/`, and in `archive/` where earlier
//! versions wrote them), checks a `.gz` that has a plain twin against it
//! and finishes the steps that were missing; a manifest line is added only
//! for a file that has none, so lines are never duplicated.
//!
//! # Format
//!
//! The `.gz` is one gzip member (RFC 1952) holding one deflate stream
//! (RFC 1951), so every gzip reader reads it whole, including those that
//! decode a single member (zlib's `inflate`, Python's `zlib` with
//! `wbits=31`, a browser's `DecompressionStream`). All cores still compress
//! it at once, as `pigz` does: the plain file is cut into 512 KiB slices,
//! each slice is deflated on its own and ended with a sync flush (an empty
//! stored block that leaves the stream byte-aligned and not final), the
//! slices are written in order, an empty final block closes the stream, and
//! the trailer's CRC-32 is the slices' CRCs combined. A slice never refers
//! back to an earlier one, so each is valid where it stands.
//!
//! Archives written by earlier versions are several members (one per
//! slice), which `gzip -d`, `zcat` and multi-member readers read as one
//! stream (RFC 1952 §2.2); audit-trail reads both.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use flate2::{Compress, Compression, Crc, Decompress, FlushCompress, FlushDecompress, Status};
use sha2::{Digest, Sha256};

use crate::fsx::{human_bytes, sync_dir};
use crate::maintenance::MaintenanceLock;
use crate::store::index::IndexEntry;
use crate::store::layout::{FileKind, Layout};
use crate::store::manifest::{ManifestEntry, append_manifest, manifest_path, read_manifest_raw};
use crate::store::xml::scan::ContentScan;
use crate::timestamp::{self, Clock};

/// Suffix of a compressed file being written.
const PARTIAL_SUFFIX: &str = ".partial";
/// Bytes of plain text deflated on their own (one slice per core at a time).
const SLICE: usize = 1 << 19;
/// Files compressed at once, each on all cores: two, so that one file's
/// fsyncs and last slices overlap the next file's compression.
const FILES_AT_ONCE: usize = 2;
/// The gzip header: deflate, no flags, no modification time, no extra flags,
/// operating system unknown (RFC 1952 §2.3).
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
/// An empty final deflate block with fixed codes: BFINAL=1, BTYPE=01, then the
/// end-of-block code (RFC 1951 §3.2.6).
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];
/// Deflate level. zlib-rs follows zlib-ng, whose level 4 (its "medium"
/// strategy) makes archives the size of `gzip -6`'s (the default of gzip
/// and zlib; 1.00x on the benchmark's records, where zlib-rs at level 6 is
/// 0.96x) for about 70% of the work of its own level 6. `benches/archive.rs`
/// reports the size next to `gzip -6`'s, against an aim of at most 1.02x.
const LEVEL: u32 = 4;

/// A file archived by one run.
#[derive(Debug, Clone)]
pub struct ArchivedFile {
    pub file: String,
    pub plain_size: u64,
    pub size: u64,
}

/// What an archive run did.
#[derive(Debug, Default)]
pub struct ArchiveReport {
    /// Files compressed by this run.
    pub archived: Vec<ArchivedFile>,
    /// Files whose archiving an earlier, interrupted run had started, finished now.
    pub completed: Vec<String>,
    /// Repairs made before starting (leftover partial files, a torn manifest line).
    pub notes: Vec<String>,
    /// Sealed files left in place because they are damaged (no seal, or a
    /// `.gz` beside them that holds something else); the others are
    /// archived all the same.
    pub damaged: Vec<String>,
    /// Plain bytes read and compressed bytes written by this run.
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl std::fmt::Display for ArchiveReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.archived.is_empty() && self.completed.is_empty() {
            return write!(f, "nothing to archive");
        }
        write!(
            f,
            "archived {} file(s): {} -> {}",
            self.archived.len(),
            human_bytes(self.bytes_in),
            human_bytes(self.bytes_out)
        )?;
        if self.bytes_in > 0 {
            write!(f, " ({:.1}%)", self.bytes_out as f64 * 100.0 / self.bytes_in as f64)?;
        }
        if !self.completed.is_empty() {
            write!(f, "; finished {} interrupted earlier: {}", self.completed.len(), self.completed.join(", "))?;
        }
        if !self.damaged.is_empty() {
            write!(f, "; {} damaged file(s) left in place", self.damaged.len())?;
        }
        Ok(())
    }
}

impl ArchiveReport {
    /// The error to end with when damaged files were left in place
    /// ([`crate::error::Kind::Tampered`], exit 3), naming them.
    pub fn damage(&self) -> Option<anyhow::Error> {
        (!self.damaged.is_empty()).then(|| {
            crate::error::failure(
                crate::error::Kind::Tampered,
                format!(
                    "{} file(s) left in place, damaged (run `audit-trail verify`): {}",
                    self.damaged.len(),
                    self.damaged.join("; ")
                ),
            )
        })
    }
}

/// Compresses every sealed file into `archive/`, verifies it, records it in
/// the manifest and removes the plain file. Safe to run again at any time,
/// and after a crash at any point; waits for other maintenance jobs.
pub fn archive(layout: &Layout, clock: &dyn Clock) -> Result<ArchiveReport> {
    let _lock = MaintenanceLock::acquire(layout)?;
    fs::create_dir_all(&layout.archive).with_context(|| format!("cannot create {}", layout.archive.display()))?;
    let mut report = ArchiveReport::default();

    // Leftovers of an interrupted run.
    let mut removed = false;
    for name in crate::fsx::dir_names(&layout.archive)? {
        if name.starts_with('.') && (name.ends_with(PARTIAL_SUFFIX) || name.ends_with(".tmp")) {
            crate::fsx::remove_if_exists(&layout.archive.join(&name))?;
            report.notes.push(format!("removed {name}, left by an interrupted run"));
            removed = true;
        }
    }
    if removed {
        sync_dir(&layout.archive)?;
    }
    for name in crate::maintenance::clean_tmp_dir(layout)? {
        report.notes.push(format!("removed state/tmp/{name}, left by an interrupted run"));
    }
    let (entries, good, len) = read_manifest_raw(layout)?;
    if good < len {
        let p = manifest_path(layout);
        let f = crate::fsx::open_write_nofollow(&p).with_context(|| format!("cannot open {}", p.display()))?;
        f.set_len(good).and_then(|()| f.sync_all()).with_context(|| format!("cannot repair {}", p.display()))?;
        report.notes.push(format!("removed {} bytes of an unfinished last line from {}", len - good, p.display()));
    }
    let mut listed: HashSet<String> = entries.into_iter().map(|e| e.file).collect();

    let mut todo = Vec::new();
    for name in crate::fsx::dir_names(&layout.sealed)? {
        let Some(stem) = FileKind::Sealed.stem_of(&name) else { continue };
        if name.starts_with('.') {
            continue;
        }
        let plain = layout.sealed.join(&name);
        if let Some(why) = not_a_file(&plain) {
            report.damaged.push(why);
            continue;
        }
        let gz_name = FileKind::Archived.file_name(stem);
        let gz = layout.archive.join(&gz_name);
        if gz.exists() {
            match finish_interrupted(layout, &plain, &gz, &mut listed, clock)? {
                None => report.completed.push(gz_name),
                Some(damage) => report.damaged.push(damage),
            }
            continue;
        }
        todo.push((stem.to_owned(), plain, gz));
    }
    // Two files at once (each on all cores as well), committed in order:
    // with files of the default size, the cost of one file (its fsyncs, the
    // tail of its slices) is hidden behind the compression of the next.
    let index = crate::store::index::read(layout);
    let mut todo = todo.into_iter();
    pipeline(
        FILES_AT_ONCE,
        || Ok(todo.next()),
        |_| {},
        |(stem, plain, gz)| stage(layout, stem, plain, gz),
        |staged| {
            let staged = match staged {
                Staging::Ready(s) => *s,
                Staging::Damaged(why) => {
                    report.damaged.push(why);
                    return Ok(());
                }
            };
            let done = commit(layout, staged, &index, clock)?;
            listed.insert(done.file.clone());
            report.bytes_in += done.plain_size;
            report.bytes_out += done.size;
            report.archived.push(done);
            Ok(())
        },
    )?;

    // A compressed file with no manifest line and no plain twin (a crash
    // between rename and manifest, then a removed plain file; or files copied
    // in by hand): describe it so the manifest covers the whole archive.
    for name in crate::fsx::dir_names(&layout.archive)? {
        let Some(stem) = FileKind::Archived.stem_of(&name) else { continue };
        // One beside its plain twin was dealt with above.
        if name.starts_with('.') || listed.contains(&name) || layout.file(FileKind::Sealed, stem).exists() {
            continue;
        }
        if let Some(why) = not_a_file(&layout.archive.join(&name)) {
            report.damaged.push(why);
            continue;
        }
        let entry = match entry_from_gz(&layout.archive.join(&name), clock) {
            Ok((entry, _)) => entry,
            Err(e) => {
                report.damaged.push(format!("{e:#}"));
                continue;
            }
        };
        append_manifest(layout, &entry)?;
        listed.insert(name.clone());
        report.notes.push(format!("added the missing manifest entry of {name}"));
    }
    let indexed = index_unindexed(layout)?;
    if indexed > 0 {
        report.notes.push(format!("added the time-index line of {indexed} archived file(s) that had none"));
    }
    Ok(report)
}

/// Why `path` is not something to archive or describe: a directory, a
/// link, a FIFO or a device under a history file's name (opening a FIFO
/// would wait forever); `None` for a regular file.
fn not_a_file(path: &Path) -> Option<String> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => None,
        Ok(m) => {
            use std::os::unix::fs::FileTypeExt;
            let t = m.file_type();
            let what = if t.is_dir() {
                "a directory"
            } else if t.is_symlink() {
                "a symbolic link"
            } else if t.is_fifo() {
                "a FIFO"
            } else if t.is_socket() {
                "a socket"
            } else {
                "a device"
            };
            Some(format!("{} is not a regular file but {what}", path.display()))
        }
        Err(e) => Some(format!("{}: {e}", path.display())),
    }
}

/// Archived files without a line in the time index (archived by a version
/// that kept none, or a line lost in a crash) are read once, on all cores,
/// and given one, so that a time-range export can skip them from then on.
fn index_unindexed(layout: &Layout) -> Result<usize> {
    let index = crate::store::index::read(layout);
    let mut todo = Vec::new();
    for e in crate::store::manifest::read_manifest(layout)? {
        let Some(stem) = FileKind::Archived.stem_of(&e.file) else { continue };
        let path = layout.archive.join(&e.file);
        if index.get(stem).is_none_or(|l| l.first_id != e.first_id) && path.exists() {
            todo.push((stem.to_owned(), path, e.first_id));
        }
    }
    let mut indexed = 0;
    let mut todo = todo.into_iter();
    pipeline(
        threads(),
        || Ok(todo.next()),
        |_| {},
        |(stem, path, first_id)| {
            let mut scan = ContentScan::default();
            // A file that cannot be read stays without a line, and is always read (`verify` names what is wrong).
            match crate::store::xml::scan::read_content(path, "decompress", |chunk| scan.feed(chunk)) {
                Ok(()) => Ok(Some(crate::store::index::entry_of(stem, *first_id, &scan))),
                Err(e) => {
                    tracing::warn!("not indexed: {e:#}");
                    Ok(None)
                }
            }
        },
        |line| match line {
            Some(line) => {
                indexed += 1;
                crate::store::index::append(layout, &line)
            }
            None => Ok(()),
        },
    )?;
    Ok(indexed)
}

/// The `.gz` exists next to its plain file: an earlier run stopped between
/// renaming it and removing the plain file. The `.gz` must hold exactly the
/// plain file's content; then the missing steps are done. Returns why both
/// are left in place when it does not.
fn finish_interrupted(
    layout: &Layout,
    plain: &Path,
    gz: &Path,
    listed: &mut HashSet<String>,
    clock: &dyn Clock,
) -> Result<Option<String>> {
    let (plain_sha, _) = crate::fsx::sha256_file(plain)?;
    let differs = || {
        format!(
            "{} exists but does not hold the content of {}; both are left in place: move the .gz aside and run \
             archive again",
            gz.display(),
            plain.display()
        )
    };
    let (entry, content_sha) = match entry_from_gz(gz, clock) {
        Ok(e) => e,
        Err(e) => return Ok(Some(format!("{}: {e:#}", differs()))),
    };
    if content_sha != plain_sha {
        return Ok(Some(differs()));
    }
    if !listed.contains(&entry.file) {
        append_manifest(layout, &entry)?;
        listed.insert(entry.file.clone());
    }
    fs::remove_file(plain).with_context(|| format!("cannot remove {}", plain.display()))?;
    sync_dir(&layout.sealed)?;
    Ok(None)
}

/// Manifest entry of an existing `.gz`, read back from it, and the SHA-256 of
/// its decompressed content.
fn entry_from_gz(gz: &Path, clock: &dyn Clock) -> Result<(ManifestEntry, String)> {
    let mut scan = ContentScan::default();
    let mut plain_size = 0u64;
    let mut content = Sha256::new();
    crate::store::xml::scan::read_content(gz, "decompress", |chunk| {
        scan.feed(chunk);
        content.update(chunk);
        plain_size += chunk.len() as u64;
    })?;
    let (sha256, size) = crate::fsx::sha256_file(gz)?;
    let Some((first_id, last_id, records)) = scan.seal else {
        bail!("{} holds no sealed audit-trail file", gz.display());
    };
    let entry = ManifestEntry {
        file: file_name(gz),
        first_id,
        last_id,
        records,
        first_time: scan.first_time,
        last_time: scan.last_time,
        size,
        plain_size,
        sha256,
        archived: timestamp::format(&clock.now()),
        sealed: scan.sealed,
    };
    Ok((entry, hex::encode(content.finalize())))
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// A sealed file compressed and verified (steps 1 and 2 of the module docs)
/// under a temporary name, which is removed if it is dropped uncommitted.
struct Staged {
    stem: String,
    plain: PathBuf,
    gz: PathBuf,
    partial: PathBuf,
    c: Compressed,
    committed: bool,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.partial);
        }
    }
}

/// A sealed file ready to commit, or why it is left in place.
enum Staging {
    Ready(Box<Staged>),
    Damaged(String),
}

/// Steps 1 and 2 of the module docs for one sealed file.
fn stage(layout: &Layout, stem: &str, plain: &Path, gz: &Path) -> Result<Staging> {
    // Written aside under a name nobody can prepare, renamed in when complete.
    let staging = crate::maintenance::staging_dir(layout, &layout.archive)?;
    let partial = staging.join(format!(".{}.{}{PARTIAL_SUFFIX}", file_name(gz), crate::fsx::random_hex(8)));
    let c = match compress_file(plain, &partial) {
        Ok(c) => c,
        Err(e) => {
            let _ = fs::remove_file(&partial);
            return Err(e);
        }
    };
    let staged =
        Staged { stem: stem.to_owned(), plain: plain.to_owned(), gz: gz.to_owned(), partial, c, committed: false };
    if staged.c.scan.seal.is_none() {
        return Ok(Staging::Damaged(format!("{} has no seal", plain.display())));
    }
    if let Err(e) = verify_written(&staged.partial, &staged.c, plain) {
        return Err(e.context(format!("{} was left in place", plain.display())));
    }
    Ok(Staging::Ready(Box::new(staged)))
}

/// Steps 3–5 of the module docs for a staged file, and its line in the time
/// index when it has none (a file sealed before the index was kept).
fn commit(
    layout: &Layout,
    mut s: Staged,
    index: &HashMap<String, IndexEntry>,
    clock: &dyn Clock,
) -> Result<ArchivedFile> {
    let Some((first_id, last_id, records)) = s.c.scan.seal else { bail!("{} has no seal", s.plain.display()) };
    fs::rename(&s.partial, &s.gz)
        .with_context(|| format!("cannot rename {} to {}", s.partial.display(), s.gz.display()))?;
    s.committed = true;
    sync_dir(&layout.archive)?;
    let scan = &s.c.scan;
    let entry = ManifestEntry {
        file: file_name(&s.gz),
        first_id,
        last_id,
        records,
        first_time: scan.first_time.clone(),
        last_time: scan.last_time.clone(),
        sealed: scan.sealed.clone(),
        size: s.c.gz_size,
        plain_size: s.c.plain_size,
        sha256: s.c.gz_sha.clone(),
        archived: timestamp::format(&clock.now()),
    };
    append_manifest(layout, &entry)?;
    if index.get(&s.stem).is_none_or(|e| e.first_id != first_id) {
        // Best effort, as when sealing: without its line the file is always read.
        let _ = crate::store::index::append(layout, &crate::store::index::entry_of(&s.stem, first_id, scan));
    }
    fs::remove_file(&s.plain).with_context(|| format!("cannot remove {}", s.plain.display()))?;
    sync_dir(&layout.sealed)?;
    Ok(ArchivedFile { file: entry.file, plain_size: entry.plain_size, size: entry.size })
}

/// What compressing one file produced.
struct Compressed {
    plain_size: u64,
    gz_sha: String,
    gz_size: u64,
    /// Deflated length of each slice, in order.
    slices: Vec<u64>,
    scan: ContentScan,
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 16)
}

/// An ordered parallel pipeline: items from `next` (called on this thread)
/// are handed to `inspect` in order on one thread, transformed by `work` on
/// `workers` threads, and the results handed to `sink` in input order on
/// another thread. At most a few items per worker are in flight, so memory
/// stays flat.
fn pipeline<I, O>(
    workers: usize,
    mut next: impl FnMut() -> Result<Option<I>>,
    mut inspect: impl FnMut(&I) + Send,
    work: impl Fn(&I) -> Result<O> + Sync,
    mut sink: impl FnMut(O) -> Result<()> + Send,
) -> Result<()>
where
    I: Send + Sync,
    O: Send,
{
    use std::collections::BTreeMap;
    use std::sync::mpsc::{channel, sync_channel};
    use std::sync::{Arc, Mutex};

    let window = workers * 3;
    let (work_tx, work_rx) = sync_channel::<(usize, Arc<I>)>(window);
    let work_rx = Mutex::new(work_rx);
    let (insp_tx, insp_rx) = sync_channel::<Arc<I>>(window);
    let (out_tx, out_rx) = channel::<(usize, Result<O>)>();
    // One token per item between dispatch and sink bounds the reorder buffer.
    let (token_tx, token_rx) = sync_channel::<()>(window);

    std::thread::scope(|sc| {
        let inspector = sc.spawn(move || {
            for item in insp_rx {
                inspect(&item);
            }
        });
        for _ in 0..workers {
            let (work_rx, out_tx, work) = (&work_rx, out_tx.clone(), &work);
            sc.spawn(move || {
                loop {
                    let job = work_rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    let Ok((i, item)) = job else { break };
                    if out_tx.send((i, work(&item))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(out_tx);
        let sinker = sc.spawn(move || -> Result<()> {
            let mut pending = BTreeMap::new();
            let mut want = 0usize;
            for (i, r) in out_rx {
                pending.insert(i, r);
                while let Some(r) = pending.remove(&want) {
                    sink(r?)?;
                    want += 1;
                    let _ = token_rx.recv();
                }
            }
            Ok(())
        });
        let mut fed = Ok(());
        let mut i = 0;
        loop {
            let item = match next() {
                Ok(Some(item)) => Arc::new(item),
                Ok(None) => break,
                Err(e) => {
                    fed = Err(e);
                    break;
                }
            };
            // A failed send means the sink stopped on an error, reported below.
            if token_tx.send(()).is_err() || insp_tx.send(item.clone()).is_err() || work_tx.send((i, item)).is_err() {
                break;
            }
            i += 1;
        }
        drop((work_tx, insp_tx, token_tx));
        inspector.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        let sunk = sinker.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        fed.and(sunk)
    })
}

/// One slice deflated on its own, ended by a sync flush (byte-aligned, not
/// final), with the slice's CRC-32.
fn deflate_slice(data: &[u8]) -> Result<(Vec<u8>, Crc)> {
    let mut z = Compress::new(Compression::new(LEVEL), false);
    let mut out = Vec::with_capacity(data.len() / 3 + 64);
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(4096));
        }
        let consumed = usize::try_from(z.total_in()).unwrap_or(usize::MAX).min(data.len());
        z.compress_vec(&data[consumed..], &mut out, FlushCompress::Sync).context("compression failed")?;
        // The flush is complete once all input is taken and output space is left over.
        if z.total_in() == data.len() as u64 && out.len() < out.capacity() {
            break;
        }
    }
    let mut crc = Crc::new();
    crc.update(data);
    Ok((out, crc))
}

/// Reads up to `n` bytes (fewer only at the end of the input).
fn read_up_to(r: &mut impl Read, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n);
    r.take(n as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Compresses `plain` into `dest` (created new) as one gzip member, its
/// slices deflated on all cores (module docs), and fsyncs it.
fn compress_file(plain: &Path, dest: &Path) -> Result<Compressed> {
    let mut input =
        crate::fsx::open_read_nofollow(plain).with_context(|| format!("cannot open {}", plain.display()))?;
    let out = crate::fsx::create_new(dest).with_context(|| format!("cannot create {}", dest.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, out);
    let mut gz_h = Sha256::new();
    let (mut plain_size, mut gz_size, mut scan, mut crc) = (0u64, 0u64, ContentScan::default(), Crc::new());
    let mut slices = Vec::new();
    let mut emit = |bytes: &[u8], out: &mut BufWriter<File>| -> Result<()> {
        gz_h.update(bytes);
        gz_size += bytes.len() as u64;
        out.write_all(bytes).with_context(|| format!("cannot write {}", dest.display()))
    };
    emit(&GZIP_HEADER, &mut out)?;
    pipeline(
        threads(),
        || {
            let s = read_up_to(&mut input, SLICE).with_context(|| format!("cannot read {}", plain.display()))?;
            Ok((!s.is_empty()).then_some(s))
        },
        |s| {
            scan.feed(s);
            plain_size += s.len() as u64;
        },
        |s| deflate_slice(s),
        |(deflated, slice_crc)| {
            crc.combine(&slice_crc);
            slices.push(deflated.len() as u64);
            emit(&deflated, &mut out)
        },
    )?;
    emit(&FINAL_BLOCK, &mut out)?;
    // ISIZE is the length modulo 2^32 (RFC 1952 §2.3.1), as `Crc::amount` keeps it.
    let trailer: Vec<u8> = crc.sum().to_le_bytes().into_iter().chain(crc.amount().to_le_bytes()).collect();
    emit(&trailer, &mut out)?;
    let out =
        out.into_inner().map_err(|e| e.into_error()).with_context(|| format!("cannot write {}", dest.display()))?;
    out.sync_all().with_context(|| format!("cannot sync {}", dest.display()))?;
    Ok(Compressed { plain_size, gz_sha: hex::encode(gz_h.finalize()), gz_size, slices, scan })
}

/// Reads `path` back from disk and checks it is exactly the content of
/// `plain` as one gzip member: the header, then each slice inflated on its
/// own (on all cores) and compared byte for byte with the plain file,
/// without ending the stream, then the final block, and the trailer's CRC-32
/// and length of what was inflated, with nothing after it. What any gzip
/// reader decodes is therefore the whole plain file.
fn verify_written(path: &Path, c: &Compressed, plain: &Path) -> Result<()> {
    let fail = |why: &str| anyhow::anyhow!("verification of {} failed: {why}", path.display());
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let on_disk = f.metadata()?.len();
    if on_disk != c.gz_size {
        return Err(fail(&format!("{on_disk} bytes on disk, {} written", c.gz_size)));
    }
    let read = |f: &mut File, n: usize| read_up_to(f, n).with_context(|| format!("cannot read {}", path.display()));
    if read(&mut f, GZIP_HEADER.len())? != GZIP_HEADER {
        return Err(fail("the gzip header differs"));
    }
    let mut original =
        crate::fsx::open_read_nofollow(plain).with_context(|| format!("cannot open {}", plain.display()))?;
    let (mut plain_size, mut crc) = (0u64, Crc::new());
    let mut lens = c.slices.iter();
    pipeline(
        threads(),
        || match lens.next() {
            Some(&len) => Ok(Some(read(&mut f, len as usize)?)),
            None => Ok(None),
        },
        |_| {},
        |d| inflate_slice(d),
        |(out, slice_crc)| {
            let want =
                read_up_to(&mut original, out.len()).with_context(|| format!("cannot read {}", plain.display()))?;
            if want != out {
                bail!("its content differs from the plain file at byte {plain_size} or after");
            }
            plain_size += out.len() as u64;
            crc.combine(&slice_crc);
            Ok(())
        },
    )
    .map_err(|e| fail(&format!("{e:#}")))?;
    let mut end = FINAL_BLOCK.to_vec();
    end.extend(crc.sum().to_le_bytes());
    end.extend(crc.amount().to_le_bytes());
    if read(&mut f, end.len() + 1)? != end {
        return Err(fail("the end of the gzip member differs"));
    }
    if plain_size != c.plain_size || !read_up_to(&mut original, 1).context("cannot read the plain file")?.is_empty() {
        return Err(fail("its content differs from the plain file in length"));
    }
    Ok(())
}

/// Inflates one slice written by [`deflate_slice`], which must not end the
/// stream, with the CRC-32 of what it holds.
fn inflate_slice(data: &[u8]) -> Result<(Vec<u8>, Crc)> {
    let mut z = Decompress::new(false);
    let mut out = Vec::with_capacity(SLICE);
    loop {
        if out.len() == out.capacity() {
            out.reserve(SLICE);
        }
        let consumed = usize::try_from(z.total_in()).unwrap_or(usize::MAX).min(data.len());
        if z.decompress_vec(&data[consumed..], &mut out, FlushDecompress::None)? == Status::StreamEnd {
            bail!("a slice ends the deflate stream");
        }
        if z.total_in() == data.len() as u64 && out.len() < out.capacity() {
            break;
        }
    }
    let mut crc = Crc::new();
    crc.update(&out);
    Ok((out, crc))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text that compresses (repeats) mixed with bytes that do not.
    fn sample(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x.is_multiple_of(3) {
                out.extend_from_slice(b"<Record id=\"1\"><UserName>admin</UserName></Record>\n");
            } else {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
        out.truncate(len);
        out
    }

    #[test]
    fn every_size_is_one_member_that_single_stream_readers_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        for (i, len) in [0, 1, 100, SLICE - 1, SLICE, SLICE + 1, 3 * SLICE + 7].into_iter().enumerate() {
            let plain = dir.path().join(format!("p{i}"));
            let gz = dir.path().join(format!("p{i}.gz"));
            let data = sample(len, i as u64 + 7);
            fs::write(&plain, &data).unwrap();
            let c = compress_file(&plain, &gz).unwrap();
            verify_written(&gz, &c, &plain).unwrap();
            let bytes = fs::read(&gz).unwrap();
            assert_eq!(c.gz_size, bytes.len() as u64);
            // A reader of one member only gets everything, and nothing is left after it.
            let mut dec = flate2::bufread::GzDecoder::new(&bytes[..]);
            let mut out = Vec::new();
            dec.read_to_end(&mut out).unwrap();
            assert!(out == data, "size {len}: the member holds {} of {} bytes", out.len(), data.len());
            assert!(dec.into_inner().is_empty(), "size {len}: bytes follow the member");
            assert_eq!(bytes[..10], GZIP_HEADER);
            assert_eq!(bytes[bytes.len() - 4..], (len as u32).to_le_bytes(), "ISIZE");
        }
    }

    #[test]
    fn a_changed_byte_fails_the_check_after_writing() {
        let dir = tempfile::tempdir().unwrap();
        let (plain, gz) = (dir.path().join("p"), dir.path().join("p.gz"));
        fs::write(&plain, sample(2 * SLICE + 5, 3)).unwrap();
        let c = compress_file(&plain, &gz).unwrap();
        let mut bytes = fs::read(&gz).unwrap();
        let n = bytes.len();
        // The trailer's CRC, then a byte in the middle of the deflate data.
        for at in [n - 6, n / 2] {
            bytes[at] ^= 0x40;
            fs::write(&gz, &bytes).unwrap();
            assert!(verify_written(&gz, &c, &plain).is_err(), "a changed byte at {at} of {n} passed");
            bytes[at] ^= 0x40;
        }
        // One byte appended.
        bytes.push(0);
        fs::write(&gz, &bytes).unwrap();
        let c2 = Compressed { gz_size: bytes.len() as u64, ..c };
        assert!(verify_written(&gz, &c2, &plain).is_err(), "a trailing byte passed");
    }

    #[test]
    fn a_plain_file_that_differs_from_what_was_compressed_fails_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let (plain, gz) = (dir.path().join("p"), dir.path().join("p.gz"));
        let data = sample(2 * SLICE + 5, 9);
        fs::write(&plain, &data).unwrap();
        let c = compress_file(&plain, &gz).unwrap();
        verify_written(&gz, &c, &plain).unwrap();
        let mut changed = data.clone();
        changed[SLICE + 3] ^= 1;
        fs::write(&plain, &changed).unwrap();
        assert!(verify_written(&gz, &c, &plain).is_err(), "a changed byte of the plain file passed");
        let mut longer = data;
        longer.push(b'x');
        fs::write(&plain, &longer).unwrap();
        assert!(verify_written(&gz, &c, &plain).is_err(), "a longer plain file passed");
    }
}
