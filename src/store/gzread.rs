//! Reading a `.gz` file as the one stream its members make (RFC 1952 lets a
//! file hold several, one after another), knowing where each ends.
//!
//! A general multi-member decoder reads whatever follows a member as the
//! header of the next one, so one zero byte of padding after the data reads
//! as "unexpected end of file" (as if the file were cut short) and text after
//! it as "invalid gzip header". This reader tells the damage kinds apart:
//! bytes after the end of the gzip data that do not start another member are
//! [`Damage::Trailing`], named with their offset and count; a member that
//! ends early is [`Damage::Cut`]; any other broken member is
//! [`Damage::Corrupt`]. The stream the members make ends where the damage
//! starts.

use std::fmt;
use std::io::{self, BufRead, Read};
use std::sync::{Arc, OnceLock};

use flate2::bufread::GzDecoder;

const MAGIC: [u8; 2] = [0x1f, 0x8b];
const BUF: usize = 256 * 1024;

/// What is wrong with the compressed data, and where (offsets in the `.gz`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// `len` bytes after the end of the last member, from `offset` to the end
    /// of the file, that are not a gzip member.
    Trailing { offset: u64, len: u64, zeros: bool },
    /// The member starting at `member` ends before its data does: the file is
    /// cut short. `yielded`: the bytes it gave before.
    Cut { member: u64, yielded: u64 },
    /// The member starting at `member` cannot be read.
    Corrupt { member: u64, yielded: u64, reason: String },
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::Trailing { offset, len, zeros } => {
                let s = if *len == 1 { "" } else { "s" };
                let what = match (zeros, *len == 1) {
                    (true, true) => "a zero byte (padding)",
                    (true, false) => "all zero (padding)",
                    (false, _) => "not gzip data",
                };
                write!(f, "{len} byte{s} after the end of the gzip data, from offset {offset}: {what}")
            }
            Damage::Cut { member, .. } => {
                write!(f, "the gzip data is cut short (in the member that starts at offset {member})")
            }
            Damage::Corrupt { member, reason, .. } => {
                write!(f, "the gzip member that starts at offset {member} is damaged: {reason}")
            }
        }
    }
}

/// Where the reader puts the damage it found, for whoever opened the file.
pub type Watch = Arc<OnceLock<Damage>>;

/// Counts what the decoder consumes, and can look two bytes ahead.
struct Source<R> {
    inner: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// Bytes consumed from the start of the file.
    offset: u64,
}

