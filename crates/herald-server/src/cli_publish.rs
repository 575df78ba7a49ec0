//! `herald publish`: send one event to a channel on a hub and print the hub's answer.
//!
//! Owns reading the payload (inline, from a file or from standard input), the request body,
//! and reporting the answer. It never retries: a failed publish is reported once, and the
//! caller decides whether to run it again.

use std::io::Read;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{Map, Value};

use crate::cli_tail::{hub_error_message, HubArgs};

/// How long one publish request may take, connection included.
const PUBLISH_TIMEOUT_SECS: u64 = 30;

/// Flags of `herald publish`.
#[derive(Debug, Args)]
pub(crate) struct PublishArgs {
    /// Channel to publish to.
    #[arg(value_name = "CHANNEL")]
    channel: String,
    /// Event type (the SSE `event:` field); the hub's default when omitted.
    #[arg(long, value_name = "NAME")]
    event: Option<String>,
    /// Payload: JSON, or any other text (sent as a JSON string); `@path` reads a file and
    /// `-` reads standard input. To send a string that starts with `@`, quote it as JSON:
    /// '"@home"'.
    #[arg(long, value_name = "JSON|@FILE|-", allow_hyphen_values = true)]
    data: String,
    /// Event id; the hub assigns one when omitted.
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    #[command(flatten)]
    hub: HubArgs,
}

/// Runs `herald publish`: prints the hub's JSON answer on success.
///
/// # Errors
///
/// An unreadable payload file or standard input, a hub that cannot be reached, or an answer
/// other than 2xx; in that last case the answer's body goes to standard error first.
pub(crate) async fn run(args: PublishArgs) -> anyhow::Result<()> {
    let url = args
        .hub
        .endpoint(&["api", "channels", &args.channel, "events"])?;
    let text = read_payload(&args.data).await?;
    let body = request_body(args.event, payload_value(text), args.id);

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(PUBLISH_TIMEOUT_SECS))
        .build()
        .context("creating the http client")?;
    let mut request = http.post(url.clone()).json(&body);
    if let Some(authorization) = args.hub.authorization() {
        request = request.header(reqwest::header::AUTHORIZATION, authorization);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("publishing to {url}"))?;
    let status = response.status();
    let answer = response
        .text()
        .await
        .with_context(|| format!("reading the answer from {url}"))?;
    if !status.is_success() {
        eprintln!("{}", answer.trim_end());
        let message = hub_error_message(&answer);
        if message.is_empty() {
            bail!("hub answered {status}");
        }
        bail!("hub answered {status}: {message}");
    }
    println!("{}", answer.trim_end());
    Ok(())
}

/// The text behind `--data`: the argument itself, a file's contents (`@path`) or standard
/// input (`-`). From a file or standard input, one trailing line end is dropped.
async fn read_payload(data: &str) -> anyhow::Result<String> {
    if data != "-" && !data.starts_with('@') {
        return Ok(data.to_owned());
    }
    let source = data.to_owned();
    let text = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        let mut text = String::new();
        match source.strip_prefix('@') {
            Some(path) => {
                text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading --data file {path:?}"))?;
            }
            None => {
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading --data from standard input")?;
            }
        }
        Ok(text)
    })
    .await
    .context("reading --data")??;
    let trimmed = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    Ok(trimmed.to_owned())
}

/// The payload as JSON if it is JSON, else as a JSON string.
fn payload_value(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

/// `{"event":..,"data":..,"id":..}`, leaving out what was not given.
fn request_body(event: Option<String>, data: Value, id: Option<String>) -> Value {
    let mut body = Map::new();
    if let Some(event) = event {
        body.insert("event".to_owned(), Value::String(event));
    }
    body.insert("data".to_owned(), data);
    if let Some(id) = id {
        body.insert("id".to_owned(), Value::String(id));
    }
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        publish: PublishArgs,
    }

    #[test]
    fn json_payloads_are_sent_as_json_and_text_as_a_string() {
        assert_eq!(payload_value(r#"{"a":1}"#.into()), json!({"a": 1}));
        assert_eq!(payload_value("42".into()), json!(42));
        assert_eq!(payload_value(r#""quoted""#.into()), json!("quoted"));
        assert_eq!(payload_value("hello world".into()), json!("hello world"));
        assert_eq!(payload_value("{not json".into()), json!("{not json"));
    }

    #[test]
    fn the_body_leaves_out_what_was_not_given() {
        assert_eq!(
            request_body(Some("price".into()), json!({"p": 1}), Some("7".into())),
            json!({"event": "price", "data": {"p": 1}, "id": "7"})
        );
        assert_eq!(request_body(None, json!("x"), None), json!({"data": "x"}));
    }

    #[tokio::test]
    async fn file_payloads_lose_one_trailing_line_end() {
        let path = std::env::temp_dir().join(format!("herald-publish-{}.txt", std::process::id()));
        std::fs::write(&path, "line one\nline two\n\n").unwrap();
        let text = read_payload(&format!("@{}", path.display())).await.unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(text, "line one\nline two\n");
        assert!(read_payload("@/nonexistent/herald-payload").await.is_err());
        assert_eq!(read_payload("inline").await.unwrap(), "inline");
    }

    /// Serves one request on 127.0.0.1:0 answering `status_line` with the JSON `body`,
    /// and hands back the raw request.
    async fn one_shot_server(
        status_line: &'static str,
        body: &'static str,
    ) -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hub = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            // Read the head, then as many body bytes as Content-Length says.
            loop {
                let read = socket.read(&mut buffer).await.unwrap();
                if read == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..read]);
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|line| line.strip_prefix("content-length:"))
                        .map_or(0, |value| value.trim().parse::<usize>().unwrap());
                    if request.len() >= head_end + 4 + length {
                        break;
                    }
                }
            }
            let response = format!(
                "HTTP/1.1 {status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
            String::from_utf8(request).unwrap()
        });
        (hub, server)
    }

    fn args(hub: &str, extra: &[&str]) -> PublishArgs {
        let argv = ["publish", "news", "--hub", hub]
            .into_iter()
            .chain(extra.iter().copied());
        Cli::try_parse_from(argv).expect("valid flags").publish
    }

    #[tokio::test]
    async fn publish_posts_the_event_with_the_token() {
        let (hub, server) = one_shot_server("200 OK", r#"{"id":"1","recipients":2}"#).await;
        let publish = args(
            &hub,
            &[
                "--event",
                "price",
                "--data",
                "{\"p\":1}",
                "--token",
                "s3cret",
            ],
        );
        run(publish).await.expect("a 200 answer is a success");

        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /api/channels/news/events HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains("authorization: Bearer s3cret\r\n"),
            "{request}"
        );
        let body = request.split("\r\n\r\n").nth(1).unwrap();
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body, json!({"event": "price", "data": {"p": 1}}));
    }

    #[tokio::test]
    async fn publish_fails_on_an_error_answer() {
        let (hub, server) = one_shot_server(
            "400 Bad Request",
            r#"{"error":{"code":"invalid_body","message":"bad input"}}"#,
        )
        .await;
        let error = run(args(&hub, &["--data", "x"])).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "hub answered 400 Bad Request: invalid_body: bad input"
        );
        server.await.unwrap();
    }

    #[test]
    fn data_may_start_with_a_hyphen() {
        let cli = Cli::try_parse_from(["publish", "news", "--data", "-5"]).expect("valid flags");
        assert_eq!(cli.publish.data, "-5");
        let cli = Cli::try_parse_from(["publish", "news", "--data", "-"]).expect("valid flags");
        assert_eq!(cli.publish.data, "-");
    }
}
