//! TLS client settings shared by FTPS targets and SIEM forwarding: server
//! certificates are checked against a given CA file or the system's roots;
//! accepting any certificate takes an explicit, loudly named setting.

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

/// A TLS client configuration trusting `ca_file` (PEM), else the system's
/// roots, else (with `accept_any`) anything; and what it trusts, for messages.
pub fn client_config(ca_file: Option<&Path>, accept_any: bool) -> Result<(ClientConfig, String), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
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
        for cert in certs {
            let cert = cert.map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            roots.add(cert).map_err(|e| format!("ca_file {}: unusable certificate: {e}", ca.display()))?;
        }
        if roots.is_empty() {
            return Err(format!("ca_file {} holds no certificate", ca.display()));
        }
        format!("trusted through ca_file {}", ca.display())
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
