//! Who is calling and what each caller may do: the `Subscriber` and `Publisher` extractors.
//!
//! Owns the decision from credentials to a [`Caller`] (API key, verified token, the application's
//! grant in `app` mode, or open access in `none` mode) and every rights check a handler asks for
//! (see the `auth` module's rights). It never knows routes (handlers say which right they need)
//! and never echoes a credential.

use super::{
    app::AppGrant,
    config::AuthConfig,
    credentials::{Access, Credentials},
    jwt::{ChannelPattern, Claims},
};
use crate::{
    http::error::ApiError,
    namespace::{Namespaces, PublishRule, SubscribeRule},
    ChannelName,
};
use axum::http::StatusCode;
use axum::{
    extract::{FromRef, FromRequestParts},
    http::{request::Parts, HeaderMap},
};
use std::net::SocketAddr;

impl AuthConfig {
    /// Who is calling, from the sources `access` allows.
    ///
    /// # Errors
    /// 401 `unauthorized` when a needed credential is missing or not valid.
    fn authenticate(&self, credentials: &Credentials, access: Access) -> Result<Caller, ApiError> {
        if let Some(bearer) = &credentials.bearer {
            if self.is_api_key(bearer) {
                return Ok(Caller::ApiKey(credential_identity("key", bearer)));
            }
        }
        if access == Access::Subscribe && self.asks_app_for_every_channel() {
            // The channels are not known yet: the handler asks the application
            // (`authorize_subscribe`).
            return Ok(Caller::AskApp);
        }
        let Some(jwt) = self.verifier() else {
            return match access {
                Access::Subscribe => Ok(Caller::Open),
                Access::Publish if !self.has_api_keys() => Ok(Caller::Open),
                Access::Publish if credentials.bearer.is_some() => {
                    Err(ApiError::unauthorized("the API key is not valid"))
                }
                // Without a key: only where a namespace says `publish = "anyone"`
                // (`check_publish` decides; every other check refuses an anonymous caller).
                Access::Publish => Ok(Caller::Anonymous),
            };
        };
        // Cookies and query parameters are for read-only endpoints only: a cross-site form post
        // carries cookies, and URLs end up in logs.
        let token = match access {
            Access::Subscribe => credentials
                .bearer
                .as_deref()
                .or(credentials.cookie.as_deref())
                .or(credentials.query.as_deref()),
            Access::Publish => credentials.bearer.as_deref(),
        };
        let Some(token) = token else {
            return match access {
                // Whether a caller without a credential may subscribe or publish depends on the
                // channels' namespaces (`subscribe` or `publish = "anyone"`): `check_subscribe`
                // and `check_publish` decide; admin and beyond-channel publishing refuse it.
                Access::Subscribe | Access::Publish => Ok(Caller::Anonymous),
            };
        };
        jwt.verify(token).map(Caller::Token)
    }
}

impl AuthConfig {
    /// `caller`, allowed to subscribe to (or poll) every one of `channels`: in `app` mode the
    /// application is asked about all of them (with the request's `headers`, from `peer`) and its
    /// grant becomes the caller; otherwise each channel's namespace decides, and the application
    /// is asked about the channels of namespaces with `subscribe = "app"`.
    ///
    /// # Errors
    /// 401 or 403 `forbidden` naming the channels outside the caller's rights; from the
    /// application, what [`super::AppAuth::authorize`] answers (401, 403, 503
    /// `app_auth_unavailable`); 503 `app_auth_unavailable` for a `subscribe = "app"` namespace
    /// when no application is configured.
    pub(crate) async fn authorize_subscribe(
        &self,
        caller: Caller,
        namespaces: &Namespaces,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        channels: &[ChannelName],
    ) -> Result<Caller, ApiError> {
        if let (Caller::AskApp, Some(app)) = (&caller, self.app()) {
            // `app` mode: the application decides every channel.
            let grant = app.authorize(headers, peer, channels).await?;
            return Ok(app_caller(grant, headers));
        }
        let by_app = caller.check_subscribe(channels, namespaces)?;
        if by_app.is_empty() {
            return Ok(caller);
        }
        // Namespaces with `subscribe = "app"`: the application decides those channels, the
        // caller's own rights the others (checked above).
        let Some(app) = self.app() else {
            check_app_subscribe(&by_app)?;
            return Ok(caller);
        };
        let grant = app.authorize(headers, peer, &by_app).await?;
        Ok(match caller {
            // A caller with no identity of its own takes the one the application gave.
            Caller::Open | Caller::Anonymous => app_caller(grant, headers),
            caller => caller,
        })
    }
}

