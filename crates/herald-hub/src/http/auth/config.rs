//! The authentication settings: which key verifies tokens, and which static API keys exist.
//!
//! Owns [`AuthConfig`], its construction rules (secret and key lengths, which PEM keys are
//! taken) and the constant-time comparison of API keys. It never reads a request (that is
//! `credentials`') and never decides a right (that is `caller`'s).

use super::{app::AppAuth, jwt::JwtVerifier};
use jsonwebtoken::{Algorithm, DecodingKey};
use sha2::{Digest, Sha256};
use std::{fmt, sync::Arc, time::Duration};
use subtle::ConstantTimeEq;

/// Clock skew allowed on `exp` and `nbf`: 30 s.
pub const JWT_LEEWAY: Duration = Duration::from_secs(30);
/// Shortest HS256 secret accepted, in bytes: 32 (the hash's output size, as RFC 7518 asks).
pub const JWT_SECRET_LEN_MIN: usize = 32;
/// Shortest static API key accepted, in characters.
pub const API_KEY_LEN_MIN: usize = 16;

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
    /// The application that decides who may subscribe (`app` mode); `None` otherwise.
    app: Option<AppAuth>,
    /// `app` mode: the application decides every subscription (else only those of namespaces
    /// with `subscribe = "app"`).
    app_everywhere: bool,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("algorithm", &self.algorithm())
            .field("api_keys", &self.api_keys.len())
            .field("app", &self.app)
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
        Self {
            jwt: Some(Arc::new(JwtVerifier::new(key, algorithm))),
            api_keys: Arc::new([]),
            app: None,
            app_everywhere: false,
        }
    }

    /// Lets the application decide who may subscribe (`app` mode): each stream and poll asks
    /// `app` (see [`AppAuth::authorize`]). Publishing and admin are unchanged: API keys (or
    /// tokens, if a JWT key is also set).
    pub fn with_app(mut self, app: AppAuth) -> Self {
        self.app = Some(app);
        self.app_everywhere = true;
        self
    }

    /// Lets the application decide who may subscribe to the channels of namespaces with
    /// `subscribe = "app"` only; every other channel keeps this mode's rules.
    pub fn with_app_for_namespaces(mut self, app: AppAuth) -> Self {
        self.app = Some(app);
        self.app_everywhere = false;
        self
    }

    /// Whether the application decides every subscription (`app` mode).
    pub fn asks_app_for_every_channel(&self) -> bool {
        self.app.is_some() && self.app_everywhere
    }

    /// The application that decides who may subscribe, in `app` mode.
    pub fn app(&self) -> Option<&AppAuth> {
        self.app.as_ref()
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

    /// Whether anyone may subscribe without a credential: neither tokens nor the application
    /// decide.
    pub fn is_open(&self) -> bool {
        self.jwt.is_none() && self.app.is_none()
    }

    /// Whether static API keys are configured.
    pub fn has_api_keys(&self) -> bool {
        !self.api_keys.is_empty()
    }

    /// The one accepted algorithm, `None` in `none` mode.
    pub fn algorithm(&self) -> Option<&'static str> {
        Some(match self.jwt.as_ref()?.algorithm() {
            Algorithm::HS256 => "HS256",
            Algorithm::RS256 => "RS256",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
            _ => "other",
        })
    }

    /// The token verifier; `None` in `none` mode.
    pub(super) fn verifier(&self) -> Option<&JwtVerifier> {
        self.jwt.as_deref()
    }

    /// Whether `presented` is one of the API keys, compared in constant time.
    pub(super) fn is_api_key(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = subtle::Choice::from(0);
        for key in self.api_keys.iter() {
            found |= key[..].ct_eq(&digest[..]);
        }
        found.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
