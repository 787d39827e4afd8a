//! End to end over HTTP against the local API: signup, login, tokens as issued and stored, the
//! request conventions (415/400/413/422/404) and the gateway's 401 for Bearer routes.

use api_tests::spawn_api;
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    INVALID_TOKEN_BODY, Resp, error_fields, get, is_rfc3339_utc, jwt_parts, login, login_resp, post_json, send,
    send_raw, signup, signup_ok, signup_resp, unique_email, unique_password,
};

/// The shape every signup/login answer shares.
#[track_caller]
fn assert_token_body(body: &Value, email: &str) {
    let obj = body.as_object().expect("object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["access_token", "expires_in", "refresh_token", "token_type", "user"],
        "{body}"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(
        body["access_token"].as_str().is_some_and(|t| t.split('.').count() == 3),
        "{body}"
    );
    let refresh = body["refresh_token"].as_str().expect("refresh_token");
    // At least 256 random bits: 43 base64url characters or more.
    assert!(refresh.len() >= 43, "refresh token too short: {refresh}");

    let user = body["user"].as_object().expect("user object");
    let mut user_keys: Vec<&str> = user.keys().map(String::as_str).collect();
    user_keys.sort_unstable();
    assert_eq!(
        user_keys,
        ["created_at", "email", "email_verified", "id", "role"],
        "{body}"
    );
    assert!(
        body["user"]["id"]
            .as_str()
            .and_then(|s| s.parse::<Uuid>().ok())
            .is_some(),
        "{body}"
    );
    assert_eq!(body["user"]["email"], email);
    assert_eq!(body["user"]["role"], "user");
    let created = body["user"]["created_at"].as_str().expect("created_at");
    assert!(is_rfc3339_utc(created), "created_at is not RFC 3339 UTC: {created}");
}

#[tokio::test]
async fn signup_returns_user_and_tokens() {
    let api = spawn_api().await;
    let typed = format!("  Mixed.Case+{}@Example.COM  ", Uuid::new_v4().simple());
    let password = unique_password();
    let r = signup_resp(&api, &typed, &password).await;
    let body = r.expect(201);
    assert_eq!(r.header("content-type"), Some("application/json"));
    // Trimmed, spelling kept.
    assert_token_body(&body, typed.trim());

    let db = api.sql().await;
    let id: Uuid = body["user"]["id"].as_str().and_then(|s| s.parse().ok()).expect("id");
    let row = db
        .query_one("SELECT email, role, disabled FROM users WHERE id = $1", &[&id])
        .await
        .expect("user row");
    assert_eq!(row.get::<_, String>("email"), typed.trim());
    assert_eq!(row.get::<_, String>("role"), "user");
    assert!(!row.get::<_, bool>("disabled"));

    // The access token of the signup session works on a Bearer route at once.
    let token = body["access_token"].as_str().expect("token");
    let list = get(&api, token, "/tasks").await.expect(200);
    assert_eq!(list, json!({ "items": [], "next_cursor": null }));
}

#[tokio::test]
async fn duplicate_email_in_other_case_or_with_spaces_is_409() {
    let api = spawn_api().await;
    let email = unique_email("dup");
    let (status, _) = signup(&api, &email, &unique_password()).await;
    assert_eq!(status, 201);

    for variant in [
        email.clone(),
        email.to_uppercase(),
        email.to_lowercase(),
        format!(" \t{email}  "),
    ] {
        let r = signup_resp(&api, &variant, &unique_password()).await;
        r.problem(409, "email_taken");
    }
    let db = api.sql().await;
    let n: i64 = db
        .query_one("SELECT count(*) FROM users WHERE lower(email) = lower($1)", &[&email])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn role_in_signup_body_is_refused_and_creates_nothing() {
    let api = spawn_api().await;
    let email = unique_email("mass");
    for extra in [
        json!({ "role": "admin" }),
        json!({ "disabled": false }),
        json!({ "id": Uuid::new_v4() }),
    ] {
        let mut body = json!({ "email": email, "password": unique_password() });
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let r = post_json(&api, "/auth/signup", &body).await;
        let problem = r.problem(422, "unknown_field");
        let field = extra.as_object().and_then(|o| o.keys().next()).expect("key").clone();
        assert_eq!(
            error_fields(&problem),
            [(field, "unknown_field".to_owned())],
            "{}",
            r.body
        );
    }
    let db = api.sql().await;
    let users: i64 = db
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .expect("count")
        .get(0);
    let sessions: i64 = db
        .query_one("SELECT count(*) FROM sessions", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!((users, sessions), (0, 0));
}

/// An email, a password, and the `(field, code)` errors the signup must answer with.
type SignupCase = (String, String, Vec<(&'static str, &'static str)>);

#[tokio::test]
async fn signup_validation_errors() {
    let api = spawn_api().await;
    let ok_email = unique_email("valid");
    let ok_password = unique_password();
    let eq_email = format!("same.as.password.{}@example.com", Uuid::new_v4().simple());
    let cases: Vec<SignupCase> = vec![
        (
            "not-an-email".into(),
            ok_password.clone(),
            vec![("email", "invalid_email")],
        ),
        ("".into(), ok_password.clone(), vec![("email", "invalid_email")]),
        (
            "alice@localhost".into(),
            ok_password.clone(),
            vec![("email", "invalid_email")],
        ),
        (
            ok_email.clone(),
            "short1".into(),
            vec![("password", "password_too_short")],
        ),
        (
            ok_email.clone(),
            "password123".into(),
            vec![("password", "password_too_common")],
        ),
        (
            ok_email.clone(),
            "PASSWORD123".into(),
            vec![("password", "password_too_common")],
        ),
        (
            eq_email.clone(),
            eq_email.to_uppercase(),
            vec![("password", "password_equals_email")],
        ),
        (
            ok_email.clone(),
            "x".repeat(257),
            vec![("password", "password_too_long")],
        ),
        (
            "nope".into(),
            "short".into(),
            vec![("email", "invalid_email"), ("password", "password_too_short")],
        ),
    ];
    for (email, password, expected) in cases {
        let r = signup_resp(&api, &email, &password).await;
        let problem = r.problem(422, "validation_failed");
        let mut got = error_fields(&problem);
        got.sort();
        let mut want: Vec<(String, String)> = expected.iter().map(|(f, c)| ((*f).into(), (*c).into())).collect();
        want.sort();
        assert_eq!(
            got,
            want,
            "email {email:?}, password of {} chars: {}",
            password.chars().count(),
            r.body
        );
        // The password never comes back.
        assert!(password.len() < 6 || !r.body.contains(&password), "{}", r.body);
    }
    // Missing or mistyped fields are 422 too.
    for body in [
        json!({ "email": ok_email }),
        json!({ "email": ok_email, "password": 12345678 }),
        json!([1, 2]),
    ] {
        post_json(&api, "/auth/signup", &body)
            .await
            .problem(422, "validation_failed");
    }
    // 256 characters is the upper bound, not beyond it.
    let (status, body) = signup(&api, &ok_email, &"ab".repeat(128)).await;
    assert_eq!(status, 201, "{body}");

    let db = api.sql().await;
    let users: i64 = db
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(users, 1);
}

#[tokio::test]
async fn content_type_malformed_json_and_body_size() {
    let api = spawn_api().await;
    let body =
        serde_json::to_vec(&json!({ "email": unique_email("ct"), "password": unique_password() })).expect("json");

    // No content type, or the wrong one: 415.
    for headers in [
        vec![],
        vec![("content-type", "text/plain")],
        vec![("content-type", "application/x-www-form-urlencoded")],
    ] {
        let r = send_raw(&api, Method::POST, "/auth/signup", &headers, Some(body.clone())).await;
        r.problem(415, "unsupported_media_type");
    }
    // A charset parameter is fine.
    let r = send_raw(
        &api,
        Method::POST,
        "/auth/signup",
        &[("content-type", "application/json; charset=utf-8")],
        Some(body.clone()),
    )
    .await;
    r.expect(201);

    // Malformed JSON: 400.
    for bad in [&b"{\"email\":"[..], b"{email: 1}", b"not json", b"{\"a\":1}}"] {
        let r = send_raw(
            &api,
            Method::POST,
            "/auth/login",
            &[("content-type", "application/json")],
            Some(bad.to_vec()),
        )
        .await;
        r.problem(400, "malformed_json");
    }

    // Over 16 KiB: 413 (on a public route and, with a valid token, on a Bearer route).
    let big = format!(r#"{{"email":"a@example.com","password":"{}"}}"#, "x".repeat(17 * 1024));
    let r = send_raw(
        &api,
        Method::POST,
        "/auth/signup",
        &[("content-type", "application/json")],
        Some(big.clone().into()),
    )
    .await;
    r.problem(413, "payload_too_large");
    let account = signup_ok(&api).await;
    let bearer = format!("Bearer {}", account.access_token);
    let big_task = format!(r#"{{"title":"{}"}}"#, "t".repeat(17 * 1024));
    let r = send_raw(
        &api,
        Method::POST,
        "/tasks",
        &[("content-type", "application/json"), ("authorization", &bearer)],
        Some(big_task.into()),
    )
    .await;
    r.problem(413, "payload_too_large");

    let db = api.sql().await;
    let users: i64 = db
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(users, 2, "only the charset signup and the account were created");
}

#[tokio::test]
async fn login_succeeds_case_insensitively_and_fails_uniformly() {
    let api = spawn_api().await;
    let account = signup_ok(&api).await;

    for typed in [
        account.email.clone(),
        account.email.to_uppercase(),
        format!("  {}  ", account.email.to_lowercase()),
    ] {
        let r = login_resp(&api, &typed, &account.password).await;
        let body = r.expect(200);
        // The user as stored, whatever the spelling of the login.
        assert_token_body(&body, &account.email);
        assert_eq!(body["user"]["id"], json!(account.user_id));
    }

    let wrong = login_resp(&api, &account.email, "not-the-password-at-all").await;
    wrong.problem(401, "invalid_credentials");
    let unknown = login_resp(&api, &unique_email("nobody"), "not-the-password-at-all").await;
    unknown.problem(401, "invalid_credentials");
    assert_eq!(
        wrong.body, unknown.body,
        "wrong password and unknown email must be indistinguishable"
    );
    assert_eq!(wrong.header("www-authenticate"), unknown.header("www-authenticate"));
    assert_eq!(wrong.header("content-type"), unknown.header("content-type"));

    // Mistyped bodies are 422, not 401 or 500.
    post_json(&api, "/auth/login", &json!({ "email": account.email }))
        .await
        .problem(422, "validation_failed");
    post_json(
        &api,
        "/auth/login",
        &json!({ "email": account.email, "password": account.password, "role": "admin" }),
    )
    .await
    .problem(422, "unknown_field");
}

#[tokio::test]
async fn disabled_account_is_revealed_only_after_the_right_password() {
    let api = spawn_api().await;
    let account = signup_ok(&api).await;
    let db = api.sql().await;
    db.execute("UPDATE users SET disabled = true WHERE id = $1", &[&account.user_id])
        .await
        .expect("disable");

    login_resp(&api, &account.email, &account.password)
        .await
        .problem(403, "account_disabled");
    login_resp(&api, &account.email, "wrong-password-123")
        .await
        .problem(401, "invalid_credentials");

    // No session was opened by either attempt: only the signup one exists.
    let n: i64 = db
        .query_one("SELECT count(*) FROM sessions WHERE user_id = $1", &[&account.user_id])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn issued_tokens_and_what_is_stored() {
    let api = spawn_api().await;
    let account = signup_ok(&api).await;
    let (status, body) = login(&api, &account.email, &account.password).await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().expect("access");
    let refresh = body["refresh_token"].as_str().expect("refresh");

    let (header, claims) = jwt_parts(access);
    assert_eq!(header["typ"], "at+jwt", "{header}");
    assert_eq!(header["alg"], crate::helpers::test_alg_name(), "{header}");
    assert_eq!(header["kid"], "test-key", "{header}");
    for key in ["jku", "x5u", "jwk", "x5c"] {
        assert!(header.get(key).is_none(), "{header}");
    }
    assert_eq!(claims["sub"], json!(account.user_id));
    assert_eq!(claims["role"], "user");
    assert_eq!(claims["iss"], "todo-api");
    assert_eq!(claims["aud"], "todo-api");
    let sid: Uuid = claims["sid"].as_str().and_then(|s| s.parse().ok()).expect("sid");
    assert_ne!(sid, account.session_id, "a login opens a new session");
    assert!(
        claims["jti"].as_str().and_then(|s| s.parse::<Uuid>().ok()).is_some(),
        "{claims}"
    );
    let (iat, nbf, exp) = (claims["iat"].as_u64(), claims["nbf"].as_u64(), claims["exp"].as_u64());
    let (iat, nbf, exp) = (iat.expect("iat"), nbf.expect("nbf"), exp.expect("exp"));
    assert!(nbf <= iat + 1 && exp == iat + 900, "{claims}");
    let now = crate::helpers::now_secs();
    assert!(iat.abs_diff(now) < 60, "iat {iat} vs now {now}");

    let db = api.sql().await;
    // The refresh token is stored only as its SHA-256.
    let hash = store::users::hash_refresh_token(&SecretString::from(refresh.to_owned()));
    let row = db
        .query_one(
            "SELECT session_id, consumed_at IS NULL AS fresh FROM refresh_tokens WHERE token_hash = $1",
            &[&hash],
        )
        .await
        .expect("a refresh_tokens row with the token's SHA-256");
    assert_eq!(row.get::<_, Uuid>("session_id"), sid);
    assert!(row.get::<_, bool>("fresh"));
    for table in ["users", "sessions", "refresh_tokens"] {
        let rows = db
            .query(&format!("SELECT row_to_json(x)::text FROM {table} x"), &[])
            .await
            .expect("dump");
        for r in rows {
            let text: String = r.get(0);
            assert!(!text.contains(refresh), "{table} holds the plaintext refresh token");
            assert!(!text.contains(access), "{table} holds the access token");
            assert!(
                !text.contains(&account.password),
                "{table} holds the plaintext password"
            );
        }
    }
    // The session of the token exists, belongs to the user and is live.
    let s = db
        .query_one(
            "SELECT user_id, revoked_at IS NULL AS live, idle_expires_at > now() AS idle_ok,
                    absolute_expires_at > now() AS abs_ok
               FROM sessions WHERE id = $1",
            &[&sid],
        )
        .await
        .expect("session row");
    assert_eq!(s.get::<_, Uuid>("user_id"), account.user_id);
    assert!(s.get::<_, bool>("live") && s.get::<_, bool>("idle_ok") && s.get::<_, bool>("abs_ok"));

    // argon2id at (at least) the OWASP parameters.
    let hash: String = db
        .query_one("SELECT password_hash FROM users WHERE id = $1", &[&account.user_id])
        .await
        .expect("user")
        .get(0);
    assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_signups_with_one_email_make_one_account() {
    let api = spawn_api().await;
    let email = unique_email("race");
    let mut tasks = Vec::new();
    for i in 0..10 {
        let client = crate::helpers::client();
        let url = api.url("/auth/signup");
        // Different spellings of the same address, so the case-insensitive index decides.
        let typed = if i % 2 == 0 {
            email.clone()
        } else {
            email.to_uppercase()
        };
        let body = json!({ "email": typed, "password": unique_password() });
        tasks.push(tokio::spawn(async move {
            let r = client.post(url).json(&body).send().await.expect("request");
            let status = r.status();
            let headers = r.headers().clone();
            let body = r.text().await.expect("body");
            Resp { status, headers, body }
        }));
    }
    let mut created = 0;
    for t in tasks {
        let r = t.await.expect("join");
        assert!(
            r.status.as_u16() < 500,
            "5xx under a signup race: {} {}",
            r.status,
            r.body
        );
        if r.status == 201 {
            created += 1;
        } else {
            r.problem(409, "email_taken");
        }
    }
    assert_eq!(created, 1);
    let db = api.sql().await;
    let users: i64 = db
        .query_one("SELECT count(*) FROM users WHERE lower(email) = lower($1)", &[&email])
        .await
        .expect("count")
        .get(0);
    let sessions: i64 = db
        .query_one("SELECT count(*) FROM sessions", &[])
        .await
        .expect("count")
        .get(0);
    let refresh: i64 = db
        .query_one("SELECT count(*) FROM refresh_tokens", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!((users, sessions, refresh), (1, 1, 1), "the losers left nothing behind");
}

#[tokio::test]
async fn unknown_routes_are_404_problems() {
    let api = spawn_api().await;
    for (method, path) in [
        (Method::GET, "/nope"),
        (Method::GET, "/"),
        (Method::GET, "/auth/signup"),
        (Method::DELETE, "/tasks"),
        (Method::POST, "/tasks/"),
        (Method::GET, "/tasks/a/b"),
        (Method::PUT, "/tasks/0190b6a0-0000-7000-8000-000000000000"),
    ] {
        let r = send(&api, method.clone(), path, None, None).await;
        assert_eq!(r.status, 404, "{method} {path}: {}", r.body);
        r.problem(404, "not_found");
    }
}

#[tokio::test]
async fn bearer_route_without_or_with_a_bad_token_is_401() {
    let api = spawn_api().await;

    let r = send(&api, Method::GET, "/tasks", None, None).await;
    r.problem(401, "invalid_token");
    assert_eq!(r.body, INVALID_TOKEN_BODY);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer"),
        "no token sent: no error attribute"
    );

    for header in [
        "Bearer not.a.token",
        "Bearer abc",
        "Basic dXNlcjpwYXNz",
        "Bearer ",
        "bearer x.y.z",
        "Bearer a b",
    ] {
        let r = send_raw(&api, Method::GET, "/tasks", &[("authorization", header)], None).await;
        r.problem(401, "invalid_token");
        assert_eq!(r.body, INVALID_TOKEN_BODY, "{header:?}");
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Bearer error="invalid_token""#),
            "{header:?}"
        );
    }

    // Same on a write, before the body is even looked at.
    let r = send_raw(
        &api,
        Method::POST,
        "/tasks",
        &[("authorization", "Bearer nope"), ("content-type", "text/plain")],
        Some(b"not json".to_vec()),
    )
    .await;
    r.problem(401, "invalid_token");
    assert_eq!(r.body, INVALID_TOKEN_BODY);
}

#[tokio::test]
async fn x_forwarded_for_is_ignored() {
    let api = spawn_api().await;
    let email = unique_email("xff");
    let password = unique_password();
    let xff = [
        ("content-type", "application/json"),
        ("x-forwarded-for", "203.0.113.7, 10.0.0.1"),
        ("x-real-ip", "::1"),
    ];
    let body = serde_json::to_vec(&json!({ "email": email, "password": password })).expect("json");
    let r = send_raw(&api, Method::POST, "/auth/signup", &xff, Some(body.clone())).await;
    r.expect(201);
    let r = send_raw(&api, Method::POST, "/auth/login", &xff, Some(body)).await;
    let login = r.expect(200);
    let bearer = format!("Bearer {}", login["access_token"].as_str().expect("token"));
    let r = send_raw(
        &api,
        Method::GET,
        "/tasks",
        &[("authorization", &bearer), ("x-forwarded-for", "not an address")],
        None,
    )
    .await;
    r.expect(200);
    // A garbage header never turns into a 5xx.
    let r = send_raw(
        &api,
        Method::POST,
        "/auth/login",
        &[
            ("content-type", "application/json"),
            ("x-forwarded-for", "999.999.999.999"),
        ],
        Some(serde_json::to_vec(&json!({ "email": email, "password": "wrong-password-1" })).expect("json")),
    )
    .await;
    r.problem(401, "invalid_credentials");
}

#[tokio::test]
async fn passwords_are_nfkc_normalised() {
    let api = spawn_api().await;
    let suffix = Uuid::new_v4().simple().to_string();
    // U+FB00 (LATIN SMALL LIGATURE FF) is NFKC-equal to "ff"; "e\u{301}" (NFD) to "\u{e9}" (NFC).
    let email = unique_email("nfkc");
    let typed = format!("\u{fb00}\u{fb00}-e\u{301}-{suffix}");
    let (status, body) = signup(&api, &email, &typed).await;
    assert_eq!(status, 201, "{body}");
    for equivalent in [typed.clone(), format!("ffff-\u{e9}-{suffix}")] {
        let (status, body) = login(&api, &email, &equivalent).await;
        assert_eq!(status, 200, "{equivalent:?}: {body}");
    }
    login_resp(&api, &email, &format!("ffff-e-{suffix}"))
        .await
        .problem(401, "invalid_credentials");
}

#[tokio::test]
async fn unknown_email_costs_a_password_verification() {
    let api = spawn_api().await;
    let account = signup_ok(&api).await;
    // Coarse on purpose (shared CPUs): an unknown email must not skip argon2. Interleaved samples,
    // fastest of each compared, so one slow outlier does not decide.
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        let start = std::time::Instant::now();
        login_resp(&api, &account.email, "wrong-password-123")
            .await
            .problem(401, "invalid_credentials");
        known.push(start.elapsed());
        let start = std::time::Instant::now();
        login_resp(&api, &unique_email("ghost"), "wrong-password-123")
            .await
            .problem(401, "invalid_credentials");
        unknown.push(start.elapsed());
    }
    let (k, u) = (
        known.iter().min().copied().unwrap_or_default(),
        unknown.iter().min().copied().unwrap_or_default(),
    );
    assert!(u * 4 >= k && k * 4 >= u, "wrong password {k:?} vs unknown email {u:?}");
}

#[tokio::test]
async fn x_forwarded_for_does_not_dodge_the_signup_limit() {
    // The contract's defaults (test_config lifts the limits for every other test).
    let api = api_tests::spawn_api_with(api_tests::default_config()).await;
    let max = api.state.config.rate_limits.signups_per_ip.max;
    assert_eq!(max, 20, "contract default: 20 signups per address per hour");
    let attempt = |i: u32| {
        let xff = format!("198.51.100.{}", i % 250);
        let body = serde_json::to_vec(&json!({ "email": unique_email("limit"), "password": unique_password() }));
        let api = &api;
        async move {
            let headers = [("content-type", "application/json"), ("x-forwarded-for", xff.as_str())];
            send_raw(api, Method::POST, "/auth/signup", &headers, Some(body.expect("json"))).await
        }
    };
    for i in 0..max {
        attempt(i).await.expect(201);
    }
    // A new X-Forwarded-For is not a new client: the TCP peer (API Gateway's sourceIp) is.
    let r = attempt(max).await;
    r.problem(429, "rate_limited");
    // Another address is.
    let client = crate::helpers::client_from("127.0.0.2".parse().expect("ip"));
    let body = json!({ "email": unique_email("other-ip"), "password": unique_password() });
    let r = crate::helpers::send_with(&client, &api, Method::POST, "/auth/signup", None, Some(&body)).await;
    r.expect(201);
}
