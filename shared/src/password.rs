//! Password policy and argon2id hashing.
//!
//! Hashing is CPU-bound (tens of milliseconds), so it runs on a blocking thread and never stalls
//! the async runtime. A login for an unknown email verifies against a dummy hash made with the
//! same parameters, so the unknown-email and wrong-password branches cost the same time.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use anyhow::Context;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use unicode_normalization::UnicodeNormalization;

use crate::error::FieldError;

/// OWASP's minimum argon2id parameters (m=19456 KiB, t=2, p=1); configuration may only raise them.
pub const OWASP_MIN_MEMORY_KIB: u32 = 19_456;
pub const OWASP_MIN_ITERATIONS: u32 = 2;
/// Longest password accepted, in characters after NFKC normalisation.
pub const MAX_PASSWORD_CHARS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Settings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

/// The 20,000 most common passwords (Django's list, from Royce Williams' analysis of breaches),
/// lower-cased, shipped inside the binary.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../data/common-passwords.txt")
        .lines()
        .map(str::trim)
        .collect()
});

/// NFKC-normalise a password, as it is hashed and compared.
pub fn normalize(password: &str) -> SecretString {
    SecretString::from(password.nfkc().collect::<String>())
}

/// Check a new password against the policy: NFKC, `min_chars..=256` characters, not a common
/// password, not the email. No composition rules (NIST SP 800-63B). Returns the normalised
/// password to hash.
pub fn check_policy(
    password: &SecretString,
    email: &str,
    min_chars: usize,
    field: &str,
) -> Result<SecretString, FieldError> {
    let normalized = normalize(password.expose_secret());
    let pw = normalized.expose_secret();
    let chars = pw.chars().count();
    if chars < min_chars {
        return Err(FieldError::new(
            field,
            "password_too_short",
            format!("The password must have at least {min_chars} characters."),
        ));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(FieldError::new(
            field,
            "password_too_long",
            format!("The password must have at most {MAX_PASSWORD_CHARS} characters."),
        ));
    }
    let lowered = pw.to_lowercase();
    if COMMON_PASSWORDS.contains(lowered.as_str()) {
        return Err(FieldError::new(
            field,
            "password_too_common",
            "This password is too common.",
        ));
    }
    if lowered.trim() == email.trim().to_lowercase() {
        return Err(FieldError::new(
            field,
            "password_equals_email",
            "The password must not be the email.",
        ));
    }
    Ok(normalized)
}

/// Hashes and verifies passwords with the configured argon2id parameters.
#[derive(Clone)]
pub struct Passwords {
    inner: Arc<Inner>,
}

struct Inner {
    params: Params,
    /// A hash of a random password: verified against when the email is unknown.
    dummy_hash: String,
}

/// What a verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub matches: bool,
    /// The stored hash used weaker parameters than configured: rehash it now that we know the password.
    pub needs_rehash: bool,
}

impl Passwords {
    pub fn new(settings: Argon2Settings) -> anyhow::Result<Self> {
        let params = Params::new(settings.memory_kib, settings.iterations, settings.parallelism, None)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let mut random = [0u8; 32];
        getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let dummy = SecretString::from(base64_url(&random));
        let dummy_hash = hash_blocking(&params, &dummy)?;
        Ok(Self {
            inner: Arc::new(Inner { params, dummy_hash }),
        })
    }

    /// Hash a (normalised) password on a blocking thread.
    #[tracing::instrument(skip_all)]
    pub async fn hash(&self, password: SecretString) -> anyhow::Result<String> {
        let inner = self.inner.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| hash_blocking(&inner.params, &password)))
            .await
            .context("password hashing task failed")?
    }

    /// Verify `password` against `stored`, or against the dummy hash when there is no stored hash,
    /// so that both cases do the same work.
    #[tracing::instrument(skip_all)]
    pub async fn verify(&self, password: SecretString, stored: Option<String>) -> anyhow::Result<Verified> {
        let inner = self.inner.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            span.in_scope(|| {
                let normalized = normalize(password.expose_secret());
                let known = stored.is_some();
                let hash_text = stored.as_deref().unwrap_or(&inner.dummy_hash);
                let parsed = match PasswordHash::new(hash_text) {
                    Ok(p) => p,
                    Err(_) => {
                        // A corrupt stored hash must not be distinguishable by timing either.
                        let _ = verify_against(&inner.dummy_hash, &normalized);
                        tracing::error!("stored password hash is not a valid PHC string");
                        return Ok(Verified {
                            matches: false,
                            needs_rehash: false,
                        });
                    }
                };
                let matches = Argon2::default()
                    .verify_password(normalized.expose_secret().as_bytes(), &parsed)
                    .is_ok()
                    && known;
                let needs_rehash = matches && weaker_than(&parsed, &inner.params);
                Ok(Verified { matches, needs_rehash })
            })
        })
        .await
        .context("password verification task failed")?
    }
}

fn verify_against(hash: &str, password: &SecretString) -> bool {
    PasswordHash::new(hash)
        .map(|p| {
            Argon2::default()
                .verify_password(password.expose_secret().as_bytes(), &p)
                .is_ok()
        })
        .unwrap_or(false)
}

