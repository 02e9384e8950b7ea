//! FTP and FTPS (explicit TLS, `AUTH TLS`) targets through `suppaftp` with
//! rustls. FTPS certificates are checked against the target's `ca_file`, or
//! the system's roots; accepting any certificate takes the loudly named
//! `insecure_accept_any_certificate`. Transfers are binary; passive mode by
//! default, with the data connection made to the control connection's
//! address (as curl does), so servers behind NAT work.

use std::collections::HashSet;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use suppaftp::types::FileType;
use suppaftp::{FtpError, FtpStream, ImplFtpStream, Mode, RustlsConnector, RustlsFtpStream, Status, TlsStream};

use super::remote::{self, Password, RResult, Remote, RemoteError};
use crate::config::TargetConfig;

/// Bytes per write on the data connection.
const WRITE_CHUNK: usize = 256 * 1024;

pub struct FtpRemote<T: TlsStream> {
    ftp: ImplFtpStream<T>,
    timeout: Duration,
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

/// Accepts every certificate: only with `insecure_accept_any_certificate`.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS client configuration of an FTPS target, and what it trusts (for messages).
fn tls_config(cfg: &TargetConfig) -> RResult<(ClientConfig, String)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| RemoteError::fatal(format!("TLS setup: {e}")))?;
    if cfg.insecure_accept_any_certificate {
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth();
        return Ok((config, "NOT CHECKED (insecure_accept_any_certificate)".into()));
    }
    let mut roots = RootCertStore::empty();
    let trusted = if let Some(ca) = &cfg.ca_file {
        let certs = CertificateDer::pem_file_iter(ca)
            .map_err(|e| RemoteError::fatal(format!("cannot read ca_file {}: {e}", ca.display())))?;
        for cert in certs {
            let cert = cert.map_err(|e| RemoteError::fatal(format!("ca_file {}: {e}", ca.display())))?;
            roots
                .add(cert)
                .map_err(|e| RemoteError::fatal(format!("ca_file {}: unusable certificate: {e}", ca.display())))?;
        }
        if roots.is_empty() {
            return Err(RemoteError::fatal(format!("ca_file {} holds no certificate", ca.display())));
        }
        format!("trusted through ca_file {}", ca.display())
    } else {
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err(RemoteError::fatal(
                "no system certificate authorities found (install ca-certificates, or set ca_file)",
            ));
        }
        "trusted through the system's certificate authorities".into()
    };
    Ok((builder.with_root_certificates(roots).with_no_client_auth(), trusted))
}

/// Connects, secures the control connection for FTPS, logs in and selects
/// binary transfers.
pub fn connect(cfg: &TargetConfig, step: &mut dyn FnMut(&str, String)) -> RResult<Box<dyn Remote>> {
    let timeout = Duration::from_secs(cfg.timeout_secs);
    let password = remote::password(cfg)?
        .ok_or_else(|| RemoteError::fatal("no password configured (password_file or password_env)"))?;
    let (tcp, addr) = remote::tcp_connect(cfg)?;
    step("connect", addr.to_string());
    if cfg.protocol == "ftps" {
        let (tls, trusted) = tls_config(cfg)?;
        let ftp = RustlsFtpStream::connect_with_stream(tcp).map_err(|e| ftp_err("greeting", e, timeout))?;
        let host = remote::bare_host(&cfg.host);
        let ftp = ftp.into_secure(RustlsConnector::from(Arc::new(tls)), host).map_err(|e| match e {
            FtpError::UnexpectedResponse(_) => {
                let inner = ftp_err("AUTH TLS", e, timeout);
                RemoteError::fatal(format!("the server does not offer explicit TLS ({})", inner.reason))
            }
            e => ftp_err("TLS", e, timeout),
        })?;
        step("TLS", format!("certificate {trusted}"));
        login(ftp, cfg, addr, &password, step)
    } else {
        let ftp = FtpStream::connect_with_stream(tcp).map_err(|e| ftp_err("greeting", e, timeout))?;
        login(ftp, cfg, addr, &password, step)
    }
}

fn login<T: TlsStream + 'static>(
    ftp: ImplFtpStream<T>,
    cfg: &TargetConfig,
    addr: SocketAddr,
    password: &Password,
    step: &mut dyn FnMut(&str, String),
) -> RResult<Box<dyn Remote>> {
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
    Ok(Box::new(FtpRemote { ftp, timeout }))
}

impl<T: TlsStream> Remote for FtpRemote<T> {
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
            Err(FtpError::UnexpectedResponse(r)) if r.status == Status::FileUnavailable => Ok(None),
            Err(e) => Err(ftp_err(&format!("SIZE {path}"), e, self.timeout)),
        }
    }

    fn put(&mut self, path: &str, src: &mut dyn Read, progress: &mut dyn FnMut(u64)) -> RResult<u64> {
        let t = self.timeout;
        let mut stream = self.ftp.put_with_stream(path).map_err(|e| ftp_err(&format!("STOR {path}"), e, t))?;
        let n = remote::copy(src, &mut stream, WRITE_CHUNK, progress).map_err(|e| e.into_remote(path, t))?;
        stream.finish().map_err(|e| ftp_err(&format!("STOR {path}"), e, t))?;
        Ok(n)
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
