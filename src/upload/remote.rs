//! What every kind of target offers (one trait), the error every protocol
//! maps its failures to, and the pieces they share: resolving and connecting
//! with a deadline, reading the password, copying with progress.

use std::fmt;
use std::io::{self, BufRead, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::config::TargetConfig;

/// Why talking to a target failed: a one-line reason, and whether trying
/// again within the same run can help (a refused host key or login cannot).
#[derive(Debug, Clone)]
pub struct RemoteError {
    pub reason: String,
    pub permanent: bool,
}

impl RemoteError {
    /// A failure that may go away (network, server restarting, disk full).
    pub fn retry(reason: impl Into<String>) -> RemoteError {
        RemoteError { reason: reason.into(), permanent: false }
    }

    /// A failure that the same attempt would meet again (trust, login, configuration).
    pub fn fatal(reason: impl Into<String>) -> RemoteError {
        RemoteError { reason: reason.into(), permanent: true }
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for RemoteError {}

pub type RResult<T> = Result<T, RemoteError>;

/// One connection to a target, logged in. Paths are the server's: `/`
/// separated, relative to the login directory unless absolute.
pub trait Remote {
    /// Creates `dir` and its missing parents; `true` when something was created.
    fn ensure_dir(&mut self, dir: &str) -> RResult<bool>;
    /// The names of the entries of `dir` (no paths), to tell which files
    /// already exist without asking for each one.
    fn list(&mut self, dir: &str) -> RResult<std::collections::HashSet<String>>;
    /// The size of a file, `None` when there is no such file.
    fn size(&mut self, path: &str) -> RResult<Option<u64>>;
    /// Writes `src` to `path` (replacing it), reporting bytes as they go; returns the bytes written.
    fn put(&mut self, path: &str, src: &mut dyn BufRead, progress: &mut dyn FnMut(u64)) -> RResult<u64>;
    /// Renames `from` to `to`.
    fn rename(&mut self, from: &str, to: &str) -> RResult<()>;
    /// Removes a file.
    fn remove(&mut self, path: &str) -> RResult<()>;
    /// Ends the session politely (errors ignored: the work is already done or recorded).
    fn close(&mut self) {}
}

/// `dir/name` on the server.
pub fn join(dir: &str, name: &str) -> String {
    let d = dir.trim_end_matches('/');
    if dir.is_empty() {
        name.to_owned()
    } else if d.is_empty() {
        format!("/{name}")
    } else {
        format!("{d}/{name}")
    }
}

/// Every directory from the top down to `dir`: `a/b` gives `a`, `a/b`;
/// `/a/b` gives `/a`, `/a/b`.
pub fn prefixes(dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = if dir.starts_with('/') { String::from("/") } else { String::new() };
    for part in dir.split('/').filter(|p| !p.is_empty()) {
        if !cur.is_empty() && !cur.ends_with('/') {
            cur.push('/');
        }
        cur.push_str(part);
        out.push(cur.clone());
    }
    out
}

/// A short, stable reason for an I/O failure on a connection.
pub fn io_reason(e: &io::Error, timeout: Duration) -> String {
    use io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        TimedOut | WouldBlock => format!("timed out: no answer within {} s", timeout.as_secs()),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => "connection dropped by the server".into(),
        HostUnreachable | NetworkUnreachable => format!("network unreachable ({e})"),
        StorageFull => "no space left on the server".into(),
        _ => e.to_string(),
    }
}

/// The host as given, without the brackets an IPv6 address may carry.
pub fn bare_host(host: &str) -> &str {
    host.trim().trim_start_matches('[').trim_end_matches(']')
}

/// The addresses of `host` (brackets around an IPv6 address allowed).
pub fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let host = bare_host(host);
    let addrs: Vec<SocketAddr> =
        (host, port).to_socket_addrs().map_err(|e| format!("cannot resolve host {host:?}: {e}"))?.collect();
    if addrs.is_empty() {
        return Err(format!("host {host:?} has no address"));
    }
    Ok(addrs)
}

/// Resolves `host` and connects to the first address that answers, with
/// `timeout` on connect, reads and writes. Errors are one line.
pub fn tcp_connect_to(host: &str, port: u16, timeout: Duration) -> Result<(TcpStream, SocketAddr), String> {
    let mut last = String::new();
    for addr in resolve(host, port)? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                s.set_read_timeout(Some(timeout))
                    .and_then(|()| s.set_write_timeout(Some(timeout)))
                    .map_err(|e| format!("cannot set timeouts: {e}"))?;
                return Ok((s, addr));
            }
            Err(e) => last = format!("cannot connect to {addr}: {}", io_reason(&e, timeout)),
        }
    }
    Err(last)
}

