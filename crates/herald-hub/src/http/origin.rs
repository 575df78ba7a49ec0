//! Which browser pages and which `Host` names may call the hub: the cross-site checks.
//!
//! Owns two refusals made before any handler runs. A request that changes something (any method
//! but `GET`, `HEAD` and `OPTIONS`) carrying a browser's `Origin` is refused `403
//! origin_not_allowed` unless that origin is the hub's own (its authority equals `Host`) or one
//! CORS allows; requests without `Origin` (curl, servers) pass. When a `Host` allow-list is set
//! (the server sets it for `none` auth on a loopback address), a request whose `Host` is neither a
//! loopback name or address nor listed is refused `421 host_not_allowed`, which defeats DNS
//! rebinding. Mercure's endpoint takes the `Host` check only: its publishes follow Mercure's own
//! `Origin` rule. It never adds CORS headers (the server's CORS layer does) and never looks at
//! credentials.

use super::error::ApiError;
use axum::{
    extract::{Request, State},
    http::{header, HeaderMap, Method, StatusCode, Uri},
    middleware::Next,
    response::{IntoResponse, Response},
};
use std::{net::IpAddr, sync::Arc};

/// The Mercure endpoint, whose `Origin` rule is its own (`mercure::publish`).
const MERCURE_PATH: &str = "/.well-known/mercure";

/// The origins and hosts the hub answers.
#[derive(Debug, Clone, Default)]
pub(super) struct OriginPolicy {
    /// Whether CORS allows any origin (`*`).
    is_any_origin: bool,
    /// Origins CORS allows, lower-case, without a trailing `/`.
    origins: Vec<String>,
    /// Names (with or without a port) accepted in `Host` besides loopback ones; `None` accepts
    /// any `Host`.
    hosts: Option<Vec<String>>,
    /// Whether pages from loopback origins are allowed (as CORS allows them).
    is_loopback_origin_allowed: bool,
}

impl OriginPolicy {
    pub(super) fn new(allowed_origins: &[String], allowed_hosts: Option<&[String]>) -> Self {
        Self {
            is_any_origin: allowed_origins.iter().any(|origin| origin == "*"),
            origins: allowed_origins
                .iter()
                .map(|origin| origin.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            hosts: allowed_hosts.map(|hosts| {
                hosts
                    .iter()
                    .map(|host| host.trim().to_ascii_lowercase())
                    .collect()
            }),
            is_loopback_origin_allowed: false,
        }
    }

    /// Also allows pages from loopback origins (any port), as the CORS layer does for a hub
    /// without auth on loopback.
    pub(super) fn with_loopback_origins(mut self, is_allowed: bool) -> Self {
        self.is_loopback_origin_allowed = is_allowed;
        self
    }

    /// Whether a request may go on.
    ///
    /// # Errors
    /// 421 `host_not_allowed`; 403 `origin_not_allowed`.
    fn check(&self, method: &Method, headers: &HeaderMap, uri: &Uri) -> Result<(), ApiError> {
        let host = headers
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .or_else(|| uri.authority().map(|authority| authority.as_str()));
        if let (Some(hosts), Some(host)) = (&self.hosts, host) {
            if !is_loopback_host(host) && !is_listed_host(hosts, host) {
                return Err(ApiError::new(
                    StatusCode::MISDIRECTED_REQUEST,
                    "host_not_allowed",
                    "this hub answers loopback names only; list other names in --allowed-hosts",
                ));
            }
        }
        // Mercure's publish applies Mercure's own rule (a publish authorized by the cookie needs
        // an origin of `--mercure-publish-origins`; a bearer token is never sent cross-site).
        if uri.path() == MERCURE_PATH {
            return Ok(());
        }
        let is_safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        if is_safe || self.is_any_origin {
            return Ok(());
        }
        let origin = origin.to_str().unwrap_or_default().to_ascii_lowercase();
        let is_same_origin = host.is_some_and(|host| {
            origin
                .split_once("://")
                .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
        });
        let is_loopback_page = self.is_loopback_origin_allowed
            && origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .is_some_and(is_loopback_host);
        if is_same_origin || is_loopback_page || self.origins.contains(&origin) {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "pages from this origin may not call the hub; list it in --cors-origins",
        ))
    }
}

