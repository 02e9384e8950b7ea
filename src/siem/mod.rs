//! SIEM forwarding (SPEC §10): records go to a syslog receiver over UDP,
//! TCP or TLS, as JSON or CEF (see [`format`]).
//!
//! The forwarder reads the durable log, never the ingest path: it starts
//! from a position kept in `state/siem.json` (the first id not yet known to
//! be delivered), follows the records the writer has fsynced, and sends
//! them in order. A slow or absent receiver therefore never slows ingestion
//! and loses nothing: when it returns, the backlog is read from the log
//! files (active, sealed or archived) and sent.
//!
//! Delivery over TCP and TLS is at least once. Syslog has no
//! acknowledgements, so a record counts as delivered only once it was
//! written more than [`replay_window`] ago with the connection still
//! healthy; when a connection fails, or the service restarts after a crash,
//! the records of that window are sent again (the duplicate window). Over
//! UDP nothing can be confirmed: each record is sent once.
//!
//! # Chain anchors
//!
//! Every `anchor_interval_secs` (while records are being sent) and when the
//! service stops, the forwarder also sends a chain anchor (see
//! [`format::anchor_message`]): the id and hash-chain value of the newest
//! record it has sent, on the same connection right after that record, so a
//! receiver that holds the anchor also got the record. The last anchor is
//! kept in `state/siem.json` ([`LastAnchor`]) and shown by `status`; an
//! auditor passes it to `verify --anchor` to prove that the log still holds
//! that record, which catches the removal of the newest records or files.

pub mod format;

use std::collections::VecDeque;
use std::io::{self, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use serde::{Deserialize, Serialize};

use crate::config::SiemConfig;
use crate::config::{Framing, SiemProtocol};
use crate::store::layout::Layout;
use crate::upload::remote;

/// Where forwarding stands, kept in `state/siem.json` and shown by `status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SiemState {
    /// The first id not known to be delivered: forwarding resumes here.
    pub next_id: u64,
    /// The next id to send (records before it were written to the receiver).
    #[serde(default)]
    pub send_next: u64,
    /// Records sent since forwarding started on this data directory (duplicates included).
    pub sent: u64,
    /// `protocol host:port` of the receiver.
    pub receiver: String,
    /// When a record was last sent.
    pub last_sent: Option<String>,
    /// The last failure, and when it happened (cleared once sending works again).
    pub last_error: Option<String>,
    pub last_error_time: Option<String>,
    /// The last chain anchor sent (`None` before the first).
    #[serde(default)]
    pub last_anchor: Option<LastAnchor>,
    /// Records that were gone from the log before they could be forwarded
    /// (removed by hand, or ids skipped after a loss), and the last such gap.
    #[serde(default)]
    pub lost: u64,
    #[serde(default)]
    pub last_lost: Option<String>,
}

/// A chain anchor sent to the receiver.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct LastAnchor {
    /// The record it names.
    pub id: u64,
    /// That record's chain value (64 hex digits).
    pub value: String,
    /// When it was sent.
    pub time: String,
}

impl LastAnchor {
    /// `ID:VALUE`, as `verify --anchor` takes it.
    pub fn anchor(&self) -> String {
        format!("{}:{}", self.id, self.value)
    }
}

pub fn state_path(layout: &Layout) -> PathBuf {
    layout.state.join("siem.json")
}

/// The saved state, `None` when forwarding never ran here.
pub fn read_state(layout: &Layout) -> Result<Option<SiemState>> {
    let p = state_path(layout);
    match std::fs::read(&p) {
        Ok(bytes) => {
            Ok(Some(serde_json::from_slice(&bytes).map_err(|e| anyhow::anyhow!("{} is damaged: {e}", p.display()))?))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", p.display())),
    }
}

pub fn write_state(layout: &Layout, state: &SiemState) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(state)?;
    crate::fsx::write_atomic(&state_path(layout), &bytes)
}

/// How long after being written a record still counts as possibly lost
/// when the connection fails: twice the write timeout, plus a margin.
pub fn replay_window(cfg: &SiemConfig) -> Duration {
    Duration::from_secs(cfg.timeout_secs * 2 + 2)
}

enum Kind {
    Udp(UdpSocket),
    Tcp(BufWriter<TcpStream>),
    Tls(Box<BufWriter<StreamOwned<ClientConnection, TcpStream>>>),
}

/// A connection to the receiver.
pub struct Conn {
    kind: Kind,
    octet_counting: bool,
    /// UDP: largest datagram.
    pub max_datagram: Option<usize>,
}

fn io_reason(e: &io::Error, timeout: Duration) -> String {
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return format!("TLS failure: {tls}");
    }
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            format!("timed out: no progress within {} s", timeout.as_secs())
        }
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::UnexpectedEof => {
            "connection closed by the receiver".into()
        }
        _ => e.to_string(),
    }
}

