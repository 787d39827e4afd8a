//! The HTTP functions called with the events API Gateway (REST, v1) and `cargo lambda watch`
//! (HTTP API, v2) deliver, from JSON fixtures in `tests/fixtures/`.
//!
//! v1 events carry the TOKEN authorizer's context (`requestContext.authorizer`) and path
//! parameters; v2 events as `cargo lambda watch` sends them carry neither, so the function has to
//! verify the Bearer token itself and find the id in the raw path.

use access::roles::Role;
use access::tokens::{KeySet, SigningKey, Tokens};
use http::{HeaderValue, StatusCode, header};
use lambda_http::request::LambdaRequest;
use lambda_http::{Body, Request, RequestExt, Response};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use store::AppState;
use uuid::Uuid;

const V1_SIGNUP: &str = include_str!("../fixtures/apigw-v1-signup.json");
const V1_LOGIN: &str = include_str!("../fixtures/apigw-v1-login.json");
const V1_LIST_TASKS: &str = include_str!("../fixtures/apigw-v1-list-tasks.json");
const V1_GET_TASK: &str = include_str!("../fixtures/apigw-v1-get-task.json");
const V2_LIST_TASKS: &str = include_str!("../fixtures/apigw-v2-list-tasks.json");
const V2_GET_TASK: &str = include_str!("../fixtures/apigw-v2-get-task.json");

const PASSWORD: &str = "Quartz-Lantern-93-Mosaic";

// ---- events ------------------------------------------------------------------------------------

/// A fixture with its `__PLACEHOLDER__`s substituted, as JSON (for further edits).
fn fixture(text: &str, subs: &[(&str, &str)]) -> Value {
    let mut text = text.to_owned();
    for (placeholder, value) in subs {
        text = text.replace(placeholder, value);
    }
    // The authorizer context's `exp`, unless the test set one: a token with 15 minutes to live.
    text = text.replace("__EXP__", &(unix_now() + 900).to_string());
    serde_json::from_str(&text).unwrap()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Deserialize an event the way the runtime does and convert it to the handlers' `Request`.
fn request(event: Value, v1: bool) -> Request {
    let lambda: LambdaRequest = serde_json::from_value(event).unwrap();
    match (&lambda, v1) {
        (LambdaRequest::ApiGatewayV1(_), true) | (LambdaRequest::ApiGatewayV2(_), false) => {}
        (other, _) => panic!("fixture deserialized as the wrong event kind: {other:?}"),
    }
    Request::from(lambda)
}

fn v1(text: &str, subs: &[(&str, &str)]) -> Request {
    request(fixture(text, subs), true)
}

fn signup_event(email: &str, password: &str) -> Request {
    v1(V1_SIGNUP, &[("__EMAIL__", email), ("__PASSWORD__", password)])
}

fn login_event(email: &str, password: &str) -> Request {
    v1(V1_LOGIN, &[("__EMAIL__", email), ("__PASSWORD__", password)])
}

/// A v1 event with the authorizer context of `account`'s session.
fn v1_with_context(text: &str, account: &Account, task_id: &str) -> Request {
    let (sub, sid) = (account.id.to_string(), account.sid.to_string());
    v1(
        text,
        &[
            ("__SUB__", &sub),
            ("__SID__", &sid),
            ("__ROLE__", "user"),
            ("__TOKEN__", &account.token),
            ("__TASK_ID__", task_id),
        ],
    )
}

/// A v2 event with `token` as the Bearer token, or no `Authorization` header at all.
fn v2_with_token(text: &str, token: Option<&str>, task_id: &str) -> Request {
    let mut event = fixture(text, &[("__TOKEN__", token.unwrap_or("")), ("__TASK_ID__", task_id)]);
    if token.is_none() {
        event["headers"].as_object_mut().unwrap().remove("authorization");
    }
    request(event, false)
}

// ---- responses ---------------------------------------------------------------------------------

fn body_json(response: &Response<Body>) -> Value {
    match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap(),
        Body::Binary(bytes) => serde_json::from_slice(bytes).unwrap(),
        Body::Empty => Value::Null,
        _ => panic!("unexpected body kind"),
    }
}

fn header(response: &Response<Body>, name: header::HeaderName) -> Option<&str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

