//! Access tokens (RFC 9068 JWTs) and refresh tokens.
//!
//! Verification pins the one configured algorithm, requires `typ: at+jwt`, a known `kid`, and the
//! claims `exp`, `nbf`, `iss`, `aud` and `sub` (plus `sid`, `role`, `iat`, `jti`), allows 30 s of
//! clock skew, refuses tokens over 8 KiB before parsing anything, and never fetches a key a token
//! names (`jku`, `x5u`, `jwk`, `x5c` in a header make the token invalid).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::roles::Role;

/// Tokens longer than this are refused before any parsing (contract: 8 KiB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;
/// HMAC keys must have at least this many bytes (256 bits).
pub const MIN_HMAC_KEY_BYTES: usize = 32;
pub const TOKEN_TYPE: &str = "at+jwt";

/// One HMAC signing key and the id tokens carry for it.
pub struct SigningKey {
    pub kid: String,
    secret: SecretBox<Vec<u8>>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing key {kid:?} is {len} bytes; at least {MIN_HMAC_KEY_BYTES} are required")]
    TooShort { kid: String, len: usize },
}

impl SigningKey {
    /// An HMAC key. Refuses keys under 32 bytes: there is no fallback key.
    pub fn hmac(kid: impl Into<String>, secret: SecretString) -> Result<Self, KeyError> {
        let kid = kid.into();
        let bytes = secret.expose_secret().as_bytes().to_vec();
        if bytes.len() < MIN_HMAC_KEY_BYTES {
            return Err(KeyError::TooShort { kid, len: bytes.len() });
        }
        Ok(Self {
            kid,
            secret: SecretBox::new(Box::new(bytes)),
        })
    }

    /// A key id derived from the key itself, for keys that come from the environment: a truncated
    /// SHA-256, which says nothing useful about a 256-bit key.
    pub fn fingerprint_kid(secret: &SecretString) -> String {
        let digest = Sha256::digest(secret.expose_secret().as_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("env-{hex}")
    }
}

/// The keys in force: new tokens are signed with `current`; `previous` still verifies (rotation).
#[derive(Debug)]
pub struct KeySet {
    pub current: SigningKey,
    pub previous: Option<SigningKey>,
}

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: Uuid,
    pub sid: Uuid,
    pub role: Role,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub jti: Uuid,
}

/// Why a token was refused (for logs and tests; the client always sees the same 401).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token too large")]
    TooLarge,
    #[error("malformed token")]
    Malformed,
    #[error("algorithm not allowed")]
    WrongAlgorithm,
    #[error("wrong token type")]
    WrongType,
    #[error("token names a key location")]
    KeyLocationHeader,
    #[error("unknown key id")]
    UnknownKey,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Settings shared by the issuer and the verifier.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub ttl: Duration,
}

/// Signs and verifies access tokens.
pub struct Tokens {
    settings: TokenSettings,
    algorithm: Algorithm,
    signing_kid: String,
    encoding: EncodingKey,
    decoding: HashMap<String, DecodingKey>,
    validation: Validation,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("algorithm", &self.algorithm)
            .field("signing_kid", &self.signing_kid)
            .field("verifying_kids", &self.decoding.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An issued access token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: SecretString,
    pub expires_in: u64,
    pub claims: AccessClaims,
}

impl Tokens {
    pub fn hs256(keys: KeySet, settings: TokenSettings) -> Self {
        let algorithm = Algorithm::HS256;
        let encoding = EncodingKey::from_secret(keys.current.secret.expose_secret());
        let mut decoding = HashMap::new();
        // Current last, so it wins should a previous key ever carry the same kid.
        for key in keys.previous.iter().chain(std::iter::once(&keys.current)) {
            decoding.insert(key.kid.clone(), DecodingKey::from_secret(key.secret.expose_secret()));
        }
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[settings.issuer.as_str()]);
        validation.set_audience(&[settings.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        Self {
            settings,
            algorithm,
            signing_kid: keys.current.kid,
            encoding,
            decoding,
            validation,
        }
    }

    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// Issue an access token for `user` in session `session`.
    pub fn issue(&self, user: Uuid, session: Uuid, role: Role) -> anyhow::Result<IssuedToken> {
        let now = now_secs();
        let ttl = self.settings.ttl.as_secs();
        let claims = AccessClaims {
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            sub: user,
            sid: session,
            role,
            iat: now,
            nbf: now,
            exp: now + ttl,
            jti: Uuid::new_v4(),
        };
        let mut header = Header::new(self.algorithm);
        header.typ = Some(TOKEN_TYPE.to_owned());
        header.kid = Some(self.signing_kid.clone());
        let token = encode(&header, &claims, &self.encoding)?;
        Ok(IssuedToken {
            token: SecretString::from(token),
            expires_in: ttl,
            claims,
        })
    }

    /// Verify an access token and return its claims.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != self.algorithm {
            return Err(TokenError::WrongAlgorithm);
        }
        let typ_ok = header
            .typ
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(TOKEN_TYPE) || t.eq_ignore_ascii_case("application/at+jwt"));
        if !typ_ok {
            return Err(TokenError::WrongType);
        }
        if header.jku.is_some() || header.x5u.is_some() || header.jwk.is_some() || header.x5c.is_some() {
            return Err(TokenError::KeyLocationHeader);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.decoding.get(kid))
            .ok_or(TokenError::UnknownKey)?;
        let data = decode::<AccessClaims>(token, key, &self.validation)
            .map_err(|e| TokenError::Invalid(format!("{:?}", e.kind())))?;
        Ok(data.claims)
    }
}

/// A fresh refresh token: 256 random bits, URL-safe; only its SHA-256 is stored.
pub fn new_refresh_token() -> anyhow::Result<SecretString> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(SecretString::from(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
    ))
}

/// The stored form of a refresh token. A fast hash is right here: the token has 256 bits of
/// entropy, so there is nothing to brute-force, and lookups must be cheap.
pub fn hash_refresh_token(token: &SecretString) -> Vec<u8> {
    Sha256::digest(token.expose_secret().as_bytes()).to_vec()
}

/// Take the token out of an `Authorization: Bearer <token>` value.
pub fn bearer_token(header_value: &str) -> Option<&str> {
    let (scheme, token) = header_value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && !token.contains(' ')).then_some(token)
}