impl<R: Read> Source<R> {
    /// At least `n` bytes, fewer only at the end of the file.
    fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.end - self.start < n {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            while self.end < n {
                match self.inner.read(&mut self.buf[self.end..]) {
                    Ok(0) => break,
                    Ok(k) => self.end += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(&self.buf[self.start..self.end])
    }
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.fill_buf()?.read(out)?;
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for Source<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.start == self.end {
            self.start = 0;
            self.end = loop {
                match self.inner.read(&mut self.buf) {
                    Ok(k) => break k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            };
        }
        Ok(&self.buf[self.start..self.end])
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
    }
}

enum State<R> {
    /// Inside the member that starts at the given offset, which gave the
    /// given number of bytes so far.
    Member(Box<GzDecoder<Source<R>>>, u64, u64),
    Between(Source<R>),
    Done,
}

/// The decompressed stream of a `.gz` file's members. At damage it records
/// what it found in its [`Watch`]; then trailing bytes end the stream (with
/// `quiet`) or are an error, and a damaged member is an error.
pub struct GzReader<R> {
    state: State<R>,
    watch: Watch,
    quiet: bool,
    first: bool,
}

impl<R: Read> GzReader<R> {
    /// `quiet`: trailing bytes end the stream instead of being an error (the
    /// caller reads the [`Watch`]).
    pub fn new(inner: R, quiet: bool) -> GzReader<R> {
        let src = Source { inner, buf: vec![0; BUF].into_boxed_slice(), start: 0, end: 0, offset: 0 };
        GzReader { state: State::Between(src), watch: Watch::default(), quiet, first: true }
    }

    pub fn watch(&self) -> Watch {
        self.watch.clone()
    }

    fn fail(&mut self, d: Damage, kind: io::ErrorKind) -> io::Error {
        let msg = d.to_string();
        let _ = self.watch.set(d);
        self.state = State::Done;
        io::Error::new(kind, msg)
    }
}

impl<R: Read> Read for GzReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match &mut self.state {
                State::Member(dec, member, yielded) => match dec.read(out) {
                    Ok(0) => {
                        let State::Member(dec, ..) = std::mem::replace(&mut self.state, State::Done) else {
                            unreachable!("in a member")
                        };
                        self.state = State::Between(dec.into_inner());
                    }
                    Ok(n) => {
                        *yielded += n as u64;
                        return Ok(n);
                    }
                    Err(e) => {
                        let (member, yielded) = (*member, *yielded);
                        let d = if e.kind() == io::ErrorKind::UnexpectedEof {
                            Damage::Cut { member, yielded }
                        } else {
                            Damage::Corrupt { member, yielded, reason: e.to_string() }
                        };
                        return Err(self.fail(d, e.kind()));
                    }
                },
                State::Between(src) => {
                    let offset = src.offset;
                    let head = src.peek(2)?;
                    if head.is_empty() {
                        self.state = State::Done;
                        return Ok(0);
                    }
                    if head.starts_with(&MAGIC) {
                        self.first = false;
                        let State::Between(src) = std::mem::replace(&mut self.state, State::Done) else {
                            unreachable!("between members")
                        };
                        self.state = State::Member(Box::new(GzDecoder::new(src)), offset, 0);
                        continue;
                    }
                    if self.first {
                        let d = Damage::Corrupt { member: 0, yielded: 0, reason: "not a gzip file".into() };
                        return Err(self.fail(d, io::ErrorKind::InvalidData));
                    }
                    // Count the rest, and whether it is all zeros.
                    let (mut len, mut zeros) = (0u64, true);
                    loop {
                        let chunk = src.fill_buf()?;
                        if chunk.is_empty() {
                            break;
                        }
                        zeros &= chunk.iter().all(|&b| b == 0);
                        let n = chunk.len();
                        len += n as u64;
                        src.consume(n);
                    }
                    let d = Damage::Trailing { offset, len, zeros };
                    if self.quiet {
                        let _ = self.watch.set(d);
                        self.state = State::Done;
                        return Ok(0);
                    }
                    return Err(self.fail(d, io::ErrorKind::InvalidData));
                }
                State::Done => return Ok(0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gz(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(p).unwrap();
            out.extend(e.finish().unwrap());
        }
        out
    }

    fn read_all(bytes: &[u8], quiet: bool) -> (io::Result<Vec<u8>>, Option<Damage>) {
        let mut r = GzReader::new(bytes, quiet);
        let mut out = Vec::new();
        let res = r.read_to_end(&mut out).map(|_| out);
        (res, r.watch().get().cloned())
    }

    #[test]
    fn members_make_one_stream() {
        let data = gz(&[b"hello ", b"", b"world"]);
        let (out, d) = read_all(&data, false);
        assert_eq!(out.unwrap(), b"hello world");
        assert_eq!(d, None);
    }

    #[test]
    fn trailing_bytes_are_named_with_offset_and_count() {
        let data = gz(&[b"hello ", b"world"]);
        let end = data.len() as u64;
        for (tail, zeros) in [(&b"\0"[..], true), (b"\0\0\0\0", true), (b"trailing text\n", false), (b"\x1f", false)] {
            let mut bytes = data.clone();
            bytes.extend_from_slice(tail);
            let (out, d) = read_all(&bytes, true);
            assert_eq!(out.unwrap(), b"hello world", "the data before is whole");
            assert_eq!(d, Some(Damage::Trailing { offset: end, len: tail.len() as u64, zeros }));
            let (out, _) = read_all(&bytes, false);
            let e = out.unwrap_err().to_string();
            assert!(e.contains(&format!("after the end of the gzip data, from offset {end}")), "{e}");
        }
    }

    #[test]
    fn a_cut_member_is_cut_and_garbage_is_corrupt() {
        let data = gz(&[b"hello ", b"world"]);
        let (_, d) = read_all(&data[..data.len() - 3], true);
        let first_len = gz(&[b"hello "]).len() as u64;
        assert!(matches!(d, Some(Damage::Cut { member, .. }) if member == first_len), "{d:?}");
        let (out, d) = read_all(b"plain text", true);
        assert!(out.is_err());
        assert!(matches!(d, Some(Damage::Corrupt { member: 0, .. })), "{d:?}");
        let mut bad = data.clone();
        let n = bad.len();
        bad[n - 6] ^= 0xff; // the CRC of the last member
        let (_, d) = read_all(&bad, true);
        assert!(matches!(d, Some(Damage::Corrupt { member, .. }) if member == first_len), "{d:?}");
    }
}
