//! Gives freed heap memory back to the operating system after connections go away.
//!
//! glibc's allocator keeps the pages of freed per-connection buffers in its arenas, so after a
//! mass disconnect (a deploy, a network blip) the hub's resident memory would stay at its peak.
//! Within a few seconds of enough connections closing, this asks glibc to release free pages
//! (`malloc_trim`). It never frees anything itself and
//! does nothing on other allocators or platforms.

use herald_hub::Hub;
use std::time::Duration;

/// How often the count of closed connections is checked.
const CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// Trim once this many connections have closed since the last trim.
const CLOSED_CONNECTIONS_MIN: u64 = 500;

/// Runs until the hub shuts down.
pub(crate) async fn release_after_disconnects(hub: Hub) {
    let mut closed_at_last_trim = 0;
    let mut ticker = tokio::time::interval(CHECK_INTERVAL);
    while !hub.is_shutting_down() {
        ticker.tick().await;
        // Counting closed connections (not sampling the live count) also sees churn faster
        // than the check interval.
        let closed = hub.connections_closed();
        if closed - closed_at_last_trim >= CLOSED_CONNECTIONS_MIN {
            trim();
            closed_at_last_trim = closed;
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    extern "C" {
        fn malloc_trim(pad: usize) -> i32;
    }
    // SAFETY: malloc_trim only releases free memory held by glibc's allocator; it takes no
    // pointers from us and is safe to call from any thread at any time.
    let released = unsafe { malloc_trim(0) };
    tracing::debug!(
        released = released == 1,
        "returned free heap pages to the system"
    );
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
