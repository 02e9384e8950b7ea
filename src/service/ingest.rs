//! The ingest socket (SPEC §4, §12): JSON Lines in, one answer line per
//! request line, in request order: `{"id":N}` once the record is on disk,
//! `{"error":"…"}` when it is refused, or `{"id":null,"dropped":"…"}` when the
//! event mask drops it. Blank lines are not requests and get no answer.
//!
//! Each connection has a reader thread (parse, validate, render) and an
//! answer thread. The reader hands each batch of records to the log writer
//! and goes on reading while the batch is committed; the answer thread waits
//! for the commits in order and writes the answers. A client that stops
//! reading its answers only stalls its own connection: the writer never
//! waits for a client.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::metrics::Metrics;
use super::writer::{Batch, Refused, Request};
use crate::config::mask::EventMask;
use crate::protocol::{self, AnswerRef};
use crate::record::{self, Defaults, Field};
use crate::timestamp::{self, Clock};

/// Longest request line accepted (an `action_data` of 1 MiB, escaped).
pub const MAX_LINE: usize = 8 << 20;
/// Bytes read from a client at a time; one read becomes one batch.
const READ_CHUNK: usize = 256 * 1024;
/// Batches of one connection waiting for their answers (each up to
/// READ_CHUNK of requests): enough to keep the writer's groups full, few
/// enough that four busy clients hold under 30 MiB.
const IN_FLIGHT: usize = 4;
/// Connections served at once at most, whatever the descriptors allow; more
/// are told to retry later and closed.
pub const MAX_CLIENTS: usize = 4096;
/// Descriptors a connection holds (the stream, the answer side, the handle
/// used to close it at stop).
const FDS_PER_CLIENT: u64 = 3;
/// Descriptors kept for everything else (files, the control socket, uploads).
const FDS_RESERVED: u64 = 128;
/// A client that does not read its answers for this long is disconnected.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);
/// A request line must be finished within this long once begun.
const LINE_TIMEOUT: Duration = Duration::from_secs(30);
/// A client that sends nothing for this long is disconnected.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Bytes all connections together may hold in unfinished request lines
/// beyond their first read buffer. A line that would pass it is refused
/// (retry later) and its connection closed, so memory stays bounded however
/// many clients send long lines slowly.
const LINE_BUDGET: usize = 512 << 20;
/// Stack of a connection's threads: they parse and render, nothing deep.
const CLIENT_STACK: usize = 256 * 1024;

/// What connections share.
pub struct Shared {
    pub writer: SyncSender<Request>,
    pub host: String,
    pub clock: Arc<dyn Clock>,
    pub mask: RwLock<EventMask>,
    /// Dropped by the mask since the counts were last saved.
    pub dropped: Mutex<BTreeMap<String, u64>>,
    pub stopping: AtomicBool,
    conns: Mutex<HashMap<u64, UnixStream>>,
    live: (Mutex<usize>, Condvar),
    next_conn: AtomicU64,
    /// Connections served at once (see [`client_cap`]).
    pub max_clients: usize,
    /// Bytes of line buffers beyond the first chunk, all connections together.
    buffered: AtomicUsize,
    pub metrics: Arc<Metrics>,
}

impl Shared {
    pub fn new(
        writer: SyncSender<Request>,
        host: String,
        clock: Arc<dyn Clock>,
        mask: EventMask,
        metrics: Arc<Metrics>,
    ) -> Shared {
        Shared {
            writer,
            host,
            clock,
            mask: RwLock::new(mask),
            dropped: Mutex::new(BTreeMap::new()),
            stopping: AtomicBool::new(false),
            conns: Mutex::new(HashMap::new()),
            live: (Mutex::new(0), Condvar::new()),
            next_conn: AtomicU64::new(1),
            max_clients: MAX_CLIENTS,
            buffered: AtomicUsize::new(0),
            metrics,
        }
    }

