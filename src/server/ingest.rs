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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::writer::{Batch, Request};
use crate::mask::EventMask;
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
/// Connections served at once; more are told so and closed.
pub const MAX_CLIENTS: usize = 1024;
/// A client that does not read its answers for this long is disconnected.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

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
}

impl Shared {
    pub fn new(writer: SyncSender<Request>, host: String, clock: Arc<dyn Clock>, mask: EventMask) -> Shared {
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

/// Accepts clients until `shared.stopping` is set (and a connection wakes
/// the accept).
pub fn accept_loop(listener: UnixListener, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = conn else { continue };
        let count = *shared.live.0.lock().unwrap_or_else(|e| e.into_inner());
        if count >= MAX_CLIENTS {
            let mut s = stream;
            let _ = s.write_all(b"{\"error\":\"too many clients; try again later\"}\n");
            continue;
        }
        let id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
        let Ok(registered) = stream.try_clone() else { continue };
        shared.conns.lock().unwrap_or_else(|e| e.into_inner()).insert(id, registered);
        *shared.live.0.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let sh = shared.clone();
        let spawned = std::thread::Builder::new().name(format!("client-{id}")).spawn(move || {
            serve_client(stream, &sh);
            sh.conns.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            let (lock, cv) = &sh.live;
            *lock.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
            cv.notify_all();
        });
        if spawned.is_err() {
            shared.conns.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            *shared.live.0.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        }
    }
}

/// The answer to one request line.
enum Item {
    /// The n-th record of the batch.
    Record(u64),
    Error(String),
    Dropped(String),
}

struct Pending {
    items: Vec<Item>,
    reply: Option<mpsc::Receiver<Result<u64, String>>>,
}

fn serve_client(stream: UnixStream, shared: &Shared) {
    let Ok(out) = stream.try_clone() else { return };
    let _ = out.set_write_timeout(Some(ANSWER_TIMEOUT));
    let (tx, rx) = mpsc::sync_channel::<Pending>(IN_FLIGHT);
    std::thread::scope(|s| {
        s.spawn(move || answer(out, rx));
        read_requests(stream, shared, tx);
    });
}

fn answer(out: UnixStream, rx: mpsc::Receiver<Pending>) {
    let mut w = BufWriter::with_capacity(64 * 1024, &out);
    let mut line = Vec::with_capacity(64);
    for p in rx {
        let first = p.reply.map(|r| r.recv().unwrap_or_else(|_| Err("the service is stopping".into())));
        for item in &p.items {
            line.clear();
            match (item, &first) {
                (Item::Record(n), Some(Ok(first))) => {
                    line.extend_from_slice(b"{\"id\":");
                    line.extend_from_slice(itoa::Buffer::new().format(first + n).as_bytes());
                    line.extend_from_slice(b"}\n");
                }
                (Item::Record(_), Some(Err(e))) => error_line(&mut line, e),
                (Item::Record(_), None) => error_line(&mut line, "internal error: no commit for this record"),
                (Item::Error(e), _) => error_line(&mut line, e),
                (Item::Dropped(why), _) => {
                    line.extend_from_slice(b"{\"id\":null,\"dropped\":");
                    line.extend_from_slice(serde_json::to_string(why).unwrap_or_default().as_bytes());
                    line.extend_from_slice(b"}\n");
                }
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

fn error_line(line: &mut Vec<u8>, msg: &str) {
    line.extend_from_slice(b"{\"error\":");
    line.extend_from_slice(serde_json::to_string(msg).unwrap_or_default().as_bytes());
    line.extend_from_slice(b"}\n");
}

fn read_requests(mut stream: UnixStream, shared: &Shared, tx: SyncSender<Pending>) {
    // Reads land straight in `buf`; complete lines are handed on from there
    // and only a partial last line is moved back to the front.
    let mut buf = vec![0u8; READ_CHUNK];
    let mut filled = 0;
    let mut line_no = 0u64;
    loop {
        if buf.len() - filled < READ_CHUNK / 2 {
            // A line longer than the buffer so far: grow (up to MAX_LINE, below).
            buf.resize(buf.len() * 2, 0);
        }
        let n = match stream.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        if n == 0 {
            // End of input: a last line without a newline is still a request.
            if filled > 0 {
                let mut last = buf[..filled].to_vec();
                last.push(b'\n');
                let _ = submit(&last, shared, &tx, &mut line_no);
            }
            return;
        }
        let seen = filled;
        filled += n;
        let Some(end) = memchr::memrchr(b'\n', &buf[seen..filled]).map(|i| seen + i) else {
            if filled > MAX_LINE {
                let msg = format!("request line {} is longer than {MAX_LINE} bytes; connection closed", line_no + 1);
                let _ = tx.send(Pending { items: vec![Item::Error(msg)], reply: None });
                return;
            }
            continue;
        };
        if !submit(&buf[..=end], shared, &tx, &mut line_no) {
            return;
        }
        buf.copy_within(end + 1..filled, 0);
        filled -= end + 1;
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
    for line in lines.split(|&b| b == b'\n') {
        *line_no += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let mut rec = match record::parse_json_line(line) {
            Ok(r) => r,
            Err(e) => {
                items.push(Item::Error(e.to_string()));
                continue;
            }
        };
        if let Err(es) = record::validate(&mut rec, &defaults) {
            let msg: Vec<String> = es.iter().map(ToString::to_string).collect();
            items.push(Item::Error(msg.join("; ")));
            continue;
        }
        let category = rec.get(Field::Category);
        // The archiver's own records (sent by the CLI) are never masked.
        if !mask.admits(category) && rec.get(Field::AppName) != Some(crate::selfaudit::APP_NAME) {
            let c = category.unwrap_or_default();
            *dropped.entry(c.trim().to_ascii_lowercase()).or_default() += 1;
            items.push(Item::Dropped(EventMask::reason(c)));
            continue;
        }
        items.push(Item::Record(ends.len() as u64));
        crate::log::render_entry(&mut bodies, &rec);
        ends.push(bodies.len());
    }
    if !dropped.is_empty() {
        let mut d = shared.dropped.lock().unwrap_or_else(|e| e.into_inner());
        for (k, v) in dropped {
            *d.entry(k).or_default() += v;
        }
    }
    if items.is_empty() {
        return true;
    }
    let reply = if ends.is_empty() {
        None
    } else {
        let (rtx, rrx) = mpsc::channel();
        if shared.stopping.load(Ordering::SeqCst)
            || shared.writer.send(Request::Append(Batch { bodies, ends, reply: rtx })).is_err()
        {
            drop(rrx);
            let (etx, erx) = mpsc::channel();
            let _ = etx.send(Err("the service is stopping; record not accepted".into()));
            Some(erx)
        } else {
            Some(rrx)
        }
    };
    tx.send(Pending { items, reply }).is_ok()
}
