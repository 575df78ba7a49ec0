//! `herald health`: ask a hub's `/healthz` whether it serves, and exit 0 (healthy) or 1.
//!
//! Exists for container health checks: the image is `FROM scratch`, with no curl or shell, so
//! the binary probes itself. It owns one GET with a deadline and the exit status; it never
//! retries (the container runtime does) and never reads the answer beyond its status line.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

/// How long the probe may take, connection included: well under a health check's own timeout.
const HEALTH_TIMEOUT_SECS: u64 = 5;

/// Flags of `herald health`.
#[derive(Debug, Args)]
pub(crate) struct HealthArgs {
    /// The health endpoint to probe.
    #[arg(
        long,
        env = "HERALD_HEALTH_URL",
        value_name = "URL",
        default_value = "http://127.0.0.1:8080/healthz"
    )]
    url: String,
}

/// Runs `herald health`: prints the hub's answer and succeeds on a 2xx.
///
/// # Errors
///
/// A hub that cannot be reached in time, or an answer other than 2xx (a draining hub, or a
/// cluster node that lost Redis, answers 503).
pub(crate) async fn run(args: HealthArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(HEALTH_TIMEOUT_SECS))
        .build()
        .context("creating the http client")?;
    let response = http
        .get(&args.url)
        .send()
        .await
        .with_context(|| format!("probing {}", args.url))?;
    let status = response.status();
    let answer = response.text().await.unwrap_or_default();
    println!("{}", answer.trim_end());
    if !status.is_success() {
        bail!("{} answered {status}", args.url);
    }
    Ok(())
}