/// `host` without its port (`[::1]:8080` → `[::1]`, `localhost:80` → `localhost`).
fn without_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// `localhost`, a name under `.localhost` (browsers resolve both to loopback themselves), or a
/// loopback address, with any port.
fn is_loopback_host(host: &str) -> bool {
    let name = without_port(host).to_ascii_lowercase();
    let name = name.trim_end_matches('.');
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    name.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|address| address.is_loopback())
}

/// Whether `host` (or its name without the port) is in the list.
fn is_listed_host(hosts: &[String], host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let name = without_port(&host);
    hosts
        .iter()
        .any(|listed| *listed == host || *listed == name)
}

/// The middleware: refuses what [`OriginPolicy`] does not allow.
pub(super) async fn check_origin(
    State(policy): State<Arc<OriginPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    match policy.check(request.method(), request.headers(), request.uri()) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(host: &'static str, origin: Option<&'static str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static(host));
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_static(origin));
        }
        headers
    }

    fn code(policy: &OriginPolicy, method: Method, headers: &HeaderMap) -> Option<&'static str> {
        policy
            .check(&method, headers, &Uri::from_static("/api/broadcast"))
            .err()
            .map(|err| err.code())
    }

    #[test]
    fn a_cross_site_origin_may_not_change_anything() {
        let policy = OriginPolicy::new(&["https://app.example.com/".to_owned()], None);
        let evil = headers("127.0.0.1:8080", Some("http://evil.example"));
        assert_eq!(
            code(&policy, Method::POST, &evil),
            Some("origin_not_allowed")
        );
        assert_eq!(
            code(&policy, Method::DELETE, &evil),
            Some("origin_not_allowed")
        );
        assert_eq!(
            code(&policy, Method::GET, &evil),
            None,
            "reads are CORS's to guard"
        );
        let null = headers("127.0.0.1:8080", Some("null"));
        assert_eq!(
            code(&policy, Method::POST, &null),
            Some("origin_not_allowed")
        );
        for allowed in [
            headers("127.0.0.1:8080", None),
            headers("127.0.0.1:8080", Some("http://127.0.0.1:8080")),
            headers("hub.example.com", Some("https://HUB.example.com")),
            headers("127.0.0.1:8080", Some("https://app.example.com")),
        ] {
            assert_eq!(code(&policy, Method::POST, &allowed), None, "{allowed:?}");
        }
        let any = OriginPolicy::new(&["*".to_owned()], None);
        assert_eq!(code(&any, Method::POST, &evil), None);
    }

    #[test]
    fn with_a_host_list_only_loopback_and_listed_names_are_answered() {
        let policy = OriginPolicy::new(&[], Some(&["hub.internal".to_owned()]));
        for host in [
            "localhost",
            "localhost:8080",
            "app.localhost:3000",
            "127.0.0.1:8080",
            "127.8.0.1",
            "[::1]:8080",
            "[::1]",
            "hub.internal",
            "hub.internal:8080",
        ] {
            let request = headers(host, None);
            assert_eq!(code(&policy, Method::GET, &request), None, "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "10.0.0.1:8080",
        ] {
            let request = headers(host, None);
            assert_eq!(
                code(&policy, Method::GET, &request),
                Some("host_not_allowed"),
                "{host}"
            );
        }
        let local = OriginPolicy::new(&[], Some(&[])).with_loopback_origins(true);
        for page in [
            "http://localhost:5173",
            "https://127.0.0.1:3000",
            "http://[::1]:8000",
        ] {
            assert_eq!(
                code(&local, Method::POST, &headers("localhost:8080", Some(page))),
                None,
                "{page}"
            );
        }
        assert_eq!(
            code(
                &local,
                Method::POST,
                &headers("localhost:8080", Some("http://evil.example"))
            ),
            Some("origin_not_allowed")
        );
        let open = OriginPolicy::new(&[], None);
        assert_eq!(
            code(&open, Method::GET, &headers("evil.example", None)),
            None
        );
    }
}
