//! The fast scanner: what a pass over the raw bytes of a file finds without
//! parsing it (first and last record time, the seal). Archive uses it while
//! compressing, purge and the reader to learn a file's times and seal time
//! cheaply. It never decides whether a file is intact: that is `verify`.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};

/// What a pass over the raw bytes of an audit-trail file finds without
/// parsing it: the first and last record timestamps, the earliest and latest
/// event time over every record, and the seal. It relies on
/// the writer's escaping: `<` never appears in text, so `<TimeStamp>` and
/// `<Seal ` only ever occur as tags.
#[derive(Debug, Default, Clone)]
pub struct ContentScan {
    carry: Vec<u8>,
    pub first_time: Option<String>,
    pub last_time: Option<String>,
    /// The earliest and latest event time of every record fed, in
    /// milliseconds since the epoch (event times arrive out of order, so
    /// these are not the first and last record's).
    pub min_ms: Option<i64>,
    pub max_ms: Option<i64>,
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
        // Within the seam the same element may be seen twice: harmless for a minimum and maximum.
        for t in memchr::memmem::find_iter(buf, TS_OPEN).filter_map(|p| element_millis(buf, p)) {
            self.min_ms = Some(self.min_ms.map_or(t, |m| m.min(t)));
            self.max_ms = Some(self.max_ms.map_or(t, |m| m.max(t)));
        }
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

fn element_str(buf: &[u8], open: usize) -> Option<&str> {
    let start = open + TS_OPEN.len();
    // The text holds no `<` (module docs): the first one starts the end tag.
    let len = memchr::memchr(b'<', &buf[start..buf.len().min(start + 64)])?;
    buf[start + len..].starts_with(TS_CLOSE).then_some(())?;
    std::str::from_utf8(&buf[start..start + len]).ok()
}

fn element_text(buf: &[u8], open: usize) -> Option<String> {
    element_str(buf, open).map(str::to_owned)
}

fn element_millis(buf: &[u8], open: usize) -> Option<i64> {
    element_str(buf, open).and_then(crate::timestamp::millis)
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

/// Seal time and last id of a sealed file: from its last bytes when plain
/// (the seal is the end of the file), from its whole content when compressed.
pub fn seal_time(path: &Path) -> Result<Option<(String, u64)>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut s = ContentScan::default();
    if path.extension().is_some_and(|e| e == "gz") {
        read_content(path, "read", |chunk| s.feed(chunk))?;
    } else {
        let mut f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(TAIL)))?;
        let mut tail = Vec::with_capacity(TAIL as usize);
        f.read_to_end(&mut tail).with_context(|| format!("cannot read {}", path.display()))?;
        s.feed(&tail);
    }
    Ok(s.sealed.zip(s.seal.map(|(_, last, _)| last)))
}

/// Bytes at the end of a sealed file that hold its seal.
const TAIL: u64 = 8192;

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
            assert_eq!(s.min_ms, crate::timestamp::millis("2026-01-01T00:00:00.000+01:00"), "chunk {size}");
            assert_eq!(s.max_ms, crate::timestamp::millis("2026-01-02T00:00:00.000+01:00"), "chunk {size}");
        }
    }

    #[test]
    fn span_is_min_and_max_not_first_and_last() {
        let xml = "<Record id=\"1\"><TimeStamp>2026-01-02T00:00:00.000+00:00</TimeStamp></Record>\
<Record id=\"2\"><TimeStamp>2025-01-01T00:00:00.000+00:00</TimeStamp></Record>\
<Record id=\"3\"><TimeStamp>2027-01-01T00:00:00.000+01:00</TimeStamp></Record>\
<Record id=\"4\"><TimeStamp>2026-06-01T00:00:00.000+00:00</TimeStamp></Record>";
        for size in [1, 5, 64, 4096] {
            let mut s = ContentScan::default();
            for chunk in xml.as_bytes().chunks(size) {
                s.feed(chunk);
            }
            assert_eq!(s.min_ms, crate::timestamp::millis("2025-01-01T00:00:00.000+00:00"), "chunk {size}");
            assert_eq!(s.max_ms, crate::timestamp::millis("2027-01-01T00:00:00.000+01:00"), "chunk {size}");
        }
    }
}
