//! Access tokens (RFC 9068 JWTs) and refresh tokens.
//!
//! Verification pins the one configured algorithm, requires `typ: at+jwt`, a known `kid`, and the
//! claims `exp`, `nbf`, `iss`, `aud` and `sub` (plus `sid`, `role`, `iat`, `jti`), allows 30 s of
//! clock skew, refuses tokens over 8 KiB before parsing anything, and never fetches a key a token
//! names (`jku`, `x5u`, `jwk`, `x5c` in a header make the token invalid), and refuses any `crit`
//! header, since it understands no JWS extension.

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

/// A signing key and the id (`kid`) tokens carry for it: an HMAC secret (HS256), or an Ed25519
/// private key (EdDSA) whose public half is what verifiers and the JWKS get.
pub struct SigningKey {
    pub kid: String,
    material: KeyMaterial,
}

enum KeyMaterial {
    Hmac(SecretBox<Vec<u8>>),
    Ed25519 { pkcs8: SecretBox<Vec<u8>>, public: Vec<u8> },
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm())
            .field("secret", &"[REDACTED]")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing key {kid:?} is {len} bytes; at least {MIN_HMAC_KEY_BYTES} are required")]
    TooShort { kid: String, len: usize },
    #[error("signing key {kid:?} is not an Ed25519 private key in PKCS#8 PEM")]
    NotEd25519 { kid: String },
    #[error("keys of different algorithms cannot be used together")]
    MixedAlgorithms,
}

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

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
            material: KeyMaterial::Hmac(SecretBox::new(Box::new(bytes))),
        })
    }

    /// An Ed25519 private key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn ed25519_pem(kid: impl Into<String>, pem: &SecretString) -> Result<Self, KeyError> {
        let kid = kid.into();
        let text = pem.expose_secret().trim();
        let body = text
            .strip_prefix(PEM_BEGIN)
            .and_then(|t| t.strip_suffix(PEM_END))
            .ok_or_else(|| KeyError::NotEd25519 { kid: kid.clone() })?;
        let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| KeyError::NotEd25519 { kid: kid.clone() })?;
        let pair = aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|_| KeyError::NotEd25519 { kid: kid.clone() })?;
        let public = aws_lc_rs::signature::KeyPair::public_key(&pair).as_ref().to_vec();
        Ok(Self {
            kid,
            material: KeyMaterial::Ed25519 {
                pkcs8: SecretBox::new(Box::new(der)),
                public,
            },
        })
    }

    /// A fresh Ed25519 key pair as PKCS#8 PEM (for the rotation function and tests).
    pub fn generate_ed25519_pem() -> anyhow::Result<SecretString> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| anyhow::anyhow!("Ed25519 key generation failed"))?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(doc.as_ref());
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .filter_map(|c| std::str::from_utf8(c).ok())
            .collect();
        Ok(SecretString::from(format!(
            "{PEM_BEGIN}\n{}\n{PEM_END}\n",
            lines.join("\n")
        )))
    }

    /// A key id derived from the key itself, for keys that come from the environment: a truncated
    /// SHA-256, which says nothing useful about a 256-bit key.
    pub fn fingerprint_kid(secret: &SecretString) -> String {
        let digest = Sha256::digest(secret.expose_secret().as_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("env-{hex}")
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.material {
            KeyMaterial::Hmac(_) => Algorithm::HS256,
            KeyMaterial::Ed25519 { .. } => Algorithm::EdDSA,
        }
    }

    fn encoding_key(&self) -> EncodingKey {
        match &self.material {
            KeyMaterial::Hmac(secret) => EncodingKey::from_secret(secret.expose_secret()),
            KeyMaterial::Ed25519 { pkcs8, .. } => EncodingKey::from_ed_der(pkcs8.expose_secret()),
        }
    }

    fn verifying_key(&self) -> VerifyingKey {
        match &self.material {
            KeyMaterial::Hmac(secret) => VerifyingKey {
                kid: self.kid.clone(),
                key: DecodingKey::from_secret(secret.expose_secret()),
                public_x: None,
            },
            KeyMaterial::Ed25519 { public, .. } => VerifyingKey::ed25519(&self.kid, public),
        }
    }
}

/// The keys in force: new tokens are signed with `current`; `previous` still verifies (rotation).
#[derive(Debug)]
pub struct KeySet {
    pub current: SigningKey,
    pub previous: Option<SigningKey>,
}

