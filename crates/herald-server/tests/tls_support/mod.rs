//! TLS for the tests: a certificate authority made for the test run (rcgen), certificates it
//! issues for `localhost` and `127.0.0.1`, and a raw TLS client that trusts it.
//!
//! [`test_ca`] writes the authority's certificate to a file and points `SSL_CERT_FILE` at it, as an
//! operator would for a private CA, so the HTTP clients (reqwest with the system's roots) and the
//! `herald` binaries the tests start trust it. Every test calls it first, before any thread reads
//! the environment.

#![allow(dead_code, unreachable_pub)]

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use std::{
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};
use tokio::net::TcpStream;
use tokio_rustls::{client::TlsStream, TlsConnector};

/// A certificate authority for the test run, trusted through `SSL_CERT_FILE`.
pub struct TestCa {
    dir: PathBuf,
    cert: rcgen::Certificate,
    key: KeyPair,
    pub cert_path: PathBuf,
}

/// The run's authority; the first call creates it and sets `SSL_CERT_FILE`.
pub fn test_ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("herald-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temp directory");
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params
            .distinguished_name
            .push(DnType::CommonName, "Herald test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("a CA certificate");
        let cert_path = dir.join("ca.pem");
        std::fs::write(&cert_path, cert.pem()).expect("writes the CA");
        // Before any client is built or process spawned: every test calls this first.
        std::env::set_var("SSL_CERT_FILE", &cert_path);
        TestCa {
            dir,
            cert,
            key,
            cert_path,
        }
    })
}

/// A server certificate and key on disk, as `--tls-cert` and `--tls-key` take them.
pub struct ServerCert {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// The leaf certificate (DER), to recognise it in a handshake.
    pub der: Vec<u8>,
}

impl ServerCert {
    /// `--tls-cert FILE --tls-key FILE`.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert_path.display().to_string(),
            "--tls-key".into(),
            self.key_path.display().to_string(),
        ]
    }
}

impl TestCa {
    /// Issues a certificate for `localhost` and `127.0.0.1` named `name`, written to
    /// `<name>.pem` and `<name>.key` in the run's folder.
    pub fn issue(&self, name: &str) -> ServerCert {
        let cert_path = self.dir.join(format!("{name}.pem"));
        let key_path = self.dir.join(format!("{name}.key"));
        let der = self.issue_to(name, &cert_path, &key_path);
        ServerCert {
            cert_path,
            key_path,
            der,
        }
    }

    /// Issues a new certificate over the files of `into` (as a renewal does); returns its DER.
    pub fn issue_to(&self, name: &str, cert_path: &Path, key_path: &Path) -> Vec<u8> {
        let key = KeyPair::generate().expect("a server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("the CA signs");
        std::fs::write(cert_path, cert.pem()).expect("writes the certificate");
        std::fs::write(key_path, key.serialize_pem()).expect("writes the key");
        cert.der().to_vec()
    }

    /// A rustls client configuration trusting only this authority, offering `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.cert_path).expect("the CA file") {
            roots.add(cert.expect("a CA certificate")).expect("a root");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the defaults")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// Connects to a hub on loopback over TLS, offering `alpn`.
    pub async fn connect(&self, port: u16, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
        let socket = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connects");
        TlsConnector::from(self.client_config(alpn))
            .connect(ServerName::try_from("localhost").expect("a name"), socket)
            .await
            .expect("the TLS handshake succeeds")
    }
}

/// An HTTP client (HTTP/1.1 only) trusting the test authority through `SSL_CERT_FILE`.
pub fn http1() -> reqwest::Client {
    test_ca();
    reqwest::Client::builder()
        .http1_only()
        .build()
        .expect("an HTTPS client builds")
}

/// An HTTP client that speaks HTTP/2 whenever ALPN offers it, trusting the test authority.
pub fn http2() -> reqwest::Client {
    test_ca();
    reqwest::Client::builder()
        .build()
        .expect("an HTTPS client builds")
}
