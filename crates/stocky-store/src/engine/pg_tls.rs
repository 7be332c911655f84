//! TLS to PostgreSQL (rustls, ring), with libpq's `sslmode` names in the URL:
//!
//! | `sslmode` | what Stocky does |
//! |---|---|
//! | absent, `disable`, `allow`, `prefer` | no TLS (as before: `prefer` does not try TLS) |
//! | `require` | TLS; the server's certificate is not checked (libpq's meaning), unless `sslrootcert` is given, which makes it `verify-ca` (as libpq does) |
//! | `verify-ca` | TLS; the chain must lead to a root of `sslrootcert` (else the Mozilla roots), any host name |
//! | `verify-full` | TLS; the chain as above and the certificate must name the host connected to |
//!
//! `sslrootcert=<path>` names a PEM file of root certificates. Both are taken out of the
//! URL before the PostgreSQL client parses it (it knows neither `verify-*` nor
//! `sslrootcert`), and only in the URL form (`postgres://…?sslmode=…`).
//!
//! Invariant: with any TLS mode the connection is encrypted or not made at all (the
//! client is told `sslmode=require`); handshake signatures are always verified, even when
//! the certificate is not.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::StoreError;

/// How the certificate is checked, when TLS is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Encrypted, certificate not checked (`require`).
    Nothing,
    /// The chain leads to a trusted root (`verify-ca`).
    Chain,
    /// The chain, and the host name (`verify-full`).
    ChainAndHost,
}

/// A URL with the TLS settings taken out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Split {
    /// What the PostgreSQL client parses (`sslmode=require` when TLS is on).
    pub url: String,
    /// `None`: no TLS.
    pub check: Option<Check>,
    pub root_cert: Option<PathBuf>,
}

