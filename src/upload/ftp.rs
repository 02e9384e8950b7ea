//! FTP and FTPS (explicit TLS, `AUTH TLS`) targets through `suppaftp` with
//! rustls. FTPS certificates are checked against the target's `ca_file`, or
//! the system's roots; accepting any certificate takes the loudly named
//! `insecure_accept_any_certificate`. Transfers are binary; passive mode by
//! default, with the data connection made to the control connection's
//! address (as curl does), so servers behind NAT work.
//!
//! # TLS session reuse on data connections
//!
//! Servers such as vsftpd (`require_ssl_reuse=YES`, its default) and
//! proftpd (`TLSOptions` without `NoSessionReuseRequired`) accept a data
//! connection only when it resumes the control connection's TLS session.
//! rustls resumes from the session tickets it holds for the server, and a
//! TLS 1.3 ticket is used once; the server sends a fresh one on each
//! resumed data connection, after the handshake. An upload only writes, so
//! that ticket would never be read: each data connection is therefore
//! closed the TLS way (close_notify, then reading until the server's
//! close_notify or end of stream), which hands the new ticket to rustls for
//! the next transfer.
//!
//! proftpd (1.3.8, OpenSSL) issues TLS 1.3 tickets only on full handshakes:
//! two on the control connection, none on a resumed data connection; it
//! would accept a ticket used again, but rustls uses each ticket once (as
//! RFC 8446 asks of clients) and cannot be made to repeat one. So the third
//! data connection of a login makes a full handshake, which such a server
//! refuses. So the TLS 1.3 tickets held for a login are counted: when the
//! server has sent some but none is left for the next data connection, the
//! login is first replaced by one over TLS 1.2, whose session-id resumption
//! has no such limit, and that endpoint is spoken to over TLS 1.2 for the
//! rest of the process. A data connection refused after a full TLS 1.3
//! handshake (a server that sent no ticket at all) makes the same switch,
//! and the file is sent again on the new login. vsftpd sends a new ticket on
//! each data connection and stays on TLS 1.3. (A server that requires no
//! reuse and sends tickets only on full handshakes is also switched: TLS 1.2
//! with resumption is then still faster than a full TLS 1.3 handshake per
//! file.)

use std::collections::HashSet;
use std::io::BufRead;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use suppaftp::types::FileType;
use suppaftp::{
    DataStream, FtpError, FtpStream, ImplFtpStream, Mode, RustlsConnector, RustlsFtpStream, Status, TlsStream,
};

use super::remote::{self, Password, RResult, Remote, RemoteError};
use crate::config::TargetConfig;
use crate::config::TargetProtocol;

/// How a data connection's TLS layer is closed after an upload (module docs).
pub trait CloseData {
    fn close_after_upload(&mut self, _timeout: Duration) {}

    /// A TLS 1.3 data connection that did not resume a session: one a
    /// server requiring session reuse refuses (module docs).
    fn tls13_not_resumed(&self) -> bool {
        false
    }
}

/// The FTPS endpoints (`host:port`) that refused a TLS 1.3 data connection
/// that could not resume the session: spoken to over TLS 1.2 from then on.
static TLS12_ONLY: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// rustls's ticket store for one login, counting the TLS 1.3 tickets it holds.
#[derive(Debug)]
struct CountingStore {
    inner: rustls::client::ClientSessionMemoryCache,
    /// Tickets held, and whether any ever arrived.
    held: AtomicUsize,
    seen: AtomicBool,
}

/// The most TLS 1.3 tickets rustls's memory cache holds per server.
const MAX_TICKETS: usize = 8;

impl CountingStore {
    /// The server sent TLS 1.3 tickets and none is left.
    fn exhausted(&self) -> bool {
        self.seen.load(Ordering::Relaxed) && self.held.load(Ordering::Relaxed) == 0
    }
}

impl rustls::client::ClientSessionStore for CountingStore {
    fn set_kx_hint(&self, server_name: rustls::pki_types::ServerName<'static>, group: rustls::NamedGroup) {
        self.inner.set_kx_hint(server_name, group)
    }

