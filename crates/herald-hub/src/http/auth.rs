//! Who may do what: credentials from a request, token verification, and channel rights.
//!
//! Owns where a token is read from (the `Authorization: Bearer` header, then the
//! [`TOKEN_COOKIE`] cookie, then the [`TOKEN_QUERY_PARAM`] query parameter), its verification (the
//! configured key alone decides the one accepted algorithm; `exp` and `nbf` are checked with
//! [`JWT_LEEWAY`]), the constant-time comparison of static API keys, and the channel patterns of
//! the `herald` claim. It never logs or echoes a token, and never knows routes: handlers say which
//! right they need.
//!
//! # Rights
//! - Subscribe (streams and polling): a channel matched by a `subscribe` pattern, or
//!   `user:{sub}`.
//! - Publish to channels (and close a channel): every channel matched by a `publish` pattern.
//! - Publish to everyone or to one client id: the `publish` pattern `*`.
//! - Admin (clients, subscriptions, channels, stats): `admin: true`.
//! - Reuse a live `clientId`: only one held by the same user.
//!
//! `admin: true` and a static API key hold every right. With no JWT configured (`none` mode),
//! anyone may subscribe; publishing and admin are open too unless API keys are configured, in which
//! case they take a key.

use super::error::ApiError;
use crate::{channel::ChannelName, event::ClientId};
use axum::{
    extract::{FromRef, FromRequestParts},
    http::{header, request::Parts, HeaderMap},
};
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::{fmt, sync::Arc, time::Duration};
use subtle::ConstantTimeEq;

/// Clock skew allowed on `exp` and `nbf`: 30 s.
pub const JWT_LEEWAY: Duration = Duration::from_secs(30);
/// Shortest HS256 secret accepted, in bytes: 32 (the hash's output size, as RFC 7518 asks).
pub const JWT_SECRET_LEN_MIN: usize = 32;
/// Shortest static API key accepted, in characters.
pub const API_KEY_LEN_MIN: usize = 16;
/// The cookie a browser's `EventSource` with `withCredentials` sends the token in.
pub const TOKEN_COOKIE: &str = "herald_token";
/// The query parameter that carries the token when neither a header nor a cookie can.
pub const TOKEN_QUERY_PARAM: &str = "token";

/// Why an [`AuthConfig`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthConfigError {
    /// The HS256 secret is shorter than [`JWT_SECRET_LEN_MIN`].
    #[error("the JWT secret is {len} bytes; it must be at least {JWT_SECRET_LEN_MIN}")]
    SecretTooShort {
        /// The secret's length in bytes.
        len: usize,
    },
    /// The public key is not a PEM key of a supported type.
    #[error("the JWT public key is not a PEM RSA, EC (P-256 or P-384) or Ed25519 public key")]
    UnsupportedKey,
    /// An API key is shorter than [`API_KEY_LEN_MIN`].
    #[error("API key number {position} is shorter than {API_KEY_LEN_MIN} characters")]
    ApiKeyTooShort {
        /// Its position in the list, from 1.
        position: usize,
    },
}

/// How the HTTP API authenticates callers. Cheap to clone. Default: `none` mode, no API keys.
///
/// ```
/// use herald_hub::http::AuthConfig;
/// let auth = AuthConfig::jwt_secret(b"a secret of at least thirty-two bytes!")?
///     .with_api_keys(["server-to-server-key-0123"])?;
/// assert!(auth.is_jwt());
/// # Ok::<(), herald_hub::http::AuthConfigError>(())
/// ```
#[derive(Clone, Default)]
pub struct AuthConfig {
    /// The token verifier; `None` is `none` mode.
    jwt: Option<Arc<JwtVerifier>>,
    /// SHA-256 of each API key: compared in constant time, whatever the presented key's length.
    api_keys: Arc<[[u8; 32]]>,
}

struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("algorithm", &self.algorithm())
            .field("api_keys", &self.api_keys.len())
            .finish()
    }
}

