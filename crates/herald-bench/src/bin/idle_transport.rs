//! `idle-transport`: the hub's memory per idle event stream over each transport: HTTP/1.1,
//! HTTP/1.1 over TLS, or HTTP/2 over TLS with several streams per connection.
//!
//! It opens `--streams` streams to a running hub (`--addr`, its process `--pid`), waits until
//! every one has received its `connected` event, holds them past a heartbeat, and prints the
//! hub's `VmRSS` growth over its baseline divided by the streams. It never starts or stops the
//! hub; `scripts/bench-transports` does. TLS trusts the authority in `--ca` for `localhost`.
//!
//! The same measurement of another server (nginx with nchan, `scripts/bench-nchan`): `--path`
//! names its stream, `--ready-on head` counts a stream open once its `200` head arrives (nchan
//! sends no `connected` event), and `--pid` repeated sums the memory of several processes (nginx's
//! workers).

use anyhow::Context;
use clap::{Parser, ValueEnum};
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
    sync::Semaphore,
};

/// Handshakes in flight at once.
const CONNECT_CONCURRENCY: usize = 200;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Transport {
    /// Plain HTTP/1.1, one stream per connection.
    H1,
    /// HTTP/1.1 over TLS, one stream per connection.
    H1Tls,
    /// HTTP/2 over TLS, `--streams-per-connection` streams per connection.
    H2Tls,
}

/// When a stream counts as open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReadyOn {
    /// The hub's `connected` event has arrived.
    Connected,
    /// A `200` response head has arrived.
    Head,
}

/// Flags of `idle-transport`.
#[derive(Debug, Parser)]
struct Args {
    /// The hub's address.
    #[arg(long)]
    addr: SocketAddr,
    /// The hub's process id, whose memory is read; repeat it to sum several processes.
    #[arg(long, required = true)]
    pid: Vec<u32>,
    /// The stream's path.
    #[arg(long, default_value = "/api/channels/bench/stream")]
    path: String,
    /// When a stream counts as open.
    #[arg(long, value_enum, default_value_t = ReadyOn::Connected)]
    ready_on: ReadyOn,
    /// The transport.
    #[arg(long, value_enum)]
    transport: Transport,
    /// Streams held open in all.
    #[arg(long, default_value_t = 19_000)]
    streams: usize,
    /// Streams per HTTP/2 connection.
    #[arg(long, default_value_t = 1)]
    streams_per_connection: usize,
    /// Seconds to hold the streams once all are open (past the hub's 15 s heartbeat).
    #[arg(long, default_value_t = 20)]
    hold_secs: u64,
    /// PEM file of the authority that signed the hub's certificate (TLS transports).
    #[arg(long)]
    ca: Option<PathBuf>,
}

/// The summed `VmRSS` of `pids`.
fn rss_kib(pids: &[u32]) -> anyhow::Result<u64> {
    pids.iter().map(|&pid| process_rss_kib(pid)).sum()
}

fn process_rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .context("VmRSS in /proc/PID/status")
}

