//! Request body of POST /auth/signup: arbitrary bytes through
//! `web::http::parse_json_bytes::<signup::SignupBody>`, the parser the function runs.
//! It must never panic; an accepted body must be a UTF-8 JSON object of known fields without
//! NUL; a refusal must be a 400/413/422 problem that names only the body, an accepted field or a
//! sent key (see `check_body`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(body) = fuzz_support::check_body::<signup::SignupBody>(data) else {
        return;
    };
    // What signup does next with the accepted fields: email and password policy checks.
    let email = fuzz_support::str_field(&body, "email").expect("accepted signup body has an email");
    if let Ok(normalized) = store::users::normalize_email(email) {
        assert_eq!(normalized, email.trim());
        assert!(normalized.len() <= store::users::MAX_EMAIL_LEN && normalized.contains('@'));
        assert!(!normalized.chars().any(char::is_control));
    }
    let password = fuzz_support::str_field(&body, "password").expect("accepted signup body has a password");
    let secret = secrecy::SecretString::from(password.to_owned());
    if let Ok(normalized) = store::password::check_policy(&secret, email, 8, "password") {
        let n = secrecy::ExposeSecret::expose_secret(&normalized).chars().count();
        assert!(
            (8..=store::password::MAX_PASSWORD_CHARS).contains(&n),
            "policy let {n} characters through"
        );
    }
});
