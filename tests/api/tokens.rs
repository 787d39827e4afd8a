//! Access-token verification against the contract: every way a token can be wrong is refused, and
//! a token this service issued verifies with every claim right.
//!
//! Bad tokens are made with `jsonwebtoken` where it will make them, and by hand (base64url JSON
//! segments, HMAC from `jsonwebtoken::crypto::sign`) where it will not.

use std::time::Duration;

use access::roles::Role;
use access::tokens::{
    KeyError, KeySet, LEEWAY_SECS, MAX_TOKEN_BYTES, SigningKey, TokenError, TokenSettings, Tokens, now_secs,
};
use api_tests::{TEST_JWT_SECRET, test_config, test_keys};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header, decode_header, encode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use store::state::token_settings;
use uuid::Uuid;

const KID: &str = "test-key";
const OTHER_SECRET: &str = "another-signing-key-that-is-32+-bytes-long-xyz";

fn settings() -> TokenSettings {
    token_settings(&test_config())
}

fn tokens() -> Tokens {
    Tokens::hs256(test_keys(), settings())
}

/// The claims of a good token, as JSON, so single claims can be removed or changed.
fn good_claims() -> Map<String, Value> {
    let s = settings();
    let now = now_secs();
    let claims = json!({
        "iss": s.issuer,
        "aud": s.audience,
        "sub": Uuid::new_v4(),
        "sid": Uuid::new_v4(),
        "role": "user",
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "jti": Uuid::new_v4(),
    });
    match claims {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

fn with_claim(key: &str, value: Value) -> Map<String, Value> {
    let mut claims = good_claims();
    claims.insert(key.to_owned(), value);
    claims
}

fn without_claim(key: &str) -> Map<String, Value> {
    let mut claims = good_claims();
    assert!(claims.remove(key).is_some(), "no claim {key}");
    claims
}

/// The header of a good token.
fn good_header() -> Header {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".to_owned());
    header.kid = Some(KID.to_owned());
    header
}

/// Sign with `jsonwebtoken` and the test key.
fn sign(header: &Header, claims: &Map<String, Value>) -> String {
    sign_with(header, claims, TEST_JWT_SECRET.as_bytes())
}

fn sign_with(header: &Header, claims: &Map<String, Value>, secret: &[u8]) -> String {
    encode(header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// A token made by hand: any header JSON, signed with HMAC-SHA256 and the test key.
fn hand_signed(header: &Value, claims: &Map<String, Value>) -> String {
    let message = format!("{}.{}", b64_json(header), b64_json(&Value::Object(claims.clone())));
    let key = EncodingKey::from_secret(TEST_JWT_SECRET.as_bytes());
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).unwrap();
    format!("{message}.{signature}")
}

/// A token made by hand with an empty signature (`alg: none` style).
fn unsigned(header: &Value, claims: &Map<String, Value>) -> String {
    format!("{}.{}.", b64_json(header), b64_json(&Value::Object(claims.clone())))
}

fn good_header_json() -> Value {
    json!({"alg": "HS256", "typ": "at+jwt", "kid": KID})
}

/// Refused as `Invalid`, and for the reason the test is about (the `jsonwebtoken` error kind or
/// the serde message names it), so a test cannot pass by failing some other check.
#[track_caller]
fn assert_invalid(result: Result<access::tokens::AccessClaims, TokenError>, reason: &str) {
    match result {
        Err(TokenError::Invalid(why)) => assert!(
            why.to_ascii_lowercase().contains(&reason.to_ascii_lowercase()),
            "refused, but for {why:?} rather than {reason:?}"
        ),
        other => panic!("expected Invalid({reason}), got {other:?}"),
    }
}

// ---- the good token ----------------------------------------------------------------------------

#[test]
fn issued_token_verifies_with_every_claim_right() {
    let tokens = tokens();
    let (user, session) = (Uuid::new_v4(), Uuid::new_v4());
    let before = now_secs();
    let issued = tokens.issue(user, session, Role::User).unwrap();
    let after = now_secs();
    let token = issued.token.expose_secret();

    let header = decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::HS256);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.kid.as_deref(), Some(KID));
    assert!(header.jku.is_none() && header.x5u.is_none() && header.jwk.is_none() && header.x5c.is_none());

    let claims = tokens.verify(token).unwrap();
    assert_eq!(claims, issued.claims);
    let s = settings();
    assert_eq!(claims.iss, s.issuer);
    assert_eq!(claims.aud, s.audience);
    assert_eq!(claims.sub, user);
    assert_eq!(claims.sid, session);
    assert_eq!(claims.role, Role::User);
    assert!(
        (before..=after).contains(&claims.iat),
        "iat {} not in {before}..={after}",
        claims.iat
    );
    assert_eq!(claims.nbf, claims.iat);
    assert_eq!(claims.exp, claims.iat + 900, "default lifetime is 15 minutes");
    assert_eq!(issued.expires_in, 900);
    assert!(!claims.jti.is_nil());

    // The payload carries exactly the contract's claims, under their registered names.
    let payload = token.split('.').nth(1).unwrap();
    let payload: Map<String, Value> = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let mut names: Vec<&str> = payload.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["amr", "aud", "exp", "iat", "iss", "jti", "nbf", "role", "sid", "sub"]
    );
    assert_eq!(payload["role"], "user");
    assert_eq!(
        payload["amr"],
        serde_json::json!(["pwd"]),
        "a password-only session (RFC 8176)"
    );

    // A second token of the same session has its own jti.
    let again = tokens.issue(user, session, Role::User).unwrap();
    assert_ne!(again.claims.jti, claims.jti);
}

