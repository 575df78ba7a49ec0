//! How the load tool reaches the hub: plain HTTP/1.1, HTTP/1.1 over TLS, or HTTP/2 over TLS.
//!
//! Owns the choice of transport for the whole run (set once, before the hub starts, by
//! [`install`]), the TLS client (trusting one authority's certificate for `localhost`), the
//! certificate the hub serves when the run makes its own, and the HTTP/2 connections that carry
//! event streams (one per stream, or up to N streams each). Every other request (stats, publishes)
//! goes over HTTP/1.1, over TLS when the transport is TLS: [`connect`] gives that socket. It never
//! parses HTTP/1.1 (`http` does) and never measures anything.

use crate::temp_dir::TempDir;
use anyhow::{bail, Context};
use bytes::Bytes;
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    sync::Mutex,
};
use tokio_rustls::TlsConnector;

/// The name the hub's certificate is checked against.
const SERVER_NAME: &str = "localhost";
/// HTTP/2 flow-control windows the client grants: large, as browsers' are, so that the hub's
/// sending is never held back by the load tool's window updates.
const H2_STREAM_WINDOW: u32 = 1024 * 1024;
const H2_CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// A socket to the hub: TCP, or TLS over TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A boxed [`Io`].
pub(crate) type BoxIo = Box<dyn Io>;

/// The transport of a run's event streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub(crate) enum Kind {
    /// Plain HTTP/1.1.
    #[default]
    H1,
    /// HTTP/1.1 over TLS.
    H1Tls,
    /// HTTP/2 over TLS (`--h2-streams-per-connection` streams per connection); publishes and
    /// stats go over HTTP/1.1 with TLS.
    H2Tls,
}

impl Kind {
    /// Its name on the command line and in the JSON.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::H1 => "h1",
            Kind::H1Tls => "h1-tls",
            Kind::H2Tls => "h2-tls",
        }
    }
}

/// Flags that choose the transport; every mode takes them.
#[derive(Debug, Default, clap::Args)]
pub(crate) struct TransportArgs {
    /// How streams (and, over TLS, every request) reach the hub. The TLS transports start the
    /// hub with `--tls-cert` and `--tls-key`: a certificate for `localhost` made for the run,
    /// unless `--tls-cert`, `--tls-key` and `--ca` are given.
    #[arg(long, global = true, value_enum, default_value_t = Kind::H1)]
    transport: Kind,
    /// With `--transport h2-tls`, event streams per HTTP/2 connection (at most the hub's 100).
    #[arg(long, global = true, default_value_t = 1, value_name = "N")]
    h2_streams_per_connection: usize,
    /// The hub's certificate (PEM, for `localhost`) for the TLS transports, with `--tls-key`
    /// [default: one made for the run by an authority made for the run].
    #[arg(long, global = true, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The hub's private key (PEM).
    #[arg(long, global = true, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The authority (PEM) the load tool trusts for `--tls-cert` [default: the file
    /// `SSL_CERT_FILE` names].
    #[arg(long, global = true, requires = "tls_cert")]
    ca: Option<PathBuf>,
}

impl TransportArgs {
    /// The chosen transport.
    pub(crate) fn kind(&self) -> Kind {
        self.transport
    }

    /// Streams per HTTP/2 connection (1 for the other transports).
    pub(crate) fn streams_per_connection(&self) -> usize {
        match self.transport {
            Kind::H2Tls => self.h2_streams_per_connection.max(1),
            _ => 1,
        }
    }
}

/// What a run installed: the transport and, over TLS, the client configuration.
struct Setup {
    kind: Kind,
    streams_per_connection: usize,
    /// TLS offering HTTP/1.1 by ALPN, for every HTTP/1.1 request.
    connector: Option<TlsConnector>,
    /// TLS offering HTTP/2 by ALPN, for event streams over HTTP/2.
    connector_h2: Option<TlsConnector>,
}

static SETUP: OnceLock<Setup> = OnceLock::new();

/// The hub's TLS files for a run, and the folder they were written to when made for it.
#[derive(Debug)]
pub(crate) struct HubTls {
    /// `--tls-cert FILE --tls-key FILE`, for `herald serve`.
    pub(crate) serve_args: Vec<String>,
    /// Removed with the run.
    _dir: Option<TempDir>,
}

