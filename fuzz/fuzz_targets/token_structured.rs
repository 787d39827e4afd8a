//! Tokens whose header and payload JSON the fuzzer writes, base64url-encoded and signed here, so
//! mutations reach the header checks and claim validation instead of dying in base64.
//!
//! Input: one mode byte, then `header JSON 0xFF payload JSON` (0xFF never occurs in UTF-8).
//! Mode (low 2 bits): 0 sign with the current key, 1 with the previous key, 2 with a key the
//! verifier does not know, 3 keep the signature but flip its last byte. Tokens of modes 2 and 3
//! must never verify.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fuzz_support::{CURRENT_SECRET, FOREIGN_SECRET, PREVIOUS_SECRET, TOKENS, check_verify, hs256, sign};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (header, payload) = match rest.iter().position(|&b| b == 0xFF) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let token = match mode & 3 {
        0 => sign(CURRENT_SECRET, header, payload),
        1 => sign(PREVIOUS_SECRET, header, payload),
        2 => sign(FOREIGN_SECRET, header, payload),
        _ => {
            let message = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
            let mut mac = hs256(CURRENT_SECRET, message.as_bytes());
            if let Some(last) = mac.last_mut() {
                *last ^= 1;
            }
            format!("{message}.{}", URL_SAFE_NO_PAD.encode(mac))
        }
    };
    let result = TOKENS.verify(&token);
    check_verify(&token, &result);
    if mode & 3 >= 2 {
        assert!(result.is_err(), "token with a wrong signature verified: {token}");
    }
});
