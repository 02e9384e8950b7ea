//! The Prometheus endpoint of `serve` (`metrics_listen`, off by default):
//! `GET /metrics` in the Prometheus text exposition format 0.0.4.
//!
//! One [`Metrics`] handle is shared by the writer, ingest, the SIEM forwarder
//! and the scheduler. What they update on the way of a record is atomics
//! only (counters and gauges are `AtomicU64`s, the histogram is lock-free);
//! a scrape never takes a lock the writer or a connection waits for. What is
//! costly to know is computed by the scrape itself, on the endpoint's thread:
//! bytes on disk again only for a directory whose modification time changed
//! (files enter and leave the history by rename), uploads pending at most
//! every [`SLOW_EVERY`].
//!
//! Counters start at zero when the service starts (Prometheus handles the
//! reset); `state/dropped.json` keeps the all-time drop counts.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use super::scheduler::JobEnv;

/// Uploads pending are computed again at most this often.
const SLOW_EVERY: Duration = Duration::from_secs(10);
/// Distinct `category` labels of the drop counter; further categories (they
/// come from clients) are counted under `category="other"`.
const MAX_CATEGORIES: usize = 64;
/// Longest category kept as a label value.
const MAX_CATEGORY_LEN: usize = 64;
/// Upper bounds of the commit duration histogram, in seconds.
const FSYNC_BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Per directory: the modification time and bytes last seen.
type DirSizes = HashMap<&'static str, (SystemTime, u64)>;