/// Sets the run's transport; over TLS, makes (or takes) the hub's certificate and the client
/// that trusts it. Called once, before the hub starts; without it, everything is plain HTTP/1.1.
///
/// # Errors
/// When the files cannot be made or read, or it is called twice.
pub(crate) fn install(args: &TransportArgs) -> anyhow::Result<Option<HubTls>> {
    anyhow::ensure!(
        args.streams_per_connection() <= 100,
        "the hub allows at most 100 streams per HTTP/2 connection"
    );
    let (hub_tls, connector, connector_h2) = match args.transport {
        Kind::H1 => (None, None, None),
        Kind::H1Tls | Kind::H2Tls => {
            let (hub_tls, ca) = match (&args.tls_cert, &args.tls_key) {
                (Some(cert), Some(key)) => {
                    let ca = match &args.ca {
                        Some(ca) => ca.clone(),
                        None => std::env::var_os("SSL_CERT_FILE")
                            .map(PathBuf::from)
                            .context("--tls-cert needs --ca or SSL_CERT_FILE")?,
                    };
                    let serve_args = serve_args(cert, key);
                    (
                        HubTls {
                            serve_args,
                            _dir: None,
                        },
                        ca,
                    )
                }
                _ => make_certificate()?,
            };
            (
                Some(hub_tls),
                Some(tls_connector(&ca, b"http/1.1")?),
                Some(tls_connector(&ca, b"h2")?),
            )
        }
    };
    let setup = Setup {
        kind: args.transport,
        streams_per_connection: args.streams_per_connection(),
        connector,
        connector_h2,
    };
    if SETUP.set(setup).is_err() {
        bail!("the transport is set once per run");
    }
    Ok(hub_tls)
}

fn setup() -> &'static Setup {
    static PLAIN: Setup = Setup {
        kind: Kind::H1,
        streams_per_connection: 1,
        connector: None,
        connector_h2: None,
    };
    SETUP.get().unwrap_or(&PLAIN)
}

fn serve_args(cert: &Path, key: &Path) -> Vec<String> {
    vec![
        "--tls-cert".to_owned(),
        cert.display().to_string(),
        "--tls-key".to_owned(),
        key.display().to_string(),
    ]
}

/// An authority and a certificate it signed for `localhost` and 127.0.0.1, written to a new
/// temporary folder: the hub's files, and the authority's certificate to trust.
fn make_certificate() -> anyhow::Result<(HubTls, PathBuf)> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let dir = TempDir::new("tls")?;
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "herald-bench CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let params = CertificateParams::new(vec![SERVER_NAME.to_owned(), "127.0.0.1".to_owned()])?;
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    let (ca_path, cert_path, key_path) = (
        dir.path().join("ca.pem"),
        dir.path().join("hub.pem"),
        dir.path().join("hub.key"),
    );
    std::fs::write(&ca_path, ca.pem())?;
    std::fs::write(&cert_path, cert.pem())?;
    std::fs::write(&key_path, key.serialize_pem())?;
    let hub_tls = HubTls {
        serve_args: serve_args(&cert_path, &key_path),
        _dir: Some(dir),
    };
    Ok((hub_tls, ca_path))
}

/// A TLS client trusting the certificates in `ca` (PEM), offering `alpn`.
fn tls_connector(ca: &Path, alpn: &[u8]) -> anyhow::Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {ca:?}"))? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

/// A TCP connection to `addr` with `TCP_NODELAY` for HTTP/1.1, wrapped in TLS when the run's
/// transport is.
///
/// # Errors
/// When the connection or the handshake fails.
pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<BoxIo> {
    connect_with(addr, setup().connector.as_ref()).await
}

async fn connect_with(addr: SocketAddr, tls: Option<&TlsConnector>) -> anyhow::Result<BoxIo> {
    let socket = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    socket.set_nodelay(true)?;
    match tls {
        None => Ok(Box::new(socket)),
        Some(connector) => {
            let name = ServerName::try_from(SERVER_NAME).expect("a valid name");
            let stream = connector
                .connect(name, socket)
                .await
                .with_context(|| format!("TLS handshake with {addr}"))?;
            Ok(Box::new(stream))
        }
    }
}

/// Whether event streams go over HTTP/2.
pub(crate) fn streams_over_h2() -> bool {
    setup().kind == Kind::H2Tls
}

