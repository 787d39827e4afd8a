//! Request body of POST /auth/login: arbitrary bytes through
//! `web::http::parse_json_bytes::<login::LoginBody>`, the parser the function runs.
//! It must never panic; an accepted body must be a UTF-8 JSON object of known fields without
//! NUL; a refusal must be a 400/413/422 problem that names only the body, an accepted field or a
//! sent key (see `check_body`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(body) = fuzz_support::check_body::<login::LoginBody>(data) else {
        return;
    };
    // What login does next: the per-account rate-limit key is a 64-hex-digit SHA-256.
    let email = fuzz_support::str_field(&body, "email").expect("accepted login body has an email");
    let key = store::ratelimit::email_key(email.trim());
    assert!(key.len() == 64 && key.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        key,
        store::ratelimit::email_key(&format!(" {email}\t")),
        "key depends on surrounding spaces"
    );
});