/// The metrics of one service, shared by its threads.
pub struct Metrics {
    registry: Registry,
    /// Records from ingest clients stored and answered with an id.
    pub accepted: IntCounter,
    /// Request lines refused as invalid (not JSON, failed validation, reserved `app_name`, too long).
    pub rejected: IntCounter,
    /// Valid records not stored because the log could not take them then (the client may retry).
    pub refused: IntCounter,
    dropped: IntCounterVec,
    categories: Mutex<HashSet<String>>,
    /// Records committed by the writer, the archiver's own included.
    pub written: IntCounter,
    /// Duration of each group commit that stored records (write, fsync of the file and directories).
    pub fsync: Histogram,
    /// Batches handed by ingest connections to the writer whose commit has not been answered yet.
    pub queue: IntGauge,
    /// Ingest clients connected.
    pub clients: IntGauge,
    next_id: IntGauge,
    siem_lag_records: IntGauge,
    siem_lag_seconds: Gauge,
    /// Failures of the SIEM forwarder (connect, send, read of the log).
    pub siem_errors: IntCounter,
    /// Records written to the SIEM receiver.
    pub siem_sent: IntCounter,
    uploads_pending: IntGaugeVec,
    job_runs: IntCounterVec,
    disk_bytes: IntGaugeVec,
    /// Published by the writer after each group: the id after the last durable record.
    durable_next: AtomicU64,
    siem_on: AtomicBool,
    siem_pos: AtomicU64,
    /// Milliseconds after `epoch` when the forwarder last had nothing left to send.
    siem_caught_up: AtomicU64,
    epoch: Instant,
    /// When uploads pending were last computed, and per directory the
    /// modification time and bytes last seen; held by a scrape.
    slow: Mutex<(Option<Instant>, DirSizes)>,
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    registry.register(Box::new(c.clone())).expect("metric registered once");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    registry.register(Box::new(g.clone())).expect("metric registered once");
    g
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry.register(Box::new(c.clone())).expect("metric registered once");
    c
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry.register(Box::new(g.clone())).expect("metric registered once");
    g
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let fsync = Histogram::with_opts(
            HistogramOpts::new(
                "audit_trail_fsync_duration_seconds",
                "Time a group commit of the log writer takes to write its records and fsync the file and directories, \
                 in seconds (one observation per commit that stored records).",
            )
            .buckets(FSYNC_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        r.register(Box::new(fsync.clone())).expect("metric registered once");
        let siem_lag_seconds = Gauge::new(
            "audit_trail_siem_lag_seconds",
            "Seconds since the SIEM forwarder last had every durable record sent (0 while it is caught up or \
             forwarding is off).",
        )
        .expect("valid metric");
        r.register(Box::new(siem_lag_seconds.clone())).expect("metric registered once");
        let m = Metrics {
            accepted: counter(
                &r,
                "audit_trail_records_accepted_total",
                "Records from ingest clients stored and answered with an id.",
            ),
            rejected: counter(
                &r,
                "audit_trail_records_rejected_total",
                "Request lines refused as invalid: not JSON, a field failing validation, a reserved app_name, a \
                 line too long.",
            ),
            refused: counter(
                &r,
                "audit_trail_records_refused_total",
                "Valid records not stored because the log could not take them then (write error, stopping, too \
                 many unfinished lines); the client was told to retry.",
            ),
            dropped: counter_vec(
                &r,
                "audit_trail_records_dropped_total",
                "Records dropped by the event mask, per category (lowercase; categories beyond the first 64 \
                 seen are counted as \"other\").",
                &["category"],
            ),
            categories: Mutex::new(HashSet::new()),
            written: counter(
                &r,
                "audit_trail_records_written_total",
                "Records committed by the log writer, the archiver's own records included.",
            ),
            fsync,
            queue: gauge(
                &r,
                "audit_trail_ingest_queue_batches",
                "Batches of records handed by ingest connections to the log writer and not yet committed.",
            ),
            clients: gauge(&r, "audit_trail_ingest_clients", "Ingest clients connected."),
            next_id: gauge(
                &r,
                "audit_trail_log_next_id",
                "The id the next record will get (every lower id is on disk).",
            ),
            siem_lag_records: gauge(
                &r,
                "audit_trail_siem_lag_records",
                "Durable records not yet sent to the SIEM receiver (0 when forwarding is off).",
            ),
            siem_lag_seconds,
            siem_errors: counter(
                &r,
                "audit_trail_siem_errors_total",
                "Failures of SIEM forwarding: connections refused or lost, sends that failed, the log unreadable.",
            ),
            siem_sent: counter(&r, "audit_trail_siem_records_sent_total", "Records written to the SIEM receiver."),
            uploads_pending: gauge_vec(
                &r,
                "audit_trail_upload_pending_files",
                "Sealed or archived files a configured upload target has not received yet (computed at most \
                 every 10 s).",
                &["target"],
            ),
            job_runs: counter_vec(
                &r,
                "audit_trail_job_runs_total",
                "Scheduled job runs, per schedule, job and outcome (ok, failed, skipped).",
                &["schedule", "job", "outcome"],
            ),
            disk_bytes: gauge_vec(
                &r,
                "audit_trail_disk_bytes",
                "Bytes of the files under each directory of the data directory (sealed = audit_trail/, archive, \
                 backups, active = state/active/), as of the scrape.",
                &["directory"],
            ),
            registry: r,
            durable_next: AtomicU64::new(0),
            siem_on: AtomicBool::new(false),
            siem_pos: AtomicU64::new(0),
            siem_caught_up: AtomicU64::new(0),
            epoch: Instant::now(),
            slow: Mutex::new((None, HashMap::new())),
        };
        // Known from the first scrape, even while they are zero.
        for d in ["sealed", "archive", "backups", "active"] {
            m.disk_bytes.with_label_values(&[d]);
        }
        m
    }

    /// Counts records dropped by the event mask (`category` as counted in
    /// `state/dropped.json`). Called once per batch that dropped some.
    pub fn dropped(&self, category: &str, n: u64) {
        let mut label: String =
            category.chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_CATEGORY_LEN).collect();
        {
            let mut seen = self.categories.lock().unwrap_or_else(|e| e.into_inner());
            if !seen.contains(&label) {
                if seen.len() >= MAX_CATEGORIES {
                    label = "other".into();
                } else {
                    seen.insert(label.clone());
                }
            }
        }
        self.dropped.with_label_values(&[&label]).inc_by(n);
    }

    /// The writer after each group: `next` is the id after the last durable record.
    pub fn durable(&self, next: u64) {
        self.durable_next.store(next, Ordering::Relaxed);
    }

    /// The forwarder, each time it looks at the log: it is at `pos`, the log
    /// is durable up to `durable_next`.
    pub fn siem_at(&self, pos: u64, durable_next: u64) {
        self.siem_on.store(true, Ordering::Relaxed);
        self.siem_pos.store(pos, Ordering::Relaxed);
        if pos >= durable_next {
            self.siem_caught_up.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        }
    }