/// The HTTP/2 connection that takes the next stream, and how many it has taken.
static H2_SHARED: Mutex<Option<(SocketAddr, h2::client::SendRequest<Bytes>, usize)>> =
    Mutex::const_new(None);

/// A new HTTP/2 connection to `addr`; its driver runs in its own task until every handle and
/// stream on it is gone.
async fn h2_connection(addr: SocketAddr) -> anyhow::Result<h2::client::SendRequest<Bytes>> {
    let io = connect_with(addr, setup().connector_h2.as_ref()).await?;
    let (send, connection) = h2::client::Builder::new()
        .initial_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .handshake::<_, Bytes>(io)
        .await
        .context("HTTP/2 handshake")?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(send)
}

/// The answer to an event stream's `GET` over HTTP/2.
pub(crate) struct H2Response {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) body: h2::RecvStream,
}

/// Opens `GET path` over HTTP/2 with `headers`: on a connection of its own, or on the shared one
/// until it carries `--h2-streams-per-connection` streams.
///
/// # Errors
/// When the connection, the handshake or the request fails.
pub(crate) async fn h2_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<H2Response> {
    let per_connection = setup().streams_per_connection;
    let send = if per_connection <= 1 {
        h2_connection(addr).await?
    } else {
        let mut shared = H2_SHARED.lock().await;
        match shared.as_mut() {
            Some((on, send, count)) if *on == addr && *count < per_connection => {
                *count += 1;
                send.clone()
            }
            _ => {
                let send = h2_connection(addr).await?;
                *shared = Some((addr, send.clone(), 1));
                send
            }
        }
    };
    let mut send = send.ready().await.context("HTTP/2 connection not ready")?;
    let mut request = http::Request::get(format!("https://{SERVER_NAME}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (response, _) = send.send_request(request.body(())?, true)?;
    let response = response.await.context("HTTP/2 response")?;
    let content_type = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    Ok(H2Response {
        status: response.status().as_u16(),
        content_type,
        body: response.into_body(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::PrivateKeyDer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server holding the run's certificate, as `herald serve --tls-cert --tls-key` would.
    fn acceptor(serve_args: &[String], alpn: &[u8]) -> tokio_rustls::TlsAcceptor {
        let chain = CertificateDer::pem_file_iter(&serve_args[1])
            .expect("the certificate file")
            .collect::<Result<Vec<_>, _>>()
            .expect("a certificate");
        let key = PrivateKeyDer::from_pem_file(&serve_args[3]).expect("the key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("the key matches the certificate");
        config.alpn_protocols = vec![alpn.to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    }

    #[tokio::test]
    async fn the_run_trusts_the_certificate_it_made_and_asks_for_its_protocol() {
        let (hub_tls, ca) = make_certificate().expect("a certificate");
        for alpn in [&b"http/1.1"[..], b"h2"] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a port");
            let addr = listener.local_addr().expect("an address");
            let acceptor = acceptor(&hub_tls.serve_args, alpn);
            let server = tokio::spawn(async move {
                let (socket, _) = listener.accept().await.expect("a connection");
                let mut tls = acceptor.accept(socket).await.expect("a handshake");
                let protocol = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                tls.write_all(b"hello").await.expect("writes");
                tls.flush().await.expect("flushes");
                protocol
            });
            let connector = tls_connector(&ca, alpn).expect("a client");
            let mut io = connect_with(addr, Some(&connector))
                .await
                .expect("connects");
            let mut hello = [0u8; 5];
            io.read_exact(&mut hello).await.expect("reads");
            assert_eq!(&hello, b"hello");
            assert_eq!(server.await.expect("the server").as_deref(), Some(alpn));
        }
    }

    #[tokio::test]
    async fn a_certificate_from_another_authority_is_refused() {
        let (hub_tls, _) = make_certificate().expect("a certificate");
        let (_other_dir, other_ca) = make_certificate().expect("another authority");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let addr = listener.local_addr().expect("an address");
        let acceptor = acceptor(&hub_tls.serve_args, b"http/1.1");
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("a connection");
            let _ = acceptor.accept(socket).await;
        });
        let connector = tls_connector(&other_ca, b"http/1.1").expect("a client");
        assert!(connect_with(addr, Some(&connector)).await.is_err());
    }
}
