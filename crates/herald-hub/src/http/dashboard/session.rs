//! Dashboard sessions: opaque random ids held in a bounded, expiring server-side map, and the
//! cookie that carries one.
//!
//! Owns the session store ([`Sessions`]) and the `herald_admin` cookie's shape. A session holds
//! its CSRF token and its expiry, never the credential that opened it: signing in verifies the
//! credential once and forgets it. It never decides who may sign in (`signin` does) and never
//! checks a request's origin (`guard` does).

use axum::http::{header, HeaderMap, HeaderValue};
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// The cookie that carries a dashboard session id.
pub(super) const SESSION_COOKIE: &str = "herald_admin";
/// Most sessions held at once; signing in when full ends the session closest to expiry.
pub(super) const SESSIONS_MAX: usize = 256;
/// How long a session lasts after signing in, whatever is done with it.
pub(super) const SESSION_TTL: Duration = Duration::from_secs(8 * 60 * 60);
/// Random bytes in a session id and in a CSRF token (hex-encoded, so twice as many characters).
const TOKEN_BYTES: usize = 32;

/// One signed-in browser.
#[derive(Debug, Clone)]
pub(super) struct Session {
    /// The synchronizer token every state-changing request must carry.
    pub(super) csrf: String,
    /// Whether it was opened without a credential (`none` auth, no API keys): then it is served
    /// to loopback peers only.
    pub(super) is_loopback_only: bool,
    expires_at: Instant,
}

/// The server-side session map: bounded by [`SESSIONS_MAX`], each entry expiring after
/// [`SESSION_TTL`].
#[derive(Debug, Default)]
pub(super) struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock leaves a map that is still consistent.
        self.by_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a session; returns its id (for the cookie) and the session.
    ///
    /// # Errors
    /// When the system's random source fails.
    pub(super) fn open(
        &self,
        is_loopback_only: bool,
    ) -> Result<(String, Session), getrandom::Error> {
        let id = random_token()?;
        let session = Session {
            csrf: random_token()?,
            is_loopback_only,
            expires_at: Instant::now() + SESSION_TTL,
        };
        let mut by_id = self.lock();
        let now = Instant::now();
        by_id.retain(|_, s| s.expires_at > now);
        if by_id.len() >= SESSIONS_MAX {
            let closest = by_id
                .iter()
                .min_by_key(|(_, s)| s.expires_at)
                .map(|(id, _)| id.clone());
            if let Some(closest) = closest {
                by_id.remove(&closest);
            }
        }
        by_id.insert(id.clone(), session.clone());
        Ok((id, session))
    }

    /// The live session `id` names, if any.
    pub(super) fn get(&self, id: &str) -> Option<Session> {
        let mut by_id = self.lock();
        match by_id.get(id) {
            Some(session) if session.expires_at > Instant::now() => Some(session.clone()),
            Some(_) => {
                by_id.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends session `id`.
    pub(super) fn close(&self, id: &str) {
        self.lock().remove(id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// `TOKEN_BYTES` from the system's random source, hex-encoded.
fn random_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::getrandom(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The session id in the request's `herald_admin` cookie, if any.
pub(super) fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// The `Set-Cookie` value that hands session `id` to the browser: HttpOnly (no script reads
/// it), SameSite=Strict (no other site's page sends it), Path=/admin (no other route sees it),
/// and `Secure` when `is_secure` (the page was loaded over HTTPS).
pub(super) fn set_cookie(id: &str, is_secure: bool) -> HeaderValue {
    let secure = if is_secure { "; Secure" } else { "" };
    let value = format!(
        "{SESSION_COOKIE}={id}; Path=/admin; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_TTL.as_secs()
    );
    HeaderValue::from_str(&value).expect("a hex id and fixed attributes make a valid header")
}

/// The `Set-Cookie` value that removes the session cookie.
pub(super) fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static("herald_admin=; Path=/admin; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_bounded_and_ids_are_unguessable_hex() {
        let sessions = Sessions::default();
        let (first, _) = sessions.open(false).expect("random source");
        assert_eq!(first.len(), TOKEN_BYTES * 2);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        for _ in 0..SESSIONS_MAX + 10 {
            sessions.open(false).expect("random source");
        }
        assert_eq!(sessions.len(), SESSIONS_MAX);
        assert!(
            sessions.get(&first).is_none(),
            "the oldest session made room"
        );
    }

    #[test]
    fn a_closed_session_is_gone_and_the_cookie_is_found_among_others() {
        let sessions = Sessions::default();
        let (id, session) = sessions.open(true).expect("random source");
        assert_ne!(id, session.csrf);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=1; {SESSION_COOKIE}={id}; b=2")).expect("ascii"),
        );
        let found = session_id(&headers).expect("the cookie is there");
        assert!(sessions.get(&found).is_some_and(|s| s.is_loopback_only));
        sessions.close(&found);
        assert!(sessions.get(&found).is_none());
    }
}