    /// Stops reading from every client, lets the answers already due go out
    /// (up to `grace`), then closes what is left.
    pub fn close_all(&self, grace: Duration) {
        for s in self.conns.lock().unwrap_or_else(|e| e.into_inner()).values() {
            let _ = s.shutdown(std::net::Shutdown::Read);
        }
        let deadline = Instant::now() + grace;
        let (lock, cv) = &self.live;
        let mut n = lock.lock().unwrap_or_else(|e| e.into_inner());
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            n = cv.wait_timeout(n, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        drop(n);
        for s in self.conns.lock().unwrap_or_else(|e| e.into_inner()).values() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Raises the open-file limit to its hard maximum and returns how many
/// clients the descriptors then allow (at most [`MAX_CLIENTS`]).
pub fn client_cap() -> (usize, u64) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        let raised = rustix::process::Rlimit { current: lim.maximum, maximum: lim.maximum };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            lim = getrlimit(Resource::Nofile);
        }
    }
    let fds = lim.current.unwrap_or(u64::MAX);
    let cap = (fds.saturating_sub(FDS_RESERVED) / FDS_PER_CLIENT).clamp(1, MAX_CLIENTS as u64);
    (cap as usize, fds)
}

/// The answer a client gets when it cannot be served now.
const BUSY: &[u8] = b"{\"error\":\"too many clients; nothing was stored; try again later\",\"retry\":true}\n";

