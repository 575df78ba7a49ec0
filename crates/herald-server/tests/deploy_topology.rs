//! The shipped deployment, run for real: `deploy/nginx.conf` (with this test's ports) in front of
//! two `herald serve` nodes sharing one `redis-server`, as `deploy/compose.yaml` runs them; and
//! `deploy/herald.service` checked by `systemd-analyze verify`.
//!
//! nginx and systemd-analyze come from Debian's packages (`scripts/setup` installs them). A
//! missing one fails the test with that advice; nothing is skipped.

mod common;

use common::{free_port, RedisServer, SseStream, TestHub, PATIENCE};
use serde_json::{json, Value};
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The repository's `deploy/` folder.
fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

/// A fresh folder under the system's temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "herald-{what}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("the temporary folder can be created");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Finds a Debian system binary, which lives in /usr/sbin (not on a non-root user's `PATH`).
fn system_binary(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("`{name}` is not installed: run scripts/setup"))
}

/// `deploy/nginx.conf` with this test's ports, and every file nginx writes kept in `dir`, so it
/// runs without root. Every substitution must apply exactly once: a change to the shipped file
/// that this test does not follow fails here rather than testing something else.
fn nginx_config(dir: &Path, listen_port: u16, node_ports: [u16; 2]) -> String {
    let shipped = std::fs::read_to_string(deploy_dir().join("nginx.conf"))
        .expect("deploy/nginx.conf is readable");
    let dir = dir.display();
    let temp_paths = format!(
        "http {{\n    client_body_temp_path {dir}/client_body;\n    proxy_temp_path {dir}/proxy;\n    \
         fastcgi_temp_path {dir}/fastcgi;\n    uwsgi_temp_path {dir}/uwsgi;\n    scgi_temp_path {dir}/scgi;\n"
    );
    let substitutions = [
        ("http {\n", temp_paths),
        ("listen 8080;", format!("listen 127.0.0.1:{listen_port};")),
        (
            "server herald-a:8080 ",
            format!("server 127.0.0.1:{} ", node_ports[0]),
        ),
        (
            "server herald-b:8080 ",
            format!("server 127.0.0.1:{} ", node_ports[1]),
        ),
    ];
    let mut config = shipped;
    for (from, to) in substitutions {
        assert_eq!(
            config.matches(from).count(),
            1,
            "deploy/nginx.conf has `{}` exactly once",
            from.trim()
        );
        config = config.replacen(from, &to, 1);
    }
    config
}

/// Debian's nginx in the foreground, on a free port, with the shipped configuration.
struct Nginx {
    child: Child,
    base: String,
    dir: TempDir,
}

