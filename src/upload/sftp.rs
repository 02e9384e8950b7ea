//! SFTP targets: SSH (transport, host key check, login) through libssh2
//! (`ssh2`), SFTP itself through [`super::sftp3`] over the session's `sftp`
//! subsystem channel, because libssh2's SFTP layer drops the server's text
//! from every failure (see that module). The server's host key must be in
//! the target's known_hosts file; an unknown or different key is refused
//! with the fingerprint the server offered, unless the loudly named
//! `insecure_accept_any_host_key` is set.

use std::collections::HashSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use ssh2::{Channel, CheckResult, ErrorCode, HashType, HostKeyType, KnownHostFileKind, MethodType, Session};

use super::remote::{self, RResult, Remote, RemoteError};
use super::sftp3::{self, Client};
use crate::config::TargetConfig;

/// libssh2's code for "the operation timed out".
const LIBSSH2_ERROR_TIMEOUT: i32 = -9;

pub struct SftpRemote {
    session: Session,
    sftp: Client<Channel>,
    timeout: Duration,
}

/// The known_hosts file used: the configured one, else the service user's.
fn known_hosts_path(cfg: &TargetConfig) -> PathBuf {
    cfg.known_hosts.clone().unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
        home.join(".ssh/known_hosts")
    })
}

fn key_type_name(t: HostKeyType) -> &'static str {
    match t {
        HostKeyType::Rsa => "RSA",
        HostKeyType::Dss => "DSA",
        HostKeyType::Ecdsa256 | HostKeyType::Ecdsa384 | HostKeyType::Ecdsa521 => "ECDSA",
        HostKeyType::Ed25519 => "ED25519",
        HostKeyType::Unknown => "unknown",
    }
}

/// The host key algorithms to ask for, so that the server presents the kind
/// of key known_hosts holds for it (as OpenSSH's client does). Only plain
/// (unhashed) entries can be matched; with none, libssh2's order applies.
fn host_key_prefs(known_hosts: &Path, host: &str, port: u16) -> Option<String> {
    let text = std::fs::read_to_string(known_hosts).ok()?;
    let names = if port == 22 { vec![host.to_owned()] } else { vec![format!("[{host}]:{port}")] };
    let mut prefs: Vec<&str> = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(mut hosts) = fields.next() else { continue };
        if hosts.starts_with('#') || hosts.starts_with('|') {
            continue;
        }
        if hosts.starts_with('@') {
            // A marker (@cert-authority, @revoked) precedes the host list.
            hosts = match fields.next() {
                Some(h) => h,
                None => continue,
            };
        }
        if !hosts.split(',').any(|h| names.iter().any(|n| n == h)) {
            continue;
        }
        let algos: Vec<&str> = match fields.next() {
            Some("ssh-rsa") => vec!["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
            Some(t) if t == "ssh-ed25519" || t.starts_with("ecdsa-sha2-nistp") => vec![t],
            _ => Vec::new(),
        };
        for a in algos {
            if !prefs.contains(&a) {
                prefs.push(a);
            }
        }
    }
    (!prefs.is_empty()).then(|| prefs.join(","))
}

fn ssh_reason(e: &ssh2::Error, timeout: Duration) -> String {
    match e.code() {
        ErrorCode::Session(LIBSSH2_ERROR_TIMEOUT) => format!("timed out: no answer within {} s", timeout.as_secs()),
        ErrorCode::Session(-13) | ErrorCode::Session(-43) | ErrorCode::Session(-7) => {
            "connection dropped by the server".into()
        }
        _ => e.message().to_owned(),
    }
}

/// The reason an SFTP request failed: the server's text with its status
/// code's meaning, or what happened to the connection.
fn fx_reason(e: &sftp3::Error, timeout: Duration) -> String {
    match e {
        sftp3::Error::Status(s) => s.to_string(),
        sftp3::Error::Io(io) => match io.get_ref().and_then(|i| i.downcast_ref::<ssh2::Error>()) {
            Some(ssh) => ssh_reason(ssh, timeout),
            None => remote::io_reason(io, timeout),
        },
        sftp3::Error::Protocol(m) => format!("SFTP protocol error: {m}"),
    }
}

fn sftp_err(what: &str, path: &str, e: sftp3::Error, timeout: Duration) -> RemoteError {
    RemoteError::retry(format!("{what} {path}: {}", fx_reason(&e, timeout)))
}

fn is_missing(e: &sftp3::Error) -> bool {
    matches!(e, sftp3::Error::Status(s) if s.is_missing())
}