#[test]
fn admin_role_round_trips() {
    let tokens = tokens();
    let issued = tokens.issue(Uuid::new_v4(), Uuid::new_v4(), Role::Admin).unwrap();
    assert_eq!(tokens.verify(issued.token.expose_secret()).unwrap().role, Role::Admin);
}

/// The helpers below make good tokens when nothing is changed, so the refusals that follow are
/// about the one thing each test changes.
#[test]
fn helper_tokens_verify_when_nothing_is_wrong() {
    let tokens = tokens();
    assert!(tokens.verify(&sign(&good_header(), &good_claims())).is_ok());
    assert!(tokens.verify(&hand_signed(&good_header_json(), &good_claims())).is_ok());
}

// ---- algorithm ---------------------------------------------------------------------------------

#[test]
fn alg_none_unsigned_is_refused() {
    let tokens = tokens();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let token = unsigned(&json!({"alg": alg, "typ": "at+jwt", "kid": KID}), &good_claims());
        assert!(tokens.verify(&token).is_err(), "alg {alg} accepted");
    }
    // Even with the HMAC of the test key attached.
    let token = hand_signed(&json!({"alg": "none", "typ": "at+jwt", "kid": KID}), &good_claims());
    assert!(tokens.verify(&token).is_err());
    // And an HS256 header with the signature stripped.
    let token = unsigned(&good_header_json(), &good_claims());
    assert_invalid(tokens.verify(&token), "signature");
}

#[test]
fn hs384_with_the_same_key_is_refused() {
    let mut header = good_header();
    header.alg = Algorithm::HS384;
    assert_eq!(
        tokens().verify(&sign(&header, &good_claims())),
        Err(TokenError::WrongAlgorithm)
    );
}

#[test]
fn hs512_with_the_same_key_is_refused() {
    let mut header = good_header();
    header.alg = Algorithm::HS512;
    assert_eq!(
        tokens().verify(&sign(&header, &good_claims())),
        Err(TokenError::WrongAlgorithm)
    );
}

#[test]
fn rs256_header_is_refused() {
    // The classic confusion: an asymmetric alg in the header, an HMAC made with a known key.
    let token = hand_signed(&json!({"alg": "RS256", "typ": "at+jwt", "kid": KID}), &good_claims());
    assert_eq!(tokens().verify(&token), Err(TokenError::WrongAlgorithm));
}