fn hash_blocking(params: &Params, password: &SecretString) -> anyhow::Result<String> {
    let mut salt_bytes = [0u8; 16];
    getrandom::fill(&mut salt_bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let hash = hasher
        .hash_password(password.expose_secret().as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))?;
    Ok(hash.to_string())
}

/// True when the stored hash is not argon2id or used lower cost parameters than configured.
fn weaker_than(stored: &PasswordHash<'_>, wanted: &Params) -> bool {
    if stored.algorithm.as_str() != "argon2id" {
        return true;
    }
    match Params::try_from(stored) {
        Ok(p) => p.m_cost() < wanted.m_cost() || p.t_cost() < wanted.t_cost() || p.p_cost() < wanted.p_cost(),
        Err(_) => true,
    }
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn code(pw: &str, email: &str) -> Option<&'static str> {
        check_policy(&secret(pw), email, 8, "password").err().map(|e| e.code)
    }

    #[test]
    fn ships_at_least_ten_thousand_common_passwords() {
        assert!(COMMON_PASSWORDS.len() >= 10_000, "{}", COMMON_PASSWORDS.len());
        assert!(COMMON_PASSWORDS.contains("password"));
    }

    #[test]
    fn policy() {
        assert_eq!(code("short", "a@example.com"), Some("password_too_short"));
        assert_eq!(code(&"x".repeat(257), "a@example.com"), Some("password_too_long"));
        assert_eq!(code(&"ab".repeat(128), "a@example.com"), None, "256 characters is fine");
        assert_eq!(code("password", "a@example.com"), Some("password_too_common"));
        assert_eq!(
            code("PassWord123", "a@example.com"),
            Some("password_too_common"),
            "case-insensitive"
        );
        assert_eq!(
            code("Long.Mail@Example.com", " long.mail@example.com "),
            Some("password_equals_email")
        );
        assert_eq!(code("correct horse battery staple", "a@example.com"), None);
        // Length counts after normalisation: four characters that NFKC turns into eight
        // ("ﬃ" → "ffi") are long enough; "ﬀﬀﬀﬀ" → "ffffffff" is long enough but common.
        assert_eq!(code("ﬃﬃqz", "a@example.com"), None);
        assert_eq!(code("ﬀﬀﬀﬀ", "a@example.com"), Some("password_too_common"));
        assert_eq!(code("ﬃq", "a@example.com"), Some("password_too_short"));
        assert_eq!(
            code("ｐａｓｓｗｏｒｄ", "a@example.com"),
            Some("password_too_common"),
            "full-width is NFKC'd"
        );
        // Characters, not bytes: 8 multi-byte characters are enough.
        assert_eq!(code("éèêëēėęě", "a@example.com"), None);
    }

    #[test]
    fn min_length_is_configurable_upward() {
        let r = check_policy(&secret("abcdefghij"), "a@b.co", 12, "password");
        assert_eq!(r.err().map(|e| e.code), Some("password_too_short"));
    }

    fn owasp() -> Argon2Settings {
        Argon2Settings {
            memory_kib: OWASP_MIN_MEMORY_KIB,
            iterations: 2,
            parallelism: 1,
        }
    }

    #[tokio::test]
    async fn hash_and_verify() -> anyhow::Result<()> {
        let p = Passwords::new(owasp())?;
        let hash = p.hash(normalize("correct horse battery staple")).await?;
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        let ok = p
            .verify(secret("correct horse battery staple"), Some(hash.clone()))
            .await?;
        assert_eq!(
            ok,
            Verified {
                matches: true,
                needs_rehash: false
            }
        );
        let bad = p.verify(secret("wrong horse battery staple"), Some(hash)).await?;
        assert!(!bad.matches);
        // Unknown user: verified against the dummy hash, never a match, even for its own password.
        let none = p.verify(secret("anything at all"), None).await?;
        assert!(!none.matches);
        Ok(())
    }

    #[tokio::test]
    async fn nfkc_equivalent_passwords_match() -> anyhow::Result<()> {
        let p = Passwords::new(owasp())?;
        let hash = p.hash(normalize("ｃｏｒｒｅｃｔ-horse")).await?;
        assert!(p.verify(secret("correct-horse"), Some(hash)).await?.matches);
        Ok(())
    }

    #[tokio::test]
    async fn raised_parameters_ask_for_a_rehash() -> anyhow::Result<()> {
        let old = Passwords::new(owasp())?;
        let hash = old.hash(normalize("correct horse battery staple")).await?;
        let stronger = Passwords::new(Argon2Settings {
            iterations: 3,
            ..owasp()
        })?;
        let v = stronger
            .verify(secret("correct horse battery staple"), Some(hash))
            .await?;
        assert_eq!(
            v,
            Verified {
                matches: true,
                needs_rehash: true
            }
        );
        Ok(())
    }

    #[tokio::test]
    async fn corrupt_hash_never_matches() -> anyhow::Result<()> {
        let p = Passwords::new(owasp())?;
        let v = p.verify(secret("x"), Some("not-a-hash".into())).await?;
        assert!(!v.matches);
        Ok(())
    }
}