impl AuthConfig {
    /// Whether a caller with no credential may subscribe to `channel` without asking the
    /// application: `none` mode, or a namespace with `subscribe = "anyone"` (never in `app`
    /// mode, nor for `subscribe = "app"`). What Mercure subscribers read without a grant.
    pub(crate) fn is_open_to_anyone(&self, channel: &ChannelName, namespaces: &Namespaces) -> bool {
        if self.asks_app_for_every_channel() {
            return false;
        }
        let nobody = if self.verifier().is_some() {
            Caller::Anonymous
        } else {
            Caller::Open
        };
        nobody
            .check_subscribe(std::slice::from_ref(channel), namespaces)
            .is_ok_and(|by_app| by_app.is_empty())
    }
}

/// The caller the application's `grant` makes: its user, or else an identity from the
/// forwarded credentials, which client ids are bound to.
fn app_caller(grant: AppGrant, headers: &HeaderMap) -> Caller {
    let identity = match &grant.user {
        Some(user) => Some(format!("user:{user}")),
        None => app_credentials(headers).map(|c| credential_identity("app", &c)),
    };
    Caller::App { grant, identity }
}

/// The credentials forwarded to the application (`Cookie` and `Authorization`), joined: what a
/// grant without a user is bound to.
fn app_credentials(headers: &HeaderMap) -> Option<String> {
    let mut joined = String::new();
    for name in [
        axum::http::header::COOKIE,
        axum::http::header::AUTHORIZATION,
    ] {
        for value in headers.get_all(name) {
            joined.push_str(&String::from_utf8_lossy(value.as_bytes()));
            joined.push('\n');
        }
    }
    (!joined.is_empty()).then_some(joined)
}

/// An authenticated caller of a stream or polling endpoint (token from header, cookie or query).
pub(crate) struct Subscriber(pub(crate) Caller);

/// An authenticated caller of a publish or admin endpoint (the `Authorization` header only).
/// Extracted before the body, so an unauthenticated caller's body is never read.
pub(crate) struct Publisher(pub(crate) Caller);

impl<S: Send + Sync> FromRequestParts<S> for Subscriber
where
    AuthConfig: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let credentials = Credentials::from_request(&parts.headers, parts.uri.query());
        AuthConfig::from_ref(state)
            .authenticate(&credentials, Access::Subscribe)
            .map(Self)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Publisher
where
    AuthConfig: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let credentials = Credentials::from_request(&parts.headers, None);
        AuthConfig::from_ref(state)
            .authenticate(&credentials, Access::Publish)
            .map(Self)
    }
}

/// Who is calling.
#[derive(Debug)]
pub(crate) enum Caller {
    /// `none` mode: no credential needed for this endpoint.
    Open,
    /// A static API key: every right. Holds the key's identity (a digest of the key).
    ApiKey(String),
    /// A verified token.
    Token(Claims),
    /// `app` mode, before the application is asked: subscribes to nothing until
    /// [`AuthConfig::authorize_subscribe`] turns it into [`Caller::App`].
    AskApp,
    /// `app` mode: what the application granted, and the identity client ids are bound to
    /// (`user:{user}`, or a digest of the forwarded credentials).
    App {
        grant: AppGrant,
        identity: Option<String>,
    },
    /// No credential at all, where one is needed unless a namespace says `anyone`: may only
    /// subscribe to such namespaces' channels.
    Anonymous,
}

/// The message of a 401 for a subscriber without a credential.
const NO_SUBSCRIBE_TOKEN: &str =
    "no token: send Authorization: Bearer <token>, the herald_token cookie or ?token=";

/// The stable code of a subscribe to a namespace with `subscribe = "app"` while no
/// application auth is configured (503).
pub(crate) const APP_AUTH_UNAVAILABLE_CODE: &str = "app_auth_unavailable";

