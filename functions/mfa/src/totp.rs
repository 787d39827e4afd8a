//! RFC 6238 time-based one-time passwords: SHA-1, 6 digits, 30-second steps, one step of drift
//! either way. The codes themselves come from `totp-rs` (RFC 4226 dynamic truncation over
//! HMAC-SHA-1); this module picks the steps, compares in constant time and says which step
//! matched, so the caller can refuse a step accepted before (replay).

use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};
use zeroize::Zeroizing;

/// Digits of a code.
pub const DIGITS: usize = 6;
/// Seconds per time step.
pub const STEP_SECS: u64 = 30;
/// Steps of clock drift accepted either way.
pub const DRIFT_STEPS: u64 = 1;
/// Secret length: 160 bits, RFC 4226's recommendation for HMAC-SHA-1.
pub const SECRET_BYTES: usize = 20;

/// A fresh secret.
pub fn new_secret() -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut secret = Zeroizing::new(vec![0u8; SECRET_BYTES]);
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(secret)
}

/// The code of `secret` for time step `step`, with `digits` digits.
fn code_with(secret: &[u8], step: u64, digits: usize) -> String {
    // `new_unchecked`: the secret is ours (160 bits); the checked constructor refuses the RFC's
    // own 8-digit test vectors' secret length, not ours. The `TOTP` keeps its own copy of the
    // secret (this `to_vec`, moved in, never reallocated): totp-rs's `zeroize` feature (root
    // Cargo.toml) makes `TOTP` `ZeroizeOnDrop`, so that copy is wiped when `totp` goes out of
    // scope at the end of this function (tested below).
    let totp = TOTP::new_unchecked(Algorithm::SHA1, digits, 0, STEP_SECS, secret.to_vec());
    totp.generate(step.saturating_mul(STEP_SECS))
}

/// The code of `secret` for time step `step`.
pub fn code_at_step(secret: &[u8], step: u64) -> String {
    code_with(secret, step, DIGITS)
}

/// The time step of `unix_secs`.
pub fn step_of(unix_secs: u64) -> u64 {
    unix_secs / STEP_SECS
}

/// Whether `code` has the shape of a code: exactly six ASCII digits.
pub fn well_formed(code: &str) -> bool {
    code.len() == DIGITS && code.bytes().all(|b| b.is_ascii_digit())
}

/// The step among `now`'s, the one before and the one after whose code is `code`, if any. Every
/// candidate is computed and compared in constant time, whatever matches.
pub fn matching_step(secret: &[u8], code: &str, unix_secs: u64) -> Option<u64> {
    if !well_formed(code) {
        return None;
    }
    let now = step_of(unix_secs);
    let mut found = None;
    for step in now.saturating_sub(DRIFT_STEPS)..=now.saturating_add(DRIFT_STEPS) {
        let candidate = code_at_step(secret, step);
        if bool::from(candidate.as_bytes().ct_eq(code.as_bytes())) && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// RFC 4648 base32 without padding: the form authenticator apps take a secret in.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// The `otpauth://` URI authenticator apps read (Google Authenticator's key URI format): label
/// `issuer:account`, and the issuer, algorithm, digits and period as parameters.
pub fn otpauth_uri(issuer: &str, account: &str, secret_base32: &str) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    let issuer_enc = utf8_percent_encode(issuer, NON_ALPHANUMERIC).to_string();
    let account_enc = utf8_percent_encode(account, NON_ALPHANUMERIC).to_string();
    format!(
        "otpauth://totp/{issuer_enc}:{account_enc}?secret={secret_base32}&issuer={issuer_enc}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B, the SHA-1 rows (8 digits, the ASCII secret "12345678901234567890").
    #[test]
    fn rfc_6238_appendix_b_sha1_vectors() {
        let secret = b"12345678901234567890";
        for (time, expected) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(code_with(secret, step_of(time), 8), expected, "T = {time}");
            // Our 6 digits are the last 6 of the same truncation.
            assert_eq!(code_at_step(secret, step_of(time)), expected[2..], "T = {time}");
        }
    }

    #[test]
    fn one_step_of_drift_either_way_and_no_more() {
        let secret = b"12345678901234567890";
        let now = 1_234_567_890;
        let step = step_of(now);
        for (offset, accepted) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
            let s = step.checked_add_signed(offset).unwrap_or(0);
            let code = code_at_step(secret, s);
            let found = matching_step(secret, &code, now);
            if accepted {
                assert_eq!(found, Some(s), "offset {offset}");
            } else {
                assert_ne!(found, Some(s), "offset {offset}");
            }
        }
        assert_eq!(matching_step(secret, "12345", now), None);
        assert_eq!(matching_step(secret, "12345a", now), None);
        assert_eq!(matching_step(secret, "1234567", now), None);
    }

    /// The copy of the secret inside totp-rs's `TOTP` is wiped on drop: this does not compile
    /// without totp-rs's `zeroize` feature.
    #[test]
    fn the_totp_value_wipes_its_copy_of_the_secret() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wiped_on_drop::<TOTP>();
    }

    #[test]
    fn base32_and_uri() {
        assert_eq!(base32(b"12345678901234567890"), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        let uri = otpauth_uri("todo-api", "a+b@example.com", "GEZDGNBV");
        assert_eq!(
            uri,
            "otpauth://totp/todo%2Dapi:a%2Bb%40example%2Ecom?secret=GEZDGNBV&issuer=todo%2Dapi&algorithm=SHA1&digits=6&period=30"
        );
    }
}
