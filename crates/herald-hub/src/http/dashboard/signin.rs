//! Signing in and out of the dashboard: `POST /admin/session` (form-encoded `credential`),
//! `GET /admin/session` (the session's CSRF token), `DELETE /admin/session`.
//!
//! Owns the exchange of an admin credential for a session cookie. The credential (an admin JWT,
//! or an API key) is checked by the same extractor and rights check as the admin API, as if sent
//! in `Authorization: Bearer`; it is then forgotten: the cookie holds a random session id, never
//! the credential. Where the admin API is open (`none` auth with no API keys), signing in takes no
//! credential but only from a loopback peer. It never logs or echoes a credential.

use super::{
    guard::{check_loopback, check_same_origin, AdminSession},
    session, Dashboard,
};
use crate::http::{
    auth::{Caller, Publisher},
    error::ApiError,
    extract::PeerAddr,
};
use axum::{
    body::Bytes,
    extract::{FromRequestParts, State},
    http::{header, HeaderMap, HeaderValue, Request, StatusCode},
    response::{IntoResponse, Response},
    Json,
};

pub(in crate::http) async fn sign_in(
    State(dashboard): State<Dashboard>,
    peer: PeerAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_same_origin(&headers)?;
    let credential = form_urlencoded::parse(&body)
        .find(|(name, _)| name == "credential")
        .map(|(_, value)| value.trim().to_owned())
        .unwrap_or_default();
    let caller = verify(&dashboard, &credential).await?;
    caller.check_admin()?;
    let is_loopback_only = matches!(caller, Caller::Open);
    if is_loopback_only {
        check_loopback(peer.0)?;
    }
    let (id, session) = dashboard.sessions.open(is_loopback_only).map_err(|err| {
        tracing::error!(error = %err, "the random source failed: no dashboard session");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "no session could be opened",
        )
    })?;
    // The page that posts the form tells its scheme in `Origin`: a page served over HTTPS gets a
    // `Secure` cookie.
    let is_secure = headers
        .get(header::ORIGIN)
        .is_some_and(|o| o.as_bytes().starts_with(b"https://"));
    let mut response = Json(serde_json::json!({"csrf": session.csrf})).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::set_cookie(&id, is_secure));
    no_store(&mut response);
    Ok(response)
}

/// Checks `credential` exactly as the admin API checks an `Authorization: Bearer` header.
async fn verify(dashboard: &Dashboard, credential: &str) -> Result<Caller, ApiError> {
    let mut request = Request::builder();
    if !credential.is_empty() {
        let bearer = HeaderValue::from_str(&format!("Bearer {credential}"))
            .map_err(|_| ApiError::unauthorized("the credential is malformed"))?;
        request = request.header(header::AUTHORIZATION, bearer);
    }
    let (mut parts, ()) = request
        .body(())
        .expect("a request of one valid header builds")
        .into_parts();
    let Publisher(caller) = Publisher::from_request_parts(&mut parts, &dashboard.auth).await?;
    Ok(caller)
}

pub(in crate::http) async fn session_info(admin: AdminSession) -> Response {
    let mut response = Json(serde_json::json!({
        "csrf": admin.session.csrf,
        "open": admin.session.is_loopback_only,
    }))
    .into_response();
    no_store(&mut response);
    response
}

pub(in crate::http) async fn sign_out(
    State(dashboard): State<Dashboard>,
    admin: AdminSession,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admin.check_write(&headers, None)?;
    dashboard.sessions.close(&admin.id);
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session::clear_cookie());
    Ok(response)
}

fn no_store(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}
