//! TLS on the listener: the certificate, its reload, and each connection's handshake.
//!
//! Owns [`Tls`] (a PEM certificate chain and key, loaded with rustls and `ring`, offered over
//! TLS 1.3 and 1.2 with ALPN `h2` then `http/1.1`), its reload in place (a new certificate that
//! does not load leaves the old one serving), and the handshake of an accepted socket, bounded in
//! time. It says which protocol the client chose and hands the socket on; it never reads a
//! request, and it never drops a connection that is open: a reload only changes what the next
//! handshake presents.

use rustls::{
    crypto::ring as provider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
    ServerConfig,
};
use std::{
    fmt, io,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, RwLock},
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::{server::TlsStream, TlsAcceptor};

/// The ALPN name of HTTP/2.
const ALPN_H2: &[u8] = b"h2";
/// The ALPN name of HTTP/1.1.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no valid PEM of the expected kind.
    #[error("reading {}: {reason}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// The certificate file holds no certificate.
    #[error("{} holds no certificate", path.display())]
    NoCertificate {
        /// The certificate file.
        path: PathBuf,
    },
    /// rustls refused the key or the key does not match the certificate.
    #[error("the key in {} cannot be used with the certificate: {source}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What rustls said.
        #[source]
        source: rustls::Error,
    },
}

/// TLS settings of a listener: a certificate chain and key from PEM files, reloadable in place.
///
/// A cheap-clone handle: the listener and whoever reloads (a SIGHUP handler) share one.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    certificate: Arc<ReloadableCert>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert_path", &self.certificate.cert_path)
            .field("key_path", &self.certificate.key_path)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the certificate chain (`cert_path`, PEM, leaf first) and its private key
    /// (`key_path`, PEM: PKCS#8, PKCS#1 or SEC1); offers TLS 1.3 and 1.2, ALPN `h2` and
    /// `http/1.1`.
    ///
    /// # Errors
    /// A file cannot be read, holds no certificate or key, or the key does not match the
    /// certificate.
    pub fn from_pem_files(
        cert_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
    ) -> Result<Self, TlsError> {
        let (cert_path, key_path) = (cert_path.into(), key_path.into());
        let current = load_certified_key(&cert_path, &key_path)?;
        let certificate = Arc::new(ReloadableCert {
            cert_path,
            key_path,
            current: RwLock::new(current),
        });
        let provider = Arc::new(provider::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("ring supports TLS 1.3 and 1.2")
            .with_no_client_auth()
            .with_cert_resolver(certificate.clone());
        config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificate,
        })
    }

    /// Reads the certificate and key files again; the next handshakes present the new pair.
    /// Connections already open keep theirs.
    ///
    /// # Errors
    /// As [`Tls::from_pem_files`]; the certificate in use then stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load_certified_key(&self.certificate.cert_path, &self.certificate.key_path)?;
        *self
            .certificate
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
        Ok(())
    }
}

/// The certificate every handshake presents, swapped whole by a reload.
struct ReloadableCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for ReloadableCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadableCert")
            .field("cert_path", &self.cert_path)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
        )
    }
}

fn load_certified_key(cert_path: &Path, key_path: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let read_error = |path: &Path, err: rustls::pki_types::pem::Error| TlsError::Read {
        path: path.to_owned(),
        reason: err.to_string(),
    };
    let chain = CertificateDer::pem_file_iter(cert_path)
        .map_err(|err| read_error(cert_path, err))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| read_error(cert_path, err))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|err| read_error(key_path, err))?;
    let key_error = |source| TlsError::Key {
        path: key_path.to_owned(),
        source,
    };
    let signing_key = provider::sign::any_supported_type(&key).map_err(key_error)?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(key_error)?;
    Ok(Arc::new(certified))
}

/// An accepted connection, ready for HTTP.
pub(super) enum Accepted {
    /// HTTP/1.1, plain or over TLS.
    Http1(Transport),
    /// HTTP/2 over TLS (ALPN `h2`).
    Http2(Box<TlsStream<TcpStream>>),
}

/// Completes the TLS handshake within `timeout` when `tls` is set; `None` when the client failed
/// it, gave up, or was too slow.
pub(super) async fn accept(
    socket: TcpStream,
    tls: Option<&Tls>,
    timeout: Duration,
) -> Option<Accepted> {
    let Some(tls) = tls else {
        return Some(Accepted::Http1(Transport::Plain(socket)));
    };
    // Boxed: rustls's handshake state is large, and a plain connection's task must not be sized
    // for it.
    let handshake = Box::pin(tokio::time::timeout(timeout, tls.acceptor.accept(socket)));
    let stream = match handshake.await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!(?timeout, "TLS handshake timed out");
            return None;
        }
    };
    if stream.get_ref().1.alpn_protocol() == Some(ALPN_H2) {
        Some(Accepted::Http2(Box::new(stream)))
    } else {
        Some(Accepted::Http1(Transport::Tls(Box::new(stream))))
    }
}

/// An HTTP/1.1 connection's socket: plain TCP, or TLS (boxed: rustls's state is large, and a
/// plain stream's task should not be sized for it).
pub(super) enum Transport {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(socket) => Pin::new(socket).poll_read(cx, buf),
            Self::Tls(socket) => Pin::new(socket.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(socket) => Pin::new(socket).poll_write(cx, buf),
            Self::Tls(socket) => Pin::new(socket.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(socket) => Pin::new(socket).poll_write_vectored(cx, bufs),
            Self::Tls(socket) => Pin::new(socket.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(socket) => socket.is_write_vectored(),
            Self::Tls(socket) => socket.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(socket) => Pin::new(socket).poll_flush(cx),
            Self::Tls(socket) => Pin::new(socket.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(socket) => Pin::new(socket).poll_shutdown(cx),
            Self::Tls(socket) => Pin::new(socket.as_mut()).poll_shutdown(cx),
        }
    }
}
