//! Helpers for the end-to-end tests: an HTTP client for the in-process local API, accounts,
//! Bearer shortcuts, problem+json checks and access-token crafting.
#![allow(dead_code)]

use std::net::IpAddr;

use api_tests::TestApi;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

/// The prefix of every problem `type` (`urn:todo-api:problem:<code>`).
pub(crate) const PROBLEM_TYPE_PREFIX: &str = "urn:todo-api:problem:";

/// The exact body of a 401 for a missing or refused access token.
pub(crate) const INVALID_TOKEN_BODY: &str = r#"{"type":"urn:todo-api:problem:invalid_token","title":"Unauthorized","status":401,"code":"invalid_token","detail":"A valid Bearer access token is required."}"#;

/// A client for the local API (no proxy from the environment, no redirects).
pub(crate) fn client() -> Client {
    Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("build the HTTP client")
}

/// A client whose connections come from `ip` (127.0.0.x: the local API sees a different client
/// address, like a different `sourceIp` behind API Gateway).
pub(crate) fn client_from(ip: IpAddr) -> Client {
    Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(ip)
        .build()
        .expect("build the HTTP client")
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub(crate) struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    /// The body as JSON (panics with the body when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("response body is not JSON ({e}): {:?}", self.body))
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("header is visible ASCII"))
    }

    /// Assert the status, showing the body when it differs; returns the JSON body (or `Null` when
    /// the body is empty).
    #[track_caller]
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.body);
        assert_eq!(
            self.header("cache-control"),
            Some("no-store"),
            "Cache-Control on a {status}"
        );
        if self.body.is_empty() { Value::Null } else { self.json() }
    }

    /// Assert a problem+json answer (see [`assert_problem`]); returns the body.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> Value {
        assert_problem(self.status, &self.headers, &self.body, status, code)
    }
}