/// A key that verifies tokens: an HMAC secret, or an Ed25519 public key (with its JWK `x`).
#[derive(Clone)]
pub struct VerifyingKey {
    pub kid: String,
    key: DecodingKey,
    public_x: Option<String>,
}

impl VerifyingKey {
    pub fn ed25519(kid: &str, public: &[u8]) -> Self {
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public);
        VerifyingKey {
            kid: kid.to_owned(),
            key: DecodingKey::from_ed_der(public),
            public_x: Some(x),
        }
    }
}

/// A JSON Web Key Set of Ed25519 public keys (RFC 8037), as served at `/.well-known/jwks.json`
/// and kept in the verifiers' secret.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub kid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

impl Jwk {
    pub fn ed25519(kid: &str, x: &str) -> Self {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: x.to_owned(),
            kid: kid.to_owned(),
            alg: Some("EdDSA".into()),
            use_: Some("sig".into()),
        }
    }
}

impl Jwks {
    /// The verifying keys of the set. Anything but Ed25519 signing keys is refused.
    pub fn verifying_keys(&self) -> anyhow::Result<Vec<VerifyingKey>> {
        self.keys
            .iter()
            .map(|k| {
                if k.kty != "OKP" || k.crv != "Ed25519" || k.alg.as_deref().is_some_and(|a| a != "EdDSA") {
                    anyhow::bail!("JWK {:?} is not an Ed25519 EdDSA key", k.kid);
                }
                let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(&k.x)
                    .map_err(|_| anyhow::anyhow!("JWK {:?} has an invalid x", k.kid))?;
                if raw.len() != 32 {
                    anyhow::bail!("JWK {:?} is not a 32-byte Ed25519 key", k.kid);
                }
                Ok(VerifyingKey::ed25519(&k.kid, &raw))
            })
            .collect()
    }
}

/// What a [`Tokens`] holds at one moment: the signing key (issuers only) and the verifying keys.
pub struct Keys {
    pub algorithm: Algorithm,
    signing: Option<(String, EncodingKey)>,
    verifying: Vec<VerifyingKey>,
}

impl Keys {
    /// Sign with `current`, verify with it and `previous`.
    pub fn from_set(keys: KeySet) -> Result<Self, KeyError> {
        let algorithm = keys.current.algorithm();
        if keys.previous.as_ref().is_some_and(|p| p.algorithm() != algorithm) {
            return Err(KeyError::MixedAlgorithms);
        }
        let mut verifying = vec![keys.current.verifying_key()];
        verifying.extend(
            keys.previous
                .iter()
                .filter(|p| p.kid != keys.current.kid)
                .map(SigningKey::verifying_key),
        );
        Ok(Keys {
            algorithm,
            signing: Some((keys.current.kid.clone(), keys.current.encoding_key())),
            verifying,
        })
    }

    /// Verify only, with public keys (the authorizer and the data functions in EdDSA mode).
    pub fn verify_only(algorithm: Algorithm, verifying: Vec<VerifyingKey>) -> Self {
        Keys {
            algorithm,
            signing: None,
            verifying,
        }
    }

    /// Sign with `signing` but verify with a separate set (EdDSA issuers with a JWKS).
    pub fn with_verifying(mut self, verifying: Vec<VerifyingKey>) -> Self {
        self.verifying = verifying;
        self
    }

    /// The public keys as a JWKS (empty for HMAC keys, which are never published).
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: self
                .verifying
                .iter()
                .filter_map(|k| k.public_x.as_ref().map(|x| Jwk::ed25519(&k.kid, x)))
                .collect(),
        }
    }

    pub fn verifying_keys(&self) -> &[VerifyingKey] {
        &self.verifying
    }

    pub fn kids(&self) -> Vec<String> {
        self.verifying.iter().map(|k| k.kid.clone()).collect()
    }
}

/// How keys are reloaded after start-up (Secrets Manager); `None` for keys that never change.
pub type Reload = Box<dyn Fn() -> futures_util::future::BoxFuture<'static, anyhow::Result<Keys>> + Send + Sync>;

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
    /// How the session was made (RFC 8176): `["pwd"]`, or `["pwd", "otp"]` after a second
    /// factor. A token without it (issued before issue 17) is a password-only session.
    #[serde(default = "password_only")]
    pub amr: Vec<String>,
}

/// The `amr` value of a session made with a password.
pub const AMR_PASSWORD: &str = "pwd";
/// The `amr` value added by a second factor (a one-time password).
pub const AMR_OTP: &str = "otp";

