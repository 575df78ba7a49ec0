//! Who may do what: credentials from a request, token verification, and channel rights.
//!
//! Where a token is read from (the `Authorization: Bearer` header, then the [`TOKEN_COOKIE`]
//! cookie, then the [`TOKEN_QUERY_PARAM`] query parameter) is `credentials`'; the settings and
//! static API keys are `config`'s; verifying a token (the configured key alone decides the one
//! accepted algorithm; `exp` and `nbf` are checked with [`JWT_LEEWAY`]) and its channel patterns
//! are `jwt`'s; asking the application instead (`app` mode) is `app`'s; who is calling and what
//! each caller may do is `caller`'s. This module never logs or echoes a token or a forwarded
//! header, and never knows routes: handlers say which right they need.
//!
//! # Rights
//! - Subscribe (streams and polling): a channel matched by a `subscribe` pattern, or
//!   `user:{sub}`; with an [`AppAuth`] configured, every channel the application grants.
//! - Publish to channels (and close a channel): every channel matched by a `publish` pattern.
//! - Publish to everyone or to one client id: the `publish` pattern `*`.
//! - Admin (clients, subscriptions, channels, stats): `admin: true`.
//! - Reuse a live `clientId`: only one held by the same user.
//!
//! `admin: true` and a static API key hold every right. With no JWT configured (`none` mode),
//! anyone may subscribe; publishing and admin are open too unless API keys are configured, in which
//! case they take a key.

mod app;
mod caller;
mod config;
mod credentials;
mod jwt;

pub use app::{
    AppAuth, AppAuthError, AppAuthMetrics, AppGrant, APP_AUTH_CACHE_ENTRIES_MAX,
    APP_AUTH_CACHE_TTL_DEFAULT, APP_AUTH_CONCURRENCY_MAX, APP_AUTH_TIMEOUT_DEFAULT,
    FORWARDED_HEADERS,
};
pub(crate) use caller::{Caller, Publisher, Subscriber};
pub use config::{AuthConfig, AuthConfigError, API_KEY_LEN_MIN, JWT_LEEWAY, JWT_SECRET_LEN_MIN};
pub(crate) use credentials::{bearer_token, cookie_value};
pub use credentials::{TOKEN_COOKIE, TOKEN_QUERY_PARAM};
pub(crate) use jwt::refusal_reason;