#[test]
fn es256_header_is_refused() {
    let token = hand_signed(&json!({"alg": "ES256", "typ": "at+jwt", "kid": KID}), &good_claims());
    assert_eq!(tokens().verify(&token), Err(TokenError::WrongAlgorithm));
}

#[test]
fn eddsa_and_lowercase_alg_headers_are_refused() {
    let tokens = tokens();
    for alg in ["EdDSA", "PS256", "hs256", "HS256 "] {
        let token = hand_signed(&json!({"alg": alg, "typ": "at+jwt", "kid": KID}), &good_claims());
        assert!(tokens.verify(&token).is_err(), "alg {alg:?} accepted");
    }
}

// ---- signature ---------------------------------------------------------------------------------

#[test]
fn wrong_key_is_refused() {
    let token = sign_with(&good_header(), &good_claims(), OTHER_SECRET.as_bytes());
    assert_invalid(tokens().verify(&token), "InvalidSignature");
}

#[test]
fn tampered_claims_are_refused() {
    let tokens = tokens();
    let issued = tokens.issue(Uuid::new_v4(), Uuid::new_v4(), Role::User).unwrap();
    let token = issued.token.expose_secret();
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: Map<String, Value> = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims.insert("role".into(), json!("admin"));
    let forged = format!("{}.{}.{}", parts[0], b64_json(&Value::Object(claims)), parts[2]);
    assert_invalid(tokens.verify(&forged), "InvalidSignature");
}

// ---- time --------------------------------------------------------------------------------------

#[test]
fn expired_beyond_the_leeway_is_refused() {
    assert_eq!(LEEWAY_SECS, 30, "contract: at most 30 s of clock skew");
    let now = now_secs();
    let claims = {
        let mut c = with_claim("exp", json!(now - LEEWAY_SECS - 1));
        c.insert("iat".into(), json!(now - 900));
        c.insert("nbf".into(), json!(now - 900));
        c
    };
    assert_invalid(tokens().verify(&sign(&good_header(), &claims)), "ExpiredSignature");

    let long_ago = with_claim("exp", json!(now - 3600));
    assert_invalid(tokens().verify(&sign(&good_header(), &long_ago)), "ExpiredSignature");
}

#[test]
fn expired_within_the_leeway_is_accepted() {
    let now = now_secs();
    let mut claims = with_claim("exp", json!(now - 10));
    claims.insert("iat".into(), json!(now - 910));
    claims.insert("nbf".into(), json!(now - 910));
    assert!(tokens().verify(&sign(&good_header(), &claims)).is_ok());
}

#[test]
fn not_yet_valid_beyond_the_leeway_is_refused() {
    let claims = with_claim("nbf", json!(now_secs() + 60));
    assert_invalid(tokens().verify(&sign(&good_header(), &claims)), "ImmatureSignature");
}

#[test]
fn not_yet_valid_within_the_leeway_is_accepted() {
    let claims = with_claim("nbf", json!(now_secs() + 10));
    assert!(tokens().verify(&sign(&good_header(), &claims)).is_ok());
}

// ---- issuer and audience -----------------------------------------------------------------------

#[test]
fn wrong_issuer_is_refused() {
    let claims = with_claim("iss", json!("https://evil.example"));
    assert_invalid(tokens().verify(&sign(&good_header(), &claims)), "InvalidIssuer");
}

#[test]
fn wrong_audience_is_refused() {
    let claims = with_claim("aud", json!("some-other-api"));
    assert_invalid(tokens().verify(&sign(&good_header(), &claims)), "InvalidAudience");
}

#[test]
fn audience_list_without_ours_is_refused() {
    let claims = with_claim("aud", json!(["some-other-api", "yet-another"]));
    assert!(tokens().verify(&sign(&good_header(), &claims)).is_err());
}

// ---- required claims ---------------------------------------------------------------------------

fn assert_missing_claim_refused(claim: &str) {
    let token = sign(&good_header(), &without_claim(claim));
    assert_invalid(tokens().verify(&token), claim);
}

#[test]
fn missing_exp_is_refused() {
    assert_missing_claim_refused("exp");
}