/// Connects to the receiver (for TLS, completes the handshake, so trust
/// failures show here). Errors are one line.
pub fn connect(cfg: &SiemConfig) -> Result<Conn, String> {
    let timeout = Duration::from_secs(cfg.timeout_secs);
    let octet_counting = cfg.framing == Framing::OctetCounting;
    if cfg.protocol == SiemProtocol::Udp {
        let addr = remote::resolve(&cfg.host, cfg.port())?[0];
        let local: SocketAddr =
            if addr.is_ipv6() { "[::]:0".parse() } else { "0.0.0.0:0".parse() }.map_err(|e| format!("{e}"))?;
        let sock = UdpSocket::bind(local).map_err(|e| format!("cannot open a UDP socket: {e}"))?;
        sock.connect(addr).map_err(|e| format!("cannot address {addr}: {e}"))?;
        return Ok(Conn { kind: Kind::Udp(sock), octet_counting, max_datagram: Some(cfg.max_udp_bytes) });
    }
    let (mut tcp, _) = remote::tcp_connect_to(&cfg.host, cfg.port(), timeout)?;
    if cfg.protocol == SiemProtocol::Tcp {
        return Ok(Conn {
            kind: Kind::Tcp(BufWriter::with_capacity(256 * 1024, tcp)),
            octet_counting,
            max_datagram: None,
        });
    }
    let (tls, _) = crate::tls::client_config(cfg.ca_file.as_deref(), cfg.insecure_accept_any_certificate)?;
    let host = remote::bare_host(&cfg.host).to_owned();
    let name =
        ServerName::try_from(host.clone()).map_err(|e| format!("{host:?} is not a valid TLS server name: {e}"))?;
    let mut conn = ClientConnection::new(Arc::new(tls), name).map_err(|e| format!("TLS setup: {e}"))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| io_reason(&e, timeout))?;
    }
    let stream = StreamOwned::new(conn, tcp);
    Ok(Conn {
        kind: Kind::Tls(Box::new(BufWriter::with_capacity(256 * 1024, stream))),
        octet_counting,
        max_datagram: None,
    })
}

impl Conn {
    /// Queues one message (framed for TCP/TLS); UDP sends it at once.
    pub fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        let w: &mut dyn Write = match &mut self.kind {
            Kind::Udp(s) => {
                s.send(msg)?;
                return Ok(());
            }
            Kind::Tcp(w) => w,
            Kind::Tls(w) => &mut **w,
        };
        if self.octet_counting {
            // `LEN SP MSG LF`, the LF counted in LEN: octet-counting
            // receivers drop a trailing LF (rsyslog, syslog-ng), and a
            // newline-framed one given this framing by mistake still splits
            // at each record instead of gluing them all into one event.
            w.write_all(itoa::Buffer::new().format(msg.len() + 1).as_bytes())?;
            w.write_all(b" ")?;
            w.write_all(msg)?;
            w.write_all(b"\n")
        } else {
            w.write_all(msg)?;
            w.write_all(b"\n")
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.kind {
            Kind::Udp(_) => Ok(()),
            Kind::Tcp(w) => w.flush(),
            Kind::Tls(w) => w.flush(),
        }
    }

    /// False when the receiver has closed the connection (seen without
    /// sending anything: a closed idle connection is noticed before the
    /// next record is written into it).
    pub fn alive(&mut self) -> bool {
        let mut buf = [0u8; 512];
        match &mut self.kind {
            Kind::Udp(_) => true,
            Kind::Tcp(w) => {
                let s = w.get_ref();
                if s.set_nonblocking(true).is_err() {
                    return false;
                }
                let r = s.peek(&mut buf);
                let _ = s.set_nonblocking(false);
                matches!(r, Err(ref e) if e.kind() == io::ErrorKind::WouldBlock) || matches!(r, Ok(n) if n > 0)
            }
            Kind::Tls(w) => {
                let stream = w.get_mut();
                if stream.sock.set_nonblocking(true).is_err() {
                    return false;
                }
                let r = stream.read(&mut buf);
                let _ = stream.sock.set_nonblocking(false);
                match r {
                    Err(e) => e.kind() == io::ErrorKind::WouldBlock,
                    Ok(n) => n > 0,
                }
            }
        }
    }

    /// The reason for an I/O failure on this connection, in one line.
    pub fn reason(e: &io::Error, cfg: &SiemConfig) -> String {
        io_reason(e, Duration::from_secs(cfg.timeout_secs))
    }
}

/// Records written but not yet old enough to count as delivered.
#[derive(Debug, Default)]
pub struct InFlight {
    sent: VecDeque<(u64, Instant)>,
}

impl InFlight {
    pub fn push(&mut self, id: u64, at: Instant) {
        self.sent.push_back((id, at));
    }

    /// Forgets records written before `now - window`.
    pub fn settle(&mut self, now: Instant, window: Duration) {
        while self.sent.front().is_some_and(|(_, t)| now.duration_since(*t) > window) {
            self.sent.pop_front();
        }
    }

    /// The oldest record not yet counted as delivered.
    pub fn oldest(&self) -> Option<u64> {
        self.sent.front().map(|(id, _)| *id)
    }

    pub fn clear(&mut self) {
        self.sent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_records_settle_after_the_window() {
        let mut f = InFlight::default();
        let t0 = Instant::now();
        f.push(1, t0);
        f.push(2, t0 + Duration::from_secs(5));
        f.settle(t0 + Duration::from_secs(6), Duration::from_secs(3));
        assert_eq!(f.oldest(), Some(2));
        f.settle(t0 + Duration::from_secs(20), Duration::from_secs(3));
        assert_eq!(f.oldest(), None);
    }
}
