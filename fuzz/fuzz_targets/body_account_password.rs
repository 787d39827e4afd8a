//! Request body of POST /auth/password: arbitrary bytes through
//! `web::http::parse_json_bytes::<account::PasswordBody>`, the parser the function runs.
//! It must never panic; an accepted body must be a UTF-8 JSON object of known fields without
//! NUL; a refusal must be a 400/413/422 problem that names only the body, an accepted field or a
//! sent key (see `check_body`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(body) = fuzz_support::check_body::<account::PasswordBody>(data) else {
        return;
    };
    let password = fuzz_support::str_field(&body, "new_password").expect("accepted body has new_password");
    let secret = secrecy::SecretString::from(password.to_owned());
    if let Ok(normalized) = store::password::check_policy(&secret, "user@example.com", 8, "new_password") {
        let n = secrecy::ExposeSecret::expose_secret(&normalized).chars().count();
        assert!(
            (8..=store::password::MAX_PASSWORD_CHARS).contains(&n),
            "policy let {n} characters through"
        );
    }
});
