//! `herald tail`: follow channels on a hub (or any SSE URL) and print events as they arrive.
//!
//! Owns turning flags into a stream URL and headers, and the two output formats. Also holds
//! what every hub-talking subcommand shares: [`HubArgs`] and [`hub_error_message`]. It never
//! parses SSE or decides retries itself (`herald_client` does both), and never sends the hub
//! token to an origin other than the hub's.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use futures_util::StreamExt;
use herald_client::{Error as StreamError, Event, EventSource, Update};
use reqwest::Url;

/// The hub used when neither `--hub` nor `HERALD_URL` says otherwise.
pub(crate) const HUB_URL_DEFAULT: &str = "http://127.0.0.1:8080";

/// Where the hub is and how to authenticate: shared by `herald tail` and `herald publish`.
#[derive(Debug, Clone, Args)]
pub(crate) struct HubArgs {
    /// Base URL of the hub.
    #[arg(long = "hub", env = "HERALD_URL", default_value = HUB_URL_DEFAULT, value_name = "URL")]
    pub(crate) hub: String,
    /// API token, sent as `Authorization: Bearer <token>`.
    #[arg(
        long,
        env = "HERALD_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub(crate) token: Option<String>,
}

impl HubArgs {
    /// The hub's base URL, checked.
    pub(crate) fn base_url(&self) -> anyhow::Result<Url> {
        let url =
            Url::parse(&self.hub).with_context(|| format!("invalid hub url {:?}", self.hub))?;
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            bail!(
                "invalid hub url {:?}: expected http:// or https://",
                self.hub
            );
        }
        Ok(url)
    }

    /// `{hub}/{segments...}`, each segment percent-encoded as needed; a path on the hub URL
    /// (a hub behind a prefix) is kept.
    pub(crate) fn endpoint(&self, segments: &[&str]) -> anyhow::Result<Url> {
        let mut url = self.base_url()?;
        url.set_query(None);
        url.set_fragment(None);
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("invalid hub url {:?}", self.hub))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// The `Authorization` header value, if a token is set.
    pub(crate) fn authorization(&self) -> Option<String> {
        self.token.as_ref().map(|token| format!("Bearer {token}"))
    }
}

/// The readable part of a hub error body `{"error":{"code","message"}}`: `code: message`,
/// or the body itself (trimmed) when it is something else.
pub(crate) fn hub_error_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().and_then(|value| value.get("error"));
    let code = error
        .and_then(|error| error.get("code"))
        .and_then(|code| code.as_str());
    let message = error
        .and_then(|error| error.get("message"))
        .and_then(|message| message.as_str());
    match (code, message) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (None, Some(message)) => message.to_owned(),
        (Some(code), None) => code.to_owned(),
        (None, None) => body.trim().to_owned(),
    }
}

/// Flags of `herald tail`.
#[derive(Debug, Args)]
pub(crate) struct TailArgs {
    /// Channel to follow, or the full http:// or https:// URL of any SSE stream.
    #[arg(value_name = "CHANNEL|URL")]
    target: String,
    /// Another channel to follow on the same stream (repeatable).
    #[arg(long = "channel", value_name = "CHANNEL")]
    channels: Vec<String>,
    /// Extra request header, `Name: value` (repeatable).
    #[arg(long = "header", value_name = "K:V", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Resume after this event id (sent as `Last-Event-ID`).
    #[arg(long, value_name = "ID")]
    last_event_id: Option<String>,
    /// Print one JSON object per event: {"id","event","data"}, with data parsed as JSON
    /// when it is JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    hub: HubArgs,
}

impl TailArgs {
    /// The stream URL, and whether it is on the hub (so the hub token may go with it).
    fn stream_url(&self) -> anyhow::Result<(Url, bool)> {
        let is_url = self.target.starts_with("http://") || self.target.starts_with("https://");
        if is_url {
            if !self.channels.is_empty() {
                bail!("--channel only adds channels to a channel name, not to a full URL");
            }
            let url = Url::parse(&self.target)
                .with_context(|| format!("invalid stream url {:?}", self.target))?;
            let is_on_hub = self.hub.base_url()?.origin() == url.origin();
            return Ok((url, is_on_hub));
        }
        if self.channels.is_empty() {
            let url = self
                .hub
                .endpoint(&["api", "channels", &self.target, "stream"])?;
            return Ok((url, true));
        }
        let mut url = self.hub.endpoint(&["api", "stream"])?;
        {
            let mut query = url.query_pairs_mut();
            for channel in std::iter::once(&self.target).chain(&self.channels) {
                query.append_pair("channel", channel);
            }
        }
        Ok((url, true))
    }
}

