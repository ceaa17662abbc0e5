//! `[tls]`: the certificates and settings https and wss are served with (rustls).
//!
//! Certificates and keys are read from PEM files when the configuration is loaded (at start
//! and at every reload, so a renewed certificate is taken up by SIGHUP) and checked then: a
//! file that cannot be read, holds no certificate or key, a key that does not match its
//! certificate, a certificate not valid now or not valid for its SNI name is an error naming
//! the file. The binary maps each error to its key and line.

use std::collections::HashMap;
use std::hash::Hasher as _;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert, ResolvesServerCertUsingSni};
use rustls::sign::CertifiedKey;
use siphasher::sip::SipHasher13;

/// The oldest TLS version a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// What is wrong with a certificate and key pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertError {
    /// The certificate file (chain), and why.
    Cert(String),
    /// The key file, and why.
    Key(String),
}

/// A certificate chain with its key, read and checked.
#[derive(Debug, Clone)]
pub struct CertPair {
    key: Arc<CertifiedKey>,
    fingerprint: u64,
}

/// The crypto every listener uses (ring: built with a C compiler only).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl CertPair {
    /// Reads the PEM chain at `cert` (end-entity certificate first) and the PEM private key at
    /// `key`, and checks that they match and that the certificate is valid now.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, CertError> {
        let cert_pem =
            std::fs::read(cert).map_err(|e| CertError::Cert(format!("cannot read it: {e}")))?;
        let key_pem =
            std::fs::read(key).map_err(|e| CertError::Key(format!("cannot read it: {e}")))?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| CertError::Cert(format!("not a PEM certificate chain: {e}")))?;
        if chain.is_empty() {
            return Err(CertError::Cert("holds no PEM certificate".to_owned()));
        }
        let private = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| CertError::Key(format!("holds no PEM private key: {e}")))?;
        validity(&chain[0])?;
        let certified = CertifiedKey::from_der(chain, private, &provider()).map_err(|e| {
            CertError::Key(format!(
                "does not fit the certificate or is not usable: {e}"
            ))
        })?;
        let mut hasher = SipHasher13::new();
        hasher.write(&cert_pem);
        hasher.write(&key_pem);
        Ok(Self {
            key: Arc::new(certified),
            fingerprint: hasher.finish(),
        })
    }

    /// Whether the certificate is valid for the DNS name `name`.
    pub fn check_name(&self, name: &str) -> Result<(), CertError> {
        let mut resolver = ResolvesServerCertUsingSni::new();
        resolver
            .add(name, (*self.key).clone())
            .map_err(|e| CertError::Cert(format!("is not valid for {name:?}: {e}")))
    }
}

/// Refuses a certificate outside its validity period.
fn validity(cert: &CertificateDer<'_>) -> Result<(), CertError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, parsed) = X509Certificate::from_der(cert)
        .map_err(|e| CertError::Cert(format!("is not an X.509 certificate: {e}")))?;
    let now = UnixTime::now().as_secs();
    let validity = parsed.validity();
    let (from, until) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    let now = i64::try_from(now).unwrap_or(i64::MAX);
    if now > until {
        return Err(CertError::Cert(format!(
            "expired on {}",
            validity.not_after
        )));
    }
    if now < from {
        return Err(CertError::Cert(format!(
            "is not valid before {}",
            validity.not_before
        )));
    }
    Ok(())
}

/// The `[tls]` section, ready to serve with.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    server: Arc<rustls::ServerConfig>,
    fingerprint: u64,
}

impl PartialEq for TlsConfig {
    /// Two configurations are equal when they were made of the same files' contents and the
    /// same settings.
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

/// Picks the certificate for a client's SNI name, or the default one.
#[derive(Debug)]
struct Certificates {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let named = hello
            .server_name()
            .and_then(|name| self.by_name.get(&name.to_ascii_lowercase()));
        Some(Arc::clone(named.unwrap_or(&self.default)))
    }
}

impl TlsConfig {
    /// Serves `default` to clients that name no host or one not in `by_name` (SNI name,
    /// lower case, and its pair: checked with [`CertPair::check_name`]), accepting `min` and
    /// later versions and offering `alpn` (protocol names, in preference order).
    pub fn new(
        default: CertPair,
        by_name: Vec<(String, CertPair)>,
        min: TlsVersion,
        alpn: Vec<String>,
    ) -> Result<Self, String> {
        let mut hasher = SipHasher13::new();
        hasher.write_u64(default.fingerprint);
        for (name, pair) in &by_name {
            hasher.write(name.as_bytes());
            hasher.write_u64(pair.fingerprint);
        }
        hasher.write_u8(min as u8);
        for protocol in &alpn {
            hasher.write(protocol.as_bytes());
            hasher.write_u8(0);
        }
        let versions: &[&rustls::SupportedProtocolVersion] = match min {
            TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            TlsVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let resolver = Certificates {
            by_name: by_name
                .into_iter()
                .map(|(name, pair)| (name.to_ascii_lowercase(), pair.key))
                .collect(),
            default: default.key,
        };
        let mut server = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        server.alpn_protocols = alpn.into_iter().map(String::into_bytes).collect();
        Ok(Self {
            server: Arc::new(server),
            fingerprint: hasher.finish(),
        })
    }

    /// The rustls configuration connections are accepted with.
    pub fn server(&self) -> &Arc<rustls::ServerConfig> {
        &self.server
    }
}