    /// The forwarder while forwarding is off.
    pub fn siem_off(&self) {
        self.siem_on.store(false, Ordering::Relaxed);
    }

    /// A scheduled run has ended.
    pub fn job_run(&self, schedule: &str, job: &str, outcome: &str) {
        self.job_runs.with_label_values(&[schedule, job, outcome]).inc();
    }

    /// The exposition: what is computed at scrape time is brought up to date first.
    pub fn render(&self, env: &JobEnv) -> Vec<u8> {
        let next = self.durable_next.load(Ordering::Relaxed);
        self.next_id.set(next as i64);
        if self.siem_on.load(Ordering::Relaxed) {
            let lag = next.saturating_sub(self.siem_pos.load(Ordering::Relaxed));
            self.siem_lag_records.set(lag as i64);
            let since = if lag == 0 {
                0.0
            } else {
                let now = self.epoch.elapsed().as_millis() as u64;
                now.saturating_sub(self.siem_caught_up.load(Ordering::Relaxed)) as f64 / 1000.0
            };
            self.siem_lag_seconds.set(since);
        } else {
            self.siem_lag_records.set(0);
            self.siem_lag_seconds.set(0.0);
        }
        {
            let mut slow = self.slow.lock().unwrap_or_else(|e| e.into_inner());
            let (at, dirs) = &mut *slow;
            self.refresh_disk(env, dirs);
            if at.is_none_or(|t| t.elapsed() >= SLOW_EVERY) {
                self.refresh_uploads(env);
                *at = Some(Instant::now());
            }
        }
        let mut out = Vec::with_capacity(8 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!("metrics: cannot encode: {e}");
        }
        out
    }

    /// Bytes on disk per directory. A history directory is summed again
    /// only when its modification time changed (or is too recent to tell a
    /// change within the file system's time resolution); the active
    /// directory, whose file grows in place, every time.
    fn refresh_disk(&self, env: &JobEnv, seen: &mut DirSizes) {
        let l = &env.layout;
        let now = SystemTime::now();
        for (label, dir) in
            [("sealed", &l.sealed), ("archive", &l.archive), ("backups", &l.backups), ("active", &l.active)]
        {
            let mtime = std::fs::metadata(dir).and_then(|m| m.modified()).ok();
            let settled = mtime.filter(|m| now.duration_since(*m).is_ok_and(|age| age >= Duration::from_secs(2)));
            let bytes = match (settled, seen.get(label)) {
                (Some(m), Some((was, bytes))) if label != "active" && *was == m => *bytes,
                _ => {
                    let bytes: u64 = walkdir::WalkDir::new(dir)
                        .into_iter()
                        .filter_map(|e| e.ok())
                        .filter(|e| e.file_type().is_file())
                        .filter_map(|e| e.metadata().ok())
                        .map(|m| m.len())
                        .sum();
                    match settled {
                        Some(m) => seen.insert(label, (m, bytes)),
                        None => seen.remove(label),
                    };
                    bytes
                }
            };
            self.disk_bytes.with_label_values(&[label]).set(bytes as i64);
        }
    }

    /// Uploads pending per configured target.
    fn refresh_uploads(&self, env: &JobEnv) {
        let l = &env.layout;
        let config = env.config.read().unwrap_or_else(|e| e.into_inner()).clone();
        match crate::upload::status(l, &config) {
            Ok(targets) => {
                self.uploads_pending.reset();
                for t in targets {
                    self.uploads_pending.with_label_values(&[&t.name]).set(t.pending as i64);
                }
            }
            Err(e) => tracing::warn!("metrics: cannot count the uploads pending: {e:#}"),
        }
    }
}

/// The endpoint: its listening socket, bound before the service says it is ready.
///
/// It answers one request at a time on one thread and then closes the
/// connection: a scrape is one small GET. Each connection gets
/// [`REQUEST_DEADLINE`] to send a request head of at most [`MAX_HEAD`] bytes
/// (parsed by `httparse`); a request body is never read, whatever its
/// announced length, and connections waiting their turn stay in the kernel's
/// backlog, so neither slow nor many clients can take memory, threads or
/// descriptors from ingest. (An HTTP server crate with a thread per
/// connection and bodies buffered by their announced length allowed both.)
pub struct Endpoint {
    listener: TcpListener,
    addr: SocketAddr,
}