    fn kx_hint(&self, server_name: &rustls::pki_types::ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(server_name)
    }

    fn set_tls12_session(
        &self,
        server_name: rustls::pki_types::ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(server_name, value)
    }

    fn tls12_session(
        &self,
        server_name: &rustls::pki_types::ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &rustls::pki_types::ServerName<'static>) {
        self.inner.remove_tls12_session(server_name)
    }

    fn insert_tls13_ticket(
        &self,
        server_name: rustls::pki_types::ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.inner.insert_tls13_ticket(server_name, value);
        self.seen.store(true, Ordering::Relaxed);
        let _ = self.held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some((n + 1).min(MAX_TICKETS)));
    }

    fn take_tls13_ticket(
        &self,
        server_name: &rustls::pki_types::ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        let t = self.inner.take_tls13_ticket(server_name);
        if t.is_some() {
            let _ = self.held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(1)));
        }
        t
    }
}

fn endpoint(cfg: &TargetConfig) -> String {
    format!("{}:{}", remote::bare_host(&cfg.host), cfg.port())
}

/// Plain FTP: nothing to do.
impl CloseData for TcpStream {}

impl CloseData for rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    fn close_after_upload(&mut self, timeout: Duration) {
        use std::io::{Read, Write};
        if self.flush().is_err() {
            return;
        }
        self.conn.send_close_notify();
        // The last bytes go out at once rather than wait for an acknowledgement.
        let _ = self.sock.set_nodelay(true);
        if self.conn.write_tls(&mut self.sock).is_err() || self.sock.set_read_timeout(Some(timeout)).is_err() {
            return;
        }
        // Reading processes what the server sent after the handshake (its
        // session tickets) and ends at its close_notify or end of stream.
        let mut buf = [0u8; 4096];
        while matches!(self.read(&mut buf), Ok(n) if n > 0) {}
    }

    fn tls13_not_resumed(&self) -> bool {
        self.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3)
            && matches!(self.conn.handshake_kind(), Some(k) if k != rustls::HandshakeKind::Resumed)
    }
}

/// Opens a new login (FTPS: over TLS 1.2), replacing one whose server
/// refused a data connection.
type Relogin<T> = Box<dyn FnMut() -> RResult<ImplFtpStream<T>>>;

pub struct FtpRemote<T: TlsStream> {
    ftp: ImplFtpStream<T>,
    timeout: Duration,
    /// FTPS over TLS 1.3: how to log in again over TLS 1.2, and the endpoint.
    tls12_relogin: Option<(Relogin<T>, String)>,
    /// FTPS: the TLS 1.3 tickets held for this login.
    tickets: Option<Arc<CountingStore>>,
}

/// The reason an FTP operation failed, TLS failures first (they surface as
/// I/O errors on the first read or write after `AUTH TLS`).
fn ftp_err(what: &str, e: FtpError, timeout: Duration) -> RemoteError {
    match e {
        FtpError::ConnectionError(io) => {
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return RemoteError::fatal(format!("TLS failure: {tls}"));
            }
            RemoteError::retry(format!("{what}: {}", remote::io_reason(&io, timeout)))
        }
        FtpError::SecureError(s) => RemoteError::fatal(format!("TLS failure: {s}")),
        FtpError::UnexpectedResponse(r) => {
            let text = String::from_utf8_lossy(&r.body).trim().replace(['\r', '\n'], " ");
            let code = r.status.code();
            let text = if text.starts_with(&code.to_string()) { text } else { format!("{code} {text}") };
            let reason = match r.status {
                Status::ExceededStorage | Status::RequestedActionNotTaken => {
                    format!("{what}: server out of space: {text}")
                }
                _ => format!("{what}: server replied {text}"),
            };
            RemoteError::retry(reason)
        }
        other => RemoteError::retry(format!("{what}: {other}")),
    }
}

