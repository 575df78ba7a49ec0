//! Mercure tokens: where a request carries one, how it is verified, and what it grants.
//!
//! Owns both claim shapes a Mercure hub takes: draft-07's `mercure` claim (`publish`,
//! `subscribe`: URI templates or `*`; `payload`) and the current draft's `authorization_details`
//! (RFC 9396 objects of type `https://mercure.rocks/authorization-detail` whose `topics` are
//! `exact` or `urlpattern` matchers). A token is read from the `Authorization` header, then the
//! `mercureAuthorization` cookie, then (subscribers, draft-07) the `authorization` query
//! parameter. The key's configured algorithm alone is accepted; `exp` and `nbf` are enforced when
//! present (draft-07 tokens often have no `exp`). `aud` and `iss` are not checked: the hub has
//! no configured resource identifier. It never logs a token.

use crate::{
    http::{
        auth::{bearer_token, cookie_value, refusal_reason, JWT_LEEWAY},
        error::ApiError,
        extract::QueryParams,
    },
    TopicSelector,
};
use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::{fmt, str::FromStr, sync::Arc};

/// The cookie browsers send a Mercure token in.
pub(super) const COOKIE: &str = "mercureAuthorization";
/// The draft-07 query parameter that carries a subscriber's token.
const QUERY_PARAM: &str = "authorization";
/// The `type` of a Mercure authorization detail.
const DETAIL_TYPE: &str = "https://mercure.rocks/authorization-detail";
/// Most topic matchers one token may hold (all details together).
const GRANTS_MAX: usize = 256;

/// Why a Mercure key could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MercureKeyError {
    /// The algorithm is not one of HS256/384/512, RS256/384/512, PS256/384/512, ES256/384,
    /// EdDSA.
    #[error("unsupported JWT algorithm {0:?}")]
    Algorithm(String),
    /// The key does not suit the algorithm (a public key must be PEM).
    #[error("the key is not a valid {0} key (HMAC: the secret; others: a PEM public key)")]
    Key(&'static str),
}

/// A key that verifies Mercure tokens, with the one algorithm it accepts. Cheap to clone.
#[derive(Clone)]
pub struct MercureKey {
    key: Arc<DecodingKey>,
    validation: Arc<Validation>,
}

impl fmt::Debug for MercureKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MercureKey")
            .field("algorithm", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl MercureKey {
    /// `key` for `algorithm` (as the reference hub names them: `HS256`, `RS256`, `ES256`, …):
    /// the shared secret for HMAC, a PEM public key otherwise.
    ///
    /// ```
    /// use herald_hub::http::MercureKey;
    /// assert!(MercureKey::new("!ChangeThisMercureHubJWTSecretKey!", "HS256").is_ok());
    /// assert!(MercureKey::new("not a pem", "RS256").is_err());
    /// ```
    ///
    /// # Errors
    /// [`MercureKeyError`] for an unknown algorithm or a key that does not suit it.
    pub fn new(key: &str, algorithm: &str) -> Result<Self, MercureKeyError> {
        let algorithm = Algorithm::from_str(algorithm)
            .map_err(|_| MercureKeyError::Algorithm(algorithm.to_owned()))?;
        let pem = key.as_bytes();
        let decoding = match algorithm {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                Ok(DecodingKey::from_secret(pem))
            }
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => DecodingKey::from_rsa_pem(pem).map_err(|_| "RSA"),
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem).map_err(|_| "EC"),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(pem).map_err(|_| "Ed25519"),
            _ => Err("this"),
        }
        .map_err(MercureKeyError::Key)?;
        let mut validation = Validation::new(algorithm);
        validation.leeway = JWT_LEEWAY.as_secs();
        // Draft-07 tokens often carry no `exp`; when present it is enforced, and the
        // connection ends when it passes.
        validation.required_spec_claims.clear();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        Ok(Self {
            key: Arc::new(decoding),
            validation: Arc::new(validation),
        })
    }

    /// What `token` grants, when its signature, algorithm, times and claims are good.
    pub(super) fn verify(&self, token: &str) -> Result<Grants, ApiError> {
        let data = jsonwebtoken::decode::<RawClaims>(token, &self.key, &self.validation).map_err(
            |err| {
                let reason = refusal_reason(&err);
                tracing::debug!(reason, "mercure token refused");
                ApiError::unauthorized(reason)
            },
        )?;
        Grants::from_claims(data.claims)
    }
}