/// Parses `Name: value` (or `Name:value`).
fn parse_header(raw: &str) -> Result<(String, String), String> {
    let (name, value) = raw
        .split_once(':')
        .ok_or_else(|| format!("expected `Name: value`, got {raw:?}"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("missing header name in {raw:?}"));
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

/// Runs `herald tail` until the stream closes for good or Ctrl-C.
///
/// # Errors
///
/// Bad flags, or a stream that closed for good (for example 401, 404, or a URL that is not
/// an event stream). A closed standard output (`herald tail ... | head`) ends quietly.
pub(crate) async fn run(args: TailArgs) -> anyhow::Result<()> {
    let (url, is_on_hub) = args.stream_url()?;
    let mut builder = EventSource::builder(url.as_str());
    match (args.hub.authorization(), is_on_hub) {
        (Some(authorization), true) => builder = builder.header("authorization", authorization),
        (Some(_), false) => eprintln!(
            "not sending the hub token to {}: it is not the hub; use --header to send one",
            url.origin().ascii_serialization()
        ),
        (None, _) => {}
    }
    for (name, value) in &args.headers {
        builder = builder.header(name, value);
    }
    if let Some(id) = &args.last_event_id {
        builder = builder.last_event_id(id);
    }
    let mut updates = builder.build().context("invalid stream settings")?;
    let shown_url = without_password(&url);

    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let update = tokio::select! {
            update = updates.next() => update,
            _ = &mut ctrl_c => return Ok(()),
        };
        let Some(update) = update else {
            return Ok(());
        };
        match update {
            Update::Event(event) => {
                if let Err(error) = print_event(&event, args.json) {
                    if error.kind() == std::io::ErrorKind::BrokenPipe {
                        return Ok(());
                    }
                    return Err(error).context("writing to standard output");
                }
            }
            Update::Connecting => eprintln!("connecting to {shown_url}"),
            Update::Open => eprintln!("connected"),
            Update::Retrying {
                delay,
                attempt,
                reason,
            } => eprintln!(
                "{}; retrying in {} (attempt {attempt})",
                describe(&reason),
                seconds(delay)
            ),
            Update::Closed { reason } => bail!("stream closed: {}", describe(&reason)),
            // Comments are not asked for; anything newer is not shown.
            _ => {}
        }
    }
}

/// One event as `--json` prints it, keys in this order.
#[derive(serde::Serialize)]
struct JsonEvent<'a> {
    /// The last event id at dispatch.
    id: &'a str,
    /// The event type.
    event: &'a str,
    /// The data, parsed as JSON when it is JSON, else a string.
    data: serde_json::Value,
}

/// Writes one event to standard output and flushes, so pipes see it at once.
fn print_event(event: &Event, is_json: bool) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    if is_json {
        let data = serde_json::from_str(&event.data)
            .unwrap_or_else(|_| serde_json::Value::String(event.data.clone()));
        let line = JsonEvent {
            id: &event.id,
            event: &event.event,
            data,
        };
        let line = serde_json::to_string(&line).map_err(std::io::Error::other)?;
        writeln!(stdout, "{line}")?;
    } else {
        if !event.id.is_empty() {
            write!(stdout, "[{}] ", event.id)?;
        }
        // Continuation lines of multi-line data are indented to stay readable.
        writeln!(
            stdout,
            "{}: {}",
            event.event,
            event.data.replace('\n', "\n  ")
        )?;
    }
    stdout.flush()
}

