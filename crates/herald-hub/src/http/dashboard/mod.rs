//! The admin dashboard at `/admin/`: a page embedded in the binary, a cookie session, and live
//! feeds over SSE from the hub itself.
//!
//! Owns how an operator's browser gets admin rights without putting a token in a URL or a
//! header: sign in with an admin credential (checked exactly as the admin API checks it) for a
//! session cookie; then every read shows the cookie and every action also the session's CSRF
//! token from the same origin. See `docs/operations.md` ("Dashboard"). It only reads what the
//! hub reports and acts through [`Hub`]; it never walks the engine's structures and never keeps a
//! credential.
//!
//! # Layout
//! - `assets`: the page, script and style sheet (`assets/dashboard/`).
//! - `session`: the bounded, expiring session map and the cookie.
//! - `guard`: the session extractor, the origin and CSRF checks.
//! - `signin`: signing in and out.
//! - `feed`: the figures feed and a channel's event feed.
//! - `actions`: publish and disconnect.

mod actions;
mod assets;
mod feed;
mod guard;
mod session;
mod signin;

pub(super) use actions::{disconnect, publish};
pub(super) use assets::{index, script, style, to_index};
pub(super) use feed::{channel_feed, feed};
pub(super) use signin::{session_info, sign_in, sign_out};

use super::{auth::AuthConfig, config::HttpLimits};
use crate::Hub;
use session::Sessions;
use std::sync::Arc;

/// What the dashboard's handlers share: the hub, the auth settings the admin API uses, and the
/// sessions.
#[derive(Clone)]
pub(super) struct Dashboard {
    hub: Hub,
    auth: AuthConfig,
    sessions: Arc<Sessions>,
    /// Largest event data the publish form takes: the API's limit.
    event_bytes_max: usize,
}

impl Dashboard {
    pub(super) fn new(hub: Hub, auth: AuthConfig, limits: &HttpLimits) -> Self {
        Self {
            hub,
            auth,
            sessions: Arc::default(),
            event_bytes_max: limits.event_bytes_max,
        }
    }
}