#[test]
fn missing_nbf_is_refused() {
    assert_missing_claim_refused("nbf");
}

#[test]
fn missing_iss_is_refused() {
    assert_missing_claim_refused("iss");
}

#[test]
fn missing_aud_is_refused() {
    assert_missing_claim_refused("aud");
}

#[test]
fn missing_sub_is_refused() {
    assert_missing_claim_refused("sub");
}

#[test]
fn missing_sid_is_refused() {
    assert_missing_claim_refused("sid");
}

#[test]
fn missing_role_is_refused() {
    assert_missing_claim_refused("role");
}

#[test]
fn missing_iat_and_jti_are_refused() {
    assert_missing_claim_refused("iat");
    assert_missing_claim_refused("jti");
}

#[test]
fn null_and_ill_typed_claims_are_refused() {
    let tokens = tokens();
    for (claim, value) in [
        ("exp", json!(null)),
        ("exp", json!("tomorrow")),
        ("sub", json!(null)),
        ("sub", json!("not-a-uuid")),
        ("sub", json!(42)),
        ("sid", json!("not-a-uuid")),
        ("role", json!("superuser")),
        ("role", json!("Admin")),
        ("role", json!(null)),
    ] {
        let token = sign(&good_header(), &with_claim(claim, value.clone()));
        assert!(tokens.verify(&token).is_err(), "{claim} = {value} accepted");
    }
}

// ---- header: typ and kid -----------------------------------------------------------------------

#[test]
fn typ_jwt_is_refused() {
    let mut header = good_header();
    header.typ = Some("JWT".to_owned());
    assert_eq!(
        tokens().verify(&sign(&header, &good_claims())),
        Err(TokenError::WrongType)
    );
}

#[test]
fn other_typ_values_are_refused() {
    let tokens = tokens();
    for typ in ["", "at+jwt2", "id+jwt", "application/jwt", "at jwt"] {
        let mut header = good_header();
        header.typ = Some(typ.to_owned());
        assert_eq!(
            tokens.verify(&sign(&header, &good_claims())),
            Err(TokenError::WrongType),
            "typ {typ:?}"
        );
    }
}

#[test]
fn missing_typ_is_refused() {
    let mut header = good_header();
    header.typ = None;
    let token = sign(&header, &good_claims());
    assert!(
        decode_header(&token).unwrap().typ.is_none(),
        "the header really has no typ"
    );
    assert_eq!(tokens().verify(&token), Err(TokenError::WrongType));
}

#[test]
fn unknown_kid_is_refused() {
    let mut header = good_header();
    header.kid = Some("someone-elses-key".to_owned());
    assert_eq!(
        tokens().verify(&sign(&header, &good_claims())),
        Err(TokenError::UnknownKey)
    );
}

#[test]
fn missing_kid_is_refused() {
    let mut header = good_header();
    header.kid = None;
    assert_eq!(
        tokens().verify(&sign(&header, &good_claims())),
        Err(TokenError::UnknownKey)
    );
}

// ---- header: keys named by the token -----------------------------------------------------------

#[test]
fn jku_header_is_refused() {
    let mut header = good_header();
    header.jku = Some("https://evil.example/jwks.json".to_owned());
    assert_eq!(
        tokens().verify(&sign(&header, &good_claims())),
        Err(TokenError::KeyLocationHeader)
    );
}

#[test]
fn crit_header_is_refused() {
    // Signed with our own key: only the unknown critical extension is wrong (RFC 7515 §4.1.11).
    let mut header = good_header();
    header.crit = Some(vec!["exp".to_owned()]);
    assert_eq!(
        tokens().verify(&sign(&header, &good_claims())),
        Err(TokenError::CriticalHeader)
    );
}

#[test]
fn x5u_header_is_refused() {
    let mut header = good_header();
    header.x5u = Some("https://evil.example/cert.pem".to_owned());
    assert_eq!(
        tokens().verify(&sign(&header, &good_claims())),
        Err(TokenError::KeyLocationHeader)
    );
}