/// Connects, checks the host key, logs in and opens the SFTP channel.
pub fn connect(cfg: &TargetConfig, step: &mut dyn FnMut(&str, String)) -> RResult<Box<dyn Remote>> {
    let timeout = Duration::from_secs(cfg.timeout_secs);
    let host = remote::bare_host(&cfg.host).to_owned();
    let port = cfg.port();
    let known_hosts = known_hosts_path(cfg);
    let password = remote::password(cfg)?;
    let (tcp, addr) = remote::tcp_connect(cfg)?;
    step("connect", addr.to_string());

    let mut session = Session::new().map_err(|e| RemoteError::fatal(format!("cannot start SSH: {e}")))?;
    session.set_timeout(u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX));
    if !cfg.insecure_accept_any_host_key
        && let Some(prefs) = host_key_prefs(&known_hosts, &host, port)
    {
        session
            .method_pref(MethodType::HostKey, &prefs)
            .map_err(|e| RemoteError::fatal(format!("host key algorithms {prefs}: {e}")))?;
    }
    session.set_tcp_stream(tcp);
    session
        .handshake()
        .map_err(|e| RemoteError::retry(format!("SSH handshake failed: {}", ssh_reason(&e, timeout))))?;

    let (key, key_type) =
        session.host_key().ok_or_else(|| RemoteError::retry("the server presented no host key".to_owned()))?;
    let key = key.to_vec();
    let fingerprint = session
        .host_key_hash(HashType::Sha256)
        .map(|h| format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(h)))
        .unwrap_or_else(|| "SHA256:?".into());
    let offered = format!("{} key {fingerprint}", key_type_name(key_type));
    let shown_host = if port == 22 { host.clone() } else { format!("[{host}]:{port}") };
    if cfg.insecure_accept_any_host_key {
        step("host key", format!("NOT CHECKED (insecure_accept_any_host_key): {offered}"));
    } else {
        let mut kh = session.known_hosts().map_err(|e| RemoteError::fatal(format!("known_hosts: {e}")))?;
        if !known_hosts.exists() {
            return Err(RemoteError::fatal(format!(
                "cannot check the host key: known_hosts {} does not exist (the server offered {offered}; \
                 add its key, e.g. with ssh-keyscan -p {port} {host})",
                known_hosts.display()
            )));
        }
        kh.read_file(&known_hosts, KnownHostFileKind::OpenSSH).map_err(|e| {
            RemoteError::fatal(format!("cannot read known_hosts {}: {}", known_hosts.display(), e.message()))
        })?;
        match kh.check_port(&host, port, &key) {
            CheckResult::Match => step("host key", format!("{offered} matches {}", known_hosts.display())),
            CheckResult::Mismatch => {
                return Err(RemoteError::fatal(format!(
                    "HOST KEY MISMATCH: {shown_host} offered {offered}, which is not the key known_hosts {} \
                     lists for it; refusing to connect (the server was reinstalled, or someone is \
                     intercepting the connection)",
                    known_hosts.display()
                )));
            }
            CheckResult::NotFound => {
                return Err(RemoteError::fatal(format!(
                    "unknown host key: {shown_host} offered {offered}, and known_hosts {} has no entry for it; \
                     refusing to connect",
                    known_hosts.display()
                )));
            }
            CheckResult::Failure => {
                return Err(RemoteError::fatal(format!(
                    "cannot check the host key of {shown_host} against {}",
                    known_hosts.display()
                )));
            }
        }
    }

    let user = cfg.user.as_deref().unwrap_or_default();
    let how = if let Some(key_file) = &cfg.key_file {
        if !key_file.exists() {
            return Err(RemoteError::fatal(format!("key_file {} does not exist", key_file.display())));
        }
        let passphrase = password.as_ref().map(|p| p.expose());
        let _ = session.userauth_pubkey_file(user, None, key_file, passphrase);
        format!("key {}", key_file.display())
    } else {
        let p = password.as_ref().map(|p| p.expose()).unwrap_or_default();
        let _ = session.userauth_password(user, p);
        "password".to_owned()
    };
    if !session.authenticated() {
        return Err(RemoteError::fatal(format!("login refused for user {user:?} ({how})")));
    }
    let cipher = session.methods(MethodType::CryptCs).unwrap_or("?");
    step("login", format!("as {user} ({how}); cipher {cipher}"));
    let no_sftp =
        |reason: String| RemoteError::retry(format!("cannot start SFTP (is the sftp subsystem enabled?): {reason}"));
    let mut channel = session.channel_session().map_err(|e| no_sftp(ssh_reason(&e, timeout)))?;
    channel.subsystem("sftp").map_err(|e| no_sftp(ssh_reason(&e, timeout)))?;
    let sftp = Client::start(channel).map_err(|e| no_sftp(fx_reason(&e, timeout)))?;
    Ok(Box::new(SftpRemote { session, sftp, timeout }))
}

