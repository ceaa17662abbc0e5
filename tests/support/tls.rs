//! Certificates made for a test (a CA of its own and the server certificates it signs, written
//! as PEM files) and a TLS client that verifies the server against that CA.

use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, date_time_ymd};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::Server;
use super::files::Tree;

/// A TLS connection to a server, as the test's client sees it.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A CA and the server certificates it signed, in PEM files of a directory of the test's own.
pub struct Certs {
    tree: Tree,
    ca: CertificateDer<'static>,
}

impl Certs {
    /// Writes `server.pem`/`server.key` (for `localhost`), `other.pem`/`other.key` (for
    /// `other.test`), `expired.pem`/`expired.key` (for `localhost`, expired in 2001) and
    /// `ca.pem`.
    pub fn new(name: &str) -> Self {
        let tree = Tree::new(&format!("tls-{name}"));
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let write = |file: &str, text: String| {
            std::fs::write(tree.0.join(file), text).unwrap();
        };
        write("ca.pem", ca.pem());
        for (file, host, expired) in [
            ("server", "localhost", false),
            ("other", "other.test", false),
            ("expired", "localhost", true),
        ] {
            let mut params = CertificateParams::new(vec![host.to_owned()]).unwrap();
            if expired {
                params.not_before = date_time_ymd(2000, 1, 1);
                params.not_after = date_time_ymd(2001, 1, 1);
            }
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &ca).unwrap();
            write(&format!("{file}.pem"), cert.pem());
            write(&format!("{file}.key"), key.serialize_pem());
        }
        let ca = ca.der().clone();
        Self { tree, ca }
    }

    /// A directory for a files route (empty until [`Certs::file`] writes in it).
    pub fn root(&self) -> PathBuf {
        self.tree.root()
    }

    /// Writes `len` bytes of a pattern to `name` in [`Certs::root`]; returns them.
    pub fn file(&self, name: &str, len: usize) -> Vec<u8> {
        self.tree.file(name, len)
    }

    /// The path of `file` in the directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.tree.0.join(file)
    }

    /// `[tls]` with the `localhost` certificate, and `extra` lines.
    pub fn section(&self, extra: &str) -> String {
        format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n{extra}\n",
            self.path("server.pem").display(),
            self.path("server.key").display()
        )
    }

    /// A client that trusts this CA only, offering `alpn`.
    pub fn client_config(&self, alpn: &[&str]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(config)
    }

    /// A TLS connection to `server` asking for `host` (SNI), the handshake done and the
    /// certificate verified for `host`; `Err` with the handshake's error otherwise.
    pub fn connect(&self, server: &Server, host: &str) -> Result<TlsStream, std::io::Error> {
        connect_with(server, host, self.client_config(&["http/1.1"]))
    }
}

/// A TLS connection to `server` asking for `host` with `config`, its handshake done.
pub fn connect_with(
    server: &Server,
    host: &str,
    config: Arc<ClientConfig>,
) -> Result<TlsStream, std::io::Error> {
    let name = ServerName::try_from(host.to_owned()).unwrap();
    let session = ClientConnection::new(config, name).unwrap();
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(super::PATIENCE)).unwrap();
    let mut stream = StreamOwned::new(session, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}