#[derive(Debug, Deserialize)]
struct RawClaims {
    #[serde(default)]
    mercure: Option<LegacyClaim>,
    #[serde(default)]
    authorization_details: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    exp: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
struct LegacyClaim {
    #[serde(default)]
    publish: Option<Vec<String>>,
    #[serde(default)]
    subscribe: Option<Vec<String>>,
    #[serde(default)]
    payload: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Detail {
    actions: Vec<String>,
    topics: Vec<Matcher>,
    #[serde(default)]
    payload: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Matcher {
    #[serde(rename = "match")]
    selector: String,
    #[serde(default)]
    match_type: Option<String>,
}

/// What a verified token allows.
#[derive(Debug, Default, Clone)]
pub(super) struct Grants {
    /// Topics it may publish to (every topic of an update must match one).
    pub(super) publish: Vec<TopicSelector>,
    /// Topics whose private updates it may read.
    pub(super) subscribe: Vec<TopicSelector>,
    /// Its `exp`, in seconds since the epoch.
    pub(super) expires_unix_s: Option<u64>,
    /// Draft-07's `mercure.payload`: every subscription's payload.
    payload: Option<serde_json::Value>,
    /// The current draft's `subscribe` details with a `payload`, in order.
    detail_payloads: Vec<(Vec<TopicSelector>, serde_json::Value)>,
}

impl Grants {
    fn from_claims(claims: RawClaims) -> Result<Self, ApiError> {
        let invalid = |why: String| ApiError::unauthorized(format!("the token is invalid: {why}"));
        let mut grants = Self {
            expires_unix_s: claims.exp.map(|exp| exp.max(0.0) as u64),
            ..Self::default()
        };
        if let Some(legacy) = claims.mercure {
            let template =
                |s: &String| TopicSelector::uri_template(s).map_err(|err| invalid(err.to_string()));
            grants.publish = legacy
                .publish
                .iter()
                .flatten()
                .map(template)
                .collect::<Result<_, _>>()?;
            grants.subscribe = legacy
                .subscribe
                .iter()
                .flatten()
                .map(template)
                .collect::<Result<_, _>>()?;
            grants.payload = legacy.payload;
        }
        for detail in claims.authorization_details.into_iter().flatten() {
            if detail.get("type").and_then(|t| t.as_str()) != Some(DETAIL_TYPE) {
                continue;
            }
            let detail: Detail =
                serde_json::from_value(detail).map_err(|err| invalid(err.to_string()))?;
            if detail.topics.is_empty() || detail.actions.is_empty() {
                return Err(invalid("a detail has no actions or no topics".into()));
            }
            let selectors = detail
                .topics
                .iter()
                .map(|m| match m.match_type.as_deref() {
                    None | Some("exact") => TopicSelector::exact(&m.selector),
                    Some("urlpattern") => TopicSelector::url_pattern(&m.selector),
                    Some(_) => Err(crate::SelectorError::Unsupported("an unknown match_type")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|err| invalid(err.to_string()))?;
            if let (true, Some(payload)) = (
                detail.actions.iter().any(|a| a == "subscribe"),
                detail.payload,
            ) {
                grants.detail_payloads.push((selectors.clone(), payload));
            }
            for action in &detail.actions {
                match action.as_str() {
                    "publish" => grants.publish.extend(selectors.iter().cloned()),
                    "subscribe" => grants.subscribe.extend(selectors.iter().cloned()),
                    _ => {}
                }
            }
        }
        if grants.publish.len() + grants.subscribe.len() > GRANTS_MAX {
            return Err(invalid(format!("more than {GRANTS_MAX} topic matchers")));
        }
        Ok(grants)
    }

    /// The payload of a subscription whose matcher is `selector`: the first `subscribe` detail
    /// with a payload whose topics match the matcher string, else draft-07's payload.
    pub(super) fn payload_for(&self, selector: &str) -> Option<serde_json::Value> {
        self.detail_payloads
            .iter()
            .find(|(topics, _)| topics.iter().any(|t| t.matches(selector)))
            .map(|(_, payload)| payload.clone())
            .or_else(|| self.payload.clone())
    }

    /// Whether one subscribe grant matches `topic` (the subscriptions API's rule).
    pub(super) fn may_subscribe(&self, topic: &str) -> bool {
        self.subscribe.iter().any(|g| g.matches(topic))
    }

    /// Whether every one of `topics` may be published to.
    pub(super) fn may_publish(&self, topics: &[crate::ChannelName]) -> bool {
        topics
            .iter()
            .all(|t| self.publish.iter().any(|g| g.matches(t.as_str())))
    }
}

/// Where a request's token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Header,
    Cookie,
    Query,
}

/// The request's token and its source: the `Authorization` header, else the cookie, else (for
/// subscribers) the draft-07 `authorization` query parameter from `query`.
pub(super) fn find(headers: &HeaderMap, query: Option<&QueryParams>) -> Option<(String, Source)> {
    if let Some(token) = bearer_token(headers).filter(|t| !t.is_empty()) {
        return Some((token, Source::Header));
    }
    let cookie = cookie_value(headers, COOKIE).filter(|t| !t.is_empty());
    if let Some(token) = cookie {
        return Some((token, Source::Cookie));
    }
    query
        .and_then(|q| q.last(QUERY_PARAM))
        .filter(|t| !t.is_empty())
        .map(|token| (token.to_owned(), Source::Query))
}