impl Remote for SftpRemote {
    fn ensure_dir(&mut self, dir: &str) -> RResult<bool> {
        if dir.is_empty() {
            return Ok(false);
        }
        match self.sftp.stat(dir) {
            Ok(st) if st.is_dir() => return Ok(false),
            Ok(_) => return Err(RemoteError::fatal(format!("remote_dir {dir} exists and is not a directory"))),
            Err(e) if is_missing(&e) => {}
            Err(e) => return Err(sftp_err("cannot check", dir, e, self.timeout)),
        }
        for prefix in remote::prefixes(dir) {
            match self.sftp.stat(&prefix) {
                Ok(_) => continue,
                Err(e) if is_missing(&e) => {}
                Err(e) => return Err(sftp_err("cannot check", &prefix, e, self.timeout)),
            }
            self.sftp.mkdir(&prefix, 0o755).map_err(|e| {
                RemoteError::fatal(format!("cannot create remote directory {prefix}: {}", fx_reason(&e, self.timeout)))
            })?;
        }
        Ok(true)
    }

    fn list(&mut self, dir: &str) -> RResult<HashSet<String>> {
        let d = if dir.is_empty() { "." } else { dir };
        let names = self.sftp.read_dir(d).map_err(|e| sftp_err("cannot list", d, e, self.timeout))?;
        Ok(names.into_iter().filter(|n| n != "." && n != "..").collect())
    }

    fn size(&mut self, path: &str) -> RResult<Option<u64>> {
        match self.sftp.stat(path) {
            Ok(st) => Ok(Some(st.size.unwrap_or(0))),
            Err(e) if is_missing(&e) => Ok(None),
            Err(e) => Err(sftp_err("cannot check", path, e, self.timeout)),
        }
    }

    fn put(&mut self, path: &str, src: &mut dyn BufRead, progress: &mut dyn FnMut(u64)) -> RResult<u64> {
        let t = self.timeout;
        let handle = self.sftp.create(path, 0o644).map_err(|e| sftp_err("cannot create", path, e, t))?;
        let written = self.sftp.write_all(&handle, src, progress);
        if let Err(e @ (sftp3::Error::Io(_) | sftp3::Error::Protocol(_))) = written {
            return Err(sftp_err("writing", path, e, t));
        }
        // Closed also after a refused write, so that the server lets go of the file.
        let closed = self.sftp.close(&handle);
        let n = match written {
            Ok(Ok(n)) => n,
            Ok(Err(read)) => {
                return Err(RemoteError::fatal(format!("cannot read the local file for {path}: {read}")));
            }
            Err(e) => return Err(sftp_err("writing", path, e, t)),
        };
        closed.map_err(|e| sftp_err("cannot complete", path, e, t))?;
        Ok(n)
    }

    fn rename(&mut self, from: &str, to: &str) -> RResult<()> {
        self.sftp.rename(from, to).map_err(|e| sftp_err("cannot rename", from, e, self.timeout))
    }

    fn remove(&mut self, path: &str) -> RResult<()> {
        self.sftp.remove(path).map_err(|e| sftp_err("cannot remove", path, e, self.timeout))
    }

    fn close(&mut self) {
        let _ = self.sftp.stream_mut().send_eof();
        let _ = self.sftp.stream_mut().close();
        let _ = self.session.disconnect(None, "done", None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_key_prefs_follow_the_known_hosts_entry_for_host_and_port() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("known_hosts");
        std::fs::write(
            &p,
            "# comment\n[127.0.0.1]:2222 ssh-ed25519 AAAA\nsftp.example.net ssh-rsa AAAA\n|1|hashed= ssh-ed25519 AAAA\n",
        )
        .unwrap();
        assert_eq!(host_key_prefs(&p, "127.0.0.1", 2222).as_deref(), Some("ssh-ed25519"));
        assert_eq!(host_key_prefs(&p, "sftp.example.net", 22).as_deref(), Some("rsa-sha2-512,rsa-sha2-256,ssh-rsa"));
        assert_eq!(host_key_prefs(&p, "127.0.0.1", 22), None);
    }
}