impl AuthConfig {
    /// `none` mode: no token needed (see the module's rights).
    pub fn none() -> Self {
        Self::default()
    }

    /// `jwt` mode with an HS256 secret.
    ///
    /// # Errors
    /// [`AuthConfigError::SecretTooShort`] under [`JWT_SECRET_LEN_MIN`] bytes.
    pub fn jwt_secret(secret: &[u8]) -> Result<Self, AuthConfigError> {
        if secret.len() < JWT_SECRET_LEN_MIN {
            return Err(AuthConfigError::SecretTooShort { len: secret.len() });
        }
        Ok(Self::with_verifier(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
        ))
    }

    /// `jwt` mode with a PEM public key; its type decides the algorithm: RSA → RS256,
    /// EC P-256 → ES256, EC P-384 → ES384, Ed25519 → EdDSA.
    ///
    /// # Errors
    /// [`AuthConfigError::UnsupportedKey`] when the PEM holds no such public key.
    pub fn jwt_public_key_pem(pem: &[u8]) -> Result<Self, AuthConfigError> {
        if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            return Ok(Self::with_verifier(key, Algorithm::EdDSA));
        }
        if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            // The SEC1 point's length tells the curve: uncompressed 65 or compressed 33 bytes
            // for P-256, 97 or 49 for P-384.
            let algorithm = match key.try_get_as_bytes().map(<[u8]>::len) {
                Ok(65 | 33) => Algorithm::ES256,
                Ok(97 | 49) => Algorithm::ES384,
                _ => return Err(AuthConfigError::UnsupportedKey),
            };
            return Ok(Self::with_verifier(key, algorithm));
        }
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Self::with_verifier(key, Algorithm::RS256));
        }
        Err(AuthConfigError::UnsupportedKey)
    }

    fn with_verifier(key: DecodingKey, algorithm: Algorithm) -> Self {
        // One algorithm, fixed by the key: the token header's `alg` is only checked against it.
        let mut validation = Validation::new(algorithm);
        validation.leeway = JWT_LEEWAY.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // No audience is configured: a token's `aud` is not checked.
        validation.validate_aud = false;
        Self {
            jwt: Some(Arc::new(JwtVerifier { key, validation })),
            api_keys: Arc::new([]),
        }
    }

    /// Adds static API keys: server-to-server callers send one as `Authorization: Bearer <key>`
    /// and hold every right. Empty entries are skipped.
    ///
    /// # Errors
    /// [`AuthConfigError::ApiKeyTooShort`] for a key under [`API_KEY_LEN_MIN`] characters.
    pub fn with_api_keys<I, K>(mut self, keys: I) -> Result<Self, AuthConfigError>
    where
        I: IntoIterator<Item = K>,
        K: AsRef<str>,
    {
        let mut digests = self.api_keys.to_vec();
        for (index, key) in keys.into_iter().enumerate() {
            let key = key.as_ref().trim();
            if key.is_empty() {
                continue;
            }
            if key.chars().count() < API_KEY_LEN_MIN {
                return Err(AuthConfigError::ApiKeyTooShort {
                    position: index + 1,
                });
            }
            digests.push(Sha256::digest(key.as_bytes()).into());
        }
        self.api_keys = digests.into();
        Ok(self)
    }

    /// Whether tokens are required (`jwt` mode).
    pub fn is_jwt(&self) -> bool {
        self.jwt.is_some()
    }

    /// Whether static API keys are configured.
    pub fn has_api_keys(&self) -> bool {
        !self.api_keys.is_empty()
    }

    /// The one accepted algorithm, `None` in `none` mode.
    pub fn algorithm(&self) -> Option<&'static str> {
        let algorithm = self.jwt.as_ref()?.validation.algorithms.first()?;
        Some(match algorithm {
            Algorithm::HS256 => "HS256",
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
            _ => "other",
        })
    }

    fn is_api_key(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = subtle::Choice::from(0);
        for key in self.api_keys.iter() {
            found |= key[..].ct_eq(&digest[..]);
        }
        found.into()
    }

    /// Who is calling, from the sources `access` allows.
    ///
    /// # Errors
    /// 401 `unauthorized` when a needed credential is missing or not valid.
    fn authenticate(&self, credentials: &Credentials, access: Access) -> Result<Caller, ApiError> {
        if let Some(bearer) = &credentials.bearer {
            if self.is_api_key(bearer) {
                return Ok(Caller::ApiKey);
            }
        }
        let Some(jwt) = &self.jwt else {
            return match access {
                Access::Subscribe => Ok(Caller::Open),
                Access::Publish if !self.has_api_keys() => Ok(Caller::Open),
                Access::Publish if credentials.bearer.is_some() => {
                    Err(ApiError::unauthorized("the API key is not valid"))
                }
                Access::Publish => Err(ApiError::unauthorized(
                    "this endpoint needs an API key: send Authorization: Bearer <key>",
                )),
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
            return Err(ApiError::unauthorized(match access {
                Access::Subscribe => {
                    "no token: send Authorization: Bearer <token>, the herald_token cookie or ?token="
                }
                Access::Publish => "no token: send Authorization: Bearer <token or API key>",
            }));
        };
        jwt.verify(token).map(Caller::Token)
    }
}