/// Connects, secures the control connection for FTPS, logs in and selects
/// binary transfers.
pub fn connect(cfg: &TargetConfig, step: &mut dyn FnMut(&str, String)) -> RResult<Box<dyn Remote>> {
    let timeout = Duration::from_secs(cfg.timeout_secs);
    let password = remote::password(cfg)?
        .ok_or_else(|| RemoteError::fatal("no password configured (password_file or password_env)"))?;
    let (tcp, addr) = remote::tcp_connect(cfg)?;
    step("connect", addr.to_string());
    if cfg.protocol == TargetProtocol::Ftps {
        let key = endpoint(cfg);
        let tls12 = TLS12_ONLY.lock().map(|l| l.contains(&key)).unwrap_or(false);
        let (ftp, tickets) = secure(cfg, tcp, tls12, step)?;
        let ftp = login(ftp, cfg, addr, &password, step)?;
        let relogin: Option<(Relogin<_>, String)> = (!tls12).then(|| {
            let cfg = cfg.clone();
            let relogin: Relogin<_> = Box::new(move || {
                let password = remote::password(&cfg)?.ok_or_else(|| RemoteError::fatal("no password configured"))?;
                let (tcp, addr) = remote::tcp_connect(&cfg)?;
                let (ftp, _) = secure(&cfg, tcp, true, &mut |_, _| {})?;
                login(ftp, &cfg, addr, &password, &mut |_, _| {})
            });
            (relogin, key)
        });
        Ok(Box::new(FtpRemote { ftp, timeout, tls12_relogin: relogin, tickets: Some(tickets) }))
    } else {
        let ftp = FtpStream::connect_with_stream(tcp).map_err(|e| ftp_err("greeting", e, timeout))?;
        let ftp = login(ftp, cfg, addr, &password, step)?;
        Ok(Box::new(FtpRemote { ftp, timeout, tls12_relogin: None, tickets: None }))
    }
}

/// The greeting and `AUTH TLS` (with `tls12`, TLS 1.2 only).
fn secure(
    cfg: &TargetConfig,
    tcp: TcpStream,
    tls12: bool,
    step: &mut dyn FnMut(&str, String),
) -> RResult<(RustlsFtpStream, Arc<CountingStore>)> {
    let timeout = Duration::from_secs(cfg.timeout_secs);
    let make = if tls12 { crate::tls::client_config_tls12 } else { crate::tls::client_config };
    let (mut tls, trusted) =
        make(cfg.ca_file.as_deref(), cfg.insecure_accept_any_certificate).map_err(RemoteError::fatal)?;
    let tickets = Arc::new(CountingStore {
        inner: rustls::client::ClientSessionMemoryCache::new(4),
        held: AtomicUsize::new(0),
        seen: AtomicBool::new(false),
    });
    tls.resumption = rustls::client::Resumption::store(tickets.clone());
    let ftp = RustlsFtpStream::connect_with_stream(tcp).map_err(|e| ftp_err("greeting", e, timeout))?;
    let host = remote::bare_host(&cfg.host);
    let ftp = ftp.into_secure(RustlsConnector::from(Arc::new(tls)), host).map_err(|e| match e {
        FtpError::UnexpectedResponse(_) => {
            let inner = ftp_err("AUTH TLS", e, timeout);
            RemoteError::fatal(format!("the server does not offer explicit TLS ({})", inner.reason))
        }
        e => ftp_err("TLS", e, timeout),
    })?;
    let version = if tls12 {
        " (TLS 1.2: this server refuses data connections that cannot resume a TLS 1.3 session)"
    } else {
        ""
    };
    step("TLS", format!("certificate {trusted}{version}"));
    Ok((ftp, tickets))
}