fn password_only() -> Vec<String> {
    vec![AMR_PASSWORD.to_owned()]
}

/// The `amr` claim of a session, made with a second factor (`mfa`) or not.
pub fn amr(mfa: bool) -> Vec<String> {
    if mfa {
        vec![AMR_PASSWORD.to_owned(), AMR_OTP.to_owned()]
    } else {
        password_only()
    }
}

impl AccessClaims {
    /// Whether the session was made with a second factor.
    pub fn mfa(&self) -> bool {
        self.amr.iter().any(|a| a == AMR_OTP)
    }
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
    /// RFC 7515 §4.1.11: a recipient must refuse a `crit` header naming extensions it does not
    /// understand, and we understand none.
    #[error("token has critical header extensions")]
    CriticalHeader,
    #[error("unknown key id")]
    UnknownKey,
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// Settings shared by the issuer and the verifier (read with the rest of the configuration).
pub use settings::TokenSettings;

/// Signs and verifies access tokens.
///
/// Keys are cached per execution environment. When they come from Secrets Manager they are
/// reloaded every [`KEY_CACHE_TTL`], and, at most once per [`UNKNOWN_KID_RELOAD_INTERVAL`], when a
/// token names a `kid` we do not know (the key was just rotated): a forged `kid` cannot make us
/// hammer Secrets Manager.
pub struct Tokens {
    settings: TokenSettings,
    validation: Validation,
    keys: std::sync::RwLock<std::sync::Arc<Keys>>,
    reload: Option<Reload>,
    last_reload: std::sync::Mutex<std::time::Instant>,
    last_unknown_kid_reload: std::sync::Mutex<Option<std::time::Instant>>,
    reload_lock: tokio::sync::Mutex<()>,
}

/// How long loaded keys are trusted before they are read again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(300);
/// The least time between two reloads caused by unknown `kid`s.
pub const UNKNOWN_KID_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.snapshot();
        f.debug_struct("Tokens")
            .field("algorithm", &keys.algorithm)
            .field("signing_kid", &keys.signing.as_ref().map(|(kid, _)| kid))
            .field("verifying_kids", &keys.kids())
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
    /// Sign with the key set's current key; verify with current and previous. (Named for the
    /// default algorithm; an Ed25519 key set works the same way.)
    pub fn hs256(keys: KeySet, settings: TokenSettings) -> Self {
        match Keys::from_set(keys) {
            Ok(keys) => Self::new(keys, settings, None),
            // Only mixed algorithms fail, and the loaders never build such a set.
            Err(e) => {
                tracing::error!(error = %e, "unusable key set: every token will be refused");
                Self::new(Keys::verify_only(Algorithm::HS256, Vec::new()), settings, None)
            }
        }
    }