/// Takes `sslmode` and `sslrootcert` out of `url`'s query.
pub(crate) fn split(url: &str) -> Result<Split, StoreError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok(Split {
            url: url.to_owned(),
            check: None,
            root_cert: None,
        });
    };
    let (mut check, mut root_cert, mut kept) = (None, None, Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                check = match value {
                    "disable" | "allow" | "prefer" => None,
                    "require" => Some(Check::Nothing),
                    "verify-ca" => Some(Check::Chain),
                    "verify-full" => Some(Check::ChainAndHost),
                    other => {
                        return Err(StoreError::Location(format!(
                            "sslmode={other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                        )))
                    }
                };
            }
            "sslrootcert" => root_cert = Some(PathBuf::from(percent_decode(value))),
            _ => kept.push(pair),
        }
    }
    if root_cert.is_some() && check == Some(Check::Nothing) {
        check = Some(Check::Chain);
    }
    if check.is_some() {
        kept.push("sslmode=require");
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(Split {
        url,
        check,
        root_cert,
    })
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The connector for `check`, with the roots of `root_cert` (else the Mozilla roots).
pub(crate) fn connector(
    check: Check,
    root_cert: Option<&PathBuf>,
) -> Result<MakeRustlsConnect, StoreError> {
    // ring, deliberately: it builds without cmake or a C toolchain beyond cc (aws-lc-rs,
    // rustls's other provider, needs both); rustls deprecates it for lacking post-quantum
    // key exchange, which a link to a database inside one's own network can do without.
    #[allow(deprecated)]
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Location(format!("TLS setup: {e}")))?;
    let config = match check {
        Check::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unchecked(provider)))
            .with_no_client_auth(),
        Check::Chain | Check::ChainAndHost => {
            let roots = Arc::new(roots(root_cert)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| StoreError::Location(format!("TLS setup: {e}")))?;
            let verifier: Arc<dyn ServerCertVerifier> = if check == Check::Chain {
                Arc::new(AnyHost(webpki))
            } else {
                webpki
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

fn roots(root_cert: Option<&PathBuf>) -> Result<RootCertStore, StoreError> {
    let mut roots = RootCertStore::empty();
    match root_cert {
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        Some(path) => {
            let unreadable = |e: &dyn std::fmt::Display| {
                StoreError::Location(format!("sslrootcert {}: {e}", path.display()))
            };
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(&e))? {
                roots
                    .add(cert.map_err(|e| unreadable(&e))?)
                    .map_err(|e| unreadable(&e))?;
            }
            if roots.is_empty() {
                return Err(unreadable(&"no certificate in the file"));
            }
        }
    }
    Ok(roots)
}

/// `require`: any certificate, but the handshake itself is verified.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain is checked, the host name is not.
#[derive(Debug)]
struct AnyHost(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHost {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(Error::InvalidCertificate(
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
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{ConnRole, Engine};

    /// Whether the server sees `url`'s connection as TLS.
    fn encrypted(url: &str) -> Result<bool, String> {
        let engine = crate::engine::postgres::Postgres::new(url).map_err(|e| e.to_string())?;
        let mut conn = engine
            .connect(ConnRole::Reader)
            .map_err(|e| e.to_string())?;
        let row = conn
            .query_opt(
                "SELECT CASE WHEN ssl THEN 1 ELSE 0 END FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .map_err(|e| e.to_string())?
            .ok_or("no pg_stat_ssl row")?;
        Ok(row.int(0).map_err(|e| e.to_string())? == 1)
    }

    /// Against the PostgreSQL under test, set up by `.ci/tls.sh` (a server certificate for
    /// 127.0.0.1 signed by a test CA, in the directory `STOCKY_TEST_TLS_DIR` names).
    #[test]
    fn connections_are_encrypted_and_verified_as_the_url_says() {
        let Some(url) = crate::testing::postgres_url() else {
            return; // SQLite-only run
        };
        let dir = std::env::var("STOCKY_TEST_TLS_DIR").expect(
            "STOCKY_TEST_TLS_DIR must name the test CA's directory: run .ci/tls.sh (as .ci/run does)",
        );
        let ca = format!("{dir}/ca.pem");
        let with = |query: &str| {
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}{query}")
        };
        assert_eq!(
            encrypted(&url),
            Ok(false),
            "no sslmode: plaintext, as before"
        );
        assert_eq!(encrypted(&with("sslmode=require")), Ok(true));
        assert_eq!(
            encrypted(&with(&format!("sslmode=verify-full&sslrootcert={ca}"))),
            Ok(true)
        );
        assert_eq!(
            encrypted(&with(&format!("sslmode=verify-ca&sslrootcert={ca}"))),
            Ok(true)
        );
        let refused = encrypted(&with("sslmode=verify-full")).unwrap_err();
        assert!(
            refused.contains("certificate") || refused.contains("UnknownIssuer"),
            "a server certificate from an unknown CA is refused: {refused}"
        );
    }

    #[test]
    fn tls_settings_come_out_of_the_url() {
        let plain = split("postgres://u@h:5432/db").unwrap();
        assert_eq!(
            (plain.url.as_str(), plain.check),
            ("postgres://u@h:5432/db", None)
        );
        let s = split(
            "postgres://u@h/db?application_name=x&sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem",
        )
        .unwrap();
        assert_eq!(
            s.url,
            "postgres://u@h/db?application_name=x&sslmode=require"
        );
        assert_eq!(s.check, Some(Check::ChainAndHost));
        assert_eq!(s.root_cert, Some(PathBuf::from("/tmp/ca.pem")));
        let s = split("postgres://u@h/db?sslmode=require&sslrootcert=/ca.pem").unwrap();
        assert_eq!(
            s.check,
            Some(Check::Chain),
            "a root file makes require verify-ca, as in libpq"
        );
        let s = split("postgres://u@h/db?sslmode=prefer").unwrap();
        assert_eq!((s.url.as_str(), s.check), ("postgres://u@h/db", None));
        assert!(split("postgres://u@h/db?sslmode=verify").is_err());
    }
}
