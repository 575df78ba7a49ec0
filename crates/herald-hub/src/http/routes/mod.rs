//! The HTTP API, version 1: one list of routes, and the router built from it.
//!
//! Owns the URL layout ([`ROUTES`]), the state every handler shares, and the answers to an unknown
//! route or method. Which of its routes open an event stream is written here once, in the list:
//! the router and the lean stream path (`stream_conn`) both read it. Each concept's handlers live
//! in their own module (streams, publishing, polling, presence, admin, health); none keeps state beyond the
//! stream counts of `admission`, and none reaches the engine other than through [`Hub`]. See
//! `docs/api.md` for the reference and `docs/security.md` for the rights and limits.

mod admin;
mod health;
mod metrics;
mod openapi;
mod poll;
mod presence;
mod publish;
mod streams;

use super::{
    admission::Admission,
    auth::AuthConfig,
    config::{HttpConfig, HttpLimits},
    dashboard::{self, Dashboard},
    error::ApiError,
    extract::BodyReadTimeout,
    mercure::{self, Mercure},
    origin::{check_origin, OriginPolicy},
};
use crate::Hub;
use axum::{
    extract::{DefaultBodyLimit, FromRef},
    http::StatusCode,
    routing::{delete, get, post, MethodRouter},
    Router,
};
use std::sync::Arc;

/// What every handler is given.
#[derive(Clone)]
struct Api {
    hub: Hub,
    limits: HttpLimits,
    auth: AuthConfig,
    admission: Arc<Admission>,
    dashboard: Dashboard,
    mercure: Mercure,
}

impl FromRef<Api> for Mercure {
    fn from_ref(api: &Api) -> Self {
        api.mercure.clone()
    }
}

impl FromRef<Api> for Hub {
    fn from_ref(api: &Api) -> Self {
        api.hub.clone()
    }
}

impl FromRef<Api> for Arc<Admission> {
    fn from_ref(api: &Api) -> Self {
        api.admission.clone()
    }
}

impl FromRef<Api> for HttpLimits {
    fn from_ref(api: &Api) -> Self {
        api.limits.clone()
    }
}

impl FromRef<Api> for Dashboard {
    fn from_ref(api: &Api) -> Self {
        api.dashboard.clone()
    }
}

impl FromRef<Api> for AuthConfig {
    fn from_ref(api: &Api) -> Self {
        api.auth.clone()
    }
}

impl FromRef<Api> for BodyReadTimeout {
    fn from_ref(api: &Api) -> Self {
        BodyReadTimeout(api.limits.body_read_timeout)
    }
}

/// One route: a path template (axum's syntax, `{name}` for one segment) and its methods.
struct Route {
    path: &'static str,
    /// Whether its `GET` opens an event stream, which `stream_conn` serves off hyper when it is a
    /// connection's first request.
    is_stream: bool,
    methods: fn() -> MethodRouter<Api>,
}

impl Route {
    /// A route whose `GET` answers `text/event-stream`.
    const fn stream(path: &'static str, methods: fn() -> MethodRouter<Api>) -> Self {
        Self {
            path,
            is_stream: true,
            methods,
        }
    }

    /// A route of ordinary requests and answers.
    const fn request(path: &'static str, methods: fn() -> MethodRouter<Api>) -> Self {
        Self {
            path,
            is_stream: false,
            methods,
        }
    }
}

/// Every route of the API, streams first. Adding a route is adding a line.
const ROUTES: &[Route] = &[
    Route::stream("/api/stream", || get(streams::stream_channels)),
    Route::stream("/api/channels/{channel}/stream", || {
        get(streams::stream_channel)
    }),
    Route::stream("/.well-known/mercure", || {
        get(mercure::subscribe).post(mercure::publish)
    }),
    Route::request("/.well-known/mercure/subscriptions", || {
        get(mercure::subscriptions)
    }),
    Route::request("/.well-known/mercure/subscriptions/{*rest}", || {
        get(mercure::subscriptions)
    }),
    Route::request("/healthz", || get(health::readyz)),
    Route::request("/livez", || get(health::livez)),
    Route::request("/readyz", || get(health::readyz)),
    Route::request("/metrics", || get(metrics::metrics)),
    Route::request("/api/openapi.json", || get(openapi::document)),
    Route::request("/api/channels", || get(admin::list_channels)),
    Route::request("/api/channels/{channel}/events", || {
        post(publish::publish_to_channel).get(poll::poll_channel)
    }),
    Route::request("/api/channels/{channel}/close", || {
        post(publish::close_channel)
    }),
    Route::request("/api/channels/{channel}/presence", || {
        get(presence::presence)
    }),
    Route::request("/api/events", || {
        post(publish::publish_to_channels).get(poll::poll_channels)
    }),
    Route::request("/api/broadcast", || post(publish::publish_to_all)),
    Route::request("/api/users/{user}/events", || {
        post(publish::publish_to_user)
    }),
    Route::request("/api/clients", || get(admin::list_clients)),
    Route::request("/api/clients/{client}", || {
        get(admin::get_client).delete(admin::remove_client)
    }),
    Route::request("/api/clients/{client}/events", || {
        post(publish::publish_to_client)
    }),
    Route::request("/api/clients/{client}/subscriptions", || {
        post(admin::subscribe)
    }),
    Route::request("/api/clients/{client}/subscriptions/{channel}", || {
        delete(admin::unsubscribe)
    }),
    Route::request("/api/stats", || get(admin::stats)),
    Route::stream("/admin/feed", || get(dashboard::feed)),
    Route::stream("/admin/channels/{channel}/feed", || {
        get(dashboard::channel_feed)
    }),
    Route::request("/admin", || get(dashboard::to_index)),
    Route::request("/admin/", || get(dashboard::index)),
    Route::request("/admin/dashboard.js", || get(dashboard::script)),
    Route::request("/admin/dashboard.css", || get(dashboard::style)),
    Route::request("/admin/session", || {
        get(dashboard::session_info)
            .post(dashboard::sign_in)
            .delete(dashboard::sign_out)
    }),
    Route::request("/admin/channels/{channel}/events", || {
        post(dashboard::publish)
    }),
    Route::request("/admin/clients/{client}", || delete(dashboard::disconnect)),
];

