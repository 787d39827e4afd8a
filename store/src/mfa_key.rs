//! The key that encrypts TOTP secrets at rest: AES-256-GCM (aws-lc-rs), a random 96-bit nonce
//! per encryption, the user id as associated data (a ciphertext copied to another user's row does
//! not decrypt), and a key id stored next to each ciphertext so the key can rotate: the current
//! key encrypts, the previous one still decrypts.
//!
//! Rotation retires a key for good only once nothing is under it any more: a secret decrypted with
//! a key that is not the current one is sealed again under the current key ([`Rekey`]) by the use
//! that decrypted it, in that use's transaction, and [`reencrypt_all`] (`todo-admin
//! reencrypt-mfa-secrets`) does it for every other row, so the previous key can be dropped before
//! the next rotation makes the key after it "previous" (README, "Rotating the MFA encryption key").

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use settings::DbSettings;
use sha2::{Digest, Sha256};
use tokio_postgres::types::Type;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::db;

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
    /// Whether `key_id` is one of the keys this process holds. Not during a rotation's first
    /// minutes: an instance started after it may already have sealed a secret under the new key
    /// while warm instances still hold only the keys they started with.
    /// The ids of the keys held: the current one, then the previous one.
    pub fn ids(&self) -> Vec<String> {
        std::iter::once(self.current.id.clone())
            .chain(self.previous.as_ref().map(|k| k.id.clone()))
            .collect()
    }

    pub fn knows(&self, key_id: &str) -> bool {
        self.current.id == key_id || self.previous.as_ref().is_some_and(|k| k.id == key_id)
    }

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

/// A user's TOTP secret, read under a key that is not the current one, sealed again under the
/// current key: what [`rekey`] writes, only over the very row it was read from.
pub struct Rekey {
    pub user_id: Uuid,
    pub old_key_id: String,
    pub old_ciphertext: Vec<u8>,
    pub key_id: String,
    pub ciphertext: Vec<u8>,
}

/// Key ids and lengths only: a sealed secret is not readable without the key, but it has no
/// business in a log line either.
impl std::fmt::Debug for Rekey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rekey")
            .field("user_id", &self.user_id)
            .field("old_key_id", &self.old_key_id)
            .field("old_ciphertext", &format_args!("<{} bytes>", self.old_ciphertext.len()))
            .field("key_id", &self.key_id)
            .field("ciphertext", &format_args!("<{} bytes>", self.ciphertext.len()))
            .finish()
    }
}

impl MfaKeys {
    /// `plaintext`, decrypted for `user_id` from `ciphertext` under `key_id`, sealed again under
    /// the current key when `key_id` is not the current key's; `None` when it already is.
    pub fn rekey(
        &self,
        user_id: Uuid,
        key_id: &str,
        ciphertext: &[u8],
        plaintext: &[u8],
    ) -> anyhow::Result<Option<Rekey>> {
        if key_id == self.current.id {
            return Ok(None);
        }
        let (new_id, sealed) = self.encrypt(user_id, plaintext)?;
        Ok(Some(Rekey {
            user_id,
            old_key_id: key_id.to_owned(),
            old_ciphertext: ciphertext.to_vec(),
            key_id: new_id,
            ciphertext: sealed,
        }))
    }
}

/// Replace a TOTP secret's ciphertext with the same secret under the current key: only while the
/// row still holds what was decrypted (same key id and ciphertext), so a secret replaced meanwhile
/// (a new enrolment) is never overwritten with the old one.
const REKEY: &str = "
UPDATE mfa_totp SET secret_ciphertext = $4, key_id = $5
 WHERE user_id = $1 AND key_id = $2 AND secret_ciphertext = $3
RETURNING user_id";

/// [`REKEY`]'s parameters for `rekey`, with their types.
fn rekey_params(rekey: &Rekey) -> [(&(dyn tokio_postgres::types::ToSql + Sync), Type); 5] {
    [
        (&rekey.user_id, Type::UUID),
        (&rekey.old_key_id, Type::TEXT),
        (&rekey.old_ciphertext, Type::BYTEA),
        (&rekey.ciphertext, Type::BYTEA),
        (&rekey.key_id, Type::TEXT),
    ]
}

/// Write `rekey` on `client` (the transaction of the use that decrypted the secret). Whether the
/// row was rewritten (not when it changed meanwhile).
pub async fn rekey<C: db::Runner>(
    client: &C,
    settings: &DbSettings,
    rekey: &Rekey,
) -> Result<bool, tokio_postgres::Error> {
    let rows = db::run(client, settings, REKEY, &rekey_params(rekey)).await?;
    Ok(!rows.is_empty())
}

/// The rows of one batch of [`reencrypt_all`]: those not under the current key (`$1`), after the
/// last user id of the batch before (`$2`), locked until the batch commits.
const NOT_CURRENT: &str = "
SELECT user_id, key_id, secret_ciphertext FROM mfa_totp
 WHERE key_id <> $1 AND user_id > $2
 ORDER BY user_id LIMIT $3
   FOR UPDATE";

/// Rows under a key id that neither key has, counted per id: [`reencrypt_all`] looks before it
/// writes anything.
const UNKNOWN_KEY_IDS: &str = "
SELECT key_id, count(*) AS n FROM mfa_totp
 WHERE key_id <> ALL($1)
 GROUP BY key_id ORDER BY key_id";