impl Caller {
    /// The connection's user: the token's `sub`.
    pub(crate) fn user(&self) -> Option<&str> {
        match self {
            Caller::Token(claims) => claims.sub.as_deref(),
            Caller::App { grant, .. } => grant.user.as_deref(),
            Caller::Open | Caller::ApiKey(_) | Caller::AskApp | Caller::Anonymous => None,
        }
    }

    /// The identity client ids are bound to: `user:{sub}` for a token with a user; for a token
    /// without `sub`, or an API key, a digest of the credential (stable for as long as the
    /// credential is used, never the credential itself); `None` (anonymous) in `none` mode.
    pub(crate) fn identity(&self) -> Option<&str> {
        match self {
            Caller::Open | Caller::AskApp | Caller::Anonymous => None,
            Caller::ApiKey(identity) => Some(identity),
            Caller::Token(claims) => Some(&claims.identity),
            Caller::App { identity, .. } => identity.as_deref(),
        }
    }

    /// May this caller subscribe to (or poll) every one of `channels`, by the `subscribe` rule
    /// of each channel's namespace? Returns the channels whose namespace says `app`: the
    /// application decides those (see [`check_app_subscribe`]).
    ///
    /// # Errors
    /// 401 `unauthorized` for a caller without a credential on a channel that needs one; 403
    /// `forbidden` naming the channels outside the caller's claims.
    pub(crate) fn check_subscribe(
        &self,
        channels: &[ChannelName],
        namespaces: &Namespaces,
    ) -> Result<Vec<ChannelName>, ApiError> {
        let mut by_claims = Vec::new();
        let mut by_app = Vec::new();
        for channel in channels {
            match namespaces.of(channel).subscribe() {
                SubscribeRule::Anyone => {}
                SubscribeRule::Authenticated => self.require_credential(channel)?,
                SubscribeRule::Claims => by_claims.push(channel.clone()),
                // An API key holds every right; anyone else is asked about.
                SubscribeRule::App if matches!(self, Caller::ApiKey(_)) => {}
                SubscribeRule::App => by_app.push(channel.clone()),
            }
        }
        self.check_subscribe_claims(&by_claims)?;
        Ok(by_app)
    }

    /// The subscribe rule without namespaces: a token's `subscribe` claims (or its own
    /// `user:{sub}` channel); everything for an API key or in `none` mode.
    fn check_subscribe_claims(&self, channels: &[ChannelName]) -> Result<(), ApiError> {
        let claims = match self {
            Caller::Token(claims) => claims,
            Caller::Anonymous if !channels.is_empty() => {
                return Err(ApiError::unauthorized(NO_SUBSCRIBE_TOKEN))
            }
            Caller::Open | Caller::ApiKey(_) | Caller::Anonymous => return Ok(()),
            Caller::App { grant, .. } => {
                return refuse_unmatched("subscribe to", channels, |channel| {
                    grant.channels.contains(channel)
                })
            }
            // Fails closed: a path that forgot to ask the application grants nothing.
            Caller::AskApp => {
                return Err(ApiError::forbidden(
                    "the application has not been asked about these channels",
                    channels.to_vec(),
                ))
            }
        };
        let user_channel = claims
            .sub
            .as_deref()
            .and_then(|sub| ChannelName::for_user(sub).ok());
        refuse_unmatched("subscribe to", channels, |channel| {
            claims.admin
                || user_channel.as_ref() == Some(channel)
                || claims.subscribe.iter().any(|p| p.matches(channel))
        })
    }

    /// `authenticated`: any credential (a verified token or an API key), whatever its claims.
    fn require_credential(&self, channel: &ChannelName) -> Result<(), ApiError> {
        match self {
            Caller::Token(_) | Caller::ApiKey(_) | Caller::App { .. } => Ok(()),
            Caller::Open | Caller::Anonymous | Caller::AskApp => Err(ApiError::unauthorized(format!(
                "channel {channel} needs a credential: send Authorization: Bearer <token or API key>"
            ))),
        }
    }