    pub fn new(keys: Keys, settings: TokenSettings, reload: Option<Reload>) -> Self {
        let mut validation = Validation::new(keys.algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_issuer(&[settings.issuer.as_str()]);
        validation.set_audience(&[settings.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        Self {
            settings,
            validation,
            keys: std::sync::RwLock::new(std::sync::Arc::new(keys)),
            reload,
            last_reload: std::sync::Mutex::new(std::time::Instant::now()),
            last_unknown_kid_reload: std::sync::Mutex::new(None),
            reload_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether any key can verify a token (a function trusting the authorizer's context holds
    /// none; a key reload never empties a set that had keys).
    pub fn can_verify(&self) -> bool {
        !self.snapshot().verifying.is_empty()
    }

    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// The keys in force now.
    pub fn snapshot(&self) -> std::sync::Arc<Keys> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn since_reload(&self) -> Duration {
        match self.last_reload.lock() {
            Ok(t) => t.elapsed(),
            Err(poisoned) => poisoned.into_inner().elapsed(),
        }
    }

    /// Reload the keys if they can change and `min_age` has passed since the last load. A failed
    /// reload keeps the keys we have (and is logged): a Secrets Manager hiccup does not log anyone out.
    pub async fn reload_if_older_than(&self, min_age: Duration) {
        if self.reload.is_none() {
            return;
        }
        let _guard = self.reload_lock.lock().await;
        if self.since_reload() < min_age {
            return;
        }
        self.reload_locked().await;
    }

    /// Reload for a token naming an unknown `kid`: at most once per
    /// [`UNKNOWN_KID_RELOAD_INTERVAL`] since the last reload *for an unknown kid*. A cold start or
    /// a TTL reload does not count: the key may have been rotated a moment after it.
    async fn reload_for_unknown_kid(&self) {
        if self.reload.is_none() {
            return;
        }
        let _guard = self.reload_lock.lock().await;
        let due = match self.last_unknown_kid_reload.lock() {
            Ok(mut last) => {
                let due = last.is_none_or(|t| t.elapsed() >= UNKNOWN_KID_RELOAD_INTERVAL);
                if due {
                    *last = Some(std::time::Instant::now());
                }
                due
            }
            Err(_) => false,
        };
        if due {
            self.reload_locked().await;
        }
    }

    /// Load the keys now; the caller holds `reload_lock`.
    async fn reload_locked(&self) {
        let Some(reload) = &self.reload else { return };
        let result = reload().await;
        if let Ok(mut t) = self.last_reload.lock() {
            *t = std::time::Instant::now();
        }
        match result {
            Ok(keys) if keys.algorithm == self.validation.algorithms.first().copied().unwrap_or(keys.algorithm) => {
                tracing::info!(kids = ?keys.kids(), "signing keys reloaded");
                if let Ok(mut k) = self.keys.write() {
                    *k = std::sync::Arc::new(keys);
                }
            }
            Ok(_) => tracing::error!("reloaded keys use another algorithm; keeping the old keys"),
            Err(e) => tracing::warn!(error = ?e, "reloading signing keys failed; keeping the old keys"),
        }
    }

    /// Refresh stale keys before signing (issuers call this; cheap when nothing is due).
    pub async fn refresh_if_stale(&self) {
        if self.reload.is_some() && self.since_reload() >= KEY_CACHE_TTL {
            self.reload_if_older_than(KEY_CACHE_TTL).await;
        }
    }

    /// Verify, reloading the keys first when they are stale, and once more (rate-limited) when the
    /// token names a key we do not know.
    pub async fn verify_fresh(&self, token: &str) -> Result<AccessClaims, TokenError> {
        self.refresh_if_stale().await;
        match self.verify(token) {
            Err(TokenError::UnknownKey) if self.reload.is_some() => {
                self.reload_for_unknown_kid().await;
                self.verify(token)
            }
            other => other,
        }
    }

    /// Issue an access token for `user` in session `session`, a password-only session.
    pub fn issue(&self, user: Uuid, session: Uuid, role: Role) -> anyhow::Result<IssuedToken> {
        self.issue_with_amr(user, session, role, false)
    }

    /// Issue an access token for `user` in session `session`, made with a second factor or not
    /// (`amr`).
    pub fn issue_with_amr(&self, user: Uuid, session: Uuid, role: Role, mfa: bool) -> anyhow::Result<IssuedToken> {
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
            amr: amr(mfa),
        };
        let keys = self.snapshot();
        let (kid, encoding) = keys
            .signing
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("these keys cannot sign"))?;
        let mut header = Header::new(keys.algorithm);
        header.typ = Some(TOKEN_TYPE.to_owned());
        header.kid = Some(kid.clone());
        let token = encode(&header, &claims, encoding)?;
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
        // The one algorithm configured at start-up; reloads cannot change it.
        if Some(&header.alg) != self.validation.algorithms.first() {
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
        if header.crit.is_some() {
            return Err(TokenError::CriticalHeader);
        }
        let keys = self.snapshot();
        let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
        let key = keys
            .verifying
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(TokenError::UnknownKey)?;
        let data = decode::<AccessClaims>(token, &key.key, &self.validation)
            .map_err(|e| TokenError::Invalid(format!("{:?}", e.kind())))?;
        Ok(data.claims)
    }
}

/// Take the token out of an `Authorization: Bearer <token>` value: the one grammar every path
/// uses (the functions, the authorizer, the local API's identity check, and `cargo lambda watch`),
/// and the one API Gateway's `ValidationExpression` in template.yaml spells as a regex:
/// `^[Bb][Ee][Aa][Rr][Ee][Rr] [-0-9A-Za-z._~+/]+=*$`. The scheme is case-insensitive (RFC 7235
/// section 2.1), one space follows it, and the token is an RFC 7235 `token68`.
pub fn bearer_token(header_value: &str) -> Option<&str> {
    // `split_at_checked` is None for a value shorter than "Bearer " or split inside a character.
    let (scheme, token) = header_value.split_at_checked(7)?;
    let scheme_ok = scheme[..6].eq_ignore_ascii_case("bearer") && scheme.ends_with(' ');
    let body = token.trim_end_matches('=');
    let token68 = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'));
    (scheme_ok && token68).then_some(token)
}