impl JwtVerifier {
    fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let data = jsonwebtoken::decode::<RawClaims>(token, &self.key, &self.validation).map_err(
            |err| {
                let reason = match err.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
                    ErrorKind::InvalidSignature => "the token's signature does not verify",
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        "the token is not signed with the algorithm this hub accepts"
                    }
                    ErrorKind::MissingRequiredClaim(_) => "the token has no `exp` claim",
                    ErrorKind::Json(_) | ErrorKind::InvalidClaimFormat(_) => {
                        "the token's claims are malformed"
                    }
                    _ => "the token is malformed",
                };
                tracing::debug!(reason, "token refused");
                ApiError::unauthorized(reason)
            },
        )?;
        Ok(data.claims.into())
    }
}

/// Which credential sources an endpoint accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Streams and polling: header, cookie or query parameter.
    Subscribe,
    /// Publishing and admin: the `Authorization` header only.
    Publish,
}

/// The raw credentials a request carries, not yet verified.
#[derive(Default)]
struct Credentials {
    bearer: Option<String>,
    cookie: Option<String>,
    query: Option<String>,
}

impl Credentials {
    fn from_request(headers: &HeaderMap, query: Option<&str>) -> Self {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.trim().split_once(' ')?;
                scheme
                    .eq_ignore_ascii_case("bearer")
                    .then(|| token.trim().to_owned())
            });
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                (name == TOKEN_COOKIE).then(|| value.trim_matches('"').to_owned())
            });
        let query = query.and_then(|query| {
            form_urlencoded::parse(query.as_bytes())
                .find(|(name, _)| name == TOKEN_QUERY_PARAM)
                .map(|(_, value)| value.into_owned())
        });
        Self {
            bearer,
            cookie,
            query,
        }
        .without_empty()
    }

    fn without_empty(mut self) -> Self {
        for source in [&mut self.bearer, &mut self.cookie, &mut self.query] {
            if source.as_deref().is_some_and(str::is_empty) {
                *source = None;
            }
        }
        self
    }
}

/// An authenticated caller of a stream or polling endpoint (token from header, cookie or query).
pub(super) struct Subscriber(pub(super) Caller);

/// An authenticated caller of a publish or admin endpoint (the `Authorization` header only).
/// Extracted before the body, so an unauthenticated caller's body is never read.
pub(super) struct Publisher(pub(super) Caller);

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
pub(super) enum Caller {
    /// `none` mode: no credential needed for this endpoint.
    Open,
    /// A static API key: every right.
    ApiKey,
    /// A verified token.
    Token(Claims),
}