/// Check an RFC 9457 answer: status, `Content-Type: application/problem+json`, the members
/// `type`/`title`/`status`/`code`/`detail` (and `errors[]` on a 422), `Cache-Control: no-store`,
/// `WWW-Authenticate: Bearer...` on a 401 and `Retry-After` on a 429. Returns the parsed body.
#[track_caller]
pub(crate) fn assert_problem(
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    expected_status: u16,
    expected_code: &str,
) -> Value {
    assert_eq!(status.as_u16(), expected_status, "status; body: {body}");
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("<non-ASCII>").to_owned())
    };
    assert_eq!(
        header("content-type").as_deref(),
        Some("application/problem+json"),
        "content type; body: {body}"
    );
    assert_eq!(
        header("cache-control").as_deref(),
        Some("no-store"),
        "Cache-Control; body: {body}"
    );

    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("problem body is not JSON ({e}): {body:?}"));
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("problem body is not an object: {body}"));
    assert_eq!(v["code"], json!(expected_code), "code; body: {body}");
    assert_eq!(v["status"], json!(expected_status), "status member; body: {body}");
    assert_eq!(
        v["type"],
        json!(format!("{PROBLEM_TYPE_PREFIX}{expected_code}")),
        "type; body: {body}"
    );
    let reason = status.canonical_reason().expect("a standard status");
    assert_eq!(v["title"], json!(reason), "title; body: {body}");
    let detail = v["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("detail is not a string: {body}"));
    assert!(!detail.is_empty(), "empty detail: {body}");
    let allowed = ["type", "title", "status", "code", "detail", "errors"];
    for key in obj.keys() {
        assert!(
            allowed.contains(&key.as_str()),
            "unexpected member {key:?} in problem: {body}"
        );
    }
    // Nothing internal reaches a client.
    let lower = body.to_lowercase();
    for leak in [
        "select ",
        "insert ",
        "postgres",
        "sqlstate",
        "panicked",
        "stack backtrace",
        "$argon2",
        "db error",
    ] {
        assert!(!lower.contains(leak), "problem body leaks {leak:?}: {body}");
    }

    if expected_status == 422 {
        let errors = v["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("a 422 needs errors[]: {body}"));
        assert!(!errors.is_empty(), "a 422 needs at least one error: {body}");
        for e in errors {
            for member in ["field", "code", "message"] {
                let s = e[member]
                    .as_str()
                    .unwrap_or_else(|| panic!("errors[].{member} is not a string: {body}"));
                assert!(!s.is_empty(), "errors[].{member} is empty: {body}");
            }
        }
    } else {
        assert!(v.get("errors").is_none(), "only a 422 lists errors: {body}");
    }
    if expected_status == 401 {
        let challenge = header("www-authenticate").unwrap_or_else(|| panic!("a 401 needs WWW-Authenticate: {body}"));
        assert!(challenge.starts_with("Bearer"), "WWW-Authenticate: {challenge}");
    }
    if expected_status == 429 {
        let retry = header("retry-after").unwrap_or_else(|| panic!("a 429 needs Retry-After: {body}"));
        let secs: u64 = retry
            .parse()
            .unwrap_or_else(|_| panic!("Retry-After is not seconds: {retry}"));
        assert!(secs > 0, "Retry-After: {retry}");
    }
    v
}

/// The `(field, code)` pairs of a 422's `errors[]`.
pub(crate) fn error_fields(problem: &Value) -> Vec<(String, String)> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (
                        e["field"].as_str().unwrap_or("").to_owned(),
                        e["code"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Send a request with `client`: optional Bearer token and optional JSON body
/// (`Content-Type: application/json`).
pub(crate) async fn send_with(
    client: &Client,
    api: &TestApi,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Resp {
    let mut req = client.request(method, api.url(path));
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(serde_json::to_vec(body).expect("serialize"));
    }
    read(req.send().await.expect("request to the local API")).await
}

/// Send a request with a fresh client (see [`send_with`]).
pub(crate) async fn send(api: &TestApi, method: Method, path: &str, token: Option<&str>, body: Option<&Value>) -> Resp {
    send_with(&client(), api, method, path, token, body).await
}

/// Send a request with exactly these headers and body bytes.
pub(crate) async fn send_raw(
    api: &TestApi,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Resp {
    let mut req = client().request(method, api.url(path));
    for (name, value) in headers {
        req = req.header(*name, HeaderValue::from_str(value).expect("header value"));
    }
    if let Some(body) = body {
        req = req.body(body);
    }
    read(req.send().await.expect("request to the local API")).await
}

async fn read(response: reqwest::Response) -> Resp {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.expect("read the response body");
    Resp { status, headers, body }
}

/// `POST` a JSON body without a token (public routes).
pub(crate) async fn post_json(api: &TestApi, path: &str, body: &Value) -> Resp {
    send(api, Method::POST, path, None, Some(body)).await
}

/// Bearer `GET`.
pub(crate) async fn get(api: &TestApi, token: &str, path: &str) -> Resp {
    send(api, Method::GET, path, Some(token), None).await
}

/// Bearer `POST` with a JSON body.
pub(crate) async fn post(api: &TestApi, token: &str, path: &str, body: &Value) -> Resp {
    send(api, Method::POST, path, Some(token), Some(body)).await
}

/// Bearer `PATCH` with a JSON body.
pub(crate) async fn patch(api: &TestApi, token: &str, path: &str, body: &Value) -> Resp {
    send(api, Method::PATCH, path, Some(token), Some(body)).await
}

/// Bearer `DELETE` without a body.
pub(crate) async fn delete(api: &TestApi, token: &str, path: &str) -> Resp {
    send(api, Method::DELETE, path, Some(token), None).await
}

/// A unique, valid email address in mixed case.
pub(crate) fn unique_email(prefix: &str) -> String {
    format!("{prefix}.{}@Example.com", Uuid::new_v4().simple())
}

/// A password that passes the policy and is unique.
pub(crate) fn unique_password() -> String {
    format!("pw-{}", Uuid::new_v4().simple())
}

/// `POST /auth/signup`, whole response.
pub(crate) async fn signup_resp(api: &TestApi, email: &str, password: &str) -> Resp {
    post_json(api, "/auth/signup", &json!({ "email": email, "password": password })).await
}

/// `POST /auth/signup`: status and JSON body.
pub(crate) async fn signup(api: &TestApi, email: &str, password: &str) -> (StatusCode, Value) {
    let r = signup_resp(api, email, password).await;
    let json = r.json();
    (r.status, json)
}

/// `POST /auth/login`, whole response.
pub(crate) async fn login_resp(api: &TestApi, email: &str, password: &str) -> Resp {
    post_json(api, "/auth/login", &json!({ "email": email, "password": password })).await
}

/// `POST /auth/login`: status and JSON body.
pub(crate) async fn login(api: &TestApi, email: &str, password: &str) -> (StatusCode, Value) {
    let r = login_resp(api, email, password).await;
    let json = r.json();
    (r.status, json)
}

/// An account made through the API, with the tokens of its first session.
#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub email: String,
    pub password: String,
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub access_token: String,
    pub refresh_token: String,
}

impl Account {
    fn from_token_body(email: String, password: String, body: &Value) -> Self {
        let access_token = body["access_token"].as_str().expect("access_token").to_owned();
        let (_, claims) = jwt_parts(&access_token);
        Account {
            email,
            password,
            user_id: body["user"]["id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("user.id"),
            session_id: claims["sid"].as_str().and_then(|s| s.parse().ok()).expect("sid claim"),
            access_token,
            refresh_token: body["refresh_token"].as_str().expect("refresh_token").to_owned(),
        }
    }
}

/// Sign up a new account with a unique email (201 asserted).
pub(crate) async fn signup_ok(api: &TestApi) -> Account {
    let email = unique_email("user");
    let password = unique_password();
    let (status, body) = signup(api, &email, &password).await;
    assert_eq!(status, StatusCode::CREATED, "signup: {body}");
    Account::from_token_body(email, password, &body)
}

/// Log in to an existing account (200 asserted): a second session.
pub(crate) async fn login_ok(api: &TestApi, email: &str, password: &str) -> Account {
    let (status, body) = login(api, email, password).await;
    assert_eq!(status, StatusCode::OK, "login: {body}");
    Account::from_token_body(email.to_owned(), password.to_owned(), &body)
}

/// The decoded header and claims of a JWT (no verification).
pub(crate) fn jwt_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut segment = || {
        let s = parts.next().expect("a JWT has three segments");
        let bytes = URL_SAFE_NO_PAD.decode(s).expect("base64url segment");
        serde_json::from_slice::<Value>(&bytes).expect("JSON segment")
    };
    let header = segment();
    let claims = segment();
    (header, claims)
}

/// Seconds since the epoch.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Claims the local API would accept for `user`/`session`, valid from `iat` for `ttl` seconds
/// (an `iat` far enough in the past makes an expired token).
pub(crate) fn claims(user: Uuid, session: Uuid, role: &str, iat: u64, ttl: u64) -> Value {
    json!({
        "iss": "todo-api",
        "aud": "todo-api",
        "sub": user,
        "sid": session,
        "role": role,
        "iat": iat,
        "nbf": iat,
        "exp": iat + ttl,
        "jti": Uuid::new_v4(),
    })
}

/// An HS256 access token (`typ: at+jwt`) over `claims`, signed with `secret` under `kid`
/// (whatever the configured algorithm: see [`mint_test_token`] for a token the API accepts).
pub(crate) fn mint_token(secret: &[u8], kid: &str, claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("at+jwt".to_owned());
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_secret(secret)).expect("sign a token")
}

/// The header of a token signed with the configured test key: the configured algorithm
/// (`TEST_JWT_ALGORITHM`), `typ: at+jwt`, `kid: test-key`. Change it and sign with
/// [`mint_with_header`].
pub(crate) fn test_header() -> jsonwebtoken::Header {
    let (algorithm, _) = api_tests::test_encoding_key();
    let mut header = jsonwebtoken::Header::new(algorithm);
    header.typ = Some("at+jwt".to_owned());
    header.kid = Some(api_tests::TEST_KID.to_owned());
    header
}

/// A token over `claims` with `header`, signed with the test key the local API trusts (in the
/// configured algorithm, whatever `header.alg` says).
pub(crate) fn mint_with_header(header: &jsonwebtoken::Header, claims: &Value) -> String {
    let (algorithm, key) = api_tests::test_encoding_key();
    let mut header = header.clone();
    header.alg = algorithm;
    jsonwebtoken::encode(&header, claims, &key).expect("sign a token")
}

/// An access token signed with the test key the local API trusts (HS256 or EdDSA, as
/// `TEST_JWT_ALGORITHM` says).
pub(crate) fn mint_test_token(claims: &Value) -> String {
    mint_with_header(&test_header(), claims)
}

/// An access token signed with the trusted test key but naming another `kid`.
pub(crate) fn mint_test_token_with_kid(kid: &str, claims: &Value) -> String {
    let mut header = test_header();
    header.kid = Some(kid.to_owned());
    mint_with_header(&header, claims)
}

/// An access token in the configured algorithm, naming `kid`, signed with a key the local API
/// does not trust.
pub(crate) fn mint_foreign_token(kid: &str, claims: &Value) -> String {
    let (algorithm, key) = api_tests::foreign_encoding_key();
    let mut header = test_header();
    header.alg = algorithm;
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key).expect("sign a token")
}

/// The configured algorithm as a JWT header names it (`"HS256"`, `"EdDSA"`).
pub(crate) fn test_alg_name() -> String {
    serde_json::to_value(api_tests::test_algorithm())
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .expect("an algorithm serializes to its name")
}

/// Whether `s` looks like an RFC 3339 UTC timestamp (`YYYY-MM-DDTHH:MM:SS[.frac]Z`).
pub(crate) fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let fixed = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !fixed || !s.ends_with('Z') {
        return false;
    }
    let rest = &s[19..s.len() - 1];
    rest.is_empty() || (rest.len() > 1 && rest.starts_with('.') && rest[1..].bytes().all(|c| c.is_ascii_digit()))
}
