//! What archive, purge and backup share: the maintenance lock that keeps them
//! from moving files under each other, and the small durable-file helpers
//! they are built from.
//!
//! The log writer (`state/lock`) is a different lock on purpose: maintenance
//! must never stall ingestion, and the log never needs files that maintenance
//! moves (it reads the newest sealed file only when no active file exists).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::config::Layout;

pub mod archive;
pub mod backup;
pub mod purge;

/// File name of the maintenance lock under `state/`.
pub const LOCK_NAME: &str = "maintenance.lock";

/// An exclusive `flock` on `state/maintenance.lock`, held while archive, purge
/// or backup runs, in this process or any other. Released on drop.
#[derive(Debug)]
pub struct MaintenanceLock {
    _file: File,
}

impl MaintenanceLock {
    /// Waits for any other maintenance job to finish, then takes the lock.
    pub fn acquire(layout: &Layout) -> Result<MaintenanceLock> {
        let path = layout.state.join(LOCK_NAME);
        let file = open_lock_file(&path)?;
        file.lock().with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(MaintenanceLock { _file: file })
    }
}

/// Opens (creating it and its directory) a file used only for its `flock`.
pub fn open_lock_file(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    crate::fsx::open_rw_nofollow(path).with_context(|| format!("cannot open lock file {}", path.display()))
}

/// Makes a directory's entries (creations, renames, removals) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("cannot sync directory {}", dir.display()))
}

/// Hex SHA-256 of everything `r` yields, and its length.
pub fn sha256_of(mut r: impl Read) -> io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

/// Hex SHA-256 and length of a file.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    sha256_of(f).with_context(|| format!("cannot read {}", path.display()))
}

