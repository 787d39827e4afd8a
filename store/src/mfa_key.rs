//! The key that encrypts TOTP secrets at rest: AES-256-GCM (aws-lc-rs), a random 96-bit nonce
//! per encryption, the user id as associated data (a ciphertext copied to another user's row does
//! not decrypt), and a key id stored next to each ciphertext so the key can rotate: the current
//! key encrypts, the previous one still decrypts.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use zeroize::Zeroizing;

/// The least key material accepted: 32 bytes (256 bits), after base64 decoding.
pub const MIN_KEY_BYTES: usize = 32;

struct MfaKey {
    id: String,
    key: LessSafeKey,
}

/// The keys in force: `current` encrypts; both decrypt, chosen by the stored key id.
pub struct MfaKeys {
    current: MfaKey,
    previous: Option<MfaKey>,
}

impl std::fmt::Debug for MfaKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaKeys")
            .field("current", &self.current.id)
            .field("previous", &self.previous.as_ref().map(|k| &k.id))
            .finish()
    }
}

/// Decode key material: base64 (standard alphabet, padded or not) of at least 32 bytes. Exactly 32
/// bytes are the key; longer material (Secrets Manager's generated 64 alphanumerics read as
/// base64, 48 bytes) is reduced to 32 with SHA-256.
fn key_bytes(value: &SecretString) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let text = value.expose_secret().trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .map(Zeroizing::new)
        .map_err(|_| anyhow::anyhow!("the MFA encryption key is not base64"))?;
    anyhow::ensure!(
        decoded.len() >= MIN_KEY_BYTES,
        "the MFA encryption key is {} bytes; at least {MIN_KEY_BYTES} random bytes (base64) are required",
        decoded.len()
    );
    if decoded.len() == MIN_KEY_BYTES {
        Ok(decoded)
    } else {
        Ok(Zeroizing::new(Sha256::digest(decoded.as_slice()).to_vec()))
    }
}

fn key(id: String, value: &SecretString) -> anyhow::Result<MfaKey> {
    let bytes = key_bytes(value)?;
    let unbound = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| anyhow::anyhow!("unusable MFA encryption key"))?;
    Ok(MfaKey {
        id,
        key: LessSafeKey::new(unbound),
    })
}

/// A key id derived from the key itself (keys from the environment): a truncated SHA-256, which
/// says nothing useful about a 256-bit key.
pub fn fingerprint_id(value: &SecretString) -> String {
    let digest = Sha256::digest(value.expose_secret().trim().as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("env-{hex}")
}

impl MfaKeys {
    /// Keys with explicit ids (Secrets Manager version ids).
    pub fn new(current: (String, &SecretString), previous: Option<(String, &SecretString)>) -> anyhow::Result<Self> {
        Ok(MfaKeys {
            current: key(current.0, current.1)?,
            previous: previous.map(|(id, v)| key(id, v)).transpose()?,
        })
    }

    /// Keys from the environment, their ids their fingerprints.
    pub fn from_env(current: &SecretString, previous: Option<&SecretString>) -> anyhow::Result<Self> {
        Self::new(
            (fingerprint_id(current), current),
            previous.map(|p| (fingerprint_id(p), p)),
        )
    }

    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// Encrypt `plaintext` for `user_id`: the current key's id, and nonce || ciphertext || tag.
    pub fn encrypt(&self, user_id: Uuid, plaintext: &[u8]) -> anyhow::Result<(String, Vec<u8>)> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let mut sealed = plaintext.to_vec();
        self.current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(user_id.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| anyhow::anyhow!("encryption failed"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        sealed.iter_mut().for_each(|b| *b = 0);
        Ok((self.current.id.clone(), out))
    }

    /// Decrypt what [`encrypt`](Self::encrypt) made for `user_id` under the key `key_id`.
    pub fn decrypt(&self, key_id: &str, user_id: Uuid, blob: &[u8]) -> anyhow::Result<Zeroizing<Vec<u8>>> {
        let key = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| k.id == key_id)
            .ok_or_else(|| anyhow::anyhow!("a TOTP secret is encrypted under an unknown key id {key_id:?}"))?;
        anyhow::ensure!(blob.len() > NONCE_LEN, "a TOTP secret ciphertext is too short");
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| anyhow::anyhow!("bad nonce"))?;
        let mut buf = Zeroizing::new(sealed.to_vec());
        let plain_len = key
            .key
            .open_in_place(nonce, Aad::from(user_id.as_bytes()), &mut buf)
            .map_err(|_| anyhow::anyhow!("a TOTP secret does not decrypt (wrong key or user)"))?
            .len();
        buf.truncate(plain_len);
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> SecretString {
        SecretString::from(base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    #[test]
    fn round_trip_bound_to_the_user_and_the_key() -> anyhow::Result<()> {
        let keys = MfaKeys::from_env(&b64(&[7u8; 32]), None)?;
        let (user, other) = (Uuid::new_v4(), Uuid::new_v4());
        let (id, blob) = keys.encrypt(user, b"12345678901234567890")?;
        assert_eq!(id, keys.current_id());
        assert!(!blob.windows(20).any(|w| w == b"12345678901234567890"));
        assert_eq!(keys.decrypt(&id, user, &blob)?.as_slice(), b"12345678901234567890");
        assert!(keys.decrypt(&id, other, &blob).is_err(), "another user's row");
        assert!(keys.decrypt("env-nope", user, &blob).is_err());
        // Rotation: the old key still decrypts what it encrypted.
        let rotated = MfaKeys::from_env(&b64(&[8u8; 32]), Some(&b64(&[7u8; 32])))?;
        assert_eq!(rotated.decrypt(&id, user, &blob)?.as_slice(), b"12345678901234567890");
        assert_ne!(rotated.current_id(), id);
        Ok(())
    }

    #[test]
    fn short_or_malformed_keys_are_refused() {
        assert!(MfaKeys::from_env(&b64(&[1u8; 31]), None).is_err());
        assert!(MfaKeys::from_env(&SecretString::from("not base64!".to_owned()), None).is_err());
        assert!(MfaKeys::from_env(&b64(&[1u8; 48]), None).is_ok());
    }
}
