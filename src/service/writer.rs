//! The log writer: one thread owns the [`Log`] and commits whatever requests
//! are queued as one group (group commit). Connections keep parsing and
//! rendering while a group is being written and fsynced, so one fsync covers
//! every record that arrived in the meantime, from any number of clients.
//!
//! A reply is sent only after the group's fsync, so an id handed to a client
//! is always on disk. If a write fails, every request of the group gets the
//! error, the log is reopened (which repairs a torn tail) and later requests
//! are served again.
//!
//! Under a systemd watchdog (`WatchdogSec`, `WATCHDOG_USEC` in the
//! environment) the loop sends `WATCHDOG=1` at half the interval: while it
//! waits for requests and between groups, never from a group stuck in a
//! write or an fsync, so a writer that stops making progress gets the
//! service restarted.

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::metrics::Metrics;
use crate::store::writer::{Log, Sealed};

/// Records rendered by a connection, committed together.
pub struct Batch {
    /// Record entries ([`crate::store::writer::render_entry`]) back to back.
    pub bodies: Vec<u8>,
    /// End offset of each body in `bodies`.
    pub ends: Vec<usize>,
    /// Gets the id of the first record once all are on disk.
    pub reply: mpsc::Sender<Result<u64, Refused>>,
}

/// Why a batch was not stored: none of it was.
#[derive(Debug, Clone)]
pub struct Refused {
    pub message: String,
    /// Whether sending the same records again later can succeed.
    pub retry: bool,
}

impl Refused {
    /// A failure of the log, not of the records: the batch was taken back
    /// and the log is reopened, so sending the records again can succeed.
    fn from_error(e: &anyhow::Error, what: &str) -> Refused {
        Refused { message: format!("{what}: {e:#}; nothing of it was stored"), retry: true }
    }

    pub fn stopping() -> Refused {
        Refused { message: "the service is stopping; record not accepted".into(), retry: true }
    }
}

pub enum Request {
    Append(Batch),
    Rotate(mpsc::Sender<Result<Option<Sealed>, String>>),
    /// Finish what is queued before this, then stop; replies with the next id.
    Stop(mpsc::Sender<u64>),
}

/// Requests waiting for the writer; senders block beyond this (backpressure).
const QUEUE: usize = 256;
/// A group stops taking queued requests beyond this many bytes of records.
const GROUP_BYTES: usize = 64 << 20;

/// How often the id high-water mark follows the ids handed out.
const MARK_EVERY: Duration = Duration::from_secs(1);

pub type Reopen = Box<dyn Fn() -> Result<Log> + Send>;

/// The id after the last record known to be on disk, published after every
/// group's fsync: readers of the log (the SIEM forwarder) never pass it, so
/// they never send a record that a power loss could still take back.
#[derive(Debug, Default)]
pub struct Durable {
    next: std::sync::Mutex<u64>,
    changed: std::sync::Condvar,
}

impl Durable {
    pub fn publish(&self, next: u64) {
        let mut n = self.next.lock().unwrap_or_else(|e| e.into_inner());
        if next > *n {
            *n = next;
            self.changed.notify_all();
        }
    }

    /// The current value, once it exceeds `seen` or `timeout` has passed.
    pub fn wait_beyond(&self, seen: u64, timeout: Duration) -> u64 {
        let n = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let (n, _) = self.changed.wait_timeout_while(n, timeout, |n| *n <= seen).unwrap_or_else(|e| e.into_inner());
        *n
    }
}

pub fn spawn(
    log: Log,
    reopen: Reopen,
    durable: Arc<Durable>,
    metrics: Arc<Metrics>,
) -> (SyncSender<Request>, JoinHandle<()>) {
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    durable.publish(log.next_id());
    metrics.durable(log.next_id());
    let handle = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || run(log, reopen, rx, &durable, &metrics))
        .expect("cannot start the log writer thread");
    (tx, handle)
}

/// `WATCHDOG=1` to systemd at half its watchdog interval, from the writer's loop.
struct Watchdog {
    every: Option<Duration>,
    last: Instant,
}

impl Watchdog {
    fn new() -> Watchdog {
        let every = sd_notify::watchdog_enabled().filter(|d| !d.is_zero()).map(|d| d / 2);
        if let Some(every) = every {
            tracing::info!("systemd watchdog: keep-alive every {} ms from the log writer", every.as_millis());
        }
        Watchdog { every, last: Instant::now() }
    }

