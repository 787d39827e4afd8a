//! End to end over HTTP against the local API: the admin routes, the gateway's role check in front
//! of them, role changes that take effect at once, the last-admin rule, disabling and deleting
//! users, and the authorizer policy a cached Allow would carry.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use api_tests::{TestApi, spawn_api};
use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequest;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::helpers::{
    Account, INVALID_TOKEN_BODY, Resp, assert_problem, client, error_fields, get, is_rfc3339_utc, jwt_parts, login_ok,
    login_resp, post, post_json, send, send_with, signup, signup_ok, unique_password,
};

/// The exact body of the gateway's 403 (the `ACCESS_DENIED` Gateway Response), which the admin
/// function also answers when it re-reads a stale role.
const ACCESS_DENIED_BODY: &str = r#"{"type":"urn:todo-api:problem:forbidden","title":"Forbidden","status":403,"code":"forbidden","detail":"Your role may not use this route."}"#;

/// Words that must never appear in an admin response body (no hash, no token material).
const SECRET_WORDS: [&str; 4] = ["argon2", "password", "hash", "refresh"];

/// Sign up an account whose email starts with `prefix` (201 asserted).
async fn signup_as(api: &TestApi, prefix: &str) -> Account {
    let email = format!("{prefix}.{}@Example.com", Uuid::new_v4().simple());
    let password = unique_password();
    let (status, body) = signup(api, &email, &password).await;
    assert_eq!(status, StatusCode::CREATED, "signup: {body}");
    login_ok(api, &email, &password).await
}

/// Set a user's role directly in the database (what `todo-admin grant-admin` does).
async fn set_role_sql(api: &TestApi, user: Uuid, role: &str) {
    let db = api.sql().await;
    let n = db
        .execute("UPDATE users SET role = $2 WHERE id = $1", &[&user, &role])
        .await
        .expect("update role");
    assert_eq!(n, 1, "no user {user}");
}

/// A new account made an admin in the database, with a fresh login (its token carries `admin`).
async fn admin_account(api: &TestApi) -> Account {
    let account = signup_as(api, "admin").await;
    set_role_sql(api, account.user_id, "admin").await;
    let admin = login_ok(api, &account.email, &account.password).await;
    assert_eq!(jwt_parts(&admin.access_token).1["role"], "admin");
    admin
}

/// Fail if a body shows a password hash or any token material.
#[track_caller]
fn assert_no_secrets(body: &str, tokens: &[&Account]) {
    let lower = body.to_lowercase();
    for word in SECRET_WORDS {
        assert!(!lower.contains(word), "admin response body contains {word:?}: {body}");
    }
    for account in tokens {
        assert!(!body.contains(&account.access_token), "access token in body: {body}");
        assert!(!body.contains(&account.refresh_token), "refresh token in body: {body}");
    }
}

/// A request to an admin route; the body is checked for secrets whatever the status.
async fn admin_send(api: &TestApi, method: Method, path: &str, token: Option<&str>, body: Option<&Value>) -> Resp {
    let r = send(api, method, path, token, body).await;
    assert_no_secrets(&r.body, &[]);
    r
}

async fn admin_get(api: &TestApi, token: &str, path: &str) -> Resp {
    admin_send(api, Method::GET, path, Some(token), None).await
}

async fn admin_patch(api: &TestApi, token: &str, id: Uuid, body: &Value) -> Resp {
    admin_send(
        api,
        Method::PATCH,
        &format!("/admin/users/{id}"),
        Some(token),
        Some(body),
    )
    .await
}

async fn admin_delete(api: &TestApi, token: &str, id: Uuid) -> Resp {
    admin_send(api, Method::DELETE, &format!("/admin/users/{id}"), Some(token), None).await
}

/// The gateway's (or the function's) 403: exactly the `ACCESS_DENIED` body.
#[track_caller]
fn assert_forbidden(r: &Resp, what: &str) {
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}: {}", r.body);
    r.problem(403, "forbidden");
    assert_eq!(r.body, ACCESS_DENIED_BODY, "{what}");
}

/// An admin view of a user: exactly `{id, email, role, disabled, created_at, email_verified}`.
#[track_caller]
fn assert_admin_user_shape(user: &Value) {
    let obj = user
        .as_object()
        .unwrap_or_else(|| panic!("user is not an object: {user}"));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "created_at",
            "disabled",
            "email",
            "email_verified",
            "id",
            "mfa_enabled",
            "role"
        ],
        "{user}"
    );
    assert!(
        user["id"].as_str().and_then(|s| s.parse::<Uuid>().ok()).is_some(),
        "{user}"
    );
    assert!(user["email"].is_string(), "{user}");
    assert!(user["role"] == "user" || user["role"] == "admin", "{user}");
    assert!(user["disabled"].is_boolean(), "{user}");
    assert!(user["created_at"].as_str().is_some_and(is_rfc3339_utc), "{user}");
}

/// A list page: exactly `{items, next_cursor}`, every item of the admin shape.
#[track_caller]
fn assert_list_shape(page: &Value) -> (Vec<Uuid>, Option<String>) {
    let obj = page
        .as_object()
        .unwrap_or_else(|| panic!("page is not an object: {page}"));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["items", "next_cursor"], "{page}");
    let items = page["items"].as_array().expect("items");
    for item in items {
        assert_admin_user_shape(item);
    }
    let ids = items
        .iter()
        .map(|u| u["id"].as_str().and_then(|s| s.parse().ok()).expect("id"))
        .collect();
    let cursor = match &page["next_cursor"] {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => panic!("next_cursor is neither null nor a string: {other}"),
    };
    (ids, cursor)
}

async fn count(api: &TestApi, sql: &str, user: Uuid) -> i64 {
    api.sql().await.query_one(sql, &[&user]).await.expect("count").get(0)
}

async fn active_admins(api: &TestApi) -> i64 {
    api.sql()
        .await
        .query_one("SELECT count(*) FROM users WHERE role = 'admin' AND NOT disabled", &[])
        .await
        .expect("count")
        .get(0)
}

