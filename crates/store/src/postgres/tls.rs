//! TLS to the database server (rustls with the `ring` provider), chosen by `sslmode` in the URL
//! with libpq's meanings:
//!
//! - absent or `disable`: plain TCP (as before TLS was supported);
//! - `prefer`: TLS when the server offers it, else plain; the certificate is not checked;
//! - `require`: TLS or no connection; the certificate is not checked (it stops an eavesdropper,
//!   not an impostor) unless `sslrootcert` names a CA file, which makes it `verify-ca`;
//! - `verify-ca`: TLS, the server's certificate chains to a CA in `sslrootcert=FILE` (PEM);
//! - `verify-full`: as `verify-ca`, and the certificate names the host connected to.
//!
//! `tokio-postgres` knows only `disable`, `prefer` and `require` and no `sslrootcert`: both are
//! taken out of the URL here and the connector is built to match.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{Result, StoreError};

/// How to check the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Encrypt only (`prefer`, `require` without a CA file).
    None,
    /// The chain to a trusted CA, not the name (`verify-ca`).
    Chain,
    /// The chain and the host name (`verify-full`).
    Full,
}

/// The URL to give `tokio-postgres` (its `sslmode` one it knows, no `sslrootcert`) and the TLS
/// connector, `None` for plain TCP.
pub(super) fn split_tls(url: &str) -> Result<(String, Option<MakeRustlsConnect>)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let mut mode = None;
    let mut root_cert = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslmode", v)) => mode = Some(v.to_owned()),
            Some(("sslrootcert", v)) => root_cert = Some(v.to_owned()),
            _ => rest.push(pair),
        }
    }
    let invalid = |reason: String| StoreError::Invalid(format!("PostgreSQL URL: {reason}"));
    let (pass_mode, check) = match (mode.as_deref(), root_cert.is_some()) {
        (None | Some("disable"), _) => (None, None),
        (Some("prefer"), _) => (Some("prefer"), Some(Check::None)),
        (Some("require"), false) => (Some("require"), Some(Check::None)),
        (Some("require" | "verify-ca"), true) => (Some("require"), Some(Check::Chain)),
        (Some("verify-full"), true) => (Some("require"), Some(Check::Full)),
        (Some(m @ ("verify-ca" | "verify-full")), false) => {
            return Err(invalid(format!(
                "sslmode={m} needs sslrootcert=FILE (the PEM file of the CA that signed the server's certificate)"
            )));
        }
        (Some(other), _) => {
            return Err(invalid(format!(
                "unsupported sslmode '{other}' (disable, prefer, require, verify-ca or verify-full)"
            )));
        }
    };
    if let Some(m) = pass_mode {
        rest.push(if m == "prefer" {
            "sslmode=prefer"
        } else {
            "sslmode=require"
        });
    }
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    let Some(check) = check else {
        return Ok((url, None));
    };
    let config = client_config(check, root_cert.as_deref().map(Path::new))?;
    Ok((url, Some(MakeRustlsConnect::new(config))))
}

fn client_config(check: Check, root_cert: Option<&Path>) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Pg(format!("TLS setup: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match (check, root_cert) {
        (Check::None, _) | (_, None) => Arc::new(Relaxed {
            provider,
            chain: None,
        }),
        (check, Some(path)) => {
            let roots = Arc::new(load_roots(path)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| StoreError::Invalid(format!("sslrootcert {}: {e}", path.display())))?;
            if check == Check::Full {
                webpki
            } else {
                Arc::new(Relaxed {
                    provider,
                    chain: Some(webpki),
                })
            }
        }
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

fn load_roots(path: &Path) -> Result<RootCertStore> {
    let bad = |reason: String| {
        StoreError::Invalid(format!(
            "sslrootcert {}: {reason} (expected a PEM file of CA certificates)",
            path.display()
        ))
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    Ok(roots)
}

/// The checks short of `verify-full`: none at all (libpq's `require`), or the chain to a trusted
/// CA without the host name (`verify-ca`). The handshake's signatures are checked either way,
/// so the session keys belong to the certificate presented.
#[derive(Debug)]
struct Relaxed {
    provider: Arc<CryptoProvider>,
    /// `Some` for `verify-ca`.
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for Relaxed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_the_url() {
        let plain = split_tls("postgres://u:p@h/db").unwrap();
        assert_eq!(plain.0, "postgres://u:p@h/db");
        assert!(plain.1.is_none());
        let off = split_tls("postgres://h/db?sslmode=disable&application_name=x").unwrap();
        assert_eq!(off.0, "postgres://h/db?application_name=x");
        assert!(off.1.is_none());
        let on = split_tls("postgres://h/db?sslmode=require").unwrap();
        assert_eq!(on.0, "postgres://h/db?sslmode=require");
        assert!(on.1.is_some());
        let prefer = split_tls("postgres://h/db?connect_timeout=3&sslmode=prefer").unwrap();
        assert_eq!(prefer.0, "postgres://h/db?connect_timeout=3&sslmode=prefer");
        for (url, want) in [
            ("postgres://h/db?sslmode=verify-full", "needs sslrootcert"),
            ("postgres://h/db?sslmode=verify-ca", "needs sslrootcert"),
            (
                "postgres://h/db?sslmode=allow",
                "unsupported sslmode 'allow'",
            ),
            (
                "postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
                "sslrootcert /nonexistent/ca.pem",
            ),
        ] {
            let err = split_tls(url).err().unwrap().to_string();
            assert!(err.contains(want), "{url}: {err}");
        }
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let url = format!(
            "postgres://h/db?sslmode=verify-ca&sslrootcert={}",
            path.display()
        );
        let err = split_tls(&url).err().unwrap().to_string();
        assert!(err.contains("no certificate in it"), "{err}");
    }
}
