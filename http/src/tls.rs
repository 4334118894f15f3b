//! [`Tls`]: HTTPS for `kist serve` with rustls (pure Rust, no OpenSSL to
//! find at build time; ring as the crypto provider because it builds with
//! nothing but a C compiler, where aws-lc-rs also needs cmake).

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::crypto::ring;

/// A server certificate chain and key, ready to accept TLS connections.
#[derive(Clone)]
pub struct Tls(pub(crate) tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls(..)")
    }
}

impl Tls {
    /// Reads a PEM certificate chain (leaf first) and a PEM private key
    /// (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(cert: &Path, key: &Path) -> std::io::Result<Self> {
        let named = |path: &Path, e: &dyn std::fmt::Display| {
            std::io::Error::other(format!("{}: {e}", path.display()))
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| named(cert, &e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| named(cert, &e))?;
        if chain.is_empty() {
            return Err(named(cert, &"no certificate in the file"));
        }
        let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| named(key, &e))?;
        let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| named(cert, &e))?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(|e| named(cert, &e))?;
        Ok(Self(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
    }
}