/// A request written byte for byte on a TCP connection, so the path reaches the server exactly as
/// given (reqwest and the URL parser would normalise `..` and `%2e%2e`).
async fn raw_request(api: &TestApi, method: &str, path: &str, token: Option<&str>) -> (StatusCode, HeaderMap, String) {
    let mut stream = tokio::net::TcpStream::connect(api.addr).await.expect("connect");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        api.addr
    );
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = if method == "PATCH" { r#"{"disabled":true}"# } else { "" };
    if !body.is_empty() {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the server answers and closes")
        .expect("read");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let code: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').expect("header line");
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes()).expect("header name"),
            HeaderValue::from_str(value.trim()).expect("header value"),
        );
    }
    assert!(
        headers.get("transfer-encoding").is_none(),
        "unexpected chunked answer to {path}"
    );
    (StatusCode::from_u16(code).expect("status"), headers, body.to_owned())
}

// 1. Every admin route and method, with no token, a user token and an admin token.
#[tokio::test]
async fn every_admin_route_needs_an_admin_token() {
    let api = spawn_api().await;
    let admin = admin_account(&api).await;
    let user = signup_ok(&api).await;
    let victim = signup_ok(&api).await;
    let target = format!("/admin/users/{}", victim.user_id);
    let patch_body = json!({ "disabled": false });
    let routes: [(Method, &str, Option<&Value>); 4] = [
        (Method::GET, "/admin/users", None),
        (Method::GET, &target, None),
        (Method::PATCH, &target, Some(&patch_body)),
        (Method::DELETE, &target, None),
    ];

    for (method, path, body) in &routes {
        let what = format!("{method} {path}");
        // No token: the gateway's 401, challenge without an error attribute.
        let r = admin_send(&api, method.clone(), path, None, *body).await;
        r.problem(401, "invalid_token");
        assert_eq!(r.body, INVALID_TOKEN_BODY, "{what}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{what}");

        // A token that is not one: 401 with error="invalid_token".
        let r = admin_send(&api, method.clone(), path, Some("not.a.token"), *body).await;
        r.problem(401, "invalid_token");
        assert_eq!(r.body, INVALID_TOKEN_BODY, "{what}");
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Bearer error="invalid_token""#),
            "{what}"
        );

        // A user's token: the gateway's 403, whatever the body.
        let r = admin_send(&api, method.clone(), path, Some(&user.access_token), *body).await;
        assert_forbidden(&r, &what);
        // Whatever the body says.
        let r = admin_send(
            &api,
            method.clone(),
            path,
            Some(&user.access_token),
            Some(&json!({ "role": "admin" })),
        )
        .await;
        assert_forbidden(&r, &what);
    }
    // Nothing a user sent changed anything.
    assert_eq!(
        count(
            &api,
            "SELECT count(*) FROM users WHERE id = $1 AND NOT disabled AND role = 'user'",
            victim.user_id
        )
        .await,
        1
    );
    assert_eq!(active_admins(&api).await, 1);

    // The admin: 2xx on each.
    let r = admin_get(&api, &admin.access_token, "/admin/users").await;
    assert_eq!(r.header("content-type"), Some("application/json"));
    r.expect(200);
    admin_get(&api, &admin.access_token, &target).await.expect(200);
    admin_patch(&api, &admin.access_token, victim.user_id, &patch_body)
        .await
        .expect(200);
    let r = admin_delete(&api, &admin.access_token, victim.user_id).await;
    r.expect(204);
    assert!(r.body.is_empty(), "204 with a body: {}", r.body);
}