/// A failure in one line: the error and its causes, with a hub error body's message.
fn describe(error: &StreamError) -> String {
    if let StreamError::Status { status, body, .. } = error {
        let message = hub_error_message(body);
        return if message.is_empty() {
            format!("hub answered {status}")
        } else {
            format!("hub answered {status}: {message}")
        };
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A delay as seconds with one decimal, like `2.5s`.
fn seconds(delay: Duration) -> String {
    format!("{:.1}s", delay.as_secs_f64())
}

/// The URL with any password replaced, for messages.
fn without_password(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        tail: TailArgs,
    }

    fn parse(args: &[&str]) -> TailArgs {
        let argv = std::iter::once("tail").chain(args.iter().copied());
        Cli::try_parse_from(argv).expect("valid flags").tail
    }

    #[test]
    fn a_channel_name_streams_from_the_hub() {
        let args = parse(&["news", "--hub", "http://hub.test:9000/"]);
        let (url, is_on_hub) = args.stream_url().unwrap();
        assert_eq!(
            url.as_str(),
            "http://hub.test:9000/api/channels/news/stream"
        );
        assert!(is_on_hub);
    }

    #[test]
    fn channel_names_are_percent_encoded_and_prefixes_kept() {
        let args = parse(&["a b/c", "--hub", "http://hub.test/herald"]);
        let (url, _) = args.stream_url().unwrap();
        assert_eq!(
            url.as_str(),
            "http://hub.test/herald/api/channels/a%20b%2Fc/stream"
        );
    }

    #[test]
    fn extra_channels_use_the_multi_channel_stream() {
        let args = parse(&[
            "a",
            "--channel",
            "b",
            "--channel",
            "c&d",
            "--hub",
            "http://h",
        ]);
        let (url, _) = args.stream_url().unwrap();
        assert_eq!(
            url.as_str(),
            "http://h/api/stream?channel=a&channel=b&channel=c%26d"
        );
    }

    #[test]
    fn a_full_url_is_used_as_is_and_the_token_stays_home() {
        let args = parse(&[
            "http://other.test/sse?x=1",
            "--hub",
            "http://h",
            "--token",
            "t",
        ]);
        let (url, is_on_hub) = args.stream_url().unwrap();
        assert_eq!(url.as_str(), "http://other.test/sse?x=1");
        assert!(!is_on_hub);

        let args = parse(&["http://h/custom", "--hub", "http://h/"]);
        assert!(args.stream_url().unwrap().1);
    }

    #[test]
    fn channels_cannot_be_added_to_a_url() {
        let args = parse(&["http://h/sse", "--channel", "b"]);
        assert!(args.stream_url().is_err());
    }

    #[test]
    fn headers_parse_as_name_and_value() {
        assert_eq!(
            parse_header("X-Trace:  abc:1 ").unwrap(),
            ("X-Trace".to_owned(), "abc:1".to_owned())
        );
        assert!(parse_header("no-colon").is_err());
        assert!(parse_header(": value").is_err());
    }

    #[test]
    fn json_lines_keep_id_event_data_order() {
        let line = JsonEvent {
            id: "7",
            event: "price",
            data: serde_json::json!({"p": 1}),
        };
        assert_eq!(
            serde_json::to_string(&line).unwrap(),
            r#"{"id":"7","event":"price","data":{"p":1}}"#
        );
    }

    #[tokio::test]
    async fn tail_fails_when_the_hub_refuses_the_stream() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hub = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buffer = [0u8; 1024];
            while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                let read = socket.read(&mut buffer).await.unwrap();
                assert!(read > 0, "the client sends a whole request head");
                head.extend_from_slice(&buffer[..read]);
            }
            let body = r#"{"error":{"code":"unauthorized","message":"missing token"}}"#;
            let response = format!(
                "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
            String::from_utf8(head).unwrap()
        });

        let error = run(parse(&["news", "--hub", &hub, "--token", "t0ken"]))
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "stream closed: hub answered 401 Unauthorized: unauthorized: missing token"
        );
        let head = server.await.unwrap();
        assert!(
            head.starts_with("GET /api/channels/news/stream HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains("authorization: Bearer t0ken\r\n"), "{head}");
        assert!(head.contains("accept: text/event-stream\r\n"), "{head}");
    }

    #[test]
    fn hub_error_bodies_are_summarised() {
        let body = r#"{"error":{"code":"unauthorized","message":"missing token"}}"#;
        assert_eq!(hub_error_message(body), "unauthorized: missing token");
        assert_eq!(hub_error_message(" plain text \n"), "plain text");
    }
}