impl Nginx {
    fn start(node_ports: [u16; 2]) -> Self {
        let nginx = system_binary("nginx");
        let dir = TempDir::new("nginx");
        let port = free_port();
        let config_path = dir.0.join("nginx.conf");
        std::fs::write(&config_path, nginx_config(&dir.0, port, node_ports))
            .expect("the nginx configuration can be written");
        let error_log = std::fs::File::create(dir.0.join("error.log")).expect("error.log");
        let child = Command::new(nginx)
            .arg("-p")
            .arg(&dir.0)
            .arg("-c")
            .arg(&config_path)
            .arg("-e")
            .arg(dir.0.join("error.log"))
            .arg("-g")
            .arg(format!("daemon off; pid {}/nginx.pid;", dir.0.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(error_log)
            .spawn()
            .expect("nginx starts");
        let mut nginx = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited ({status}): {}", nginx.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen: {}",
                nginx.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("error.log")).unwrap_or_default()
    }

    /// POSTs JSON through nginx and expects 200.
    async fn publish(&self, path: &str, body: Value) -> Value {
        let response = common::http()
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("POST reaches nginx");
        let status = response.status().as_u16();
        let text = response.text().await.expect("the answer has a body");
        assert_eq!(
            status,
            200,
            "publish through nginx answered {text}; nginx: {}",
            self.error_log()
        );
        serde_json::from_str(&text).expect("the answer is JSON")
    }
}

impl Drop for Nginx {
    /// TERM lets the master stop its workers (a killed master would leave them on the port).
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A cluster node as deploy/compose.yaml starts one, trusting the proxy's address.
fn node(redis: &RedisServer, name: &str) -> TestHub {
    TestHub::start(&[
        "--redis-url",
        &redis.url(),
        "--node-id",
        name,
        "--trusted-proxies",
        "127.0.0.1",
    ])
}

/// How many streams a node holds, asked of the node itself.
async fn streams_on(node: &TestHub) -> u64 {
    node.stats().await["connections"]
        .as_u64()
        .expect("stats count connections")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_through_nginx_spread_over_both_nodes_and_receive_every_event() {
    let redis = RedisServer::start();
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let nginx = Nginx::start([a.port, b.port]);

    let mut first = SseStream::open(&nginx.url("/api/channels/orders/stream"), &[]).await;
    assert_eq!(first.connected().await["resumed"], json!(false));
    let mut second = SseStream::open(&nginx.url("/api/channels/orders/stream"), &[]).await;
    second.connected().await;
    // least_conn puts the second live stream on the node without one.
    assert_eq!(
        (streams_on(&a).await, streams_on(&b).await),
        (1, 1),
        "each node holds one of the two streams"
    );

    let mut published = Vec::new();
    for n in 1..=4 {
        let answer = nginx
            .publish("/api/channels/orders/events", json!({"data": n}))
            .await;
        published.push((
            answer["id"].as_str().expect("an id").to_owned(),
            n.to_string(),
        ));
    }
    // Straight to each node as well: whichever node takes a publish, both streams get it.
    for (n, target) in [(5, &a), (6, &b)] {
        let answer = target
            .publish("/api/channels/orders/events", json!({"data": n}))
            .await;
        published.push((
            answer["id"].as_str().expect("an id").to_owned(),
            n.to_string(),
        ));
    }
    assert_eq!(first.next_events(6).await, published);
    assert_eq!(second.next_events(6).await, published);

    assert!(
        first
            .next_event_within(Duration::from_millis(300))
            .await
            .is_none(),
        "nothing is sent twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_through_nginx_after_its_node_stops_with_nothing_lost() {
    let redis = RedisServer::start();
    let mut nodes = [node(&redis, "a"), node(&redis, "b")];
    let nginx = Nginx::start([nodes[0].port, nodes[1].port]);

    let mut stream = SseStream::open(&nginx.url("/api/channels/jobs/stream"), &[]).await;
    stream.connected().await;
    for n in 1..=3 {
        nginx
            .publish("/api/channels/jobs/events", json!({"data": n}))
            .await;
    }
    let seen = stream.next_events(3).await;
    let last_id = seen[2].0.clone();

    let holder = if streams_on(&nodes[0]).await == 1 {
        0
    } else {
        1
    };
    assert_eq!(
        streams_on(&nodes[holder]).await,
        1,
        "one node holds the stream"
    );
    nodes[holder]
        .signal_and_wait("TERM", PATIENCE)
        .expect("the node stops on SIGTERM");
    // The stopped node ends its stream, and nginx passes the end on to the client.
    stream.events_until_end().await;

    // Publishing through nginx goes on: a refused connection is retried on the other node.
    let mut missed = Vec::new();
    for n in 4..=6 {
        let answer = nginx
            .publish("/api/channels/jobs/events", json!({"data": n}))
            .await;
        missed.push((
            answer["id"].as_str().expect("an id").to_owned(),
            n.to_string(),
        ));
    }

    let mut resumed = SseStream::open(
        &nginx.url("/api/channels/jobs/stream"),
        &[("Last-Event-ID", &last_id)],
    )
    .await;
    assert_eq!(resumed.connected().await["resumed"], json!(true));
    assert_eq!(resumed.next_events(3).await, missed);
    assert!(
        resumed
            .next_event_within(Duration::from_millis(300))
            .await
            .is_none(),
        "nothing is sent twice"
    );
    assert_eq!(
        streams_on(&nodes[1 - holder]).await,
        1,
        "the surviving node holds the resumed stream"
    );
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let analyze = system_binary("systemd-analyze");
    // An image root with the unit, its ExecStart binary and systemd's own units (which the
    // unit's dependencies name), so verify checks this unit and nothing of the host's.
    let root = TempDir::new("systemd-root");
    let units = root.0.join("etc/systemd/system");
    std::fs::create_dir_all(&units).expect("units folder");
    std::fs::copy(
        deploy_dir().join("herald.service"),
        units.join("herald.service"),
    )
    .expect("deploy/herald.service is readable");
    let bin = root.0.join("usr/local/bin");
    std::fs::create_dir_all(&bin).expect("bin folder");
    // Only its presence and mode are checked; a stub spares copying the real binary.
    std::fs::write(bin.join("herald"), "#!/bin/sh\n").expect("a stub binary");
    std::fs::set_permissions(bin.join("herald"), std::fs::Permissions::from_mode(0o755))
        .expect("the stub is executable");
    let system_units = root.0.join("usr/lib/systemd");
    std::fs::create_dir_all(&system_units).expect("systemd folder");
    let copied = Command::new("cp")
        .arg("-a")
        .arg("/usr/lib/systemd/system")
        .arg(&system_units)
        .status()
        .expect("cp runs");
    assert!(copied.success(), "systemd's units copy into the image root");

    let output = Command::new(analyze)
        .arg("verify")
        .arg(format!("--root={}", root.0.display()))
        .arg("herald.service")
        .output()
        .expect("systemd-analyze runs");
    let messages = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && messages.trim().is_empty(),
        "systemd-analyze verify found problems in deploy/herald.service: {messages}"
    );
}