/// What [`reencrypt_all`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReencryptReport {
    /// Rows now under the current key.
    pub reencrypted: u64,
    /// Rows that stay as they were: under a key id neither key has, or not decrypting. Their
    /// users cannot use their second factor; the previous key must not be dropped while any of
    /// them is under it.
    pub unreadable: u64,
}

/// Seal every TOTP secret that is not under the current key again under it, `batch` rows per
/// transaction (short row locks: a login's verify of one of them waits for one batch at most).
/// The rows are walked in user id order, once: one that does not decrypt is counted and left.
///
/// On one plain connection (`todo-admin`'s), with every statement sent unnamed: a command run
/// once after a rotation needs neither the pool nor the functions' statement cache, and unnamed
/// statements work through any pooler.
pub async fn reencrypt_all(
    client: &mut tokio_postgres::Client,
    keys: &MfaKeys,
    batch: i64,
) -> anyhow::Result<ReencryptReport> {
    let mut report = ReencryptReport::default();
    let mut after = Uuid::nil();
    let current = keys.current_id().to_owned();
    // Review finding L2: with a key id the deployed functions do not use (MFA_ENCRYPTION_KEY_ID
    // left out or mistyped), the command would seal secrets under an id no function knows. Rows
    // under the real ids then show up here as unknown: refuse before writing anything.
    let known: Vec<String> = keys.ids();
    let unknown = client
        .query_typed(UNKNOWN_KEY_IDS, &[(&known, Type::TEXT_ARRAY)])
        .await?;
    if !unknown.is_empty() {
        let mut found = Vec::new();
        for row in &unknown {
            found.push(format!(
                "{:?}: {} row(s)",
                row.try_get::<_, String>("key_id")?,
                row.try_get::<_, i64>("n")?
            ));
        }
        anyhow::bail!(
            "TOTP secrets are under key ids that neither given key has ({}); nothing was re-encrypted. \
             Set MFA_ENCRYPTION_KEY_ID and MFA_ENCRYPTION_KEY_PREVIOUS_ID to the ids the functions use \
             (the secret's version ids), or keep those rows' key",
            found.join(", ")
        );
    }
    loop {
        let tx = client.transaction().await?;
        let rows = tx
            .query_typed(
                NOT_CURRENT,
                &[(&current, Type::TEXT), (&after, Type::UUID), (&batch, Type::INT8)],
            )
            .await?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.try_get("user_id")?;
        for row in &rows {
            let user_id: Uuid = row.try_get("user_id")?;
            let key_id: String = row.try_get("key_id")?;
            let ciphertext: Vec<u8> = row.try_get("secret_ciphertext")?;
            let sealed = keys
                .decrypt(&key_id, user_id, &ciphertext)
                .and_then(|plain| keys.rekey(user_id, &key_id, &ciphertext, &plain));
            match sealed {
                Ok(Some(change)) => {
                    // The row is locked by this batch (FOR UPDATE), so it still holds what was read.
                    if !tx.query_typed(REKEY, &rekey_params(&change)).await?.is_empty() {
                        report.reencrypted += 1;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    // The user id and key id only: neither is secret.
                    tracing::warn!(%user_id, key_id, error = %e, "a TOTP secret could not be re-encrypted");
                    report.unreadable += 1;
                }
            }
        }
        tx.commit().await?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> SecretString {
        SecretString::from(base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    #[test]
    fn a_rekey_prints_no_ciphertext() {
        let rekey = Rekey {
            user_id: Uuid::nil(),
            old_key_id: "env-old".into(),
            old_ciphertext: vec![0xAB; 40],
            key_id: "env-new".into(),
            ciphertext: vec![0xCD; 40],
        };
        let shown = format!("{rekey:?}");
        assert!(shown.contains("env-old") && shown.contains("env-new"), "{shown}");
        assert!(shown.contains("<40 bytes>"), "{shown}");
        assert!(
            !shown.contains("171") && !shown.contains("205"),
            "ciphertext bytes in {shown}"
        );
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
        // Read under the previous key: sealed again under the current one, for the same user.
        let plain = rotated.decrypt(&id, user, &blob)?;
        let change = rotated
            .rekey(user, &id, &blob, &plain)?
            .ok_or_else(|| anyhow::anyhow!("no rekey"))?;
        assert_eq!(change.key_id, rotated.current_id());
        assert_eq!(
            (change.old_key_id.as_str(), change.old_ciphertext.as_slice()),
            (id.as_str(), blob.as_slice())
        );
        assert_eq!(
            rotated.decrypt(&change.key_id, user, &change.ciphertext)?.as_slice(),
            b"12345678901234567890"
        );
        // Under the current key already: nothing to do.
        assert!(
            rotated
                .rekey(user, &change.key_id, &change.ciphertext, &plain)?
                .is_none()
        );
        Ok(())
    }

    #[test]
    fn short_or_malformed_keys_are_refused() {
        assert!(MfaKeys::from_env(&b64(&[1u8; 31]), None).is_err());
        assert!(MfaKeys::from_env(&SecretString::from("not base64!".to_owned()), None).is_err());
        assert!(MfaKeys::from_env(&b64(&[1u8; 48]), None).is_ok());
    }
}