impl Caller {
    /// The connection's user: the token's `sub`.
    pub(super) fn user(&self) -> Option<&str> {
        match self {
            Caller::Token(claims) => claims.sub.as_deref(),
            Caller::Open | Caller::ApiKey => None,
        }
    }

    /// May this caller subscribe to (or poll) every one of `channels`?
    ///
    /// # Errors
    /// 403 `forbidden` naming the channels outside the caller's rights.
    pub(super) fn check_subscribe(&self, channels: &[ChannelName]) -> Result<(), ApiError> {
        let Caller::Token(claims) = self else {
            return Ok(());
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

    /// May this caller publish to (or close) every one of `channels`?
    ///
    /// # Errors
    /// 403 `forbidden` naming the channels outside the caller's rights.
    pub(super) fn check_publish(&self, channels: &[ChannelName]) -> Result<(), ApiError> {
        let Caller::Token(claims) = self else {
            return Ok(());
        };
        refuse_unmatched("publish to", channels, |channel| {
            claims.admin || claims.publish.iter().any(|p| p.matches(channel))
        })
    }

    /// May this caller publish beyond channels (to everyone, to one client id)? Takes the
    /// `publish` pattern `*`.
    ///
    /// # Errors
    /// 403 `forbidden`.
    pub(super) fn check_publish_anywhere(&self) -> Result<(), ApiError> {
        match self {
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

    /// May this caller take over client id `id`, now held by a connection of user `holder`?
    /// A token may take over its own user's connections only.
    ///
    /// # Errors
    /// 403 `forbidden`.
    pub(super) fn check_take_over(
        &self,
        id: &ClientId,
        holder: Option<&str>,
    ) -> Result<(), ApiError> {
        match self {
            Caller::Token(claims) if !claims.admin && claims.sub.as_deref() != holder => {
                Err(ApiError::forbidden(
                    format!("client id {id} is held by another user's connection"),
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
    pub(super) fn check_admin(&self) -> Result<(), ApiError> {
        match self {
            Caller::Token(claims) if !claims.admin => Err(ApiError::forbidden(
                "this endpoint needs \"admin\": true in the token's herald claim, or an API key",
                Vec::new(),
            )),
            _ => Ok(()),
        }
    }
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

/// A verified token's claims.
#[derive(Debug, Default)]
pub(super) struct Claims {
    sub: Option<String>,
    subscribe: Vec<ChannelPattern>,
    publish: Vec<ChannelPattern>,
    admin: bool,
}

#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    herald: HeraldClaim,
}

/// The `herald` claim: `{"subscribe": [...], "publish": [...], "admin": true}`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct HeraldClaim {
    subscribe: Vec<ChannelPattern>,
    publish: Vec<ChannelPattern>,
    admin: bool,
}

impl From<RawClaims> for Claims {
    fn from(raw: RawClaims) -> Self {
        Self {
            sub: raw.sub,
            subscribe: raw.herald.subscribe,
            publish: raw.herald.publish,
            admin: raw.herald.admin,
        }
    }
}

/// A channel pattern of the `herald` claim: `*` (every channel), a prefix ending in `*`
/// (`team:7:*`), or an exact channel name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ChannelPattern {
    All,
    Prefix(String),
    Exact(ChannelName),
}

impl ChannelPattern {
    fn parse(text: &str) -> Option<Self> {
        if text == "*" {
            return Some(Self::All);
        }
        if let Some(prefix) = text.strip_suffix('*') {
            // The prefix must itself be the start of a valid name (no other `*`).
            return ChannelName::new(prefix)
                .ok()
                .map(|_| Self::Prefix(prefix.to_owned()));
        }
        ChannelName::new(text).ok().map(Self::Exact)
    }

    fn matches(&self, channel: &ChannelName) -> bool {
        match self {
            Self::All => true,
            Self::Prefix(prefix) => channel.as_str().starts_with(prefix.as_str()),
            Self::Exact(name) => name == channel,
        }
    }
}

impl<'de> Deserialize<'de> for ChannelPattern {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).ok_or_else(|| {
            serde::de::Error::custom("a channel pattern is `*`, `prefix*` or a channel name")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use jsonwebtoken::{EncodingKey, Header};
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
    fn patterns_match_exact_names_prefixes_and_everything() {
        let exact = ChannelPattern::parse("orders").expect("valid");
        let prefix = ChannelPattern::parse("team:7:*").expect("valid");
        let all = ChannelPattern::parse("*").expect("valid");
        assert!(exact.matches(&channel("orders")));
        assert!(!exact.matches(&channel("orders2")));
        assert!(prefix.matches(&channel("team:7:chat")));
        assert!(!prefix.matches(&channel("team:70:chat")));
        assert!(!prefix.matches(&channel("team:7")));
        assert!(all.matches(&channel("anything")));
    }

    #[test]
    fn malformed_patterns_are_refused() {
        for bad in ["", "a b", "a*b*", "**", "a*b"] {
            assert_eq!(ChannelPattern::parse(bad), None, "{bad:?}");
        }
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
        let err = jwt()
            .authenticate(&creds, Access::Publish)
            .expect_err("no header");
        assert_eq!(err.code(), "unauthorized");
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
        assert!(caller.check_subscribe(&[channel("user:42")]).is_ok());
        assert!(caller.check_subscribe(&[channel("user:43")]).is_err());
        assert_eq!(caller.user(), Some("42"));
    }

    #[test]
    fn refused_channels_are_named() {
        let caller = caller(json!({
            "sub": "42", "exp": now() + 60,
            "herald": {"subscribe": ["orders", "team:7:*"]}
        }));
        let err = caller
            .check_subscribe(&[
                channel("orders"),
                channel("billing"),
                channel("team:7:x"),
                channel("team:8:x"),
            ])
            .expect_err("two channels refused");
        assert_eq!(err.code(), "forbidden");
        assert_eq!(err.channels(), [channel("billing"), channel("team:8:x")]);
    }

    #[test]
    fn publish_rights_are_separate_from_subscribe_rights() {
        let subscriber = caller(json!({"exp": now() + 60, "herald": {"subscribe": ["*"]}}));
        assert!(subscriber.check_publish(&[channel("orders")]).is_err());
        assert!(subscriber.check_publish_anywhere().is_err());
        assert!(subscriber.check_admin().is_err());
        let publisher = caller(json!({"exp": now() + 60, "herald": {"publish": ["orders"]}}));
        assert!(publisher.check_publish(&[channel("orders")]).is_ok());
        assert!(publisher.check_publish_anywhere().is_err());
        let admin = caller(json!({"exp": now() + 60, "herald": {"admin": true}}));
        assert!(admin.check_publish_anywhere().is_ok());
        assert!(admin.check_subscribe(&[channel("x")]).is_ok());
        assert!(admin.check_admin().is_ok());
    }

    #[test]
    fn api_keys_are_matched_exactly_and_only_from_the_header() {
        let auth = jwt()
            .with_api_keys(["first-key-0123456789", "", "second-key-0123456789"])
            .expect("long enough keys");
        assert!(matches!(
            auth.authenticate(&bearer("second-key-0123456789"), Access::Publish),
            Ok(Caller::ApiKey)
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
        assert!(auth.authenticate(&anonymous, Access::Publish).is_err());
        assert!(matches!(
            AuthConfig::none().authenticate(&anonymous, Access::Publish),
            Ok(Caller::Open)
        ));
    }

    #[test]
    fn short_secrets_and_foreign_keys_are_refused() {
        assert_eq!(
            AuthConfig::jwt_secret(b"short").map(|_| ()),
            Err(AuthConfigError::SecretTooShort { len: 5 })
        );
        assert_eq!(
            AuthConfig::jwt_public_key_pem(b"not a pem").map(|_| ()),
            Err(AuthConfigError::UnsupportedKey)
        );
    }
}