#[test]
fn jwk_header_is_refused() {
    // An embedded symmetric key equal to the attacker's signing key.
    let k = URL_SAFE_NO_PAD.encode(OTHER_SECRET);
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": KID, "jwk": {"kty": "oct", "k": k}});
    let token = hand_signed(&header, &good_claims());
    assert!(
        decode_header(&token).unwrap().jwk.is_some(),
        "the header parses with its jwk"
    );
    assert_eq!(tokens().verify(&token), Err(TokenError::KeyLocationHeader));
}

#[test]
fn x5c_header_is_refused() {
    let mut header = good_header();
    header.x5c = Some(vec!["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA".to_owned()]);
    assert_eq!(
        tokens().verify(&sign(&header, &good_claims())),
        Err(TokenError::KeyLocationHeader)
    );
}

#[test]
fn crit_header_with_an_unknown_extension_is_refused() {
    // RFC 7515 4.1.11: a critical header parameter the verifier does not understand invalidates the token.
    let tokens = tokens();
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": KID, "crit": ["exp-ext"], "exp-ext": true});
    assert!(tokens.verify(&hand_signed(&header, &good_claims())).is_err());
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": KID, "b64": false, "crit": ["b64"]});
    assert!(tokens.verify(&hand_signed(&header, &good_claims())).is_err());
}

// ---- size --------------------------------------------------------------------------------------

/// A validly signed token of `pad` extra claim bytes.
fn padded(pad: usize) -> String {
    sign(&good_header(), &with_claim("pad", json!("x".repeat(pad))))
}

#[test]
fn token_over_8_kib_is_refused_before_parsing() {
    assert_eq!(MAX_TOKEN_BYTES, 8 * 1024);
    let tokens = tokens();
    let big = padded(9000);
    assert!(big.len() > MAX_TOKEN_BYTES);
    assert_eq!(tokens.verify(&big), Err(TokenError::TooLarge));
    // Refused on length alone: garbage of that size never reaches the parser.
    assert_eq!(
        tokens.verify(&"a".repeat(MAX_TOKEN_BYTES + 1)),
        Err(TokenError::TooLarge)
    );
    assert_eq!(tokens.verify(&"€".repeat(4000)), Err(TokenError::TooLarge));
}

#[test]
fn size_limit_is_exactly_8_kib() {
    let tokens = tokens();
    // Base64url can make every length except 1 mod 4 more; find the largest accepted and the
    // smallest refused lengths around the limit.
    let at_limit = (5000..7000)
        .map(padded)
        .find(|t| t.len() == MAX_TOKEN_BYTES || t.len() == MAX_TOKEN_BYTES - 1);
    let at_limit = at_limit.unwrap();
    assert!(
        tokens.verify(&at_limit).is_ok(),
        "a {}-byte token is within the limit",
        at_limit.len()
    );
    let over = (5000..7000).map(padded).find(|t| t.len() > MAX_TOKEN_BYTES).unwrap();
    assert!(over.len() <= MAX_TOKEN_BYTES + 2);
    assert_eq!(
        tokens.verify(&over),
        Err(TokenError::TooLarge),
        "a {}-byte token",
        over.len()
    );
}

// ---- garbage -----------------------------------------------------------------------------------

#[test]
fn garbage_strings_are_refused() {
    let tokens = tokens();
    let good = sign(&good_header(), &good_claims());
    let parts: Vec<&str> = good.split('.').collect();
    let garbage = [
        String::new(),
        " ".into(),
        ".".into(),
        "..".into(),
        "...".into(),
        "abc".into(),
        "a.b".into(),
        "a.b.c".into(),
        "Bearer x.y.z".into(),
        "eyJ.eyJ.sig".into(),
        "é.é.é".into(),
        "\0.\0.\0".into(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[2]),
        format!("{good}."),
        format!(".{good}"),
        format!("{good} "),
        format!(" {good}"),
        format!("Bearer {good}"),
        format!("{}.{}.{}", parts[0], "not base64!", parts[2]),
        format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode("not json"), parts[2]),
        format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode("[1,2,3]"), parts[2]),
        format!("{}.{}.{}", URL_SAFE_NO_PAD.encode("{}"), parts[1], parts[2]),
        format!("{}.{}.{}", URL_SAFE_NO_PAD.encode("null"), parts[1], parts[2]),
        good.replace('.', ""),
    ];
    for token in &garbage {
        assert!(tokens.verify(token).is_err(), "{token:?} accepted");
    }
}

