//! TLS client settings shared by FTPS targets and SIEM forwarding: server
//! certificates are checked against a given CA file or the system's roots;
//! accepting any certificate takes an explicit, loudly named setting.
//!
//! A certificate given in `ca_file` is trusted two ways: as a certificate
//! authority that signed the server's certificate, and as the server's own
//! certificate (pinned). The second is how operators trust a self-signed
//! server: `openssl req -x509` marks its certificate CA:TRUE, which a chain
//! check refuses as a server certificate. A pinned certificate must still be
//! valid now and name the host connected to.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

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

/// Verifies chains to the `ca_file` roots, and accepts a server certificate
/// that is itself in `ca_file` (see the module docs).
#[derive(Debug)]
struct ChainOrPinned {
    chain: Arc<rustls::client::WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for ChainOrPinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chained = self.chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        if chained.is_ok() || !self.pinned.iter().any(|p| p.as_ref() == end_entity.as_ref()) {
            return chained;
        }
        check_pinned(end_entity, server_name, now)?;
        Ok(ServerCertVerified::assertion())
    }

    // Signatures are checked the same way whichever way the certificate was trusted.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

/// A pinned certificate is valid now and names the server.
fn check_pinned(cert: &CertificateDer<'_>, server_name: &ServerName<'_>, now: UnixTime) -> Result<(), rustls::Error> {
    use rustls::CertificateError;
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    let validity = parsed.validity();
    if now < validity.not_before.timestamp() {
        return Err(rustls::Error::InvalidCertificate(CertificateError::NotValidYet));
    }
    if now > validity.not_after.timestamp() {
        return Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
    }
    let ee = webpki::EndEntityCert::try_from(cert)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    ee.verify_is_valid_for_subject_name(server_name)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::NotValidForName))
}

/// A TLS client configuration trusting `ca_file` (PEM), else the system's
/// roots, else (with `accept_any`) anything; and what it trusts, for messages.
pub fn client_config(ca_file: Option<&Path>, accept_any: bool) -> Result<(ClientConfig, String), String> {
    client_config_with(ca_file, accept_any, rustls::DEFAULT_VERSIONS)
}

/// [`client_config`] limited to TLS 1.2 (FTPS servers that require every
/// data connection to resume the control connection's session but issue
/// TLS 1.3 tickets only on full handshakes: see `upload::ftp`).
pub fn client_config_tls12(ca_file: Option<&Path>, accept_any: bool) -> Result<(ClientConfig, String), String> {
    client_config_with(ca_file, accept_any, &[&rustls::version::TLS12])
}

fn client_config_with(
    ca_file: Option<&Path>,
    accept_any: bool,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<(ClientConfig, String), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS setup: {e}"))?;
    if accept_any {
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth();
        return Ok((config, "NOT CHECKED (insecure_accept_any_certificate)".into()));
    }
    let mut roots = RootCertStore::empty();
    let trusted = if let Some(ca) = ca_file {
        let certs =
            CertificateDer::pem_file_iter(ca).map_err(|e| format!("cannot read ca_file {}: {e}", ca.display()))?;
        let mut pinned = Vec::new();
        for cert in certs {
            let cert = cert.map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            roots.add(cert.clone()).map_err(|e| format!("ca_file {}: unusable certificate: {e}", ca.display()))?;
            pinned.push(cert);
        }
        if roots.is_empty() {
            return Err(format!("ca_file {} holds no certificate", ca.display()));
        }
        let chain = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
        let verifier = ChainOrPinned { chain, pinned };
        let config = builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth();
        return Ok((
            config,
            format!("trusted through ca_file {} (a CA, or the server's own certificate)", ca.display()),
        ));
    } else {
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err("no system certificate authorities found (install ca-certificates, or set ca_file)".into());
        }
        "trusted through the system's certificate authorities".into()
    };
    Ok((builder.with_root_certificates(roots).with_no_client_auth(), trusted))
}