/// Status, `Content-Type` and `Cache-Control: no-store`; returns the JSON body.
#[track_caller]
fn expect_json(response: &Response<Body>, status: StatusCode) -> Value {
    let body = body_json(response);
    assert_eq!(response.status(), status, "body: {body}");
    assert_eq!(header(response, header::CONTENT_TYPE), Some("application/json"));
    assert_eq!(header(response, header::CACHE_CONTROL), Some("no-store"));
    body
}

/// An RFC 9457 problem with this status and code; returns the body.
#[track_caller]
fn expect_problem(response: &Response<Body>, status: StatusCode, code: &str) -> Value {
    let body = body_json(response);
    assert_eq!(response.status(), status, "body: {body}");
    assert_eq!(header(response, header::CONTENT_TYPE), Some("application/problem+json"));
    assert_eq!(header(response, header::CACHE_CONTROL), Some("no-store"));
    assert_eq!(body["status"], status.as_u16());
    assert_eq!(body["code"], code);
    assert!(
        body["type"].is_string() && body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

/// A 401 whose `WWW-Authenticate` says a token was sent and is not acceptable.
#[track_caller]
fn expect_invalid_token(response: &Response<Body>) {
    expect_problem(response, StatusCode::UNAUTHORIZED, "invalid_token");
    let challenge = header(response, header::WWW_AUTHENTICATE).unwrap();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(challenge.contains(r#"error="invalid_token""#), "{challenge}");
}

fn sorted_keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

fn is_rfc3339_utc(s: &str) -> bool {
    // 2024-01-02T03:04:05Z or with fractional seconds: the shape, not a full parser.
    let b = s.as_bytes();
    s.len() >= 20
        && s.ends_with('Z')
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && s[..4].bytes().all(|c| c.is_ascii_digit())
}

// ---- accounts and tasks ------------------------------------------------------------------------

struct Account {
    id: Uuid,
    sid: Uuid,
    token: String,
}

/// Sign up through the signup function, as API Gateway would call it.
async fn sign_up(state: &AppState, email: &str) -> Account {
    let response = signup::handle(state, signup_event(email, PASSWORD)).await;
    let body = expect_json(&response, StatusCode::CREATED);
    let token = body["access_token"].as_str().unwrap().to_owned();
    let claims = state.tokens.verify(&token).unwrap();
    Account {
        id: claims.sub,
        sid: claims.sid,
        token,
    }
}

async fn sql(state: &AppState, db: &api_tests::TestDb) -> tokio_postgres::Client {
    store::db::connect(&db.url, &state.config.db).await.unwrap()
}

/// A task row for `user`, created `age_secs` ago.
async fn insert_task(client: &tokio_postgres::Client, user: Uuid, title: &str, age_secs: i64) -> Uuid {
    let id = Uuid::now_v7();
    client
        .execute(
            "INSERT INTO tasks (id, user_id, title, created_at, updated_at)
             VALUES ($1, $2, $3, now() - $4::int8 * interval '1 second', now() - $4::int8 * interval '1 second')",
            &[&id, &user, &title, &age_secs],
        )
        .await
        .unwrap();
    id
}

/// Two users: alice with two tasks (returned newest first), bob with one.
struct World {
    alice: Account,
    bob: Account,
    alice_tasks: [Uuid; 2],
    bob_task: Uuid,
    sql: tokio_postgres::Client,
}

async fn world(state: &AppState, db: &api_tests::TestDb) -> World {
    let alice = sign_up(state, "Alice@Example.com").await;
    let bob = sign_up(state, "bob@example.com").await;
    let sql = sql(state, db).await;
    let older = insert_task(&sql, alice.id, "alice older", 120).await;
    let newer = insert_task(&sql, alice.id, "alice newer", 60).await;
    let bob_task = insert_task(&sql, bob.id, "bob's", 30).await;
    World {
        alice,
        bob,
        alice_tasks: [newer, older],
        bob_task,
        sql,
    }
}

fn ids(list: &Value) -> Vec<Uuid> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().parse().unwrap())
        .collect()
}

const TASK_FIELDS: [&str; 6] = ["completed", "created_at", "description", "id", "title", "updated_at"];

// ---- the conversion itself ---------------------------------------------------------------------

#[test]
fn fixtures_convert_to_the_requests_the_handlers_expect() {
    let id = Uuid::new_v4().to_string();
    let req = v1(
        V1_GET_TASK,
        &[
            ("__TASK_ID__", &id),
            ("__SUB__", "s"),
            ("__SID__", "t"),
            ("__ROLE__", "user"),
        ],
    );
    assert_eq!(req.method(), http::Method::GET);
    assert_eq!(
        req.uri().path(),
        format!("/prod/tasks/{id}"),
        "lambda_http puts the stage in the path"
    );
    assert_eq!(req.path_parameters_ref().and_then(|p| p.first("id")), Some(id.as_str()));
    assert!(matches!(
        req.request_context_ref(),
        Some(lambda_http::request::RequestContext::ApiGatewayV1(_))
    ));
    assert_eq!(web::http::client_ip(&req), Some("198.51.100.7".parse().unwrap()));

    let req = v2_with_token(V2_GET_TASK, Some("x"), &id);
    assert_eq!(req.uri().path(), format!("/tasks/{id}"));
    assert!(
        req.path_parameters_ref().is_none_or(|p| p.first("id").is_none()),
        "no path parameters in v2"
    );
    assert_eq!(
        req.headers().get(header::AUTHORIZATION),
        Some(&HeaderValue::from_static("Bearer x"))
    );
    assert!(matches!(
        req.request_context_ref(),
        Some(lambda_http::request::RequestContext::ApiGatewayV2(_))
    ));
    assert_eq!(web::http::client_ip(&req), Some("127.0.0.1".parse().unwrap()));

    let req = signup_event("a@example.com", "p");
    assert_eq!(req.method(), http::Method::POST);
    assert_eq!(
        req.headers().get(header::CONTENT_TYPE),
        Some(&HeaderValue::from_static("application/json"))
    );
    // The client-sent X-Forwarded-For is not the client address.
    assert_eq!(web::http::client_ip(&req), Some("198.51.100.7".parse().unwrap()));
}

// ---- signup and login --------------------------------------------------------------------------

#[tokio::test]
async fn v1_signup_201_with_the_contract_body() {
    let (state, db) = api_tests::test_state().await;
    let response = signup::handle(&state, signup_event("  Carol.Smith@Example.COM ", PASSWORD)).await;
    let body = expect_json(&response, StatusCode::CREATED);

    assert_eq!(
        sorted_keys(&body),
        ["access_token", "expires_in", "refresh_token", "token_type", "user"]
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let user = &body["user"];
    assert_eq!(
        sorted_keys(user),
        ["created_at", "email", "email_verified", "id", "role"],
        "no hash or internals in `user`"
    );
    assert_eq!(user["email"], "Carol.Smith@Example.COM", "trimmed, spelling kept");
    assert_eq!(user["role"], "user");
    assert!(
        is_rfc3339_utc(user["created_at"].as_str().unwrap()),
        "{}",
        user["created_at"]
    );
    let user_id: Uuid = user["id"].as_str().unwrap().parse().unwrap();

    let claims = state.tokens.verify(body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims.sub, user_id);
    assert_eq!(claims.role, Role::User);
    let refresh = body["refresh_token"].as_str().unwrap();
    assert!(refresh.len() >= 43, "at least 256 bits");
    assert!(
        refresh
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    );

    let sql = sql(&state, &db).await;
    let row = sql
        .query_one(
            "SELECT count(*) FROM sessions WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
            &[&claims.sid, &user_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1, "the token's session exists");
}

#[tokio::test]
async fn v1_signup_refuses_a_role_field() {
    let (state, db) = api_tests::test_state().await;
    let mut event = fixture(V1_SIGNUP, &[]);
    event["body"] = json!(json!({"email": "mallory@example.com", "password": PASSWORD, "role": "admin"}).to_string());
    let response = signup::handle(&state, request(event, true)).await;
    let body = expect_problem(&response, StatusCode::UNPROCESSABLE_ENTITY, "unknown_field");
    assert_eq!(body["errors"][0]["field"], "role");
    let users: i64 = sql(&state, &db)
        .await
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(users, 0);
}

#[tokio::test]
async fn v1_login_200_with_the_contract_body() {
    let (state, _db) = api_tests::test_state().await;
    let account = sign_up(&state, "dave@example.com").await;

    let response = login::handle(&state, login_event("DAVE@example.com", PASSWORD)).await;
    let body = expect_json(&response, StatusCode::OK);
    assert_eq!(
        sorted_keys(&body),
        ["access_token", "expires_in", "refresh_token", "token_type", "user"]
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(
        sorted_keys(&body["user"]),
        ["created_at", "email", "email_verified", "id", "role"]
    );
    assert_eq!(body["user"]["id"], account.id.to_string());
    assert_eq!(body["user"]["email"], "dave@example.com");
    let claims = state.tokens.verify(body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims.sub, account.id);
    assert_ne!(claims.sid, account.sid, "a login opens a new session");

    let wrong = login::handle(&state, login_event("dave@example.com", "Not-The-Password-42")).await;
    expect_problem(&wrong, StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert!(header(&wrong, header::WWW_AUTHENTICATE).is_some_and(|c| c.starts_with("Bearer")));
}

// ---- tasks, REST API (v1) with the authorizer's context ----------------------------------------

#[tokio::test]
async fn v1_list_tasks_with_authorizer_context() {
    let (state, db) = api_tests::test_state().await;
    let w = world(&state, &db).await;

    let response = tasks::handle(&state, v1_with_context(V1_LIST_TASKS, &w.alice, "")).await;
    let body = expect_json(&response, StatusCode::OK);
    assert_eq!(sorted_keys(&body), ["items", "next_cursor"]);
    assert_eq!(ids(&body), w.alice_tasks.to_vec(), "alice's tasks only, newest first");
    assert!(body["next_cursor"].is_null());
    for task in body["items"].as_array().unwrap() {
        assert_eq!(sorted_keys(task), TASK_FIELDS);
        assert!(is_rfc3339_utc(task["created_at"].as_str().unwrap()));
        assert!(is_rfc3339_utc(task["updated_at"].as_str().unwrap()));
    }
    assert_eq!(body["items"][0]["title"], "alice newer");
    assert_eq!(body["items"][0]["completed"], false);
    assert!(body["items"][0]["description"].is_null());

    let response = tasks::handle(&state, v1_with_context(V1_LIST_TASKS, &w.bob, "")).await;
    assert_eq!(ids(&expect_json(&response, StatusCode::OK)), vec![w.bob_task]);
}

#[tokio::test]
async fn v1_get_task_by_path_parameter() {
    let (state, db) = api_tests::test_state().await;
    let w = world(&state, &db).await;
    let [newer, _] = w.alice_tasks;

    let response = tasks::handle(&state, v1_with_context(V1_GET_TASK, &w.alice, &newer.to_string())).await;
    let task = expect_json(&response, StatusCode::OK);
    assert_eq!(sorted_keys(&task), TASK_FIELDS);
    assert_eq!(task["id"], newer.to_string());
    assert_eq!(task["title"], "alice newer");
}

#[tokio::test]
async fn v1_get_task_of_another_user_is_404() {
    let (state, db) = api_tests::test_state().await;
    let w = world(&state, &db).await;

    let response = tasks::handle(&state, v1_with_context(V1_GET_TASK, &w.alice, &w.bob_task.to_string())).await;
    expect_problem(&response, StatusCode::NOT_FOUND, "not_found");
    // And a task that does not exist at all answers the same.
    let response = tasks::handle(
        &state,
        v1_with_context(V1_GET_TASK, &w.alice, &Uuid::new_v4().to_string()),
    )
    .await;
    expect_problem(&response, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn v1_get_task_with_a_non_uuid_id_is_404() {
    let (state, db) = api_tests::test_state().await;
    let w = world(&state, &db).await;
    for id in [
        "not-a-uuid",
        "42",
        "00000000-0000-0000-0000-000000000000",
        "'%20OR%201=1",
    ] {
        let response = tasks::handle(&state, v1_with_context(V1_GET_TASK, &w.alice, id)).await;
        expect_problem(&response, StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test]
async fn v1_revoked_session_in_authorizer_context_is_401() {
    let (state, db) = api_tests::test_state().await;
    let w = world(&state, &db).await;
    let [newer, _] = w.alice_tasks;

    // The authorizer has no database: it allowed the token, and the function must refuse.
    let list = || v1_with_context(V1_LIST_TASKS, &w.alice, "");
    let get = || v1_with_context(V1_GET_TASK, &w.alice, &newer.to_string());
    expect_json(&tasks::handle(&state, list()).await, StatusCode::OK);
    expect_json(&tasks::handle(&state, get()).await, StatusCode::OK);

    let revoked = w
        .sql
        .execute("UPDATE sessions SET revoked_at = now() WHERE id = $1", &[&w.alice.sid])
        .await
        .unwrap();
    assert_eq!(revoked, 1);

    expect_invalid_token(&tasks::handle(&state, list()).await);
    expect_invalid_token(&tasks::handle(&state, get()).await);
    // Only that session: bob is unaffected.
    expect_json(
        &tasks::handle(&state, v1_with_context(V1_LIST_TASKS, &w.bob, "")).await,
        StatusCode::OK,
    );
}

#[tokio::test]
async fn v1_authorizer_context_with_another_users_session_is_401() {
    let (state, db) = api_tests::test_state().await;
    let w = world(&state, &db).await;
    let mixed = Account {
        id: w.alice.id,
        sid: w.bob.sid,
        token: String::new(),
    };
    expect_invalid_token(&tasks::handle(&state, v1_with_context(V1_LIST_TASKS, &mixed, "")).await);
    let unknown = Account {
        id: w.alice.id,
        sid: Uuid::new_v4(),
        token: String::new(),
    };
    expect_invalid_token(&tasks::handle(&state, v1_with_context(V1_LIST_TASKS, &unknown, "")).await);
}

#[tokio::test]
async fn v1_malformed_authorizer_context_is_401() {
    let (state, db) = api_tests::test_state().await;
    let w = world(&state, &db).await;
    let (sub, sid) = (w.alice.id.to_string(), w.alice.sid.to_string());
    for (s, i, r) in [
        ("not-a-uuid", sid.as_str(), "user"),
        (&sub, "nope", "user"),
        (&sub, &sid, "root"),
    ] {
        let req = v1(
            V1_LIST_TASKS,
            &[
                ("__SUB__", s),
                ("__SID__", i),
                ("__ROLE__", r),
                ("__TOKEN__", &w.alice.token),
            ],
        );
        expect_invalid_token(&tasks::handle(&state, req).await);
    }
}

/// API Gateway reuses a cached Allow for `AuthorizerCacheTtl` whatever the token's `exp`: the
/// function itself refuses a context whose `exp` has passed (beyond the verifier's leeway), and
/// one without `exp`. Within the leeway, and as a JSON number, it is accepted.
#[tokio::test]
async fn v1_authorizer_context_past_its_exp_or_without_one_is_401() {
    let (state, db) = api_tests::test_state().await;
    let w = world(&state, &db).await;
    let (sub, sid) = (w.alice.id.to_string(), w.alice.sid.to_string());
    let event = |exp: &str| {
        fixture(
            V1_LIST_TASKS,
            &[
                ("__SUB__", &sub),
                ("__SID__", &sid),
                ("__ROLE__", "user"),
                ("__TOKEN__", &w.alice.token),
                ("__EXP__", exp),
            ],
        )
    };
    let leeway = access::tokens::LEEWAY_SECS;
    let past = (unix_now() - leeway - 5).to_string();
    expect_invalid_token(&tasks::handle(&state, request(event(&past), true)).await);
    expect_invalid_token(&tasks::handle(&state, request(event("soon"), true)).await);
    let mut without = event("0");
    without["requestContext"]["authorizer"]
        .as_object_mut()
        .unwrap()
        .remove("exp");
    expect_invalid_token(&tasks::handle(&state, request(without, true)).await);

    let within_leeway = (unix_now() - leeway + 5).to_string();
    let ok = tasks::handle(&state, request(event(&within_leeway), true)).await;
    assert_eq!(ok.status(), 200);
    let mut number = event("0");
    number["requestContext"]["authorizer"]["exp"] = serde_json::json!(unix_now() + 60);
    let ok = tasks::handle(&state, request(number, true)).await;
    assert_eq!(ok.status(), 200);
}

// ---- tasks, HTTP API (v2) as `cargo lambda watch` sends: no authorizer, no path parameters ----

#[tokio::test]
async fn v2_list_tasks_with_bearer_token() {
    let (state, db) = api_tests::test_state().await;
    let w = world(&state, &db).await;
    let response = tasks::handle(&state, v2_with_token(V2_LIST_TASKS, Some(&w.alice.token), "")).await;
    let body = expect_json(&response, StatusCode::OK);
    assert_eq!(ids(&body), w.alice_tasks.to_vec());
}

#[tokio::test]
async fn v2_without_a_token_is_401_with_a_bearer_challenge() {
    let (state, _db) = api_tests::test_state().await;
    let response = tasks::handle(&state, v2_with_token(V2_LIST_TASKS, None, "")).await;
    expect_problem(&response, StatusCode::UNAUTHORIZED, "invalid_token");
    let challenge = header(&response, header::WWW_AUTHENTICATE).unwrap();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(!challenge.contains("error="), "no token was sent: {challenge}");
}

#[tokio::test]
async fn v2_with_a_bad_token_is_401_invalid_token() {
    let (state, db) = api_tests::test_state().await;
    let w = world(&state, &db).await;

    // The payload changed (alice's token, made to say bob), the signature kept.
    let parts: Vec<&str> = w.alice.token.split('.').collect();
    let payload =
        String::from_utf8(base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, parts[1]).unwrap())
            .unwrap()
            .replace(&w.alice.id.to_string(), &w.bob.id.to_string());
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload),
        parts[2]
    );
    // Signed with another key under our key id.
    let forger = Tokens::hs256(
        KeySet {
            current: SigningKey::hmac(
                "test-key",
                SecretString::from("an-attackers-key-of-more-than-32-bytes".to_owned()),
            )
            .unwrap(),
            previous: None,
        },
        store::state::token_settings(&state.config),
    );
    let forged = forger.issue(w.alice.id, w.alice.sid, Role::User).unwrap();

    for token in [tampered.as_str(), forged.token.expose_secret(), "garbage", "a.b.c"] {
        let response = tasks::handle(&state, v2_with_token(V2_LIST_TASKS, Some(token), "")).await;
        expect_invalid_token(&response);
        let response = tasks::handle(
            &state,
            v2_with_token(V2_GET_TASK, Some(token), &w.alice_tasks[0].to_string()),
        )
        .await;
        expect_invalid_token(&response);
    }
    // Not a Bearer credential at all.
    let mut event = fixture(V2_LIST_TASKS, &[]);
    event["headers"]["authorization"] = json!("Basic YWxpY2U6c2VjcmV0");
    expect_invalid_token(&tasks::handle(&state, request(event, false)).await);
}

#[tokio::test]
async fn v2_get_task_with_the_id_only_in_raw_path() {
    let (state, db) = api_tests::test_state().await;
    let w = world(&state, &db).await;
    let [newer, older] = w.alice_tasks;
    for id in [newer, older] {
        let response = tasks::handle(
            &state,
            v2_with_token(V2_GET_TASK, Some(&w.alice.token), &id.to_string()),
        )
        .await;
        let task = expect_json(&response, StatusCode::OK);
        assert_eq!(task["id"], id.to_string());
    }
    let response = tasks::handle(
        &state,
        v2_with_token(V2_GET_TASK, Some(&w.alice.token), &w.bob_task.to_string()),
    )
    .await;
    expect_problem(&response, StatusCode::NOT_FOUND, "not_found");
    let response = tasks::handle(&state, v2_with_token(V2_GET_TASK, Some(&w.alice.token), "not-a-uuid")).await;
    expect_problem(&response, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn v2_token_of_a_revoked_session_is_401() {
    let (state, db) = api_tests::test_state().await;
    let w = world(&state, &db).await;
    let list = || v2_with_token(V2_LIST_TASKS, Some(&w.alice.token), "");
    expect_json(&tasks::handle(&state, list()).await, StatusCode::OK);
    w.sql
        .execute("UPDATE sessions SET revoked_at = now() WHERE id = $1", &[&w.alice.sid])
        .await
        .unwrap();
    expect_invalid_token(&tasks::handle(&state, list()).await);
}