fn login<T: TlsStream + 'static>(
    ftp: ImplFtpStream<T>,
    cfg: &TargetConfig,
    addr: SocketAddr,
    password: &Password,
    step: &mut dyn FnMut(&str, String),
) -> RResult<ImplFtpStream<T>>
where
    T::InnerStream: CloseData,
{
    let timeout = Duration::from_secs(cfg.timeout_secs);
    let mut ftp = ftp.passive_stream_builder(move |a| {
        let s = TcpStream::connect_timeout(&a, timeout).map_err(FtpError::ConnectionError)?;
        s.set_read_timeout(Some(timeout))
            .and_then(|()| s.set_write_timeout(Some(timeout)))
            .map_err(FtpError::ConnectionError)?;
        Ok(s)
    });
    if cfg.passive {
        ftp.set_mode(if addr.is_ipv6() { Mode::ExtendedPassive } else { Mode::Passive });
        ftp.set_passive_nat_workaround(true);
    } else {
        ftp = ftp.active_mode(timeout);
    }
    let user = cfg.user.as_deref().unwrap_or_default();
    ftp.login(user, password.expose()).map_err(|e| match e {
        FtpError::UnexpectedResponse(ref r) if r.status == Status::NotLoggedIn => {
            let inner = ftp_err("login", e, timeout);
            RemoteError::fatal(format!("login refused for user {user:?} ({})", inner.reason))
        }
        e => ftp_err("login", e, timeout),
    })?;
    step("login", format!("as {user}"));
    ftp.transfer_type(FileType::Binary).map_err(|e| ftp_err("binary mode", e, timeout))?;
    Ok(ftp)
}

impl<T: TlsStream> FtpRemote<T> {
    /// A data connection that could not resume the TLS 1.3 session failed:
    /// the login is replaced by one over TLS 1.2 (module docs), so that the
    /// file can be sent again at once; `e` is returned, with what was done.
    fn relogin_tls12(&mut self, e: RemoteError) -> RemoteError {
        match self.switch_to_tls12() {
            Ok(()) => RemoteError::retry(format!(
                "{} (the server refused a data connection that could not resume the TLS 1.3 session; \
                     logged in again over TLS 1.2)",
                e.reason
            )),
            Err(again) => RemoteError::retry(format!("{}; logging in again over TLS 1.2: {}", e.reason, again.reason)),
        }
    }

    /// Before a data connection: with no TLS 1.3 ticket left to resume the
    /// session with, the login is replaced by one over TLS 1.2 (module docs).
    fn before_data_connection(&mut self) -> RResult<()> {
        if self.tls12_relogin.is_some() && self.tickets.as_ref().is_some_and(|s| s.exhausted()) {
            self.switch_to_tls12().map_err(|e| {
                RemoteError::retry(format!(
                    "no TLS 1.3 session ticket left; logging in again over TLS 1.2: {}",
                    e.reason
                ))
            })?;
        }
        Ok(())
    }

    /// Replaces the login by one over TLS 1.2, and remembers the endpoint.
    fn switch_to_tls12(&mut self) -> RResult<()> {
        let Some((mut relogin, key)) = self.tls12_relogin.take() else { return Ok(()) };
        if let Ok(mut l) = TLS12_ONLY.lock()
            && !l.contains(&key)
        {
            l.push(key);
        }
        let ftp = relogin()?;
        let _ = self.ftp.quit();
        self.ftp = ftp;
        self.tickets = None;
        Ok(())
    }

    /// A file's size from MLST (RFC 3659) or, without it, from a LIST line
    /// (Unix or DOS form, parsed by suppaftp); `None` when the server says
    /// there is no such file.
    fn size_from_listing(&mut self, path: &str) -> RResult<Option<u64>> {
        match self.ftp.mlst(Some(path)) {
            Ok(line) => {
                if let Ok(f) = suppaftp::list::ListParser::parse_mlst(&line) {
                    return Ok(Some(f.size() as u64));
                }
            }
            Err(FtpError::UnexpectedResponse(r)) if r.status == Status::FileUnavailable => return Ok(None),
            Err(_) => {}
        }
        self.before_data_connection()?;
        match self.ftp.list(Some(path)) {
            Ok(lines) => Ok(lines.iter().find_map(|l| l.parse::<suppaftp::list::File>().ok()).map(|f| f.size() as u64)),
            Err(FtpError::UnexpectedResponse(r)) if r.status == Status::FileUnavailable => Ok(None),
            Err(e) => Err(ftp_err(&format!("LIST {path}"), e, self.timeout)),
        }
    }
}