    /// May this caller publish to (or close) every one of `channels`, by the `publish` rule of
    /// each channel's namespace?
    ///
    /// # Errors
    /// 401 `unauthorized` for a channel that needs a credential in `none` mode; 403 `forbidden`
    /// naming the channels outside the caller's claims.
    pub(crate) fn check_publish(
        &self,
        channels: &[ChannelName],
        namespaces: &Namespaces,
    ) -> Result<(), ApiError> {
        let mut by_claims = Vec::new();
        for channel in channels {
            match namespaces.of(channel).publish() {
                PublishRule::Anyone => {}
                PublishRule::Authenticated => self.require_credential(channel)?,
                PublishRule::Claims => by_claims.push(channel.clone()),
            }
        }
        let Caller::Token(claims) = self else {
            return match self {
                Caller::Anonymous if !by_claims.is_empty() => Err(ApiError::unauthorized(
                    "no token: send Authorization: Bearer <token or API key>",
                )),
                Caller::AskApp | Caller::App { .. } => Err(subscriber_only()),
                _ => Ok(()),
            };
        };
        refuse_unmatched("publish to", &by_claims, |channel| {
            claims.admin || claims.publish.iter().any(|p| p.matches(channel))
        })
    }

    /// May this caller publish beyond channels (to everyone, to one client id)? Takes the
    /// `publish` pattern `*`.
    ///
    /// # Errors
    /// 403 `forbidden`.
    pub(crate) fn check_publish_anywhere(&self) -> Result<(), ApiError> {
        match self {
            Caller::AskApp | Caller::App { .. } => Err(subscriber_only()),
            Caller::Anonymous => Err(ApiError::unauthorized(
                "no token: send Authorization: Bearer <token or API key>",
            )),
            Caller::Token(claims)
                if !claims.admin && !claims.publish.contains(&ChannelPattern::All) =>
            {
                Err(ApiError::forbidden(
                    "publishing to every connection or to a client id needs the publish pattern \"*\"",
                    Vec::new(),
                ))
            }
            _ => Ok(()),
        }
    }

    /// May this caller use the admin endpoints?
    ///
    /// # Errors
    /// 403 `forbidden`.
    pub(crate) fn check_admin(&self) -> Result<(), ApiError> {
        match self {
            Caller::AskApp | Caller::App { .. } => Err(subscriber_only()),
            Caller::Anonymous => Err(ApiError::unauthorized(
                "no token: send Authorization: Bearer <token or API key>",
            )),
            Caller::Token(claims) if !claims.admin => Err(ApiError::forbidden(
                "this endpoint needs \"admin\": true in the token's herald claim, or an API key",
                Vec::new(),
            )),
            _ => Ok(()),
        }
    }
}

/// 403 for a caller the application let subscribe, asking for more: the application grants
/// subscriptions only.
fn subscriber_only() -> ApiError {
    ApiError::forbidden(
        "the application grants subscriptions only: publishing and admin take an API key",
        Vec::new(),
    )
}

/// The channels a namespace with `subscribe = "app"` leaves to the application.
///
/// Called when no application is configured (`--auth-app-url`): such channels are refused with
/// 503 `app_auth_unavailable`, so a namespace that needs the application never opens by
/// default. With one, [`AuthConfig::authorize_subscribe`] asks it instead.
///
/// # Errors
/// 503 `app_auth_unavailable` naming the channels, when any.
pub(crate) fn check_app_subscribe(channels: &[ChannelName]) -> Result<(), ApiError> {
    if channels.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = channels.iter().map(ChannelName::as_str).collect();
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        APP_AUTH_UNAVAILABLE_CODE,
        format!(
            "the application decides who may subscribe to {}, and no application auth is configured",
            names.join(", ")
        ),
    ))
}

fn refuse_unmatched(
    verb: &str,
    channels: &[ChannelName],
    is_allowed: impl Fn(&ChannelName) -> bool,
) -> Result<(), ApiError> {
    let refused: Vec<ChannelName> = channels
        .iter()
        .filter(|channel| !is_allowed(channel))
        .cloned()
        .collect();
    if refused.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = refused.iter().map(ChannelName::as_str).collect();
    Err(ApiError::forbidden(
        format!("the token does not allow to {verb}: {}", names.join(", ")),
        refused,
    ))
}

