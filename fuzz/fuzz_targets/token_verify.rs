//! Arbitrary bytes as an access token: `Tokens::verify` must never panic, and whatever it accepts
//! must be a well-formed, correctly signed, unexpired token of ours (see `check_verify`).
#![no_main]

use fuzz_support::{TOKENS, check_verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    let result = TOKENS.verify(&token);
    check_verify(&token, &result);
});