// ---- key rotation ------------------------------------------------------------------------------

fn key(kid: &str, secret: &str) -> SigningKey {
    SigningKey::hmac(kid, SecretString::from(secret.to_owned())).unwrap()
}

#[test]
fn previous_key_verifies_during_rotation() {
    let old_secret = TEST_JWT_SECRET;
    let new_secret = OTHER_SECRET;
    let before = Tokens::hs256(
        KeySet {
            current: key("v1", old_secret),
            previous: None,
        },
        settings(),
    );
    let old_token = before.issue(Uuid::new_v4(), Uuid::new_v4(), Role::User).unwrap();

    let during = Tokens::hs256(
        KeySet {
            current: key("v2", new_secret),
            previous: Some(key("v1", old_secret)),
        },
        settings(),
    );
    let claims = during.verify(old_token.token.expose_secret()).unwrap();
    assert_eq!(claims, old_token.claims);

    // New tokens are signed with the current key, and name it.
    let new_token = during.issue(Uuid::new_v4(), Uuid::new_v4(), Role::User).unwrap();
    let header = decode_header(new_token.token.expose_secret()).unwrap();
    assert_eq!(header.kid.as_deref(), Some("v2"));
    assert!(during.verify(new_token.token.expose_secret()).is_ok());
    assert!(
        before.verify(new_token.token.expose_secret()).is_err(),
        "signed with the new key, not the old"
    );

    // Once the previous key is gone, its tokens are refused.
    let after = Tokens::hs256(
        KeySet {
            current: key("v2", new_secret),
            previous: None,
        },
        settings(),
    );
    assert_eq!(
        after.verify(old_token.token.expose_secret()),
        Err(TokenError::UnknownKey)
    );
}

#[test]
fn kid_pins_the_key_during_rotation() {
    let tokens = Tokens::hs256(
        KeySet {
            current: key("v2", OTHER_SECRET),
            previous: Some(key("v1", TEST_JWT_SECRET)),
        },
        settings(),
    );
    // Signed with the previous key but naming the current one, and the other way round.
    let mut header = good_header();
    header.kid = Some("v2".into());
    assert_invalid(
        tokens.verify(&sign_with(&header, &good_claims(), TEST_JWT_SECRET.as_bytes())),
        "signature",
    );
    header.kid = Some("v1".into());
    assert_invalid(
        tokens.verify(&sign_with(&header, &good_claims(), OTHER_SECRET.as_bytes())),
        "signature",
    );
    header.kid = Some("v1".into());
    assert!(
        tokens
            .verify(&sign_with(&header, &good_claims(), TEST_JWT_SECRET.as_bytes()))
            .is_ok()
    );
}

// ---- key strength ------------------------------------------------------------------------------

#[test]
fn hmac_key_of_31_bytes_is_refused_and_32_accepted() {
    let short = SigningKey::hmac("k", SecretString::from("a".repeat(31)));
    match short {
        Err(KeyError::TooShort { len, .. }) => assert_eq!(len, 31),
        other => panic!("a 31-byte key was not refused: {other:?}"),
    }
    assert!(SigningKey::hmac("k", SecretString::from(String::new())).is_err());
    let ok = SigningKey::hmac("k", SecretString::from("a".repeat(32))).unwrap();
    assert_eq!(ok.kid, "k");
    // The Debug form never shows the secret.
    assert!(!format!("{ok:?}").contains(&"a".repeat(32)));
}

#[test]
fn token_settings_match_the_contract_defaults() {
    let s = settings();
    assert_eq!(s.ttl, Duration::from_secs(900));
    assert!(!s.issuer.is_empty() && !s.audience.is_empty());
}