/// `{kind}:` and the first 128 bits of the SHA-256 of `credential`, in hex: an identity that
/// names a credential without revealing it.
pub(super) fn credential_identity(kind: &str, credential: &str) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let digest = Sha256::digest(credential.as_bytes());
    let mut identity = format!("{kind}:");
    for byte in &digest[..16] {
        write!(identity, "{byte:02x}").expect("writing to a String never fails");
    }
    identity
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::auth::config::{AuthConfigError, JWT_LEEWAY};
    use crate::HubConfig;
    use axum::http::{header, HeaderMap, HeaderValue};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn channel(name: &str) -> ChannelName {
        ChannelName::new(name).expect("valid channel")
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn token(claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .expect("encoding works")
    }

    fn bearer(token: &str) -> Credentials {
        Credentials {
            bearer: Some(token.to_owned()),
            ..Credentials::default()
        }
    }

    fn jwt() -> AuthConfig {
        AuthConfig::jwt_secret(SECRET).expect("a long enough secret")
    }

    fn caller(claims: serde_json::Value) -> Caller {
        jwt()
            .authenticate(&bearer(&token(claims)), Access::Subscribe)
            .expect("a valid token")
    }

    #[test]
    fn the_header_wins_over_the_cookie_and_the_cookie_over_the_query() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; herald_token=cookie"),
        );
        let both = Credentials::from_request(&headers, Some("token=query"));
        assert_eq!(both.cookie.as_deref(), Some("cookie"));
        assert_eq!(both.query.as_deref(), Some("query"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer header"),
        );
        let all = Credentials::from_request(&headers, Some("token=query"));
        assert_eq!(all.bearer.as_deref(), Some("header"));
        // Which source is used is decided in `authenticate`: check with real tokens.
        let good = token(json!({"sub": "a", "exp": now() + 60}));
        let creds = Credentials {
            bearer: None,
            cookie: Some(good.clone()),
            query: Some("garbage".into()),
        };
        assert!(jwt().authenticate(&creds, Access::Subscribe).is_ok());
        let creds = Credentials {
            bearer: Some("garbage".into()),
            cookie: Some(good.clone()),
            query: None,
        };
        assert_eq!(
            jwt().authenticate(&creds, Access::Subscribe).map(|_| ()),
            Err(ApiError::unauthorized("the token is malformed"))
        );
    }

    #[test]
    fn publish_and_admin_take_the_header_only() {
        let good = token(json!({"exp": now() + 60, "herald": {"publish": ["*"]}}));
        let creds = Credentials {
            cookie: Some(good.clone()),
            query: Some(good),
            ..Credentials::default()
        };
        // A token in a cookie or the query is not read for publishing: the caller is anonymous,
        // which publishes nowhere a namespace does not open to anyone, nor administers.
        let caller = jwt()
            .authenticate(&creds, Access::Publish)
            .expect("checked per channel");
        assert!(matches!(caller, Caller::Anonymous));
        let namespaces = HubConfig::default()
            .namespaces()
            .expect("the default namespace");
        let err = caller
            .check_publish(&[ChannelName::new("orders").expect("valid")], &namespaces)
            .expect_err("no header");
        assert_eq!(err.code(), "unauthorized");
        assert_eq!(
            caller.check_admin().expect_err("no header").code(),
            "unauthorized"
        );
    }

    #[test]
    fn expired_tokens_are_refused_past_the_leeway() {
        let leeway = JWT_LEEWAY.as_secs();
        let within = token(json!({"exp": now() - leeway / 2}));
        assert!(jwt()
            .authenticate(&bearer(&within), Access::Subscribe)
            .is_ok());
        let past = token(json!({"exp": now() - leeway - 5}));
        let err = jwt()
            .authenticate(&bearer(&past), Access::Subscribe)
            .expect_err("expired");
        assert_eq!(err, ApiError::unauthorized("the token has expired"));
        let early = token(json!({"exp": now() + 600, "nbf": now() + leeway + 60}));
        assert!(jwt()
            .authenticate(&bearer(&early), Access::Subscribe)
            .is_err());
    }

    #[test]
    fn a_token_without_exp_is_refused() {
        let forever = token(json!({"sub": "a"}));
        assert!(jwt()
            .authenticate(&bearer(&forever), Access::Subscribe)
            .is_err());
    }

    #[test]
    fn the_algorithm_is_the_keys_not_the_headers() {
        let claims = json!({"exp": now() + 60});
        let hs384 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .expect("encoding works");
        assert!(jwt()
            .authenticate(&bearer(&hs384), Access::Subscribe)
            .is_err());
        // `alg: none`, no signature.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJleHAiOjQxMDI0NDQ4MDB9.";
        assert!(jwt()
            .authenticate(&bearer(none), Access::Subscribe)
            .is_err());
    }

    #[test]
    fn a_subscriber_may_always_hear_its_own_user_channel() {
        let caller = caller(json!({"sub": "42", "exp": now() + 60}));
        assert!(caller
            .check_subscribe(&[channel("user:42")], &Namespaces::default())
            .is_ok());
        assert!(caller
            .check_subscribe(&[channel("user:43")], &Namespaces::default())
            .is_err());
        assert_eq!(caller.user(), Some("42"));
    }

    #[test]
    fn refused_channels_are_named() {
        let caller = caller(json!({
            "sub": "42", "exp": now() + 60,
            "herald": {"subscribe": ["orders", "team:7:*"]}
        }));
        let err = caller
            .check_subscribe(
                &[
                    channel("orders"),
                    channel("billing"),
                    channel("team:7:x"),
                    channel("team:8:x"),
                ],
                &Namespaces::default(),
            )
            .expect_err("two channels refused");
        assert_eq!(err.code(), "forbidden");
        assert_eq!(err.channels(), [channel("billing"), channel("team:8:x")]);
    }

    #[test]
    fn publish_rights_are_separate_from_subscribe_rights() {
        let subscriber = caller(json!({"exp": now() + 60, "herald": {"subscribe": ["*"]}}));
        assert!(subscriber
            .check_publish(&[channel("orders")], &Namespaces::default())
            .is_err());
        assert!(subscriber.check_publish_anywhere().is_err());
        assert!(subscriber.check_admin().is_err());
        let publisher = caller(json!({"exp": now() + 60, "herald": {"publish": ["orders"]}}));
        assert!(publisher
            .check_publish(&[channel("orders")], &Namespaces::default())
            .is_ok());
        assert!(publisher.check_publish_anywhere().is_err());
        let admin = caller(json!({"exp": now() + 60, "herald": {"admin": true}}));
        assert!(admin.check_publish_anywhere().is_ok());
        assert!(admin
            .check_subscribe(&[channel("x")], &Namespaces::default())
            .is_ok());
        assert!(admin.check_admin().is_ok());
    }

    #[test]
    fn api_keys_are_matched_exactly_and_only_from_the_header() {
        let auth = jwt()
            .with_api_keys(["first-key-0123456789", "", "second-key-0123456789"])
            .expect("long enough keys");
        assert!(matches!(
            auth.authenticate(&bearer("second-key-0123456789"), Access::Publish),
            Ok(Caller::ApiKey(_))
        ));
        assert!(auth
            .authenticate(&bearer("second-key-012345678"), Access::Publish)
            .is_err());
        let in_query = Credentials {
            query: Some("first-key-0123456789".into()),
            ..Credentials::default()
        };
        assert!(auth.authenticate(&in_query, Access::Subscribe).is_err());
        assert_eq!(
            AuthConfig::none().with_api_keys(["short"]).map(|_| ()),
            Err(AuthConfigError::ApiKeyTooShort { position: 1 })
        );
    }

    #[test]
    fn none_mode_with_api_keys_guards_publishing_only() {
        let auth = AuthConfig::none()
            .with_api_keys(["first-key-0123456789"])
            .expect("long enough key");
        let anonymous = Credentials::default();
        assert!(matches!(
            auth.authenticate(&anonymous, Access::Subscribe),
            Ok(Caller::Open)
        ));
        let namespaces = HubConfig::default()
            .namespaces()
            .expect("the default namespace");
        let anonymous_publisher = auth
            .authenticate(&anonymous, Access::Publish)
            .expect("checked per channel");
        assert!(anonymous_publisher
            .check_publish(&[ChannelName::new("orders").expect("valid")], &namespaces)
            .is_err());
        assert!(anonymous_publisher.check_publish_anywhere().is_err());
        assert!(anonymous_publisher.check_admin().is_err());
        assert!(matches!(
            AuthConfig::none().authenticate(&anonymous, Access::Publish),
            Ok(Caller::Open)
        ));
    }
}
