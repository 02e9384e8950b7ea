//! A small SFTP version 3 client (draft-ietf-secsh-filexfer-02, the version
//! OpenSSH, proftpd mod_sftp and asyncssh speak) for just the requests the
//! uploader makes: STAT, MKDIR, OPENDIR/READDIR, OPEN/WRITE/CLOSE, RENAME and
//! REMOVE. It runs over any byte stream; in use, an `ssh2` channel opened
//! with the `sftp` subsystem, so SSH itself (transport, host keys, login)
//! stays with libssh2.
//!
//! Why not libssh2's own SFTP layer: when a request fails, the server
//! answers with a status code *and a text* ("No space left on device",
//! "Quota exceeded", "Permission denied: /in is read-only"), and libssh2
//! keeps only the code (`libssh2_sftp_last_error`; the text is skipped in
//! `sftp.c` and exposed by no function). An operator then reads "failure"
//! where the server said what was wrong. Here every failure keeps the
//! server's text next to the meaning of its code.
//!
//! Writes are pipelined (up to [`WRITES_IN_FLIGHT`] requests of up to
//! [`CHUNK`] bytes awaiting their answer, as OpenSSH's `sftp` does), so throughput
//! does not wait for a round trip per chunk.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufRead, Read, Write};

const FXP_INIT: u8 = 1;
const FXP_VERSION: u8 = 2;
const FXP_OPEN: u8 = 3;
const FXP_CLOSE: u8 = 4;
const FXP_WRITE: u8 = 6;
const FXP_OPENDIR: u8 = 11;
const FXP_READDIR: u8 = 12;
const FXP_REMOVE: u8 = 13;
const FXP_MKDIR: u8 = 14;
const FXP_STAT: u8 = 17;
const FXP_RENAME: u8 = 18;
const FXP_STATUS: u8 = 101;
const FXP_HANDLE: u8 = 102;
const FXP_NAME: u8 = 104;
const FXP_ATTRS: u8 = 105;

const FXF_WRITE: u32 = 0x02;
const FXF_CREAT: u32 = 0x08;
const FXF_TRUNC: u32 = 0x10;

const ATTR_SIZE: u32 = 0x1;
const ATTR_UIDGID: u32 = 0x2;
const ATTR_PERMISSIONS: u32 = 0x4;
const ATTR_ACMODTIME: u32 = 0x8;
const ATTR_EXTENDED: u32 = 0x8000_0000;

pub const FX_OK: u32 = 0;
pub const FX_EOF: u32 = 1;
pub const FX_NO_SUCH_FILE: u32 = 2;
/// Not in version 3, but sent by servers that speak later versions' codes.
pub const FX_NO_SUCH_PATH: u32 = 10;

/// The largest WRITE packet: a whole request fits in one SSH channel packet
/// of 32 KiB, the size OpenSSH's sshd accepts for a session channel, and
/// every SFTP server accepts that much data.
pub const CHUNK: usize = 32 * 1024;
/// WRITE requests sent before the first answer is awaited.
pub const WRITES_IN_FLIGHT: usize = 64;
/// The largest answer accepted (a directory listing comes in pieces far smaller).
const MAX_PACKET: u32 = 4 * 1024 * 1024;

/// What went wrong with a request.
#[derive(Debug)]
pub enum Error {
    /// The server answered with a status other than OK.
    Status(Status),
    /// The stream failed or ended (connection, timeout).
    Io(io::Error),
    /// The server broke the protocol (an answer that cannot be parsed).
    Protocol(String),
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

/// A failure answer: the code, and the server's text (possibly empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: u32,
    pub message: String,
}

impl Status {
    /// What the code means (draft-ietf-secsh-filexfer-02 and later drafts).
    pub fn meaning(&self) -> &'static str {
        match self.code {
            1 => "end of file",
            2 => "no such file",
            3 => "permission denied",
            4 => "failure",
            5 => "bad message",
            6 => "no connection",
            7 => "connection lost",
            8 => "operation not supported",
            9 => "invalid handle",
            10 => "no such path",
            11 => "file already exists",
            12 => "write protected",
            13 => "no media",
            14 => "no space on the filesystem",
            15 => "quota exceeded",
            _ => "unknown status",
        }
    }

    pub fn is_missing(&self) -> bool {
        matches!(self.code, FX_NO_SUCH_FILE | FX_NO_SUCH_PATH)
    }
}

