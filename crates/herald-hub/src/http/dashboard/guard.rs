//! What every dashboard request must show: a live session cookie, a request from the dashboard's
//! own origin, and, for anything that changes state, the session's CSRF token.
//!
//! Owns the [`AdminSession`] extractor and the origin and CSRF checks. Reads are refused when a
//! browser says they come from another site (`Sec-Fetch-Site`), so a page elsewhere cannot read
//! the dashboard even where CORS would let it; writes must also prove they come from the same
//! origin (`Sec-Fetch-Site: same-origin`, or an `Origin` equal to `Host`) and carry the token.
//! It never opens sessions (`signin` does) and never reads a credential.

use super::{session, session::Session, Dashboard};
use crate::http::{error::ApiError, extract::PeerAddr};
use axum::{
    extract::{FromRef, FromRequestParts},
    http::{header, request::Parts, HeaderMap, StatusCode},
};
use subtle::ConstantTimeEq;

/// The header a state-changing request carries its CSRF token in.
pub(super) const CSRF_HEADER: &str = "x-csrf-token";

/// A request with a live dashboard session (cookie), from this origin or a navigation.
pub(in crate::http) struct AdminSession {
    /// The session id, from the cookie.
    pub(super) id: String,
    pub(super) session: Session,
}

impl<S: Send + Sync> FromRequestParts<S> for AdminSession
where
    Dashboard: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        check_read_origin(&parts.headers)?;
        let dashboard = Dashboard::from_ref(state);
        let signed_out = || ApiError::unauthorized("not signed in: sign in at /admin/");
        let id = session::session_id(&parts.headers).ok_or_else(signed_out)?;
        let session = dashboard.sessions.get(&id).ok_or_else(signed_out)?;
        if session.is_loopback_only {
            let PeerAddr(peer) = PeerAddr::from_request_parts(parts, state)
                .await
                .unwrap_or(PeerAddr(None));
            check_loopback(peer)?;
        }
        Ok(Self { id, session })
    }
}

impl AdminSession {
    /// Refuses a state-changing request that is not from this origin or lacks the session's CSRF
    /// token (in the `X-CSRF-Token` header, or `form_token` from a form field).
    ///
    /// # Errors
    /// 403 `cross_origin` or 403 `csrf`.
    pub(super) fn check_write(
        &self,
        headers: &HeaderMap,
        form_token: Option<&str>,
    ) -> Result<(), ApiError> {
        check_same_origin(headers)?;
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .or(form_token)
            .unwrap_or_default();
        if bool::from(sent.as_bytes().ct_eq(self.session.csrf.as_bytes())) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "this action needs the session's CSRF token in the X-CSRF-Token header",
            ))
        }
    }
}

/// Refuses a read that a browser marks as coming from another origin. A navigation (`none`) or
/// a request without the header (not a browser, or an old one) passes: the cookie is still
/// SameSite=Strict.
///
/// # Errors
/// 403 `cross_origin`.
fn check_read_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get("sec-fetch-site").map(|v| v.as_bytes()) {
        None | Some(b"same-origin") | Some(b"none") => Ok(()),
        Some(_) => Err(cross_origin()),
    }
}

/// Refuses a write unless the browser says it comes from this origin: `Sec-Fetch-Site:
/// same-origin`, or, without that header, an `Origin` whose host is the request's `Host`. A
/// request with neither is refused.
///
/// # Errors
/// 403 `cross_origin`.
pub(super) fn check_same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(site) = headers.get("sec-fetch-site") {
        return if site.as_bytes() == b"same-origin" {
            Ok(())
        } else {
            Err(cross_origin())
        };
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.and_then(|o| o.split_once("://")).map(|(_, h)| h);
    match (origin_host, host) {
        (Some(origin_host), Some(host)) if origin_host.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(cross_origin()),
    }
}

/// Refuses a peer other than loopback (or an unknown one).
///
/// # Errors
/// 403 `loopback_only`.
pub(super) fn check_loopback(peer: Option<std::net::SocketAddr>) -> Result<(), ApiError> {
    if peer.is_some_and(|p| p.ip().is_loopback() || is_mapped_loopback(p.ip())) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "loopback_only",
            "with no credentials configured, the dashboard is served to loopback only",
        ))
    }
}

fn is_mapped_loopback(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        std::net::IpAddr::V4(_) => false,
    }
}

fn cross_origin() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "cross_origin",
        "the dashboard takes requests from its own pages only",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn writes_need_proof_of_the_same_origin() {
        assert!(check_same_origin(&headers(&[("sec-fetch-site", "same-origin")])).is_ok());
        assert!(check_same_origin(&headers(&[("sec-fetch-site", "same-site")])).is_err());
        assert!(check_same_origin(&headers(&[
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080")
        ]))
        .is_ok());
        assert!(check_same_origin(&headers(&[
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:8080")
        ]))
        .is_err());
        assert!(check_same_origin(&headers(&[("host", "127.0.0.1:8080")])).is_err());
    }

    #[test]
    fn reads_from_another_site_are_refused() {
        assert!(check_read_origin(&headers(&[])).is_ok());
        assert!(check_read_origin(&headers(&[("sec-fetch-site", "none")])).is_ok());
        assert!(check_read_origin(&headers(&[("sec-fetch-site", "cross-site")])).is_err());
    }

    #[test]
    fn only_loopback_peers_pass_the_loopback_check() {
        assert!(check_loopback(Some("127.0.0.1:1".parse().expect("addr"))).is_ok());
        assert!(check_loopback(Some("[::1]:1".parse().expect("addr"))).is_ok());
        assert!(check_loopback(Some("[::ffff:127.0.0.1]:1".parse().expect("addr"))).is_ok());
        assert!(check_loopback(Some("10.0.0.1:1".parse().expect("addr"))).is_err());
        assert!(check_loopback(None).is_err());
    }
}
