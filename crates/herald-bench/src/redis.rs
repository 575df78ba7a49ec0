//! The Redis under a cluster run: a `redis-server` child process on a free loopback port, without
//! persistence, in a temporary working folder; and the few Redis commands the report reads.
//!
//! Owns the server's life (killed on drop, folder removed). It does not know Herald's keys beyond
//! the name of the log stream it measures; the hub nodes are [`crate::hub`]'s.

use crate::{proc, temp_dir::TempDir};
use anyhow::{bail, Context};
use std::{
    net::{SocketAddr, TcpListener},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// How long `redis-server` gets to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between two connection attempts while it starts.
const START_POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Largest reply read from Redis (an `INFO` section is a few KiB).
const REPLY_BYTES_MAX: usize = 1024 * 1024;

/// A running `redis-server`; killed on drop.
#[derive(Debug)]
pub(crate) struct RedisProcess {
    child: Child,
    addr: SocketAddr,
    /// Its working folder, removed after the server is killed.
    _dir: TempDir,
}

impl RedisProcess {
    /// Starts `bin --port P --bind 127.0.0.1 --save '' --appendonly no` on a free port and waits
    /// until it accepts connections.
    ///
    /// # Errors
    /// When the binary cannot be run, exits early, or does not listen within 10 s.
    pub(crate) fn spawn(bin: &Path) -> anyhow::Result<Self> {
        let dir = TempDir::new("redis")?;
        let port = free_port()?;
        let mut child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!(
                    "running {} (install Redis, or pass --redis-server-bin)",
                    bin.display()
                )
            })?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            if let Some(status) = child.try_wait().context("polling redis-server")? {
                bail!("redis-server exited at start: {status}");
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                bail!("redis-server did not listen on {addr} within {START_TIMEOUT:?}");
            }
            std::thread::sleep(START_POLL_INTERVAL);
        }
        Ok(Self {
            child,
            addr,
            _dir: dir,
        })
    }

    /// `redis://127.0.0.1:P`, for the hub's `--redis-url`.
    pub(crate) fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its CPU time (user plus system) so far.
    ///
    /// # Errors
    /// When the process is gone.
    pub(crate) fn cpu_time(&self) -> anyhow::Result<proc::CpuTime> {
        proc::cpu_time(self.pid())
    }

    /// What Redis holds now: its memory, its keys, the length of the log stream `stream_key`.
    ///
    /// # Errors
    /// When Redis cannot be reached or answers oddly.
    pub(crate) async fn usage(&self, stream_key: &str) -> anyhow::Result<RedisUsage> {
        let mut socket = TcpStream::connect(self.addr)
            .await
            .context("connecting to redis")?;
        let info = command(&mut socket, &["INFO", "memory"]).await?;
        let used_memory = info
            .lines()
            .find_map(|line| line.strip_prefix("used_memory:"))
            .and_then(|value| value.trim().parse().ok())
            .context("INFO memory has no used_memory")?;
        let keys = command(&mut socket, &["DBSIZE"]).await?.parse()?;
        let stream_len = command(&mut socket, &["XLEN", stream_key]).await?.parse()?;
        Ok(RedisUsage {
            used_memory,
            keys,
            stream_len,
        })
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A reading of Redis's `INFO memory`, `DBSIZE` and `XLEN`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RedisUsage {
    /// `used_memory`: bytes allocated by Redis for its data and buffers.
    pub(crate) used_memory: u64,
    /// Keys in the database: the log stream, the node registry, publisher ids kept for
    /// idempotency.
    pub(crate) keys: u64,
    /// Entries in the log stream.
    pub(crate) stream_len: u64,
}

/// A loopback port nobody listens on now (the kernel's choice for port 0). Another process could
/// take it before Redis binds it; a run then fails at start and can be repeated.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Sends one command and returns its reply as text: a bulk or simple string, or an integer.
async fn command(socket: &mut TcpStream, args: &[&str]) -> anyhow::Result<String> {
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    socket.write_all(request.as_bytes()).await?;
    let mut reply = Vec::new();
    loop {
        if let Some(text) = parse_reply(&reply)? {
            return Ok(text);
        }
        if reply.len() > REPLY_BYTES_MAX {
            bail!("redis reply to {args:?} larger than {REPLY_BYTES_MAX} bytes");
        }
        let mut chunk = [0u8; 4096];
        let read = socket.read(&mut chunk).await?;
        if read == 0 {
            bail!("redis closed the connection during {args:?}");
        }
        reply.extend_from_slice(&chunk[..read]);
    }
}

/// The text of a complete RESP reply in `buf`, or `None` when more bytes are needed.
fn parse_reply(buf: &[u8]) -> anyhow::Result<Option<String>> {
    let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = std::str::from_utf8(&buf[1..line_end]).context("redis reply is not UTF-8")?;
    match buf.first() {
        Some(b'+' | b':') => Ok(Some(line.to_owned())),
        Some(b'-') => bail!("redis answered an error: {line}"),
        Some(b'$') => {
            let len: usize = line.parse().context("bad bulk length")?;
            let start = line_end + 2;
            if buf.len() < start + len + 2 {
                return Ok(None);
            }
            Ok(Some(
                String::from_utf8_lossy(&buf[start..start + len]).into_owned(),
            ))
        }
        _ => bail!("unexpected redis reply {:?}", String::from_utf8_lossy(buf)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read_once_complete() {
        assert_eq!(
            parse_reply(b":42\r\n").expect("valid").as_deref(),
            Some("42")
        );
        assert_eq!(parse_reply(b"$5\r\nhel").expect("valid"), None);
        assert_eq!(
            parse_reply(b"$5\r\nhello\r\n").expect("valid").as_deref(),
            Some("hello")
        );
        assert!(parse_reply(b"-ERR nope\r\n").is_err());
    }
}