impl<T: TlsStream> Remote for FtpRemote<T>
where
    T::InnerStream: CloseData,
{
    fn ensure_dir(&mut self, dir: &str) -> RResult<bool> {
        if dir.is_empty() {
            return Ok(false);
        }
        let t = self.timeout;
        let home = self.ftp.pwd().map_err(|e| ftp_err("PWD", e, t))?;
        if self.ftp.cwd(dir).is_ok() {
            self.ftp.cwd(&home).map_err(|e| ftp_err("CWD", e, t))?;
            return Ok(false);
        }
        for prefix in remote::prefixes(dir) {
            // An existing directory answers 550; the CWD below tells what counts.
            let _ = self.ftp.mkdir(&prefix);
        }
        self.ftp.cwd(dir).map_err(|e| {
            let inner = ftp_err("", e, t);
            RemoteError::fatal(format!("cannot create remote directory {dir}{}", inner.reason))
        })?;
        self.ftp.cwd(&home).map_err(|e| ftp_err("CWD", e, t))?;
        Ok(true)
    }

    fn list(&mut self, dir: &str) -> RResult<HashSet<String>> {
        let arg = if dir.is_empty() { None } else { Some(dir) };
        self.before_data_connection()?;
        let lines = self.ftp.nlst(arg).map_err(|e| ftp_err(&format!("NLST {dir}"), e, self.timeout))?;
        // Servers answer with bare names or with `dir/name`.
        Ok(lines
            .iter()
            .filter_map(|l| l.trim_end().rsplit('/').next())
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect())
    }

    fn size(&mut self, path: &str) -> RResult<Option<u64>> {
        match self.ftp.size(path) {
            Ok(n) => Ok(Some(n as u64)),
            // No SIZE (RFC 959 servers: 500/502), or a 550 that may mean "no
            // such file" as well as "SIZE not allowed here": asked another way.
            Err(FtpError::UnexpectedResponse(r))
                if matches!(
                    r.status,
                    Status::FileUnavailable
                        | Status::BadCommand
                        | Status::NotImplemented
                        | Status::NotImplementedParameter
                ) =>
            {
                self.size_from_listing(path)
            }
            Err(e) => Err(ftp_err(&format!("SIZE {path}"), e, self.timeout)),
        }
    }

    fn put(&mut self, path: &str, src: &mut dyn BufRead, progress: &mut dyn FnMut(u64)) -> RResult<u64> {
        let t = self.timeout;
        self.before_data_connection()?;
        let mut stream = self.ftp.put_with_stream(path).map_err(|e| ftp_err(&format!("STOR {path}"), e, t))?;
        let copied = remote::copy(src, &mut stream, progress);
        let not_resumed = match stream.get_mut() {
            DataStream::Ssl(tls) => tls.mut_ref().tls13_not_resumed(),
            DataStream::Tcp(_) => false,
        };
        let result = match copied {
            Ok(n) => {
                if let DataStream::Ssl(tls) = stream.get_mut() {
                    tls.mut_ref().close_after_upload(t);
                }
                stream.finish().map(|()| n).map_err(|e| ftp_err(&format!("STOR {path}"), e, t))
            }
            Err(e) => Err(e.into_remote(path, t)),
        };
        match result {
            Err(e) if not_resumed && self.tls12_relogin.is_some() => Err(self.relogin_tls12(e)),
            r => r,
        }
    }

    fn rename(&mut self, from: &str, to: &str) -> RResult<()> {
        self.ftp.rename(from, to).map_err(|e| ftp_err(&format!("rename {from}"), e, self.timeout))
    }

    fn remove(&mut self, path: &str) -> RResult<()> {
        self.ftp.rm(path).map_err(|e| ftp_err(&format!("DELE {path}"), e, self.timeout))
    }

    fn close(&mut self) {
        let _ = self.ftp.quit();
    }
}