/// The serving thread of the endpoint.
pub struct Running {
    stop: Arc<AtomicBool>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

/// Longest request head (request line and headers) read.
const MAX_HEAD: usize = 8 * 1024;
/// Time a connection has to send its request head.
const REQUEST_DEADLINE: Duration = Duration::from_secs(2);

impl Endpoint {
    pub fn bind(addr: SocketAddr) -> Result<Endpoint> {
        let listener =
            TcpListener::bind(addr).with_context(|| format!("cannot listen for metrics on {addr} (metrics_listen)"))?;
        let addr = listener.local_addr().unwrap_or(addr);
        if !addr.ip().is_loopback() {
            tracing::warn!("metrics on {addr}: record counts are readable from the network");
        }
        Ok(Endpoint { listener, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves scrapes, one at a time, until [`Running::stop`].
    pub fn start(self, metrics: Arc<Metrics>, env: Arc<JobEnv>) -> Result<Running> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let listener = self.listener;
        let thread = std::thread::Builder::new().name("metrics".into()).spawn(move || {
            let mut last_warning: Option<Instant> = None;
            for conn in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                match conn {
                    Ok(stream) => answer(stream, &metrics, &env),
                    // Out of descriptors, say: keep the listener, try again shortly.
                    Err(e) => {
                        if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                            tracing::warn!("metrics: cannot accept a connection: {e}");
                            last_warning = Some(Instant::now());
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })?;
        Ok(Running { stop, addr: self.addr, thread: Some(thread) })
    }
}

impl Running {
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads a request head, within [`REQUEST_DEADLINE`] and [`MAX_HEAD`] bytes.
fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
        stream.set_read_timeout(Some(left)).ok()?;
        let n = stream.read(&mut buf).ok().filter(|&n| n > 0)?;
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return None;
        }
    }
    Some(head)
}

fn answer(mut stream: TcpStream, metrics: &Metrics, env: &JobEnv) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let reply = match read_head(&mut stream) {
        None => Reply::text(400, "bad request: send one GET /metrics request head\n"),
        Some(head) => {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&head) {
                Ok(httparse::Status::Complete(_)) => {
                    let path = req.path.unwrap_or_default().split('?').next().unwrap_or_default();
                    let method = req.method.unwrap_or_default();
                    if path != "/metrics" {
                        Reply::text(404, "not found; metrics are at /metrics\n")
                    } else if method != "GET" && method != "HEAD" {
                        Reply::text(405, "only GET\n")
                    } else {
                        Reply {
                            code: 200,
                            content_type: "text/plain; version=0.0.4; charset=utf-8",
                            body: metrics.render(env),
                            head_only: method == "HEAD",
                        }
                    }
                }
                _ => Reply::text(400, "bad request\n"),
            }
        }
    };
    if let Err(e) = reply.write(&mut stream) {
        tracing::debug!("metrics: cannot answer a scrape: {e}");
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

struct Reply {
    code: u16,
    content_type: &'static str,
    body: Vec<u8>,
    head_only: bool,
}

impl Reply {
    fn text(code: u16, body: &str) -> Reply {
        Reply { code, content_type: "text/plain; charset=utf-8", body: body.as_bytes().to_vec(), head_only: false }
    }

    fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        let reason = match self.code {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            _ => "Method Not Allowed",
        };
        let allow = if self.code == 405 { "Allow: GET, HEAD\r\n" } else { "" };
        write!(
            out,
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
            self.code,
            self.content_type,
            self.body.len()
        )?;
        if !self.head_only {
            out.write_all(&self.body)?;
        }
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_labels_are_bounded() {
        let m = Metrics::new();
        for i in 0..(MAX_CATEGORIES + 10) {
            m.dropped(&format!("c{i}"), 1);
        }
        m.dropped("c0", 2);
        let text =
            String::from_utf8(TextEncoder::new().encode_to_string(&m.registry.gather()).unwrap().into_bytes()).unwrap();
        assert!(text.contains("audit_trail_records_dropped_total{category=\"c0\"} 3"), "{text}");
        assert!(text.contains("audit_trail_records_dropped_total{category=\"other\"} 10"), "{text}");
        assert_eq!(text.matches("audit_trail_records_dropped_total{").count(), MAX_CATEGORIES + 1);
    }
}