// 2. The list: shape, no secrets, newest first, pagination, email filter, bad parameters.
#[tokio::test]
async fn list_is_newest_first_paginated_and_leaks_nothing() {
    let api = spawn_api().await;
    let admin = admin_account(&api).await;
    let mut created = vec![admin.clone()];
    for prefix in ["alpha", "bravo", "alpha", "charlie", "alpha"] {
        created.push(signup_as(&api, prefix).await);
    }
    let all_accounts: Vec<&Account> = created.iter().collect();

    // One page with everything: newest first, exactly the admin shape, values as stored.
    let r = admin_get(&api, &admin.access_token, "/admin/users").await;
    assert_no_secrets(&r.body, &all_accounts);
    let page = r.expect(200);
    let (ids, cursor) = assert_list_shape(&page);
    assert_eq!(cursor, None, "everything fits in the default page");
    let newest_first: Vec<Uuid> = created.iter().rev().map(|a| a.user_id).collect();
    assert_eq!(ids, newest_first, "newest first");
    let in_db: Vec<Uuid> = api
        .sql()
        .await
        .query("SELECT id FROM users ORDER BY created_at DESC, id DESC", &[])
        .await
        .expect("ids")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, in_db);
    for (item, account) in page["items"]
        .as_array()
        .expect("items")
        .iter()
        .zip(created.iter().rev())
    {
        assert_eq!(item["email"], account.email.as_str(), "the user's spelling is kept");
        let role = if account.user_id == admin.user_id {
            "admin"
        } else {
            "user"
        };
        assert_eq!(item["role"], role);
        assert_eq!(item["disabled"], false);
    }

    // limit=2 walks every user exactly once, in order.
    let mut walked = Vec::new();
    let mut pages = 0;
    let mut path = "/admin/users?limit=2".to_owned();
    loop {
        let r = admin_get(&api, &admin.access_token, &path).await;
        assert_no_secrets(&r.body, &all_accounts);
        let (ids, cursor) = assert_list_shape(&r.expect(200));
        assert!(!ids.is_empty() && ids.len() <= 2, "page {pages}: {}", r.body);
        walked.extend(ids);
        pages += 1;
        assert!(pages <= 10, "pagination does not end");
        match cursor {
            Some(c) => path = format!("/admin/users?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(walked, newest_first, "every user once, newest first");
    let unique: HashSet<Uuid> = walked.iter().copied().collect();
    assert_eq!(unique.len(), walked.len(), "no duplicates");

    // email= is a case-insensitive substring filter, and paginates too.
    let alphas: Vec<Uuid> = created
        .iter()
        .rev()
        .filter(|a| a.email.starts_with("alpha."))
        .map(|a| a.user_id)
        .collect();
    assert_eq!(alphas.len(), 3);
    for filter in ["alpha.", "ALPHA.", "AlPhA."] {
        let r = admin_get(&api, &admin.access_token, &format!("/admin/users?email={filter}")).await;
        let (ids, cursor) = assert_list_shape(&r.expect(200));
        assert_eq!(ids, alphas, "email={filter}");
        assert_eq!(cursor, None);
    }
    let r = admin_get(&api, &admin.access_token, "/admin/users?email=ALPHA.&limit=2").await;
    let (first, cursor) = assert_list_shape(&r.expect(200));
    let cursor = cursor.expect("a second page");
    let r = admin_get(
        &api,
        &admin.access_token,
        &format!("/admin/users?email=alpha.&limit=2&cursor={cursor}"),
    )
    .await;
    let (second, cursor) = assert_list_shape(&r.expect(200));
    assert_eq!(cursor, None);
    assert_eq!([first, second].concat(), alphas);
    let bravo = &created[2];
    let needle = bravo.email[..20].to_uppercase();
    let r = admin_get(&api, &admin.access_token, &format!("/admin/users?email={needle}")).await;
    assert_eq!(assert_list_shape(&r.expect(200)).0, [bravo.user_id]);
    let r = admin_get(&api, &admin.access_token, "/admin/users?email=EXAMPLE.COM").await;
    assert_eq!(assert_list_shape(&r.expect(200)).0.len(), created.len());
    let r = admin_get(&api, &admin.access_token, "/admin/users?email=nobody-here").await;
    let (ids, cursor) = assert_list_shape(&r.expect(200));
    assert!(ids.is_empty() && cursor.is_none(), "{}", r.body);
    // A filter character is text, not a pattern.
    for pattern in ["%25%25%25", "___", "%25example%25", "alpha_", "%5C%5C%5C", "alpha%5C"] {
        let r = admin_get(&api, &admin.access_token, &format!("/admin/users?email={pattern}")).await;
        assert!(assert_list_shape(&r.expect(200)).0.is_empty(), "{pattern}: {}", r.body);
    }
    // A filter is empty (everyone) or at least three characters after trimming and case
    // folding: a shorter one could not use the trigram index and would read every user.
    for short in ["a", "al", "%25", "_", "%20al%20", "%C3%9F"] {
        let r = admin_get(&api, &admin.access_token, &format!("/admin/users?email={short}")).await;
        let problem = r.problem(422, "validation_failed");
        assert_eq!(
            error_fields(&problem),
            [("email".to_owned(), "too_short".to_owned())],
            "{short}"
        );
    }
    let r = admin_get(&api, &admin.access_token, "/admin/users?email=%20%20").await;
    assert_eq!(
        assert_list_shape(&r.expect(200)).0.len(),
        created.len(),
        "blank: everyone"
    );

    // Bad limit or cursor: 422 naming the field.
    for bad in ["0", "101", "-1", "abc", "1.5", "", "99999999999999999999"] {
        let r = admin_get(&api, &admin.access_token, &format!("/admin/users?limit={bad}")).await;
        let problem = r.problem(422, "validation_failed");
        let fields = error_fields(&problem);
        assert_eq!(fields.len(), 1, "limit={bad}: {}", r.body);
        assert_eq!(fields[0].0, "limit", "limit={bad}");
        // An absurdly long value is refused as too long before it is parsed.
        let code = if bad.len() > 16 { "too_long" } else { "invalid_limit" };
        assert_eq!(fields[0].1, code, "limit={bad}");
    }
    for limit in ["1", "100"] {
        admin_get(&api, &admin.access_token, &format!("/admin/users?limit={limit}"))
            .await
            .expect(200);
    }
    // Garbage, and cursors of nearly the right shape: a bad id, a bad time, a non-canonical time.
    let near = {
        use base64::Engine;
        let b64 = |s: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        [
            b64("1700000000000000:not-a-uuid".to_owned()),
            b64(format!("soon:{}", Uuid::new_v4())),
            b64(format!("01700000000000000:{}", Uuid::new_v4())),
            b64(format!("1700000000000000:{}", Uuid::new_v4()).to_uppercase()),
        ]
    };
    let garbage = ["abc", "!!!", "bm90LWEtY3Vyc29y", "MTow", ""];
    for bad in garbage.iter().copied().chain(near.iter().map(String::as_str)) {
        let r = admin_get(&api, &admin.access_token, &format!("/admin/users?cursor={bad}")).await;
        let problem = r.problem(422, "validation_failed");
        assert!(
            error_fields(&problem).contains(&("cursor".to_owned(), "invalid_cursor".to_owned())),
            "cursor={bad}: {}",
            r.body
        );
    }
    let r = admin_get(&api, &admin.access_token, "/admin/users?limit=0&cursor=abc").await;
    let problem = r.problem(422, "validation_failed");
    let mut fields: Vec<String> = error_fields(&problem).into_iter().map(|(f, _)| f).collect();
    fields.sort();
    assert_eq!(fields, ["cursor", "limit"], "both problems reported");
}

// 3. One user: 200, unknown or non-UUID ids 404.
#[tokio::test]
async fn get_one_user_and_unknown_ids() {
    let api = spawn_api().await;
    let admin = admin_account(&api).await;
    let user = signup_ok(&api).await;

    let r = admin_get(&api, &admin.access_token, &format!("/admin/users/{}", user.user_id)).await;
    assert_no_secrets(&r.body, &[&admin, &user]);
    let got = r.expect(200);
    assert_admin_user_shape(&got);
    assert_eq!(got["id"], user.user_id.to_string());
    assert_eq!(got["email"], user.email.as_str());
    assert_eq!(got["role"], "user");
    assert_eq!(got["disabled"], false);
    // An admin can look at themself.
    let me = admin_get(&api, &admin.access_token, &format!("/admin/users/{}", admin.user_id))
        .await
        .expect(200);
    assert_eq!(me["role"], "admin");

    let unknown = Uuid::new_v4();
    let nil = Uuid::nil();
    for id in [
        unknown.to_string(),
        unknown.simple().to_string().to_uppercase(),
        nil.to_string(),
        "not-a-uuid".to_owned(),
        "123".to_owned(),
        format!("{}x", user.user_id),
        format!("{}%20", user.user_id),
    ] {
        let path = format!("/admin/users/{id}");
        admin_get(&api, &admin.access_token, &path)
            .await
            .problem(404, "not_found");
        let r = admin_send(
            &api,
            Method::PATCH,
            &path,
            Some(&admin.access_token),
            Some(&json!({ "disabled": true })),
        )
        .await;
        r.problem(404, "not_found");
        admin_send(&api, Method::DELETE, &path, Some(&admin.access_token), None)
            .await
            .problem(404, "not_found");
    }
    // Nothing was changed by those.
    assert_eq!(
        count(
            &api,
            "SELECT count(*) FROM users WHERE id = $1 AND NOT disabled",
            user.user_id
        )
        .await,
        1
    );
}

// 4. Path variants never reach data with a user token (or none).
#[tokio::test]
async fn path_variants_never_reach_admin_data() {
    let api = spawn_api().await;
    let admin = admin_account(&api).await;
    let user = signup_ok(&api).await;
    let users = [&admin, &user];
    let variants = [
        "/admin/users/".to_owned(),
        "/ADMIN/users".to_owned(),
        "/admin/Users".to_owned(),
        "/Admin/Users/".to_owned(),
        "/admin//users".to_owned(),
        "//admin/users".to_owned(),
        "/admin/users/%2e%2e".to_owned(),
        "/admin/users/%2E%2E".to_owned(),
        "/admin/users/..".to_owned(),
        "/admin/users/.".to_owned(),
        "/admin/users/..%2f".to_owned(),
        "/admin/users/%2e%2e%2f".to_owned(),
        "/admin%2fusers".to_owned(),
        "/admin%2Fusers".to_owned(),
        "/admin/users%2f".to_owned(),
        "/admin/users;x".to_owned(),
        "/admin/./users".to_owned(),
        "/tasks/../admin/users".to_owned(),
        "/tasks/%2e%2e/admin/users".to_owned(),
        "/tasks/..%2fadmin%2fusers".to_owned(),
        "/tasks/../admin/users/".to_owned(),
        format!("/tasks/../admin/users/{}", user.user_id),
        format!("/admin/users/{}/", user.user_id),
        format!("/admin/users/{}/..", user.user_id),
        format!("/admin/users/x/../{}", user.user_id),
        format!("/admin/users/{}%2f..", user.user_id),
        "/admin/users?limit=100".to_owned(),
        "/admin/users/?x=1".to_owned(),
    ];
    for method in ["GET", "PATCH", "DELETE"] {
        for path in &variants {
            for (who, token) in [("user", Some(user.access_token.as_str())), ("nobody", None)] {
                let what = format!("{who}: {method} {path}");
                let (status, headers, body) = raw_request(&api, method, path, token).await;
                // `/tasks/<one segment>` is a task route: a user's PATCH there is refused by the
                // tasks function (no such field), never answered by the admin one.
                let task_route = path.starts_with("/tasks/") && path[7..].split('/').count() == 1;
                let expected: &[u16] = if task_route {
                    &[401, 403, 404, 422]
                } else {
                    &[401, 403, 404]
                };
                assert!(expected.contains(&status.as_u16()), "{what}: {status} {body}");
                let code = match status.as_u16() {
                    401 => "invalid_token",
                    403 => "forbidden",
                    422 => "unknown_field",
                    _ => "not_found",
                };
                assert_problem(status, &headers, &body, status.as_u16(), code);
                if status == StatusCode::FORBIDDEN {
                    assert_eq!(body, ACCESS_DENIED_BODY, "{what}");
                }
                for account in users {
                    assert!(!body.contains(&account.user_id.to_string()), "{what}: {body}");
                    assert!(!body.contains(&account.email), "{what}: {body}");
                }
                assert!(!body.contains('@'), "{what}: {body}");
                assert_no_secrets(&body, &users);
            }
        }
    }
    // The raw writer itself reaches the real route: a user gets 403 and an admin 200 there.
    let (status, _, body) = raw_request(&api, "GET", "/admin/users", Some(&user.access_token)).await;
    assert_eq!((status.as_u16(), body.as_str()), (403, ACCESS_DENIED_BODY));
    let (status, _, body) = raw_request(&api, "GET", "/admin/users", Some(&admin.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(&user.email));
    // And nothing was changed by the PATCH and DELETE variants.
    assert_eq!(
        count(
            &api,
            "SELECT count(*) FROM users WHERE id = $1 AND NOT disabled",
            user.user_id
        )
        .await,
        1
    );
    assert_eq!(active_admins(&api).await, 1);
}

// 5a. A demoted admin's unexpired admin token is refused on the very next admin request.
#[tokio::test]
async fn demotion_takes_effect_on_the_next_request() {
    let api = spawn_api().await;
    let a = admin_account(&api).await;
    let b = admin_account(&api).await;
    let victim = signup_ok(&api).await;
    let one = format!("/admin/users/{}", victim.user_id);

    admin_get(&api, &b.access_token, "/admin/users").await.expect(200);
    let demoted = admin_patch(&api, &a.access_token, b.user_id, &json!({ "role": "user" }))
        .await
        .expect(200);
    assert_admin_user_shape(&demoted);
    assert_eq!(demoted["role"], "user");
    assert_eq!(demoted["disabled"], false);
    assert_eq!(
        jwt_parts(&b.access_token).1["role"],
        "admin",
        "B's token still says admin"
    );

    // Every admin route refuses B's token at once, with the gateway's own 403 body.
    assert_forbidden(&admin_get(&api, &b.access_token, "/admin/users").await, "list");
    assert_forbidden(&admin_get(&api, &b.access_token, &one).await, "get");
    assert_forbidden(
        &admin_patch(&api, &b.access_token, victim.user_id, &json!({ "disabled": true })).await,
        "patch",
    );
    assert_forbidden(&admin_delete(&api, &b.access_token, victim.user_id).await, "delete");
    assert_forbidden(
        &admin_patch(&api, &b.access_token, b.user_id, &json!({ "role": "admin" })).await,
        "re-promote self",
    );
    assert_eq!(
        count(
            &api,
            "SELECT count(*) FROM users WHERE id = $1 AND NOT disabled",
            victim.user_id
        )
        .await,
        1,
        "B's refused requests changed nothing"
    );
    assert_eq!(
        count(
            &api,
            "SELECT count(*) FROM users WHERE id = $1 AND role = 'user'",
            b.user_id
        )
        .await,
        1
    );
    // B is still a user: their session works on user routes.
    get(&api, &b.access_token, "/tasks").await.expect(200);
    // And a refresh gives a token that says so.
    let r = post_json(&api, "/auth/refresh", &json!({ "refresh_token": b.refresh_token })).await;
    let refreshed = r.expect(200);
    let token = refreshed["access_token"].as_str().expect("access_token");
    assert_eq!(jwt_parts(token).1["role"], "user");
    assert_forbidden(&admin_get(&api, token, "/admin/users").await, "refreshed user token");
}

// 5b. A promoted user gets admin access after a refresh, not with their old token.
#[tokio::test]
async fn promotion_takes_effect_after_refresh() {
    let api = spawn_api().await;
    let admin = admin_account(&api).await;
    let user = signup_ok(&api).await;

    let promoted = admin_patch(&api, &admin.access_token, user.user_id, &json!({ "role": "admin" }))
        .await
        .expect(200);
    assert_eq!(promoted["role"], "admin");

    // The old token says `user`: the gateway refuses it before the function runs.
    assert_eq!(jwt_parts(&user.access_token).1["role"], "user");
    assert_forbidden(&admin_get(&api, &user.access_token, "/admin/users").await, "old token");

    // Refresh re-reads the role.
    let r = post_json(&api, "/auth/refresh", &json!({ "refresh_token": user.refresh_token })).await;
    let refreshed = r.expect(200);
    let token = refreshed["access_token"].as_str().expect("access_token");
    assert_eq!(jwt_parts(token).1["role"], "admin");
    let r = admin_get(&api, token, "/admin/users").await;
    let (ids, _) = assert_list_shape(&r.expect(200));
    assert!(ids.contains(&user.user_id) && ids.contains(&admin.user_id));
    // The old token is still refused (its role claim is what the gateway sees).
    assert_forbidden(
        &admin_get(&api, &user.access_token, "/admin/users").await,
        "old token again",
    );
}

// 6a. The last active admin cannot demote, disable or delete themself.
#[tokio::test]
async fn last_admin_cannot_be_removed() {
    let api = spawn_api().await;
    let a = admin_account(&api).await;
    let user = signup_ok(&api).await;
    const LIVE_SESSIONS: &str = "SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL";
    let live = count(&api, LIVE_SESSIONS, a.user_id).await;
    assert!(live >= 1);

    for body in [
        json!({ "role": "user" }),
        json!({ "disabled": true }),
        json!({ "role": "user", "disabled": true }),
        json!({ "role": "admin", "disabled": true }),
    ] {
        let r = admin_patch(&api, &a.access_token, a.user_id, &body).await;
        let problem = r.problem(409, "last_admin");
        assert_eq!(problem["title"], "Conflict", "{body}");
    }
    admin_delete(&api, &a.access_token, a.user_id)
        .await
        .problem(409, "last_admin");
    assert_eq!(active_admins(&api).await, 1);
    assert_eq!(
        count(&api, LIVE_SESSIONS, a.user_id).await,
        live,
        "no session of the admin was revoked"
    );
    // Harmless changes to the last admin are fine.
    let same = admin_patch(
        &api,
        &a.access_token,
        a.user_id,
        &json!({ "role": "admin", "disabled": false }),
    )
    .await
    .expect(200);
    assert_eq!(
        (same["role"].as_str(), same["disabled"].as_bool()),
        (Some("admin"), Some(false))
    );
    // A disabled admin does not count as an active one.
    let b = admin_account(&api).await;
    admin_patch(&api, &a.access_token, b.user_id, &json!({ "disabled": true }))
        .await
        .expect(200);
    admin_patch(&api, &a.access_token, a.user_id, &json!({ "role": "user" }))
        .await
        .problem(409, "last_admin");
    // A disabled admin can be demoted and promoted again freely: they are not active.
    for role in ["user", "admin"] {
        let r = admin_patch(&api, &a.access_token, b.user_id, &json!({ "role": role })).await;
        let changed = r.expect(200);
        assert_eq!(
            (changed["role"].as_str(), changed["disabled"].as_bool()),
            (Some(role), Some(true))
        );
    }
    assert_eq!(active_admins(&api).await, 1);
    // Changes to users are not affected by the rule.
    admin_patch(&api, &a.access_token, user.user_id, &json!({ "disabled": true }))
        .await
        .expect(200);
    admin_delete(&api, &a.access_token, user.user_id).await.expect(204);

    // With two active admins, one may go, and then the other is the last.
    admin_patch(&api, &a.access_token, b.user_id, &json!({ "disabled": false }))
        .await
        .expect(200);
    let b = login_ok(&api, &b.email, &b.password).await;
    assert_eq!(active_admins(&api).await, 2);
    let r = admin_patch(&api, &b.access_token, a.user_id, &json!({ "role": "user" })).await;
    assert_eq!(r.expect(200)["role"], "user");
    assert_eq!(active_admins(&api).await, 1);
    admin_patch(&api, &b.access_token, b.user_id, &json!({ "role": "user" }))
        .await
        .problem(409, "last_admin");
    admin_patch(&api, &b.access_token, b.user_id, &json!({ "disabled": true }))
        .await
        .problem(409, "last_admin");
    admin_delete(&api, &b.access_token, b.user_id)
        .await
        .problem(409, "last_admin");
    assert_eq!(active_admins(&api).await, 1);
}

/// Two admins demote each other; returns the two statuses (`x`'s, `y`'s).
async fn demote_each_other(api: &TestApi, x: &Account, y: &Account) -> (u16, u16) {
    let (cx, cy) = (client(), client());
    let body = json!({ "role": "user" });
    let (to_y, to_x) = (
        format!("/admin/users/{}", y.user_id),
        format!("/admin/users/{}", x.user_id),
    );
    let (rx, ry) = tokio::join!(
        send_with(&cx, api, Method::PATCH, &to_y, Some(&x.access_token), Some(&body),),
        send_with(&cy, api, Method::PATCH, &to_x, Some(&y.access_token), Some(&body),),
    );
    for r in [&rx, &ry] {
        assert_no_secrets(&r.body, &[x, y]);
        match r.status.as_u16() {
            200 => assert_eq!(r.json()["role"], "user"),
            409 => {
                r.problem(409, "last_admin");
            }
            403 => assert_eq!(r.body, ACCESS_DENIED_BODY),
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    (rx.status.as_u16(), ry.status.as_u16())
}

// 6b. Two admins demoting each other at the same moment: one wins, the other gets 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_mutual_demotion_leaves_one_admin() {
    let api = spawn_api().await;
    let x = admin_account(&api).await;
    let y = admin_account(&api).await;

    // Released together: hold the active admins' row locks until both requests are waiting on
    // them (past the gateway and their own role check), then let go.
    let mut holder = api.sql().await;
    let watcher = api.sql().await;
    let tx = holder.transaction().await.expect("begin");
    tx.query(
        "SELECT id FROM users WHERE role = 'admin' AND NOT disabled ORDER BY id FOR UPDATE",
        &[],
    )
    .await
    .expect("lock the admins");
    let race = demote_each_other(&api, &x, &y);
    let release = async {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let waiting: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                      WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .expect("pg_stat_activity")
                .get(0);
            if waiting >= 2 {
                break;
            }
            assert!(Instant::now() < deadline, "the two requests never waited on the lock");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tx.commit().await.expect("release");
    };
    let ((sx, sy), ()) = tokio::join!(race, release);
    let mut statuses = [sx, sy];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "exactly one wins, the other is the last admin");
    assert_eq!(active_admins(&api).await, 1);
    let (winner, loser) = if sx == 200 { (&x, &y) } else { (&y, &x) };
    assert_eq!(
        count(
            &api,
            "SELECT count(*) FROM users WHERE id = $1 AND role = 'admin'",
            winner.user_id
        )
        .await,
        1
    );
    // The loser was demoted: their admin token is refused at once; the winner's still works.
    assert_forbidden(&admin_get(&api, &loser.access_token, "/admin/users").await, "loser");
    admin_get(&api, &winner.access_token, "/admin/users").await.expect(200);

    // Unsynchronised races: the invariant holds whatever the interleaving. The loser gets 409, or
    // 403 when its request only started after it had already been demoted.
    for round in 0..5 {
        // Both admins again (their admin tokens are still unexpired).
        set_role_sql(&api, loser.user_id, "admin").await;
        assert_eq!(active_admins(&api).await, 2);
        let (sx, sy) = demote_each_other(&api, &x, &y).await;
        let mut statuses = [sx, sy];
        statuses.sort_unstable();
        assert!(
            statuses == [200, 409] || statuses == [200, 403],
            "round {round}: {statuses:?}"
        );
        assert_eq!(active_admins(&api).await, 1, "round {round}");
        let winner = if sx == 200 { &x } else { &y };
        assert_eq!(
            count(
                &api,
                "SELECT count(*) FROM users WHERE id = $1 AND role = 'admin'",
                winner.user_id
            )
            .await,
            1,
            "round {round}"
        );
        set_role_sql(&api, x.user_id, "admin").await;
        set_role_sql(&api, y.user_id, "admin").await;
    }
}

// 7. Disabling revokes every session at once; re-enabling allows logging in again.
#[tokio::test]
async fn disabling_revokes_every_session() {
    let api = spawn_api().await;
    let admin = admin_account(&api).await;
    let user = signup_ok(&api).await;
    let second = login_ok(&api, &user.email, &user.password).await;
    get(&api, &user.access_token, "/tasks").await.expect(200);
    post(&api, &second.access_token, "/tasks", &json!({ "title": "mine" }))
        .await
        .expect(201);

    let r = admin_patch(&api, &admin.access_token, user.user_id, &json!({ "disabled": true })).await;
    let changed = r.expect(200);
    assert_admin_user_shape(&changed);
    assert_eq!(
        (changed["disabled"].as_bool(), changed["role"].as_str()),
        (Some(true), Some("user"))
    );
    assert_eq!(
        count(
            &api,
            "SELECT count(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL",
            user.user_id
        )
        .await,
        0,
        "every session revoked"
    );

    for session in [&user, &second] {
        for (method, path) in [(Method::GET, "/tasks"), (Method::GET, "/auth/me")] {
            let r = send(&api, method, path, Some(&session.access_token), None).await;
            r.problem(401, "invalid_token");
            assert_eq!(r.header("www-authenticate"), Some(r#"Bearer error="invalid_token""#));
        }
        let r = post_json(
            &api,
            "/auth/refresh",
            &json!({ "refresh_token": session.refresh_token }),
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "refresh: {}", r.body);
        let code = r.json()["code"].as_str().expect("code").to_owned();
        assert!(
            code == "invalid_refresh_token" || code == "refresh_token_reused",
            "refresh: {}",
            r.body
        );
        r.problem(401, &code);
    }
    login_resp(&api, &user.email, &user.password)
        .await
        .problem(403, "account_disabled");
    login_resp(&api, &user.email, "wrong-password-123")
        .await
        .problem(401, "invalid_credentials");
    let shown = admin_get(&api, &admin.access_token, &format!("/admin/users/{}", user.user_id))
        .await
        .expect(200);
    assert_eq!(shown["disabled"], true);

    let r = admin_patch(&api, &admin.access_token, user.user_id, &json!({ "disabled": false })).await;
    assert_eq!(r.expect(200)["disabled"], false);
    let again = login_ok(&api, &user.email, &user.password).await;
    let tasks = get(&api, &again.access_token, "/tasks").await.expect(200);
    assert_eq!(tasks["items"].as_array().map(Vec::len), Some(1), "the tasks survived");
    // The revoked sessions stay revoked.
    get(&api, &user.access_token, "/tasks")
        .await
        .problem(401, "invalid_token");
    let r = post_json(&api, "/auth/refresh", &json!({ "refresh_token": second.refresh_token })).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
}

// 8. Deleting a user removes the user, their sessions, refresh tokens and tasks.
#[tokio::test]
async fn delete_removes_everything_of_the_user() {
    let api = spawn_api().await;
    let admin = admin_account(&api).await;
    let user = signup_ok(&api).await;
    let second = login_ok(&api, &user.email, &user.password).await;
    let bystander = signup_ok(&api).await;
    for title in ["one", "two", "three"] {
        post(&api, &user.access_token, "/tasks", &json!({ "title": title }))
            .await
            .expect(201);
    }
    post(&api, &bystander.access_token, "/tasks", &json!({ "title": "kept" }))
        .await
        .expect(201);
    // A rotation leaves a consumed and a live refresh token in that session.
    post_json(&api, "/auth/refresh", &json!({ "refresh_token": second.refresh_token }))
        .await
        .expect(200);

    const SESSIONS: &str = "SELECT count(*) FROM sessions WHERE user_id = $1";
    const REFRESH: &str = "SELECT count(*) FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id
                            WHERE s.user_id = $1";
    const TASKS: &str = "SELECT count(*) FROM tasks WHERE user_id = $1";
    const USERS: &str = "SELECT count(*) FROM users WHERE id = $1";
    assert_eq!(count(&api, SESSIONS, user.user_id).await, 2);
    assert_eq!(count(&api, REFRESH, user.user_id).await, 3);
    assert_eq!(count(&api, TASKS, user.user_id).await, 3);
    let orphan_refresh = "SELECT count(*) FROM refresh_tokens WHERE session_id = ANY($1)";
    let sessions = [user.session_id, second.session_id];

    let r = admin_delete(&api, &admin.access_token, user.user_id).await;
    r.expect(204);
    assert!(r.body.is_empty());
    for sql in [USERS, SESSIONS, REFRESH, TASKS] {
        assert_eq!(count(&api, sql, user.user_id).await, 0, "{sql}");
    }
    let left: i64 = api
        .sql()
        .await
        .query_one(orphan_refresh, &[&sessions.as_slice()])
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 0, "no refresh token of the deleted sessions is left");
    // Others are untouched.
    assert_eq!(count(&api, TASKS, bystander.user_id).await, 1);
    assert_eq!(count(&api, USERS, admin.user_id).await, 1);

    // Gone for the admin API, and the user's tokens die at once.
    admin_get(&api, &admin.access_token, &format!("/admin/users/{}", user.user_id))
        .await
        .problem(404, "not_found");
    admin_delete(&api, &admin.access_token, user.user_id)
        .await
        .problem(404, "not_found");
    admin_patch(&api, &admin.access_token, user.user_id, &json!({ "disabled": false }))
        .await
        .problem(404, "not_found");
    get(&api, &user.access_token, "/tasks")
        .await
        .problem(401, "invalid_token");
    login_resp(&api, &user.email, &user.password)
        .await
        .problem(401, "invalid_credentials");
    let (ids, _) = assert_list_shape(&admin_get(&api, &admin.access_token, "/admin/users").await.expect(200));
    assert!(!ids.contains(&user.user_id));
}

// 9. PATCH validation: bad values and unknown fields are 422, `{}` changes nothing.
#[tokio::test]
async fn patch_validation() {
    let api = spawn_api().await;
    let admin = admin_account(&api).await;
    let user = signup_ok(&api).await;
    let path = format!("/admin/users/{}", user.user_id);
    let before = admin_get(&api, &admin.access_token, &path).await.expect(200);

    for (body, field, code) in [
        (json!({ "role": "root" }), "role", "invalid_role"),
        (json!({ "role": "Admin" }), "role", "invalid_role"),
        (json!({ "role": "" }), "role", "invalid_role"),
        (json!({ "role": null }), "role", "invalid_role"),
        (json!({ "role": 1 }), "role", "invalid_type"),
        (json!({ "disabled": "yes" }), "disabled", "invalid_type"),
        (json!({ "disabled": 1 }), "disabled", "invalid_type"),
        (json!({ "disabled": null }), "disabled", "required"),
        (json!({ "email": "x@example.com" }), "email", "unknown_field"),
        (json!({ "password_hash": "x" }), "password_hash", "unknown_field"),
        (json!({ "role": "admin", "id": Uuid::new_v4() }), "id", "unknown_field"),
    ] {
        // The 422 names the unknown field it was sent, so the word check applies only to
        // bodies that were not given those words.
        let r = send(&api, Method::PATCH, &path, Some(&admin.access_token), Some(&body)).await;
        if !body.to_string().contains("password") {
            assert_no_secrets(&r.body, &[&admin, &user]);
        }
        assert!(!r.body.contains("$argon2"), "{}", r.body);
        let expected = if code == "unknown_field" {
            "unknown_field"
        } else {
            "validation_failed"
        };
        let problem = r.problem(422, expected);
        assert!(
            error_fields(&problem).contains(&(field.to_owned(), code.to_owned())),
            "{body}: {}",
            r.body
        );
    }
    // Not an object, not JSON, not JSON-typed.
    let r = admin_patch(&api, &admin.access_token, user.user_id, &json!(["role", "admin"])).await;
    r.problem(422, "validation_failed");
    let r = crate::helpers::send_raw(
        &api,
        Method::PATCH,
        &path,
        &[
            ("authorization", &format!("Bearer {}", admin.access_token)),
            ("content-type", "application/json"),
        ],
        Some(b"{\"role\":".to_vec()),
    )
    .await;
    r.problem(400, "malformed_json");
    let r = crate::helpers::send_raw(
        &api,
        Method::PATCH,
        &path,
        &[("authorization", &format!("Bearer {}", admin.access_token))],
        Some(br#"{"role":"admin"}"#.to_vec()),
    )
    .await;
    r.problem(415, "unsupported_media_type");

    let after = admin_get(&api, &admin.access_token, &path).await.expect(200);
    assert_eq!(after, before, "no invalid PATCH changed anything");

    let same = admin_patch(&api, &admin.access_token, user.user_id, &json!({}))
        .await
        .expect(200);
    assert_eq!(same, before, "an empty PATCH changes nothing");
    // The user's session survives an empty PATCH.
    get(&api, &user.access_token, "/tasks").await.expect(200);
}

// 10. The authorizer's policy for a user token, cached for /tasks, never covers /admin.
#[tokio::test]
async fn cached_user_policy_never_covers_admin_routes() {
    let api = spawn_api().await;
    let admin = admin_account(&api).await;
    let user = signup_ok(&api).await;
    let stage = "arn:aws:execute-api:eu-west-1:123456789012:abc123def4/prod";
    let some_id = Uuid::new_v4();
    let admin_arns = [
        format!("{stage}/GET/admin/users"),
        format!("{stage}/GET/admin/users/{some_id}"),
        format!("{stage}/PATCH/admin/users/{some_id}"),
        format!("{stage}/DELETE/admin/users/{some_id}"),
    ];
    let task_arns = [
        format!("{stage}/GET/tasks"),
        format!("{stage}/POST/tasks"),
        format!("{stage}/GET/tasks/{some_id}"),
        format!("{stage}/DELETE/tasks/{some_id}"),
    ];

    let decide = |token: &str, arn: &str| {
        let mut event = ApiGatewayCustomAuthorizerRequest::default();
        event.type_ = Some("TOKEN".into());
        event.authorization_token = Some(format!("Bearer {token}"));
        event.method_arn = Some(arn.to_owned());
        authorizer::handle(&api.state.tokens, &event).expect("a valid token is allowed")
    };

    for cached_for in &task_arns {
        let policy = decide(&user.access_token, cached_for).policy_document;
        for arn in &task_arns {
            assert!(local_api::gateway::policy_allows(&policy, arn), "user on {arn}");
        }
        for arn in &admin_arns {
            assert!(
                !local_api::gateway::policy_allows(&policy, arn),
                "a user's policy cached for {cached_for} allows {arn}"
            );
        }
        let policy = decide(&admin.access_token, cached_for).policy_document;
        for arn in admin_arns.iter().chain(&task_arns) {
            assert!(local_api::gateway::policy_allows(&policy, arn), "admin on {arn}");
        }
        // Not another API's or stage's routes.
        let other = "arn:aws:execute-api:eu-west-1:123456789012:otherapi99/prod/GET/admin/users";
        assert!(!local_api::gateway::policy_allows(&policy, other));
        let other_stage = "arn:aws:execute-api:eu-west-1:123456789012:abc123def4/dev/GET/admin/users";
        assert!(!local_api::gateway::policy_allows(&policy, other_stage));
    }
    // A user's policy even cached for an admin route (the gateway answered 403 there) covers no
    // admin route.
    let policy = decide(&user.access_token, &admin_arns[0]).policy_document;
    for arn in &admin_arns {
        assert!(!local_api::gateway::policy_allows(&policy, arn), "{arn}");
    }
    // The context carries the token's role; over HTTP the same tokens get 200 and 403.
    let decision = decide(&user.access_token, &task_arns[0]);
    assert_eq!(decision.context["role"], "user");
    assert_eq!(
        decision.principal_id.as_deref(),
        Some(user.user_id.to_string().as_str())
    );
    get(&api, &user.access_token, "/tasks").await.expect(200);
    assert_forbidden(&admin_get(&api, &user.access_token, "/admin/users").await, "user");
    admin_get(&api, &admin.access_token, "/admin/users").await.expect(200);
}

// A live session is part of every admin request: an admin whose session was revoked, or who was
// disabled or deleted, gets 401 on the very next admin request, though their token has not expired.
#[tokio::test]
async fn revoked_disabled_or_deleted_admin_is_401_at_once() {
    let api = spawn_api().await;
    let a = admin_account(&api).await;
    let b = admin_account(&api).await;
    let c = admin_account(&api).await;
    let user = signup_ok(&api).await;
    let one = format!("/admin/users/{}", user.user_id);

    #[track_caller]
    fn assert_revoked(r: &Resp, what: &str) {
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.body);
        r.problem(401, "invalid_token");
        assert_eq!(r.body, INVALID_TOKEN_BODY, "{what}");
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Bearer error="invalid_token""#),
            "{what}"
        );
    }
    async fn assert_all_revoked(api: &TestApi, token: &str, user: Uuid, one: &str, who: &str) {
        assert_revoked(&admin_get(api, token, "/admin/users").await, &format!("{who}: list"));
        assert_revoked(&admin_get(api, token, one).await, &format!("{who}: get"));
        assert_revoked(
            &admin_patch(api, token, user, &json!({ "disabled": true })).await,
            &format!("{who}: patch"),
        );
        assert_revoked(&admin_delete(api, token, user).await, &format!("{who}: delete"));
    }

    // A logs out: that session's token is dead on admin routes.
    admin_get(&api, &a.access_token, "/admin/users").await.expect(200);
    send(&api, Method::POST, "/auth/logout", Some(&a.access_token), None)
        .await
        .expect(204);
    assert_all_revoked(&api, &a.access_token, user.user_id, &one, "logged out").await;

    // C disables B: B's token is dead at once.
    admin_get(&api, &b.access_token, "/admin/users").await.expect(200);
    admin_patch(&api, &c.access_token, b.user_id, &json!({ "disabled": true }))
        .await
        .expect(200);
    assert_all_revoked(&api, &b.access_token, user.user_id, &one, "disabled").await;

    // C deletes itself while A is still an active admin: C's token is dead at once.
    admin_delete(&api, &c.access_token, c.user_id).await.expect(204);
    assert_all_revoked(&api, &c.access_token, user.user_id, &one, "deleted").await;

    // None of the refused requests changed the user.
    assert_eq!(
        count(
            &api,
            "SELECT count(*) FROM users WHERE id = $1 AND NOT disabled",
            user.user_id
        )
        .await,
        1
    );
    // A logs in again and is the last active admin.
    let a = login_ok(&api, &a.email, &a.password).await;
    assert_eq!(active_admins(&api).await, 1);
    admin_delete(&api, &a.access_token, a.user_id)
        .await
        .problem(409, "last_admin");
}