/// Replaces `path` with `bytes` atomically: written to a hidden temporary
/// beside it (created exclusively, under a random name), fsynced, renamed,
/// and the directory fsynced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (tmp, mut f) = crate::fsx::create_temp_exclusive(dir, &name)?;
    let written =
        f.write_all(bytes).and_then(|()| f.sync_all()).with_context(|| format!("cannot write {}", tmp.display()));
    drop(f);
    if let Err(e) =
        written.and_then(|()| fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display())))
    {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// The names in a directory (none when it does not exist), sorted.
pub fn dir_names(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        if let Some(n) = entry.file_name().to_str() {
            names.push(n.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Removes a file; one already gone is fine.
pub fn remove_if_exists(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

/// Human-readable byte count (`1.5 MB`).
pub fn human_bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}

/// What a pass over the raw bytes of an audit-trail file finds without
/// parsing it: the first and last record timestamps and the seal. It relies on
/// the writer's escaping: `<` never appears in text, so `<TimeStamp>` and
/// `<Seal ` only ever occur as tags.
#[derive(Debug, Default, Clone)]
pub struct ContentScan {
    carry: Vec<u8>,
    pub first_time: Option<String>,
    pub last_time: Option<String>,
    /// `first-id`, `last-id`, `records` of the last complete `<Seal …/>`.
    pub seal: Option<(u64, u64, u64)>,
    /// Its `sealed` attribute: when the archiver sealed the file, by its clock.
    pub sealed: Option<String>,
}

const TS_OPEN: &[u8] = b"<TimeStamp>";
const TS_CLOSE: &[u8] = b"</TimeStamp>";
const SEAL_OPEN: &[u8] = b"<Seal ";
/// Longer than any timestamp element or seal, so a tag cut between two chunks
/// is found whole in the next.
const CARRY: usize = 512;

/// Reads a plain or gzip-compressed file to its end, handing its content to
/// `f` chunk by chunk; `reading` names the step in errors ("read",
/// "decompress").
pub fn read_content(path: &Path, reading: &str, mut f: impl FnMut(&[u8])) -> Result<()> {
    let mut rd = crate::store::reader::open_any(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = rd.read(&mut buf).with_context(|| format!("cannot {reading} {}", path.display()))?;
        if n == 0 {
            return Ok(());
        }
        f(&buf[..n]);
    }
}

impl ContentScan {
    /// Feeds the next bytes of the file, in order.
    pub fn feed(&mut self, chunk: &[u8]) {
        if !self.carry.is_empty() {
            // The seam: the end of the previous bytes and the start of these.
            let mut seam = std::mem::take(&mut self.carry);
            seam.extend_from_slice(&chunk[..chunk.len().min(CARRY)]);
            self.scan(&seam);
            if chunk.len() <= CARRY {
                self.carry = seam[seam.len().saturating_sub(CARRY)..].to_vec();
                return;
            }
        }
        self.scan(chunk);
        self.carry = chunk[chunk.len().saturating_sub(CARRY)..].to_vec();
    }

    fn scan(&mut self, buf: &[u8]) {
        if self.first_time.is_none()
            && let Some(t) = memchr::memmem::find_iter(buf, TS_OPEN).find_map(|p| element_text(buf, p))
        {
            self.first_time = Some(t);
        }
        let mut seal_from = 0;
        if let Some((p, t)) = memchr::memmem::rfind_iter(buf, TS_OPEN).find_map(|p| Some((p, element_text(buf, p)?))) {
            // A later chunk always holds later records; within the seam the
            // same element may be seen twice, which is harmless.
            self.last_time = Some(t);
            // The seal follows the last record.
            seal_from = p;
        }
        if let Some((s, sealed)) =
            memchr::memmem::rfind_iter(&buf[seal_from..], SEAL_OPEN).find_map(|p| seal_attrs(&buf[seal_from + p..]))
        {
            self.seal = Some(s);
            self.sealed = sealed;
        }
    }
}

fn element_text(buf: &[u8], open: usize) -> Option<String> {
    let start = open + TS_OPEN.len();
    let len = memchr::memmem::find(&buf[start..buf.len().min(start + 64)], TS_CLOSE)?;
    std::str::from_utf8(&buf[start..start + len]).ok().map(str::to_owned)
}

fn seal_attrs(buf: &[u8]) -> Option<((u64, u64, u64), Option<String>)> {
    let end = memchr::memchr(b'>', &buf[..buf.len().min(CARRY)])?;
    let tag = std::str::from_utf8(&buf[..end]).ok()?;
    let text = |name: &str| -> Option<&str> {
        let key = format!(" {name}=\"");
        let v = &tag[tag.find(&key)? + key.len()..];
        Some(&v[..v.find('"')?])
    };
    let num = |name: &str| -> Option<u64> { text(name)?.parse().ok() };
    Some(((num("first-id")?, num("last-id")?, num("records")?), text("sealed").map(str::to_owned)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "<AuditTrail first-id=\"5\">\n  <Record id=\"5\">\n    <TimeStamp>2026-01-01T00:00:00.000+01:00</TimeStamp>\n  </Record>\n  <Record id=\"6\">\n    <TimeStamp>2026-01-02T00:00:00.000+01:00</TimeStamp>\n    <ActionData>x &lt;TimeStamp&gt;</ActionData>\n  </Record>\n  <Seal first-id=\"5\" last-id=\"6\" records=\"2\" sealed=\"2026-01-02T00:00:00.000+01:00\"/>\n</AuditTrail>\n";

    #[test]
    fn scan_finds_times_and_seal_across_any_chunking() {
        for size in [1, 3, 7, 40, 1000, 2000] {
            let mut s = ContentScan::default();
            for chunk in DOC.as_bytes().chunks(size) {
                s.feed(chunk);
            }
            assert_eq!(s.first_time.as_deref(), Some("2026-01-01T00:00:00.000+01:00"), "chunk {size}");
            assert_eq!(s.last_time.as_deref(), Some("2026-01-02T00:00:00.000+01:00"), "chunk {size}");
            assert_eq!(s.seal, Some((5, 6, 2)), "chunk {size}");
            assert_eq!(s.sealed.as_deref(), Some("2026-01-02T00:00:00.000+01:00"), "chunk {size}");
        }
    }
}