    /// Waits for the next request, keeping systemd's watchdog fed meanwhile.
    fn recv(&mut self, rx: &Receiver<Request>) -> Option<Request> {
        let Some(every) = self.every else { return rx.recv().ok() };
        loop {
            match rx.recv_timeout(every.saturating_sub(self.last.elapsed())) {
                Ok(r) => return Some(r),
                Err(RecvTimeoutError::Timeout) => self.keep_alive(),
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// After a group: a keep-alive when one is due.
    fn progress(&mut self) {
        if self.every.is_some_and(|every| self.last.elapsed() >= every) {
            self.keep_alive();
        }
    }

    fn keep_alive(&mut self) {
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]) {
            tracing::warn!("systemd watchdog: cannot send a keep-alive: {e}");
        }
        self.last = Instant::now();
    }
}

fn run(log: Log, reopen: Reopen, rx: Receiver<Request>, durable: &Durable, metrics: &Metrics) {
    let mut log = Some(log);
    let mut next_id = log.as_ref().map_or(0, Log::next_id);
    let mut last_mark = std::time::Instant::now();
    let mut pending = Vec::new();
    let mut watchdog = Watchdog::new();
    while let Some(first) = watchdog.recv(&rx) {
        let mut group = vec![first];
        let mut bytes = size(&group[0]);
        while bytes < GROUP_BYTES && !matches!(group.last(), Some(Request::Stop(_))) {
            match rx.try_recv() {
                Ok(r) => {
                    bytes += size(&r);
                    group.push(r);
                }
                Err(_) => break,
            }
        }
        if log.is_none() {
            match reopen() {
                Ok(l) => log = Some(l),
                Err(e) => {
                    let why = Refused::from_error(&e, "the log cannot be written");
                    tracing::error!("{}", why.message);
                    for r in group {
                        fail(r, &why, next_id);
                    }
                    // Do not spin on a persistent failure.
                    std::thread::sleep(Duration::from_millis(200));
                    watchdog.progress();
                    continue;
                }
            }
        }
        let l = log.as_mut().expect("log present");
        report_incidents(l, &mut pending, metrics);
        let stop = process(l, group, metrics);
        report_incidents(l, &mut pending, metrics);
        if last_mark.elapsed() >= MARK_EVERY && !l.is_poisoned() {
            if let Err(e) = l.save_high_water() {
                tracing::error!("cannot save the id high-water mark: {e:#}");
            }
            last_mark = std::time::Instant::now();
        }
        next_id = l.next_id();
        durable.publish(next_id);
        metrics.durable(next_id);
        watchdog.progress();
        if l.is_poisoned() {
            log = None;
        }
        if let Some(reply) = stop {
            if let Some(mut l) = log.take()
                && let Err(e) = l.save_high_water()
            {
                tracing::error!("cannot save the id high-water mark: {e:#}");
            }
            let _ = reply.send(next_id);
            return;
        }
    }
}

fn size(r: &Request) -> usize {
    match r {
        Request::Append(b) => b.bodies.len(),
        _ => 0,
    }
}

fn fail(r: Request, why: &Refused, next_id: u64) {
    match r {
        Request::Append(b) => {
            let _ = b.reply.send(Err(why.clone()));
        }
        Request::Rotate(reply) => {
            let _ = reply.send(Err(why.message.clone()));
        }
        Request::Stop(reply) => {
            let _ = reply.send(next_id);
        }
    }
}

/// Writes one group; returns the stop request if the group ended with one.
/// Appends up to the next rotate or stop share one batch: stored whole or,
/// on an error, not at all (every request of it gets the error).
fn process(log: &mut Log, group: Vec<Request>, metrics: &Metrics) -> Option<mpsc::Sender<u64>> {
    let mut iter = group.into_iter().peekable();
    loop {
        let mut appends: Vec<(mpsc::Sender<Result<u64, Refused>>, u64)> = Vec::new();
        let mut error: Option<Refused> = None;
        let mut other = None;
        let committed = match log.begin() {
            Err(e) => Err(Refused::from_error(&e, "the log cannot be written")),
            Ok(mut app) => {
                for r in iter.by_ref() {
                    match r {
                        Request::Append(b) => {
                            if error.is_some() {
                                appends.push((b.reply, 0));
                                continue;
                            }
                            let mut start = 0;
                            let mut first = None;
                            for &end in &b.ends {
                                match app.push_entry(&b.bodies[start..end]) {
                                    Ok(id) => {
                                        first.get_or_insert(id);
                                    }
                                    Err(e) => {
                                        error = Some(Refused::from_error(&e, "the record could not be written"));
                                        break;
                                    }
                                }
                                start = end;
                            }
                            appends.push((b.reply, first.unwrap_or(0)));
                        }
                        r => {
                            other = Some(r);
                            break;
                        }
                    }
                }
                match error.take() {
                    // Dropping the appender takes the batch back.
                    Some(refused) => Err(refused),
                    None => {
                        let started = Instant::now();
                        let committed = app.commit();
                        if let Ok(Some((first, last))) = &committed {
                            metrics.fsync.observe(started.elapsed().as_secs_f64());
                            metrics.written.inc_by(last + 1 - first);
                        }
                        committed.map_err(|e| Refused::from_error(&e, "the record could not be written"))
                    }
                }
            }
        };
        match committed {
            Ok(_) => {
                for (reply, first) in appends {
                    let _ = reply.send(Ok(first));
                }
            }
            Err(why) => {
                tracing::error!("{}", why.message);
                let next = log.next_id();
                for (reply, _) in appends {
                    let _ = reply.send(Err(why.clone()));
                }
                for r in other.into_iter().chain(iter) {
                    fail(r, &why, next);
                }
                return None;
            }
        }
        match other {
            None => return None,
            Some(Request::Stop(reply)) => return Some(reply),
            Some(Request::Rotate(reply)) => {
                let _ = reply.send(log.rotate().map_err(|e| format!("{e:#}")));
            }
            Some(Request::Append(_)) => unreachable!("appends are handled above"),
        }
        // More requests after a rotate: another batch.
        iter.peek()?;
    }
}

/// Says loudly what went wrong under the writer and was repaired, and
/// records each as the archiver's own event. Events that cannot be recorded
/// yet (the log must be reopened first) wait in `pending`.
fn report_incidents(log: &mut Log, pending: &mut Vec<crate::selfaudit::Event>, metrics: &Metrics) {
    for i in log.take_incidents() {
        tracing::warn!("{i}");
        pending.push(crate::selfaudit::Event::new("Log", "Integrity", i).failed());
    }
    if pending.is_empty() || log.is_poisoned() {
        return;
    }
    let host = log.host().to_owned();
    let clock = log.clock();
    match crate::selfaudit::append_to(log, pending, &host, &*clock) {
        Ok(_) => {
            metrics.written.inc_by(pending.len() as u64);
            pending.clear();
        }
        Err(e) => tracing::warn!("cannot record the incident(s) above yet: {e:#}"),
    }
}