/// Whether a `GET` of `path` (without its query) is one of the API's event streams.
///
/// The same list builds the router, so the lean stream path takes exactly the router's streams.
pub(crate) fn is_stream_path(path: &str) -> bool {
    ROUTES
        .iter()
        .any(|route| route.is_stream && is_path_of(route.path, path))
}

/// Whether `path` matches `template`: the same segments, where `{name}` stands for any one
/// non-empty segment.
fn is_path_of(template: &str, path: &str) -> bool {
    let mut expected = template.split('/');
    let mut actual = path.split('/');
    loop {
        match (expected.next(), actual.next()) {
            (None, None) => return true,
            (Some(want), Some(got)) => {
                let is_param = want.starts_with('{') && want.ends_with('}');
                if (is_param && got.is_empty()) || (!is_param && want != got) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// The API's routes over `hub`, ready to serve or to nest into an application's router.
///
/// Takes an [`HttpConfig`], or just [`HttpLimits`] for `none` auth.
pub fn router(hub: Hub, config: impl Into<HttpConfig>) -> Router {
    let HttpConfig {
        limits,
        auth,
        trusted_proxies,
        allowed_origins,
        allowed_hosts,
        allow_loopback_origins,
        mercure,
    } = config.into();
    let origin_policy = Arc::new(
        OriginPolicy::new(&allowed_origins, allowed_hosts.as_deref())
            .with_loopback_origins(allow_loopback_origins),
    );
    let body_limit = limits.body_bytes_max;
    let admission = Arc::new(Admission::new(
        limits.connections_max,
        limits.connections_per_address_max,
        trusted_proxies,
    ));
    ROUTES
        .iter()
        .fold(Router::new(), |router, route| {
            router.route(route.path, (route.methods)())
        })
        .fallback(|| async { ApiError::route_not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            origin_policy,
            check_origin,
        ))
        .with_state(Api {
            dashboard: Dashboard::new(hub.clone(), auth.clone(), &limits),
            hub,
            limits,
            auth,
            admission,
            mercure: Mercure::new(mercure),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HubConfig;
    use axum::{body::Body, http::Request};
    use tower::ServiceExt;

    /// `template` with every `{name}` filled with `a`.
    fn example_path(template: &str) -> String {
        template
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "a"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    async fn is_event_stream_answer(router: &Router, path: &str) -> bool {
        // A Mercure subscription names a topic.
        let path = if path.starts_with("/.well-known/mercure") {
            format!("{path}?topic=a")
        } else {
            path.to_owned()
        };
        let request = Request::get(path).body(Body::empty()).expect("a request");
        let response = router.clone().oneshot(request).await.expect("infallible");
        response
            .headers()
            .get("content-type")
            .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"))
    }

    #[tokio::test]
    async fn the_lean_path_takes_exactly_the_routers_event_streams() {
        let hub = Hub::new(HubConfig::default());
        let config = HttpConfig {
            mercure: Some(crate::http::MercureConfig {
                anonymous: true,
                ..Default::default()
            }),
            ..HttpConfig::default()
        };
        let router = router(hub.clone(), config);
        for route in ROUTES {
            let path = example_path(route.path);
            assert_eq!(
                is_event_stream_answer(&router, &path).await,
                route.is_stream,
                "GET {path} answers an event stream if and only if the list says so"
            );
            assert_eq!(is_stream_path(&path), route.is_stream, "{path}");
        }
        for not_a_route in [
            "/api/channels//stream",
            "/api/channels/a/b/stream",
            "/api/stream/",
            "/api/streams",
            "/stream",
        ] {
            assert!(!is_stream_path(not_a_route), "{not_a_route}");
            assert!(
                !is_event_stream_answer(&router, not_a_route).await,
                "{not_a_route}"
            );
        }
        hub.shutdown();
    }

    #[test]
    fn route_paths_are_unique() {
        let mut paths: Vec<&str> = ROUTES.iter().map(|route| route.path).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), ROUTES.len());
    }
}
