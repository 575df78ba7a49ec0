//! Token verification: the one algorithm a key accepts, the time checks, and what a token grants.
//!
//! Owns [`JwtVerifier`] (the configured key alone decides the accepted algorithm; `exp` is required,
//! and `exp` and `nbf` are checked with [`JWT_LEEWAY`]), the claims a verified token carries, and
//! the channel patterns of its `herald` claim. It never reads a request, never logs a token (only
//! why it was refused, at `debug`), and never decides which right an endpoint needs.

use super::config::JWT_LEEWAY;
use crate::{http::error::ApiError, ChannelName};
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Verifies tokens with one key and the one algorithm it fixes.
pub(crate) struct JwtVerifier {
    key: DecodingKey,
    algorithm: Algorithm,
    validation: Validation,
}

impl JwtVerifier {
    pub(super) fn new(key: DecodingKey, algorithm: Algorithm) -> Self {
        // One algorithm, fixed by the key: the token header's `alg` is only checked against it.
        let mut validation = Validation::new(algorithm);
        validation.leeway = JWT_LEEWAY.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // No audience is configured: a token's `aud` is not checked.
        validation.validate_aud = false;
        Self {
            key,
            algorithm,
            validation,
        }
    }

    /// The one algorithm accepted.
    pub(super) fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The claims of `token`, when its signature, algorithm and times are good.
    ///
    /// # Errors
    /// 401 `unauthorized` saying why, never echoing the token.
    pub(super) fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let data = jsonwebtoken::decode::<RawClaims>(token, &self.key, &self.validation).map_err(
            |err| {
                let reason = refusal_reason(&err);
                tracing::debug!(reason, "token refused");
                ApiError::unauthorized(reason)
            },
        )?;
        let mut claims = Claims::from(data.claims);
        claims.identity = match &claims.sub {
            Some(sub) => format!("user:{sub}"),
            None => super::caller::credential_identity("token", token),
        };
        Ok(claims)
    }
}

/// Why a token was refused, for its 401 (never echoing the token).
pub(crate) fn refusal_reason(err: &jsonwebtoken::errors::Error) -> &'static str {
    match err.kind() {
        ErrorKind::ExpiredSignature => "the token has expired",
        ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
        ErrorKind::InvalidSignature => "the token's signature does not verify",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "the token is not signed with the algorithm this hub accepts"
        }
        ErrorKind::MissingRequiredClaim(_) => "the token has no `exp` claim",
        ErrorKind::Json(_) | ErrorKind::InvalidClaimFormat(_) => "the token's claims are malformed",
        _ => "the token is malformed",
    }
}

/// A verified token's claims.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    /// The user (`sub`): a connection's user, and the owner of `user:{sub}`.
    pub(super) sub: Option<String>,
    /// Channels the token may subscribe to.
    pub(super) subscribe: Vec<ChannelPattern>,
    /// Channels the token may publish to; `*` also allows broadcasts and client ids.
    pub(super) publish: Vec<ChannelPattern>,
    /// Every right.
    pub(super) admin: bool,
    /// What client ids are bound to: `user:{sub}`, or for a token without `sub` a digest of
    /// the token.
    pub(super) identity: String,
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
            identity: String::new(),
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

    pub(super) fn matches(&self, channel: &ChannelName) -> bool {
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

    fn channel(name: &str) -> ChannelName {
        ChannelName::new(name).expect("valid channel")
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
}