impl fmt::Display for Status {
    /// The server's text first (what the operator needs), then the code's
    /// meaning; a generic code without text says that the server gave none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.message.trim();
        let name = format!("SSH_FX {} \"{}\"", self.code, self.meaning());
        if text.is_empty() {
            if self.code == 4 {
                write!(f, "the server refused without saying why ({name})")
            } else {
                write!(f, "{} ({name}; the server gave no text)", self.meaning())
            }
        } else if text.eq_ignore_ascii_case(self.meaning()) {
            write!(f, "{text} ({name})")
        } else {
            write!(f, "{text} (server status {name})")
        }
    }
}

/// A file's attributes, as far as the uploader needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attrs {
    pub size: Option<u64>,
    pub permissions: Option<u32>,
}

impl Attrs {
    pub fn is_dir(&self) -> bool {
        self.permissions.is_some_and(|p| p & 0o170000 == 0o040000)
    }
}

/// An outgoing packet: type and request id written, fields appended.
struct Packet(Vec<u8>);

impl Packet {
    fn new(kind: u8, id: u32) -> Packet {
        let mut p = Packet(Vec::with_capacity(64));
        p.0.extend_from_slice(&[0, 0, 0, 0, kind]);
        p.u32(id);
        p
    }

    fn u32(&mut self, v: u32) -> &mut Packet {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    fn u64(&mut self, v: u64) -> &mut Packet {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    fn bytes(&mut self, s: &[u8]) -> &mut Packet {
        self.u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(s);
        self
    }

    /// The packet with its length filled in.
    fn finish(&mut self) -> &[u8] {
        let len = u32::try_from(self.0.len() - 4).unwrap_or(u32::MAX);
        self.0[..4].copy_from_slice(&len.to_be_bytes());
        &self.0
    }
}

/// Reads the fields of an incoming packet.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.0.len() < n {
            return Err(Error::Protocol("an answer from the server ends too early".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, Error> {
        Ok((u64::from(self.u32()?) << 32) | u64::from(self.u32()?))
    }

    fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn attrs(&mut self) -> Result<Attrs, Error> {
        let flags = self.u32()?;
        let mut a = Attrs::default();
        if flags & ATTR_SIZE != 0 {
            a.size = Some(self.u64()?);
        }
        if flags & ATTR_UIDGID != 0 {
            self.take(8)?;
        }
        if flags & ATTR_PERMISSIONS != 0 {
            a.permissions = Some(self.u32()?);
        }
        if flags & ATTR_ACMODTIME != 0 {
            self.take(8)?;
        }
        if flags & ATTR_EXTENDED != 0 {
            for _ in 0..self.u32()? {
                self.bytes()?;
                self.bytes()?;
            }
        }
        Ok(a)
    }

    /// A STATUS answer's code and text (servers before draft 3 send no text).
    fn status(&mut self) -> Result<Status, Error> {
        let code = self.u32()?;
        let message =
            if self.0.is_empty() { String::new() } else { String::from_utf8_lossy(self.bytes()?).into_owned() };
        Ok(Status { code, message })
    }
}

/// An SFTP session over `S`.
pub struct Client<S: Read + Write> {
    stream: S,
    next_id: u32,
    buf: Vec<u8>,
}

/// One answer: its type and the bytes after the request id.
struct Answer {
    kind: u8,
    id: u32,
    body: Vec<u8>,
}

impl<S: Read + Write> Client<S> {
    /// Starts the session (INIT, VERSION) over a stream already connected to
    /// an SFTP server. Only version 3 is asked for; the server may answer
    /// with a lower one, which the requests used here do not mind.
    pub fn start(mut stream: S) -> Result<Client<S>, Error> {
        let mut init = vec![0, 0, 0, 5, FXP_INIT];
        init.extend_from_slice(&3u32.to_be_bytes());
        stream.write_all(&init)?;
        let mut client = Client { stream, next_id: 1, buf: Vec::new() };
        let (kind, body) = client.read_packet()?;
        if kind != FXP_VERSION || body.len() < 4 {
            return Err(Error::Protocol(format!("the server answered INIT with packet type {kind}, not VERSION")));
        }
        Ok(client)
    }

    /// The underlying stream (to close it).
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    fn read_packet(&mut self) -> Result<(u8, Vec<u8>), Error> {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len)?;
        let len = u32::from_be_bytes(len);
        if len == 0 || len > MAX_PACKET {
            return Err(Error::Protocol(format!("the server sent a packet of {len} bytes")));
        }
        self.buf.resize(len as usize, 0);
        self.stream.read_exact(&mut self.buf)?;
        Ok((self.buf[0], self.buf[1..].to_vec()))
    }

    fn read_answer(&mut self) -> Result<Answer, Error> {
        let (kind, body) = self.read_packet()?;
        if body.len() < 4 {
            return Err(Error::Protocol(format!("the server sent a packet of type {kind} without a request id")));
        }
        let id = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        Ok(Answer { kind, id, body: body[4..].to_vec() })
    }

    fn id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// Sends a request and reads its answer (no other request is in flight).
    fn call(&mut self, mut packet: Packet, id: u32) -> Result<Answer, Error> {
        self.stream.write_all(packet.finish())?;
        let answer = self.read_answer()?;
        if answer.id != id {
            return Err(Error::Protocol(format!("the server answered request {} instead of {id}", answer.id)));
        }
        Ok(answer)
    }

    /// A request whose success is a STATUS OK.
    fn call_status(&mut self, packet: Packet, id: u32) -> Result<(), Error> {
        let answer = self.call(packet, id)?;
        match answer.kind {
            FXP_STATUS => match Fields(&answer.body).status()? {
                s if s.code == FX_OK => Ok(()),
                s => Err(Error::Status(s)),
            },
            k => Err(Error::Protocol(format!("unexpected answer of type {k}"))),
        }
    }

    /// A request whose success is a HANDLE.
    fn call_handle(&mut self, packet: Packet, id: u32) -> Result<Vec<u8>, Error> {
        let answer = self.call(packet, id)?;
        let mut f = Fields(&answer.body);
        match answer.kind {
            FXP_HANDLE => Ok(f.bytes()?.to_vec()),
            FXP_STATUS => Err(Error::Status(f.status()?)),
            k => Err(Error::Protocol(format!("unexpected answer of type {k} to an open"))),
        }
    }

    /// STAT (follows symbolic links).
    pub fn stat(&mut self, path: &str) -> Result<Attrs, Error> {
        let id = self.id();
        let mut p = Packet::new(FXP_STAT, id);
        p.bytes(path.as_bytes());
        let answer = self.call(p, id)?;
        let mut f = Fields(&answer.body);
        match answer.kind {
            FXP_ATTRS => f.attrs(),
            FXP_STATUS => Err(Error::Status(f.status()?)),
            k => Err(Error::Protocol(format!("unexpected answer of type {k} to STAT"))),
        }
    }

    pub fn mkdir(&mut self, path: &str, mode: u32) -> Result<(), Error> {
        let id = self.id();
        let mut p = Packet::new(FXP_MKDIR, id);
        p.bytes(path.as_bytes()).u32(ATTR_PERMISSIONS).u32(mode);
        self.call_status(p, id)
    }

    pub fn remove(&mut self, path: &str) -> Result<(), Error> {
        let id = self.id();
        let mut p = Packet::new(FXP_REMOVE, id);
        p.bytes(path.as_bytes());
        self.call_status(p, id)
    }

    /// RENAME as version 3 defines it (servers refuse when `to` exists).
    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), Error> {
        let id = self.id();
        let mut p = Packet::new(FXP_RENAME, id);
        p.bytes(from.as_bytes()).bytes(to.as_bytes());
        self.call_status(p, id)
    }

    fn close_handle(&mut self, handle: &[u8]) -> Result<(), Error> {
        let id = self.id();
        let mut p = Packet::new(FXP_CLOSE, id);
        p.bytes(handle);
        self.call_status(p, id)
    }

    /// The names in a directory (with `.` and `..` when the server lists them).
    pub fn read_dir(&mut self, path: &str) -> Result<Vec<String>, Error> {
        let id = self.id();
        let mut p = Packet::new(FXP_OPENDIR, id);
        p.bytes(path.as_bytes());
        let handle = self.call_handle(p, id)?;
        let mut names = Vec::new();
        let listed = loop {
            let id = self.id();
            let mut p = Packet::new(FXP_READDIR, id);
            p.bytes(&handle);
            let answer = match self.call(p, id) {
                Ok(a) => a,
                Err(e) => break Err(e),
            };
            let mut f = Fields(&answer.body);
            match answer.kind {
                FXP_NAME => {
                    let parsed = (|| {
                        for _ in 0..f.u32()? {
                            names.push(String::from_utf8_lossy(f.bytes()?).into_owned());
                            f.bytes()?; // the long name, `ls -l` style
                            f.attrs()?;
                        }
                        Ok::<(), Error>(())
                    })();
                    if let Err(e) = parsed {
                        break Err(e);
                    }
                }
                FXP_STATUS => match f.status() {
                    Ok(s) if s.code == FX_EOF => break Ok(()),
                    Ok(s) => break Err(Error::Status(s)),
                    Err(e) => break Err(e),
                },
                k => break Err(Error::Protocol(format!("unexpected answer of type {k} to READDIR"))),
            }
        };
        let closed = self.close_handle(&handle);
        listed?;
        closed?;
        Ok(names)
    }

    /// OPEN for writing: creates `path` or truncates it; returns its handle.
    pub fn create(&mut self, path: &str, mode: u32) -> Result<Vec<u8>, Error> {
        let id = self.id();
        let mut p = Packet::new(FXP_OPEN, id);
        p.bytes(path.as_bytes()).u32(FXF_WRITE | FXF_CREAT | FXF_TRUNC).u32(ATTR_PERMISSIONS).u32(mode);
        self.call_handle(p, id)
    }

    /// CLOSE of a handle (a server may report a write failure only here).
    pub fn close(&mut self, handle: &[u8]) -> Result<(), Error> {
        self.close_handle(handle)
    }

    /// Creates or truncates `path`, writes `src` to it and closes it (also
    /// after a refused write); returns the bytes written. A read error of
    /// `src` is returned as `Ok(Err(..))`, told apart from the server's.
    /// (The uploader makes these three steps itself, to name each failure.)
    #[cfg(test)]
    pub fn write_file(
        &mut self,
        path: &str,
        mode: u32,
        src: &mut dyn BufRead,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Result<u64, io::Error>, Error> {
        let handle = self.create(path, mode)?;
        let written = self.write_all(&handle, src, progress);
        // A failed connection leaves nothing to close.
        if let Err(Error::Io(_) | Error::Protocol(_)) = written {
            return written;
        }
        let closed = self.close(&handle);
        let n = written?;
        closed?;
        Ok(n)
    }

    /// Writes `src` through an open handle from offset 0, calling `progress`
    /// with each chunk's size as it is sent. The WRITE requests are
    /// pipelined; on the first refusal no further data is sent and the
    /// answers still due are read, so that the session stays usable. A read
    /// error of `src` is returned as `Ok(Err(..))`.
    pub fn write_all(
        &mut self,
        handle: &[u8],
        src: &mut dyn BufRead,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Result<u64, io::Error>, Error> {
        let mut pending: VecDeque<u32> = VecDeque::new();
        let mut offset = 0u64;
        let mut failed: Option<Error> = None;
        let mut read_error = None;
        // Length, type, id, handle, offset and data length precede the data.
        let data_len = CHUNK.saturating_sub(4 + 1 + 4 + 4 + handle.len() + 8 + 4).max(1024);
        let mut chunk = Vec::with_capacity(data_len);
        loop {
            chunk.clear();
            while chunk.len() < data_len {
                let buf = match src.fill_buf() {
                    Ok(b) => b,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        read_error = Some(e);
                        break;
                    }
                };
                if buf.is_empty() {
                    break;
                }
                let n = buf.len().min(data_len - chunk.len());
                chunk.extend_from_slice(&buf[..n]);
                src.consume(n);
            }
            if chunk.is_empty() || read_error.is_some() {
                break;
            }
            let id = self.id();
            let mut p = Packet::new(FXP_WRITE, id);
            p.bytes(handle).u64(offset).bytes(&chunk);
            self.stream.write_all(p.finish())?;
            pending.push_back(id);
            offset += chunk.len() as u64;
            progress(chunk.len() as u64);
            while pending.len() >= WRITES_IN_FLIGHT {
                if let Err(e) = self.write_answer(&mut pending) {
                    failed = Some(e);
                    break;
                }
            }
            if failed.is_some() {
                break;
            }
        }
        while !pending.is_empty() {
            match self.write_answer(&mut pending) {
                Ok(()) => {}
                Err(e @ (Error::Io(_) | Error::Protocol(_))) => return Err(e),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        match (failed, read_error) {
            (Some(e), _) => Err(e),
            (None, Some(e)) => Ok(Err(e)),
            (None, None) => Ok(Ok(offset)),
        }
    }

    /// Reads the answer to the oldest WRITE in flight.
    fn write_answer(&mut self, pending: &mut VecDeque<u32>) -> Result<(), Error> {
        let answer = self.read_answer()?;
        if pending.front() != Some(&answer.id) {
            // Servers may answer out of order; any request in flight may be answered.
            let Some(at) = pending.iter().position(|&i| i == answer.id) else {
                return Err(Error::Protocol(format!("the server answered request {} that was not sent", answer.id)));
            };
            pending.remove(at);
        } else {
            pending.pop_front();
        }
        match answer.kind {
            FXP_STATUS => match Fields(&answer.body).status()? {
                s if s.code == FX_OK => Ok(()),
                s => Err(Error::Status(s)),
            },
            k => Err(Error::Protocol(format!("unexpected answer of type {k} to WRITE"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// An in-memory SFTP server: answers each request as it is written,
    /// keeping files in a map; `fail_write_after` bytes, WRITEs fail with
    /// SSH_FX_FAILURE and `reason`.
    struct Fake {
        out: VecDeque<u8>,
        inbox: Vec<u8>,
        files: HashMap<String, Vec<u8>>,
        handles: HashMap<Vec<u8>, String>,
        fail_write_after: Option<usize>,
        reason: &'static str,
        writes: usize,
        max_in_flight: usize,
        unanswered: usize,
    }

    impl Fake {
        fn new() -> Fake {
            Fake {
                out: VecDeque::new(),
                inbox: Vec::new(),
                files: HashMap::new(),
                handles: HashMap::new(),
                fail_write_after: None,
                reason: "",
                writes: 0,
                max_in_flight: 0,
                unanswered: 0,
            }
        }

        fn send(&mut self, kind: u8, id: Option<u32>, body: &[u8]) {
            let len = 1 + id.map_or(0, |_| 4) + body.len();
            self.out.extend((len as u32).to_be_bytes());
            self.out.push_back(kind);
            if let Some(id) = id {
                self.out.extend(id.to_be_bytes());
            }
            self.out.extend(body);
        }

        fn status(&mut self, id: u32, code: u32, text: &str) {
            let mut b = code.to_be_bytes().to_vec();
            b.extend((text.len() as u32).to_be_bytes());
            b.extend(text.as_bytes());
            b.extend(0u32.to_be_bytes());
            self.send(FXP_STATUS, Some(id), &b);
        }

        fn handle_packet(&mut self, kind: u8, body: &[u8]) {
            if kind == FXP_INIT {
                self.send(FXP_VERSION, None, &3u32.to_be_bytes());
                return;
            }
            let mut f = Fields(body);
            let id = f.u32().unwrap();
            match kind {
                FXP_OPEN => {
                    let path = String::from_utf8(f.bytes().unwrap().to_vec()).unwrap();
                    self.files.insert(path.clone(), Vec::new());
                    let h = format!("h{id}").into_bytes();
                    self.handles.insert(h.clone(), path);
                    let mut b = (h.len() as u32).to_be_bytes().to_vec();
                    b.extend(&h);
                    self.send(FXP_HANDLE, Some(id), &b);
                }
                FXP_WRITE => {
                    let h = f.bytes().unwrap().to_vec();
                    let off = f.u64().unwrap() as usize;
                    let data = f.bytes().unwrap().to_vec();
                    self.writes += data.len();
                    if self.fail_write_after.is_some_and(|n| self.writes > n) {
                        let reason = self.reason;
                        self.status(id, 4, reason);
                        return;
                    }
                    let file = self.files.get_mut(&self.handles[&h]).unwrap();
                    assert_eq!(off, file.len(), "writes arrive in order");
                    file.extend(data);
                    self.status(id, FX_OK, "");
                }
                FXP_CLOSE => self.status(id, FX_OK, ""),
                FXP_STAT => {
                    let path = String::from_utf8(f.bytes().unwrap().to_vec()).unwrap();
                    match self.files.get(&path) {
                        Some(d) => {
                            let mut b = ATTR_SIZE.to_be_bytes().to_vec();
                            b.extend((d.len() as u64).to_be_bytes());
                            self.send(FXP_ATTRS, Some(id), &b);
                        }
                        None => self.status(id, FX_NO_SUCH_FILE, "No such file"),
                    }
                }
                FXP_RENAME => self.status(id, 3, "Permission denied"),
                _ => self.status(id, 8, "Operation unsupported"),
            }
        }
    }

    impl Write for Fake {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.inbox.extend_from_slice(buf);
            while self.inbox.len() >= 4 {
                let len = u32::from_be_bytes(self.inbox[..4].try_into().unwrap()) as usize;
                if self.inbox.len() < 4 + len {
                    break;
                }
                let packet: Vec<u8> = self.inbox.drain(..4 + len).skip(4).collect();
                if packet[0] == FXP_WRITE {
                    self.unanswered += 1;
                    self.max_in_flight = self.max_in_flight.max(self.unanswered);
                }
                self.handle_packet(packet[0], &packet[1..]);
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Read for Fake {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            // Answers to WRITEs count as read once their first byte is.
            let n = buf.len().min(self.out.len());
            for b in buf.iter_mut().take(n) {
                *b = self.out.pop_front().unwrap();
            }
            if n > 0 {
                self.unanswered = self.unanswered.saturating_sub(1);
            }
            Ok(n)
        }
    }

    #[test]
    fn a_file_is_written_whole_in_pipelined_chunks() {
        let mut c = Client::start(Fake::new()).unwrap();
        let data: Vec<u8> = (0..CHUNK * 100 + 17).map(|i| (i * 7 % 251) as u8).collect();
        let mut seen = 0;
        let n = c.write_file("in/a.part", 0o644, &mut &data[..], &mut |k| seen += k).unwrap().unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(seen, n);
        assert_eq!(c.stream.files["in/a.part"], data);
        assert!(c.stream.max_in_flight > 1, "writes are pipelined");
        assert_eq!(c.stat("in/a.part").unwrap().size, Some(data.len() as u64));
    }

    #[test]
    fn a_refused_write_keeps_the_servers_text_and_the_session_stays_usable() {
        let mut fake = Fake::new();
        fake.fail_write_after = Some(3 * CHUNK);
        fake.reason = "No space left on device";
        let mut c = Client::start(fake).unwrap();
        let data = vec![b'x'; CHUNK * 10];
        let Err(Error::Status(s)) = c.write_file("f", 0o644, &mut &data[..], &mut |_| {}) else {
            panic!("the write must fail");
        };
        assert_eq!(s.code, 4);
        let text = s.to_string();
        assert!(text.contains("No space left on device") && text.contains("failure"), "{text}");
        // Every answer due was read: the next request gets its own answer,
        // the size of what the server took (whole writes, up to its budget).
        let kept = c.stream.files["f"].len();
        assert!(kept > 2 * CHUNK && kept <= 3 * CHUNK, "{kept}");
        assert_eq!(c.stat("f").unwrap().size, Some(kept as u64));
        let Err(Error::Status(missing)) = c.stat("nothing") else { panic!() };
        assert!(missing.is_missing());
        let Err(Error::Status(denied)) = c.rename("f", "g") else { panic!() };
        assert_eq!(denied.to_string(), "Permission denied (SSH_FX 3 \"permission denied\")");
    }

    #[test]
    fn statuses_without_text_say_what_the_code_means() {
        let failure = Status { code: 4, message: String::new() };
        assert_eq!(failure.to_string(), "the server refused without saying why (SSH_FX 4 \"failure\")");
        let quota = Status { code: 15, message: " ".into() };
        assert_eq!(quota.to_string(), "quota exceeded (SSH_FX 15 \"quota exceeded\"; the server gave no text)");
        let disk = Status { code: 4, message: "Disk quota exceeded".into() };
        assert_eq!(disk.to_string(), "Disk quota exceeded (server status SSH_FX 4 \"failure\")");
    }

    #[test]
    fn truncated_answers_are_protocol_errors_not_panics() {
        let mut f = Fields(&[0, 0, 0, 9, 1, 2]);
        assert!(matches!(f.bytes(), Err(Error::Protocol(_))));
        let mut f = Fields(&[0, 0, 0, 1]);
        assert!(matches!(f.attrs(), Err(Error::Protocol(_))));
        // A status without text (servers before draft 3).
        assert_eq!(Fields(&[0, 0, 0, 4]).status().unwrap(), Status { code: 4, message: String::new() });
    }
}