/// [`tcp_connect_to`] the target's host and port, with its timeout.
pub fn tcp_connect(cfg: &TargetConfig) -> RResult<(TcpStream, SocketAddr)> {
    tcp_connect_to(&cfg.host, cfg.port(), Duration::from_secs(cfg.timeout_secs)).map_err(RemoteError::retry)
}

/// A password, kept out of `Debug` output.
pub struct Password(String);

impl Password {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// The target's password from `password_file` (its first line) or
/// `password_env`; `None` when neither is set. Errors name the source, never
/// the content.
pub fn password(cfg: &TargetConfig) -> RResult<Option<Password>> {
    if let Some(path) = &cfg.password_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RemoteError::fatal(format!("cannot read password_file {}: {e}", path.display())))?;
        let first = text.lines().next().unwrap_or("").trim_end_matches('\r');
        if first.is_empty() {
            return Err(RemoteError::fatal(format!("password_file {} is empty", path.display())));
        }
        return Ok(Some(Password(first.to_owned())));
    }
    if let Some(var) = &cfg.password_env {
        return match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Some(Password(v))),
            Ok(_) => Err(RemoteError::fatal(format!("environment variable {var} (password_env) is empty"))),
            Err(_) => Err(RemoteError::fatal(format!("environment variable {var} (password_env) is not set"))),
        };
    }
    Ok(None)
}

/// Where a copy failed: reading the local file or writing to the server.
pub enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `src` to `dst` as `src` buffers it, calling `progress` after each write.
pub fn copy(src: &mut dyn BufRead, dst: &mut dyn Write, progress: &mut dyn FnMut(u64)) -> Result<u64, CopyError> {
    let mut total = 0u64;
    loop {
        let buf = match src.fill_buf() {
            Ok([]) => return Ok(total),
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        let n = buf.len();
        dst.write_all(buf).map_err(CopyError::Write)?;
        src.consume(n);
        total += n as u64;
        progress(n as u64);
    }
}

impl CopyError {
    /// The failure as a reason: a local read error stops the run (retrying
    /// cannot fix it), a write error is the connection's.
    pub fn into_remote(self, path: &str, timeout: Duration) -> RemoteError {
        match self {
            CopyError::Read(e) => RemoteError::fatal(format!("cannot read the local file for {path}: {e}")),
            CopyError::Write(e) => RemoteError::retry(format!("writing {path}: {}", io_reason(&e, timeout))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_handles_empty_root_and_trailing_slashes() {
        assert_eq!(join("", "a.gz"), "a.gz");
        assert_eq!(join("/", "a.gz"), "/a.gz");
        assert_eq!(join("in/pbx01/", "a.gz"), "in/pbx01/a.gz");
        assert_eq!(join("/srv/in", "a.gz"), "/srv/in/a.gz");
    }

    #[test]
    fn prefixes_walk_down_from_the_top() {
        assert_eq!(prefixes("a/b"), ["a", "a/b"]);
        assert_eq!(prefixes("/srv//in/"), ["/srv", "/srv/in"]);
        assert!(prefixes("").is_empty());
    }

    #[test]
    fn password_debug_is_redacted() {
        let p = Password("hunter2".into());
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
