//! The cluster's certificates and the mutual-TLS configuration of its QUIC endpoints.
//!
//! `init_ca` makes a cluster CA (an ECDSA P-256 key and a self-signed CA certificate);
//! `issue` makes a node certificate signed by it, usable as a server and as a client (every
//! worker is both). Endpoints accept only peers whose certificate chains to the CA, over TLS
//! 1.3 with the ALPN protocol [`ALPN`]. Users may bring their own PEM files instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// ALPN name of the protocol version.
pub const ALPN: &[u8] = b"poolpipe/1";
/// Common name of a cluster CA made by [`init_ca`].
pub const CA_NAME: &str = "poolpipe cluster CA";

/// Errors of certificates and TLS setup.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A certificate or key cannot be made or parsed.
    #[error("{what}: {reason}")]
    Bad {
        /// What it is about.
        what: String,
        /// Why, and what to do.
        reason: String,
    },
}

fn bad(what: impl Into<String>, reason: impl ToString) -> TlsError {
    TlsError::Bad { what: what.into(), reason: reason.to_string() }
}

/// A certificate and its private key, PEM.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Certificate (PEM).
    pub cert_pem: String,
    /// Private key (PEM, PKCS#8).
    pub key_pem: String,
}

fn ca_params() -> Result<CertificateParams, TlsError> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(|e| bad("CA parameters", e))?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, CA_NAME);
    p.distinguished_name.push(DnType::OrganizationName, "poolpipe");
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(p)
}

/// A new cluster CA.
pub fn init_ca() -> Result<Identity, TlsError> {
    let key = KeyPair::generate().map_err(|e| bad("CA key", e))?;
    let cert = ca_params()?.self_signed(&key).map_err(|e| bad("CA certificate", e))?;
    Ok(Identity { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// A node certificate for `name` (also its DNS name for TLS) signed by a CA made by
/// [`init_ca`], whose key is `ca_key_pem`.
pub fn issue(ca_key_pem: &str, name: &str) -> Result<Identity, TlsError> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.')
        && !name.starts_with(['-', '.'])
        && !name.ends_with(['-', '.']);
    if !valid {
        return Err(bad(
            format!("node name '{name}'"),
            "use a DNS-style name: letters, digits, '-' and '.', e.g. worker-1 or gpu3.site-a",
        ));
    }
    let ca_key = KeyPair::from_pem(ca_key_pem)
        .map_err(|e| bad("the CA key", format!("{e}; give the ca.key of `poolpipe certs init`")))?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    let mut p = CertificateParams::new(vec![name.to_string()])
        .map_err(|e| bad(format!("node name '{name}'"), format!("{e}; use a DNS-style name like worker-1")))?;
    p.distinguished_name.push(DnType::CommonName, name);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().map_err(|e| bad("node key", e))?;
    let cert = p.signed_by(&key, &issuer).map_err(|e| bad(format!("certificate of '{name}'"), e))?;
    Ok(Identity { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

fn write(path: &Path, text: &str, private: bool) -> Result<(), TlsError> {
    let io = |source| TlsError::Io { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::write(path, text).map_err(io)?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    let _ = private;
    Ok(())
}

fn read(path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Io { path: path.to_path_buf(), source })
}

/// Writes `NAME.pem` and `NAME.key` (mode 0600) into `dir`.
pub fn save(dir: &Path, name: &str, id: &Identity) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    write(&cert, &id.cert_pem, false)?;
    write(&key, &id.key_pem, true)?;
    Ok((cert, key))
}

/// Reads `NAME.pem` and `NAME.key` from `dir`.
pub fn load(dir: &Path, name: &str) -> Result<Identity, TlsError> {
    Ok(Identity { cert_pem: read(&dir.join(format!("{name}.pem")))?, key_pem: read(&dir.join(format!("{name}.key")))? })
}

fn certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let list: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| bad(what, format!("not PEM certificates: {e}")))?;
    if list.is_empty() {
        return Err(bad(what, "holds no certificate"));
    }
    Ok(list)
}

fn key(pem: &str, what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| bad(what, format!("not a PEM private key: {e}")))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_pem: &str) -> Result<Arc<rustls::RootCertStore>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca_pem, "the cluster CA certificate")? {
        roots.add(c).map_err(|e| bad("the cluster CA certificate", e))?;
    }
    Ok(Arc::new(roots))
}

/// The rustls server configuration of a node: TLS 1.3, its identity, ALPN `poolpipe/1`, and
/// only clients whose certificate chains to the CA in `ca_pem`.
pub fn tls_server_config(id: &Identity, ca_pem: &str) -> Result<rustls::ServerConfig, TlsError> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots(ca_pem)?, provider())
        .build()
        .map_err(|e| bad("client verifier", e))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| bad("TLS 1.3", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&id.cert_pem, "the node certificate")?, key(&id.key_pem, "the node key")?)
        .map_err(|e| bad("the node certificate and key", e))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    Ok(tls)
}

/// The rustls client configuration of a node: TLS 1.3, its identity for client
/// authentication, ALPN `poolpipe/1`, and only servers whose certificate chains to the CA.
pub fn tls_client_config(id: &Identity, ca_pem: &str) -> Result<rustls::ClientConfig, TlsError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| bad("TLS 1.3", e))?
        .with_root_certificates(roots(ca_pem)?)
        .with_client_auth_cert(certs(&id.cert_pem, "the node certificate")?, key(&id.key_pem, "the node key")?)
        .map_err(|e| bad("the node certificate and key", e))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    Ok(tls)
}

/// The QUIC server configuration of a node ([`tls_server_config`] over QUIC).
pub fn server_config(id: &Identity, ca_pem: &str) -> Result<quinn::ServerConfig, TlsError> {
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls_server_config(id, ca_pem)?)
        .map_err(|e| bad("QUIC server", e))?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(quic)))
}

/// The QUIC client configuration of a node ([`tls_client_config`] over QUIC).
pub fn client_config(id: &Identity, ca_pem: &str) -> Result<quinn::ClientConfig, TlsError> {
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls_client_config(id, ca_pem)?)
        .map_err(|e| bad("QUIC client", e))?;
    Ok(quinn::ClientConfig::new(Arc::new(quic)))
}
