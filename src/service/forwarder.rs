//! The SIEM forwarder thread of the service: follows the durable log from
//! the saved position and sends each record to the receiver (see
//! [`crate::siem`] for the delivery rules).
//!
//! It also sends the chain anchors: once `anchor_interval_secs` have passed
//! since the last anchor and a newer record has been sent, it names the
//! newest record written on the current connection (id and chain value),
//! right after it on that connection; and once more when the service stops
//! cleanly, if records were sent since the last anchor. A new connection
//! starts with nothing to anchor, so an anchor never names a record that
//! was written to an earlier connection, which may have lost it. The last
//! anchor is saved with the position, so the interval carries over a restart.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::scheduler::JobEnv;
use super::writer::Durable;
use crate::config::{Config, SiemConfig};
use crate::config::{SiemFormat, SiemProtocol};
use crate::siem::{self, Conn, InFlight, LastAnchor, SiemState, format};
use crate::store::chain::{self, Digest};
use crate::store::layout::Layout;
use crate::store::reader::Follow;
use crate::timestamp::{self, Clock};

/// At most this often the log is read for new records (a burst is sent at
/// once; a record waits at most this long).
const CYCLE: Duration = Duration::from_millis(50);
/// The saved position is written at most this often while sending.
const PERSIST_EVERY: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct Forwarder {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Forwarder {
    /// `first_next`: where forwarding starts if it never ran on this data
    /// directory and is enabled now (the next id when ingest opened).
    pub fn start(env: Arc<JobEnv>, durable: Arc<Durable>, first_next: u64) -> Forwarder {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::Builder::new()
            .name("siem".into())
            .spawn(move || {
                let mut w = Worker::new(env.layout.clone(), env.host.clone(), env.clock.clone());
                w.initial = Some(first_next);
                w.metrics = env.metrics.clone();
                let audit = |events: &[crate::selfaudit::Event]| {
                    if let Err(e) = env.audit(events) {
                        tracing::error!("siem: cannot record a gap: {e:#}");
                    }
                };
                w.run(&env.config, &durable, &s, &audit)
            })
            .expect("cannot start the SIEM forwarder thread");
        Forwarder { stop, handle: Some(handle) }
    }

    /// Stops after the current send and saves the position.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

struct Worker {
    layout: Layout,
    host: String,
    clock: Arc<dyn Clock>,
    state: Option<SiemState>,
    conn: Option<Conn>,
    in_flight: InFlight,
    /// The next id to send.
    pos: u64,
    next_attempt: Instant,
    backoff: Duration,
    saved_at: Instant,
    dirty: bool,
    /// Where a first-ever forwarding starts, while it has been enabled since the service started.
    initial: Option<u64>,
    /// The newest record (with a chain value) written to the current connection.
    newest_sent: Option<(u64, Digest)>,
    /// When the last anchor was sent (`None`: never, or longer ago than any interval).
    anchored_at: Option<Instant>,
    /// Gaps found and not yet recorded as self-audit events.
    gaps: Vec<crate::selfaudit::Event>,
    metrics: Arc<super::metrics::Metrics>,
    /// Where the next record is read from: a file and an offset in it.
    follow: Follow,
}

impl Worker {
    fn new(layout: Layout, host: String, clock: Arc<dyn Clock>) -> Worker {
        Worker {
            layout,
            host,
            clock,
            state: None,
            conn: None,
            in_flight: InFlight::default(),
            pos: 0,
            next_attempt: Instant::now(),
            backoff: Duration::from_secs(1),
            saved_at: Instant::now(),
            dirty: false,
            initial: None,
            newest_sent: None,
            anchored_at: None,
            gaps: Vec::new(),
            metrics: Arc::default(),
            follow: Follow::new(),
        }
    }

    fn now(&self) -> String {
        timestamp::format(&self.clock.now())
    }

    fn save(&mut self, force: bool) {
        let Some(state) = self.state.as_mut() else { return };
        let next = self.in_flight.oldest().unwrap_or(self.pos);
        if state.next_id != next || state.send_next != self.pos {
            state.next_id = next;
            state.send_next = self.pos;
            self.dirty = true;
        }
        if self.dirty && (force || self.saved_at.elapsed() >= PERSIST_EVERY) {
            match siem::write_state(&self.layout, state) {
                Ok(()) => self.dirty = false,
                Err(e) => tracing::error!("siem: {e:#}"),
            }
            self.saved_at = Instant::now();
        }
    }

    fn fail(&mut self, reason: String) {
        self.metrics.siem_errors.inc();
        if self.conn.take().is_some() {
            // What was written but not yet counted as delivered goes again.
            if let Some(oldest) = self.in_flight.oldest() {
                self.pos = oldest;
            }
        }
        self.in_flight.clear();
        let now = self.now();
        if let Some(state) = self.state.as_mut()
            && state.last_error.as_deref() != Some(reason.as_str())
        {
            tracing::warn!("siem: {} : {reason}", state.receiver);
            state.last_error = Some(reason);
            state.last_error_time = Some(now);
            self.dirty = true;
        }
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.save(true);
    }

    /// Records `from..to` are gone from the log before they were forwarded:
    /// said loudly, counted in the state (`status` shows it) and recorded as
    /// the archiver's own event.
    fn lost(&mut self, from: u64, to: u64) {
        let what = format!(
            "records {from}..{} are no longer in the log and were never forwarded to the SIEM receiver",
            to - 1
        );
        tracing::warn!("siem: {what}");
        if let Some(s) = self.state.as_mut() {
            s.lost += to - from;
            s.last_lost = Some(format!("{what} (noticed {})", timestamp::format(&self.clock.now())));
            self.dirty = true;
        }
        self.gaps.push(crate::selfaudit::Event::new("SIEM", "Integrity", what).failed());
    }

    /// Loads (or starts) the saved position for this receiver.
    fn ensure_state(&mut self, cfg: &SiemConfig, durable_next: u64) {
        if self.state.is_some() {
            return;
        }
        // Forwarding starts with the records accepted from when it was enabled.
        let first = self.initial.take().unwrap_or(durable_next);
        let state = match siem::read_state(&self.layout) {
            Ok(Some(s)) => s,
            Ok(None) => SiemState { next_id: first, ..SiemState::default() },
            Err(e) => {
                tracing::warn!("siem: {e:#}; starting from the next record");
                SiemState { next_id: first, ..SiemState::default() }
            }
        };
        self.pos = state.next_id;
        self.anchored_at = state.last_anchor.as_ref().and_then(|a| self.instant_of(&a.time));
        self.state = Some(SiemState { receiver: cfg.describe(), ..state });
        self.dirty = true;
        self.save(true);
    }

    /// The instant a saved time stamp stands for, by the clock (a time in
    /// the future counts as now); `None` when it cannot be told.
    fn instant_of(&self, ts: &str) -> Option<Instant> {
        let then = timestamp::parse(ts).ok()?;
        let age = (self.clock.now() - then).to_std().unwrap_or_default();
        Instant::now().checked_sub(age)
    }

    /// The record to anchor now, if one is due: anchors are on, a record
    /// newer than the last anchor was sent on this connection, and the
    /// interval has passed (or the service is stopping).
    fn anchor_due(&self, cfg: &SiemConfig, stopping: bool) -> Option<(u64, Digest)> {
        if cfg.anchor_interval_secs == 0 || self.conn.is_none() {
            return None;
        }
        let (id, value) = self.newest_sent?;
        let last = self.state.as_ref()?.last_anchor.as_ref().map(|a| a.id);
        if last.is_some_and(|last| id <= last) {
            return None;
        }
        let interval = Duration::from_secs(cfg.anchor_interval_secs);
        if !stopping && self.anchored_at.is_some_and(|t| t.elapsed() < interval) {
            return None;
        }
        Some((id, value))
    }

    /// Sends a chain anchor when one is due (see [`Worker::anchor_due`]).
    fn anchor(&mut self, cfg: &SiemConfig, stopping: bool) {
        let Some((id, value)) = self.anchor_due(cfg, stopping) else { return };
        let time = self.now();
        let anchor = format::Anchor { id, chain: &value, host: &self.host, time: &time };
        let msg = format::anchor_message(&anchor, cfg.format == SiemFormat::Cef, cfg.facility_code(), &cfg.app_name);
        let Some(conn) = self.conn.as_mut() else { return };
        if stopping && !conn.alive() {
            return;
        }
        match conn.send(&msg).and_then(|()| conn.flush()) {
            Ok(()) => {
                self.anchored_at = Some(Instant::now());
                if let Some(s) = self.state.as_mut() {
                    s.last_anchor = Some(LastAnchor { id, value: chain::hex(&value), time });
                    self.dirty = true;
                }
                self.save(true);
            }
            Err(e) if stopping => {
                tracing::warn!("siem: cannot send the chain anchor at stop: {}", Conn::reason(&e, cfg));
            }
            Err(e) => self.fail(Conn::reason(&e, cfg)),
        }
    }

    fn run(
        &mut self,
        config: &RwLock<Config>,
        durable: &Durable,
        stop: &AtomicBool,
        audit: &dyn Fn(&[crate::selfaudit::Event]),
    ) {
        let mut last_cycle = Instant::now() - CYCLE;
        let mut receiver = String::new();
        while !stop.load(Ordering::SeqCst) {
            if !self.gaps.is_empty() {
                audit(&std::mem::take(&mut self.gaps));
            }
            let cfg = config.read().unwrap_or_else(|e| e.into_inner()).siem.clone().filter(|s| s.enabled);
            let Some(cfg) = cfg else {
                self.conn = None;
                self.initial = None;
                self.metrics.siem_off();
                durable.wait_beyond(u64::MAX, Duration::from_millis(500));
                continue;
            };
            if cfg.describe() != receiver {
                // A new receiver (or the first): reconnect; the position carries over.
                receiver = cfg.describe();
                self.conn = None;
                self.in_flight.clear();
                if let Some(s) = self.state.as_mut() {
                    s.receiver = receiver.clone();
                    s.last_error = None;
                }
            }
            let durable_next = durable.wait_beyond(self.pos, Duration::from_millis(500));
            self.ensure_state(&cfg, durable_next);
            self.metrics.siem_at(self.pos, durable_next);
            let window = siem::replay_window(&cfg);
            self.in_flight.settle(Instant::now(), window);
            if let Some(c) = self.conn.as_mut()
                && !c.alive()
            {
                self.fail("connection closed by the receiver".into());
            }
            if durable_next <= self.pos {
                self.anchor(&cfg, false);
                self.save(false);
                continue;
            }
            let since = last_cycle.elapsed();
            if since < CYCLE {
                std::thread::sleep(CYCLE - since);
            }
            last_cycle = Instant::now();
            if self.conn.is_none() {
                if Instant::now() < self.next_attempt {
                    std::thread::sleep(Duration::from_millis(100).min(self.next_attempt - Instant::now()));
                    continue;
                }
                match siem::connect(&cfg) {
                    Ok(c) => {
                        self.conn = Some(c);
                        self.newest_sent = None;
                    }
                    Err(e) => {
                        self.fail(e);
                        continue;
                    }
                }
            }
            self.send_up_to(&cfg, durable.wait_beyond(0, Duration::ZERO), stop);
            self.anchor(&cfg, false);
        }
        // A last anchor for what was sent since the previous one (best effort).
        let cfg = config.read().unwrap_or_else(|e| e.into_inner()).siem.clone().filter(|s| s.enabled);
        if let Some(cfg) = cfg.filter(|c| c.describe() == receiver) {
            self.anchor(&cfg, true);
        }
        self.save(true);
    }

    /// Sends records from `pos` up to (not including) `end`.
    fn send_up_to(&mut self, cfg: &SiemConfig, end: u64, stop: &AtomicBool) {
        let cef = cfg.format == SiemFormat::Cef;
        let facility = cfg.facility_code();
        let mut sent = 0u64;
        let mut failure = None;
        let mut gaps = Vec::new();
        {
            let Worker { layout, host, conn, in_flight, pos, newest_sent, follow, .. } = self;
            let Some(conn) = conn.as_mut() else { return };
            let max = conn.max_datagram;
            let from = *pos;
            let mut visit = |rec: crate::record::Record<'static>| {
                if rec.id >= end {
                    return false;
                }
                if sent > 0 && sent.is_multiple_of(4096) && stop.load(Ordering::SeqCst) {
                    return false;
                }
                if rec.id > *pos {
                    gaps.push((*pos, rec.id));
                }
                let msg = format::message(&rec, cef, facility, &cfg.app_name, host, max);
                if let Err(e) = conn.send(&msg) {
                    failure = Some(Conn::reason(&e, cfg));
                    return false;
                }
                in_flight.push(rec.id, Instant::now());
                *pos = rec.id + 1;
                if let Some(value) = rec.chain {
                    *newest_sent = Some((rec.id, value));
                }
                sent += 1;
                true
            };
            // The position knows its file: the history is listed only at the
            // start and when its file moved out of reach (see `reader::Follow`).
            if let Err(e) = follow.read(layout, from, &mut visit) {
                failure.get_or_insert_with(|| format!("cannot read the log: {e:#}"));
            }
            if failure.is_none()
                && let Err(e) = conn.flush()
            {
                failure = Some(Conn::reason(&e, cfg));
            }
        }
        for (from, to) in gaps {
            self.lost(from, to);
        }
        if cfg.protocol == SiemProtocol::Udp {
            // Nothing to confirm or replay over UDP.
            self.in_flight.clear();
        }
        if sent > 0 {
            self.metrics.siem_sent.inc_by(sent);
            let now = self.now();
            if let Some(s) = self.state.as_mut() {
                s.sent += sent;
                s.last_sent = Some(now);
                self.dirty = true;
            }
        }
        match failure {
            Some(reason) => self.fail(reason),
            None => {
                if sent > 0 {
                    self.backoff = Duration::from_secs(1);
                    if let Some(s) = self.state.as_mut()
                        && s.last_error.is_some()
                    {
                        s.last_error = None;
                        self.dirty = true;
                    }
                }
                self.save(false);
            }
        }
    }
}