/// Accepts clients until `shared.stopping` is set (and a connection wakes
/// the accept).
///
/// When the process runs out of descriptors, one kept in reserve is given
/// up for a moment to accept the waiting client, tell it to retry and close
/// it, so clients are answered instead of left hanging, and the loop sleeps
/// briefly instead of spinning.
pub fn accept_loop(listener: UnixListener, shared: Arc<Shared>) {
    let mut reserve = std::fs::File::open("/dev/null").ok();
    loop {
        let conn = listener.accept();
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let stream = match conn {
            Ok((s, _)) => s,
            Err(e) if crate::error::io_is_temporary(&e) && e.kind() != std::io::ErrorKind::Interrupted => {
                if matches!(e.raw_os_error(), Some(23 | 24)) {
                    drop(reserve.take());
                    if let Ok((mut s, _)) = listener.accept() {
                        let _ = s.write_all(BUSY);
                    }
                    reserve = std::fs::File::open("/dev/null").ok();
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(_) => continue,
        };
        let count = *shared.live.0.lock().unwrap_or_else(|e| e.into_inner());
        if count >= shared.max_clients {
            let mut s = stream;
            let _ = s.write_all(BUSY);
            continue;
        }
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        let Ok(registered) = stream.try_clone() else {
            let mut s = stream;
            let _ = s.write_all(BUSY);
            continue;
        };
        shared.conns.lock().unwrap_or_else(|e| e.into_inner()).insert(id, registered);
        *shared.live.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let sh = shared.clone();
        let spawned =
            std::thread::Builder::new().name(format!("client-{id}")).stack_size(CLIENT_STACK).spawn(move || {
                sh.metrics.clients.inc();
                serve_client(stream, &sh);
                sh.metrics.clients.dec();
                sh.conns.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                let (lock, cv) = &sh.live;
                *lock.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
                cv.notify_all();
            });
        if spawned.is_err() {
            if let Some(mut s) = shared.conns.lock().unwrap_or_else(|e| e.into_inner()).remove(&id) {
                let _ = s.write_all(BUSY);
            }
            *shared.live.0.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        }
    }
}

/// The answer to one request line.
enum Item {
    /// The n-th record of the batch.
    Record(u64),
    /// Refused; `true` when sending it again later can succeed.
    Error(String, bool),
    Dropped(String),
}

struct Pending {
    items: Vec<Item>,
    reply: Option<mpsc::Receiver<Result<u64, Refused>>>,
    /// The batch is counted in the ingest queue gauge until its commit is answered.
    queued: bool,
}

fn serve_client(stream: UnixStream, shared: &Shared) {
    let Ok(out) = stream.try_clone() else { return };
    let _ = out.set_write_timeout(Some(ANSWER_TIMEOUT));
    let (tx, rx) = mpsc::sync_channel::<Pending>(IN_FLIGHT);
    std::thread::scope(|s| {
        let metrics = &*shared.metrics;
        let answers =
            std::thread::Builder::new().stack_size(CLIENT_STACK).spawn_scoped(s, move || answer(out, rx, metrics));
        if answers.is_err() {
            let mut s = stream;
            let _ = s.write_all(BUSY);
            return;
        }
        read_requests(stream, shared, tx);
    });
}

fn answer(out: UnixStream, rx: mpsc::Receiver<Pending>, metrics: &Metrics) {
    let mut w = BufWriter::with_capacity(64 * 1024, &out);
    let mut line = Vec::with_capacity(64);
    for p in rx {
        let first = p.reply.map(|r| r.recv().unwrap_or_else(|_| Err(Refused::stopping())));
        if p.queued {
            metrics.queue.dec();
        }
        if let Some(first) = &first {
            let records = p.items.iter().filter(|i| matches!(i, Item::Record(_))).count() as u64;
            match first {
                Ok(_) => metrics.accepted.inc_by(records),
                Err(_) => metrics.refused.inc_by(records),
            }
        }
        for item in &p.items {
            line.clear();
            match (item, &first) {
                (Item::Record(n), Some(Ok(first))) => protocol::write(&mut line, AnswerRef::Id(first + n)),
                (Item::Record(_), Some(Err(e))) => error_line(&mut line, &e.message, e.retry),
                (Item::Record(_), None) => error_line(&mut line, "internal error: no commit for this record", false),
                (Item::Error(e, retry), _) => error_line(&mut line, e, *retry),
                (Item::Dropped(why), _) => protocol::write(&mut line, AnswerRef::Dropped(why)),
            }
            if w.write_all(&line).is_err() {
                let _ = out.shutdown(std::net::Shutdown::Both);
                return;
            }
        }
        if w.flush().is_err() {
            let _ = out.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
    let _ = w.flush();
    let _ = out.shutdown(std::net::Shutdown::Write);
}

/// `{"error":"…","retry":…}`: nothing of the line was stored; `retry` says
/// whether sending it again later can succeed.
fn error_line(line: &mut Vec<u8>, msg: &str, retry: bool) {
    protocol::write(line, AnswerRef::Error { message: msg, retry });
}

/// The line buffer of one connection. Growth beyond the first chunk is
/// counted against [`LINE_BUDGET`] and given back when the buffer shrinks or
/// the connection ends.
struct LineBuf<'s> {
    buf: Vec<u8>,
    shared: &'s Shared,
    charged: usize,
}

impl<'s> LineBuf<'s> {
    fn new(shared: &'s Shared) -> Self {
        LineBuf { buf: vec![0u8; READ_CHUNK], shared, charged: 0 }
    }

    /// Makes room for another read when less than half a chunk is free:
    /// doubles, up to what the longest line needs. False when the budget
    /// shared by all connections does not allow it.
    fn make_room(&mut self, filled: usize) -> bool {
        if self.buf.len() - filled >= READ_CHUNK / 2 {
            return true;
        }
        let want = (self.buf.len() * 2).min(MAX_LINE + READ_CHUNK).max(filled + READ_CHUNK / 2);
        let extra = want - self.buf.len();
        let before = self.shared.buffered.fetch_add(extra, Ordering::SeqCst);
        if before + extra > LINE_BUDGET {
            self.shared.buffered.fetch_sub(extra, Ordering::SeqCst);
            return false;
        }
        self.charged += extra;
        self.buf.resize(want, 0);
        true
    }

    /// Back to one chunk once a long line has been handed on.
    fn shrink(&mut self, filled: usize) {
        if self.charged > 0 && filled <= READ_CHUNK / 2 {
            self.buf.truncate(READ_CHUNK);
            self.buf.shrink_to_fit();
            self.shared.buffered.fetch_sub(self.charged, Ordering::SeqCst);
            self.charged = 0;
        }
    }
}

impl Drop for LineBuf<'_> {
    fn drop(&mut self) {
        self.shared.buffered.fetch_sub(self.charged, Ordering::SeqCst);
    }
}

fn read_requests(mut stream: UnixStream, shared: &Shared, tx: SyncSender<Pending>) {
    // Reads land straight in `buf`; complete lines are handed on from there
    // and only a partial last line is moved back to the front.
    let mut lb = LineBuf::new(shared);
    let mut filled = 0;
    let mut line_no = 0u64;
    let _ = stream.set_read_timeout(Some(LINE_TIMEOUT));
    let mut idle = Duration::ZERO;
    let refuse = |msg: String, retry: bool| {
        if retry { &shared.metrics.refused } else { &shared.metrics.rejected }.inc();
        let _ = tx.send(Pending { items: vec![Item::Error(msg, retry)], reply: None, queued: false });
    };
    loop {
        if !lb.make_room(filled) {
            refuse(
                format!(
                    "request line {} cannot be taken now: the service holds too many unfinished lines; nothing of \
                     it was stored; connection closed, try again later",
                    line_no + 1
                ),
                true,
            );
            return;
        }
        let n = match stream.read(&mut lb.buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                idle += LINE_TIMEOUT;
                if filled > 0 {
                    refuse(
                        format!(
                            "request line {} was not finished within {} s; nothing of it was stored; connection closed",
                            line_no + 1,
                            LINE_TIMEOUT.as_secs()
                        ),
                        true,
                    );
                    return;
                }
                if idle >= IDLE_TIMEOUT {
                    return;
                }
                continue;
            }
            Err(_) => 0,
        };
        idle = Duration::ZERO;
        if n == 0 {
            // End of input: a last line without a newline is still a request.
            if filled > 0 {
                let mut last = lb.buf[..filled].to_vec();
                last.push(b'\n');
                let _ = submit(&last, shared, &tx, &mut line_no);
            }
            return;
        }
        let seen = filled;
        filled += n;
        let Some(end) = memchr::memrchr(b'\n', &lb.buf[seen..filled]).map(|i| seen + i) else {
            if filled > MAX_LINE {
                refuse(
                    format!("request line {} is longer than {MAX_LINE} bytes; connection closed", line_no + 1),
                    false,
                );
                return;
            }
            continue;
        };
        if !submit(&lb.buf[..=end], shared, &tx, &mut line_no) {
            return;
        }
        lb.buf.copy_within(end + 1..filled, 0);
        filled -= end + 1;
        lb.shrink(filled);
    }
}

/// Checks and renders complete lines, hands the records to the writer and
/// queues the answers. False when the connection should end.
fn submit(lines: &[u8], shared: &Shared, tx: &SyncSender<Pending>, line_no: &mut u64) -> bool {
    let now = timestamp::format(&shared.clock.now());
    let defaults = Defaults { now: &now, node: &shared.host };
    let mask = shared.mask.read().unwrap_or_else(|e| e.into_inner()).clone();
    let mut items = Vec::new();
    let mut bodies = Vec::with_capacity(lines.len() * 2);
    let mut ends = Vec::new();
    let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
    let mut invalid = 0;
    // `lines` ends with a newline: the empty piece after it is not a line.
    for line in lines.strip_suffix(b"\n").unwrap_or(lines).split(|&b| b == b'\n') {
        *line_no += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let mut rec = match record::parse_json_line(line) {
            Ok(r) => r,
            Err(e) => {
                items.push(Item::Error(e.to_string(), false));
                invalid += 1;
                continue;
            }
        };
        if let Err(es) = record::validate(&mut rec, &defaults) {
            let msg: Vec<String> = es.iter().map(ToString::to_string).collect();
            items.push(Item::Error(msg.join("; "), false));
            invalid += 1;
            continue;
        }
        if rec.get(Field::AppName).is_some_and(record::is_reserved_app) {
            items.push(Item::Error(record::reserved_app_error().to_string(), false));
            invalid += 1;
            continue;
        }
        let category = rec.get(Field::Category);
        if !mask.admits(category) {
            let c = category.unwrap_or_default();
            *dropped.entry(c.trim().to_ascii_lowercase()).or_default() += 1;
            items.push(Item::Dropped(EventMask::reason(c)));
            continue;
        }
        items.push(Item::Record(ends.len() as u64));
        crate::store::writer::render_entry(&mut bodies, &rec);
        ends.push(bodies.len());
    }
    if !dropped.is_empty() {
        let mut d = shared.dropped.lock().unwrap_or_else(|e| e.into_inner());
        for (k, v) in dropped {
            shared.metrics.dropped(&k, v);
            *d.entry(k).or_default() += v;
        }
    }
    if invalid > 0 {
        shared.metrics.rejected.inc_by(invalid);
    }
    if items.is_empty() {
        return true;
    }
    let mut queued = false;
    let reply = if ends.is_empty() {
        None
    } else {
        let (rtx, rrx) = mpsc::channel();
        // Counted while it waits for room in the writer's queue too.
        shared.metrics.queue.inc();
        if shared.stopping.load(Ordering::SeqCst)
            || shared.writer.send(Request::Append(Batch { bodies, ends, reply: rtx })).is_err()
        {
            shared.metrics.queue.dec();
            drop(rrx);
            let (etx, erx) = mpsc::channel();
            let _ = etx.send(Err(Refused::stopping()));
            Some(erx)
        } else {
            queued = true;
            Some(rrx)
        }
    };
    tx.send(Pending { items, reply, queued }).is_ok()
}