fn tls_connector(ca: &PathBuf, alpn: &[u8]) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Sends the HTTP/1.1 stream request, then reads and discards forever, counting the stream open
/// once `marker` arrives.
async fn hold_http1<S: AsyncRead + AsyncWrite + Unpin>(
    mut socket: S,
    path: &str,
    marker: &[u8],
    opened: Arc<AtomicUsize>,
) {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n");
    if socket.write_all(request.as_bytes()).await.is_err() || socket.flush().await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 4096];
    let mut counted = false;
    loop {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if !counted && buf[..n].windows(marker.len()).any(|w| w == marker) {
                    counted = true;
                    opened.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Opens `streams` HTTP/2 streams on one connection and reads each until it ends.
async fn hold_http2<S>(
    socket: S,
    streams: usize,
    path: &str,
    ready_on: ReadyOn,
    opened: Arc<AtomicUsize>,
) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, connection) = h2::client::handshake(socket).await?;
    tokio::spawn(connection);
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let mut send = send.clone().ready().await?;
        let request = http::Request::get(format!("https://localhost{path}"))
            .header("accept", "text/event-stream")
            .body(())?;
        let (response, _) = send.send_request(request, true)?;
        let opened = opened.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(response) = response.await else { return };
            let mut counted = false;
            if ready_on == ReadyOn::Head && response.status() == 200 {
                counted = true;
                opened.fetch_add(1, Ordering::Relaxed);
            }
            let mut body = response.into_body();
            while let Some(Ok(chunk)) = body.data().await {
                let _ = body.flow_control().release_capacity(chunk.len());
                if !counted && chunk.windows(9).any(|w| w == b"connected") {
                    counted = true;
                    opened.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let baseline = rss_kib(&args.pid)?;
    let marker: &'static [u8] = match args.ready_on {
        ReadyOn::Connected => b"connected",
        ReadyOn::Head => b" 200 ",
    };
    let path: Arc<str> = args.path.clone().into();
    let opened = Arc::new(AtomicUsize::new(0));
    let permits = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let per_connection = match args.transport {
        Transport::H2Tls => args.streams_per_connection.max(1),
        _ => 1,
    };
    let connections = args.streams.div_ceil(per_connection);
    let connector = match (args.transport, &args.ca) {
        (Transport::H1, _) => None,
        (Transport::H1Tls, Some(ca)) => Some(tls_connector(ca, b"http/1.1")?),
        (Transport::H2Tls, Some(ca)) => Some(tls_connector(ca, b"h2")?),
        _ => anyhow::bail!("TLS transports need --ca"),
    };
    let started = std::time::Instant::now();
    for index in 0..connections {
        let streams = per_connection.min(args.streams - index * per_connection);
        let permit = permits.clone().acquire_owned().await?;
        let (opened, connector, transport, addr) =
            (opened.clone(), connector.clone(), args.transport, args.addr);
        let (path, ready_on) = (path.clone(), args.ready_on);
        tokio::spawn(async move {
            let Ok(socket) = TcpStream::connect(addr).await else {
                eprintln!("connect failed");
                return;
            };
            let name = ServerName::try_from("localhost").expect("a name");
            match (transport, connector) {
                (Transport::H1, _) => {
                    drop(permit);
                    hold_http1(socket, &path, marker, opened).await;
                }
                (Transport::H1Tls, Some(connector)) => {
                    let Ok(tls) = connector.connect(name, socket).await else {
                        eprintln!("handshake failed");
                        return;
                    };
                    drop(permit);
                    hold_http1(tls, &path, marker, opened).await;
                }
                (_, Some(connector)) => {
                    let Ok(tls) = connector.connect(name, socket).await else {
                        eprintln!("handshake failed");
                        return;
                    };
                    drop(permit);
                    if let Err(err) = hold_http2(tls, streams, &path, ready_on, opened).await {
                        eprintln!("http/2: {err}");
                    }
                }
                _ => unreachable!("checked above"),
            }
        });
    }
    while opened.load(Ordering::Relaxed) < args.streams {
        if started.elapsed() > Duration::from_secs(300) {
            anyhow::bail!(
                "only {} of {} streams opened",
                opened.load(Ordering::Relaxed),
                args.streams
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let open_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let open_rss = rss_kib(&args.pid)?;
    tokio::time::sleep(Duration::from_secs(args.hold_secs)).await;
    let held_rss = rss_kib(&args.pid)?;
    let per_stream =
        |rss: u64| (rss.saturating_sub(baseline) as f64) * 1024.0 / args.streams as f64;
    println!(
        "{}",
        serde_json::json!({
            "transport": format!("{:?}", args.transport),
            "streams": args.streams,
            "streams_per_connection": per_connection,
            "connections": connections,
            "open_secs": (open_secs * 10.0).round() / 10.0,
            "baseline_rss_kib": baseline,
            "rss_kib_open": open_rss,
            "rss_kib_after_hold": held_rss,
            "bytes_per_stream_open": per_stream(open_rss).round(),
            "bytes_per_stream_after_hold": per_stream(held_rss).round(),
        })
    );
    Ok(())
}
