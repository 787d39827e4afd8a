//! End to end over HTTP against the local API: the tasks resource, its validation, pagination,
//! isolation between users, and the access-token checks in front of it.

use api_tests::{TestApi, spawn_api};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    Account, INVALID_TOKEN_BODY, claims, delete, error_fields, get, is_rfc3339_utc, jwt_parts, mint_foreign_token,
    mint_test_token, mint_test_token_with_kid, mint_with_header, now_secs, patch, post, send, send_raw, signup_ok,
    test_header,
};

/// Create a task (201 asserted) and return it.
async fn create(api: &TestApi, account: &Account, body: Value) -> Value {
    let r = post(api, &account.access_token, "/tasks", &body).await;
    let task = r.expect(201);
    assert_eq!(
        r.header("location"),
        Some(format!("/tasks/{}", task["id"].as_str().expect("id")).as_str())
    );
    task
}

fn id_of(task: &Value) -> String {
    task["id"].as_str().expect("task id").to_owned()
}

fn ids(list: &Value) -> Vec<String> {
    list["items"].as_array().expect("items").iter().map(id_of).collect()
}

#[track_caller]
fn assert_task_shape(task: &Value) {
    let obj = task.as_object().expect("task object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["completed", "created_at", "description", "id", "title", "updated_at"],
        "{task}"
    );
    assert!(
        task["id"].as_str().and_then(|s| s.parse::<Uuid>().ok()).is_some(),
        "{task}"
    );
    assert!(task["title"].is_string(), "{task}");
    assert!(
        task["description"].is_string() || task["description"].is_null(),
        "{task}"
    );
    assert!(task["completed"].is_boolean(), "{task}");
    for ts in ["created_at", "updated_at"] {
        assert!(
            task[ts].as_str().is_some_and(is_rfc3339_utc),
            "{ts} is not RFC 3339 UTC: {task}"
        );
    }
}

#[tokio::test]
async fn create_get_list_delete() {
    let api = spawn_api().await;
    let a = signup_ok(&api).await;

    let r = post(&api, &a.access_token, "/tasks", &json!({ "title": "  Buy milk \n" })).await;
    let task = r.expect(201);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_task_shape(&task);
    let id = id_of(&task);
    assert_eq!(r.header("location"), Some(format!("/tasks/{id}").as_str()));
    assert_eq!(task["title"], "Buy milk");
    assert_eq!(task["description"], Value::Null);
    assert_eq!(task["completed"], false);
    assert_eq!(task["created_at"], task["updated_at"]);

    let full = create(
        &api,
        &a,
        json!({ "title": "Write", "description": "  kept as is ", "completed": true }),
    )
    .await;
    assert_eq!(full["description"], "  kept as is ");
    assert_eq!(full["completed"], true);

    let got = get(&api, &a.access_token, &format!("/tasks/{id}")).await.expect(200);
    assert_eq!(got, task);

    let third = create(
        &api,
        &a,
        json!({ "title": "Third", "description": null, "completed": false }),
    )
    .await;
    let list = get(&api, &a.access_token, "/tasks").await.expect(200);
    assert_eq!(list.as_object().map(|o| o.len()), Some(2), "{list}");
    assert_eq!(ids(&list), [id_of(&third), id_of(&full), id.clone()], "newest first");
    assert_eq!(list["next_cursor"], Value::Null);
    for t in list["items"].as_array().expect("items") {
        assert_task_shape(t);
    }

    let r = delete(&api, &a.access_token, &format!("/tasks/{id}")).await;
    r.expect(204);
    assert!(r.body.is_empty(), "204 has no body: {:?}", r.body);
    get(&api, &a.access_token, &format!("/tasks/{id}"))
        .await
        .problem(404, "not_found");
    delete(&api, &a.access_token, &format!("/tasks/{id}"))
        .await
        .problem(404, "not_found");
    patch(
        &api,
        &a.access_token,
        &format!("/tasks/{id}"),
        &json!({ "completed": true }),
    )
    .await
    .problem(404, "not_found");
    let list = get(&api, &a.access_token, "/tasks").await.expect(200);
    assert_eq!(ids(&list), [id_of(&third), id_of(&full)]);
}

#[tokio::test]
async fn pagination_walks_every_task_once() {
    let api = spawn_api().await;
    let a = signup_ok(&api).await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(id_of(&create(&api, &a, json!({ "title": format!("task {i}") })).await));
    }
    created.reverse(); // newest first

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let path = match &cursor {
            None => "/tasks?limit=2".to_owned(),
            Some(c) => format!("/tasks?limit=2&cursor={c}"),
        };
        let page = get(&api, &a.access_token, &path).await.expect(200);
        let page_ids = ids(&page);
        pages.push(page_ids.len());
        seen.extend(page_ids);
        match &page["next_cursor"] {
            Value::Null => break,
            Value::String(c) => cursor = Some(c.clone()),
            other => panic!("next_cursor is neither a string nor null: {other}"),
        }
        assert!(pages.len() < 10, "pagination does not end");
    }
    assert_eq!(pages, [2, 2, 1]);
    assert_eq!(seen, created, "no duplicates, no gaps, newest first");

    // A page that ends exactly at the last task says so.
    let all = get(&api, &a.access_token, "/tasks?limit=5").await.expect(200);
    assert_eq!(ids(&all), created);
    assert_eq!(all["next_cursor"], Value::Null);
    let bounds = get(&api, &a.access_token, "/tasks?limit=1").await.expect(200);
    assert_eq!(ids(&bounds).len(), 1);
    assert!(bounds["next_cursor"].is_string());
    get(&api, &a.access_token, "/tasks?limit=100").await.expect(200);
}

#[tokio::test]
async fn pagination_breaks_created_at_ties_by_id() {
    let api = spawn_api().await;
    let a = signup_ok(&api).await;
    let db = api.sql().await;
    // Five tasks created in the same instant (one statement), with random (v4) ids.
    let mut expected: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    db.execute(
        "INSERT INTO tasks (id, user_id, title, created_at, updated_at)
         SELECT id, $2, 'same instant', now(), now() FROM unnest($1::uuid[]) AS id",
        &[&expected, &a.user_id],
    )
    .await
    .expect("insert tasks");
    expected.sort_unstable_by(|x, y| y.cmp(x)); // ties: higher id first
    let expected: Vec<String> = expected.iter().map(Uuid::to_string).collect();

    let mut seen = Vec::new();
    let mut path = "/tasks?limit=2".to_owned();
    for _ in 0..5 {
        let page = get(&api, &a.access_token, &path).await.expect(200);
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/tasks?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, expected, "every tied task exactly once");
}

#[tokio::test]
async fn completed_filter() {
    let api = spawn_api().await;
    let a = signup_ok(&api).await;
    let mut done = Vec::new();
    let mut open = Vec::new();
    for i in 0..5 {
        let completed = i % 2 == 0;
        let t = create(&api, &a, json!({ "title": format!("t{i}"), "completed": completed })).await;
        if completed {
            done.insert(0, id_of(&t))
        } else {
            open.insert(0, id_of(&t))
        }
    }
    let list = get(&api, &a.access_token, "/tasks?completed=true").await.expect(200);
    assert_eq!(ids(&list), done);
    let list = get(&api, &a.access_token, "/tasks?completed=false").await.expect(200);
    assert_eq!(ids(&list), open);

    // The filter and pagination together.
    let page = get(&api, &a.access_token, "/tasks?completed=true&limit=2")
        .await
        .expect(200);
    assert_eq!(ids(&page), done[..2]);
    let c = page["next_cursor"].as_str().expect("cursor");
    let page = get(
        &api,
        &a.access_token,
        &format!("/tasks?completed=true&limit=2&cursor={c}"),
    )
    .await
    .expect(200);
    assert_eq!(ids(&page), done[2..]);
    assert_eq!(page["next_cursor"], Value::Null);

    for bad in ["yes", "1", "TRUE", ""] {
        let r = get(&api, &a.access_token, &format!("/tasks?completed={bad}")).await;
        let p = r.problem(422, "validation_failed");
        assert_eq!(
            error_fields(&p),
            [("completed".to_owned(), "invalid_boolean".to_owned())],
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn bad_limit_or_cursor_is_422() {
    let api = spawn_api().await;
    let a = signup_ok(&api).await;
    create(&api, &a, json!({ "title": "one" })).await;
    for bad in ["0", "101", "x", "-1", "1.5", "", "1e2", " 5"] {
        let r = get(&api, &a.access_token, &format!("/tasks?limit={bad}")).await;
        let p = r.problem(422, "validation_failed");
        assert_eq!(
            error_fields(&p),
            [("limit".to_owned(), "invalid_limit".to_owned())],
            "limit={bad:?}"
        );
    }
    // Absurdly long values are refused before parsing, still as a 422 on `limit`.
    let r = get(&api, &a.access_token, &format!("/tasks?limit={}", "9".repeat(40))).await;
    let p = r.problem(422, "validation_failed");
    let fields: Vec<String> = error_fields(&p).into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["limit"], "{}", r.body);
    let long = "A".repeat(300);
    let forged = base64_url(&format!("1:{}", Uuid::new_v4()));
    for bad in ["garbage", "!!!", "MTox", forged.as_str(), long.as_str()] {
        let r = get(&api, &a.access_token, &format!("/tasks?cursor={bad}")).await;
        let p = r.problem(422, "validation_failed");
        let fields: Vec<String> = error_fields(&p).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, ["cursor"], "cursor={bad:?}: {}", r.body);
    }
}

fn base64_url(s: &str) -> String {
    use base64::Engine;
    // Padded standard base64 is not the canonical form the API issues.
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn patch_semantics() {
    let api = spawn_api().await;
    let a = signup_ok(&api).await;
    let task = create(&api, &a, json!({ "title": "Original" })).await;
    let path = format!("/tasks/{}", id_of(&task));

    // An empty patch changes nothing.
    let same = patch(&api, &a.access_token, &path, &json!({})).await.expect(200);
    assert_eq!(same, task);

    let t = patch(&api, &a.access_token, &path, &json!({ "title": "  Renamed  " }))
        .await
        .expect(200);
    assert_task_shape(&t);
    assert_eq!(t["title"], "Renamed");
    assert_eq!(t["description"], Value::Null);
    assert_eq!(t["completed"], false);
    assert_eq!(t["created_at"], task["created_at"]);
    assert_ne!(t["updated_at"], task["updated_at"], "updated_at moves on a change");

    let t = patch(&api, &a.access_token, &path, &json!({ "description": "details" }))
        .await
        .expect(200);
    assert_eq!(
        (t["title"].clone(), t["description"].clone()),
        (json!("Renamed"), json!("details"))
    );
    let t = patch(&api, &a.access_token, &path, &json!({ "completed": true }))
        .await
        .expect(200);
    assert_eq!(t["completed"], true);
    assert_eq!(t["description"], "details", "absent means unchanged");
    let t = patch(&api, &a.access_token, &path, &json!({ "description": null }))
        .await
        .expect(200);
    assert_eq!(t["description"], Value::Null, "null clears the description");
    assert_eq!(t["completed"], true);
    let t = patch(
        &api,
        &a.access_token,
        &path,
        &json!({ "title": "All", "description": "d", "completed": false }),
    )
    .await
    .expect(200);
    assert_eq!(
        (t["title"].clone(), t["description"].clone(), t["completed"].clone()),
        (json!("All"), json!("d"), json!(false))
    );
    let stored = get(&api, &a.access_token, &path).await.expect(200);
    assert_eq!(stored, t);

    // Refused patches change nothing.
    let refused = [
        (json!({ "title": null }), "validation_failed", "title"),
        (json!({ "title": "   " }), "validation_failed", "title"),
        (json!({ "title": "x".repeat(201) }), "validation_failed", "title"),
        (json!({ "completed": null }), "validation_failed", "completed"),
        (json!({ "completed": "yes" }), "validation_failed", "completed"),
        (
            json!({ "description": "d".repeat(10_001) }),
            "validation_failed",
            "description",
        ),
        (json!({ "title": "a\u{0}b" }), "validation_failed", "title"),
        (json!({ "user_id": a.user_id }), "unknown_field", "user_id"),
        (json!({ "title": "ok", "id": Uuid::new_v4() }), "unknown_field", "id"),
        (
            json!({ "created_at": "2020-01-01T00:00:00Z" }),
            "unknown_field",
            "created_at",
        ),
        (json!("title"), "validation_failed", "body"),
    ];
    for (body, code, field) in refused {
        let r = patch(&api, &a.access_token, &path, &body).await;
        let p = r.problem(422, code);
        let fields: Vec<String> = error_fields(&p).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, [field], "{body}: {}", r.body);
    }
    let after = get(&api, &a.access_token, &path).await.expect(200);
    assert_eq!(after, t);

    // Media type and syntax rules apply to PATCH too.
    let bearer = format!("Bearer {}", a.access_token);
    send_raw(
        &api,
        Method::PATCH,
        &path,
        &[("authorization", &bearer)],
        Some(br#"{"title":"x"}"#.to_vec()),
    )
    .await
    .problem(415, "unsupported_media_type");
    send_raw(
        &api,
        Method::PATCH,
        &path,
        &[("authorization", &bearer), ("content-type", "application/json")],
        Some(b"{\"title\":".to_vec()),
    )
    .await
    .problem(400, "malformed_json");
}

#[tokio::test]
async fn create_validation() {
    let api = spawn_api().await;
    let a = signup_ok(&api).await;
    let cases = [
        (json!({ "title": "" }), "validation_failed", "title", "invalid_length"),
        (
            json!({ "title": " \t\n " }),
            "validation_failed",
            "title",
            "invalid_length",
        ),
        (
            json!({ "title": "x".repeat(201) }),
            "validation_failed",
            "title",
            "invalid_length",
        ),
        (
            json!({ "title": format!(" {} ", "é".repeat(201)) }),
            "validation_failed",
            "title",
            "invalid_length",
        ),
        (
            json!({ "title": "ok", "description": "d".repeat(10_001) }),
            "validation_failed",
            "description",
            "too_long",
        ),
        (
            json!({ "title": "nul\u{0}here" }),
            "validation_failed",
            "title",
            "invalid_characters",
        ),
        (
            json!({ "title": "ok", "description": "\u{0}" }),
            "validation_failed",
            "description",
            "invalid_characters",
        ),
        (json!({}), "validation_failed", "title", "required"),
        (json!({ "title": null }), "validation_failed", "title", "invalid_type"),
        (json!({ "title": 5 }), "validation_failed", "title", "invalid_type"),
        (
            json!({ "title": "ok", "completed": "true" }),
            "validation_failed",
            "completed",
            "invalid_type",
        ),
        (
            json!({ "title": "ok", "user_id": Uuid::new_v4() }),
            "unknown_field",
            "user_id",
            "unknown_field",
        ),
        (
            json!({ "title": "ok", "id": Uuid::new_v4() }),
            "unknown_field",
            "id",
            "unknown_field",
        ),
        (
            json!([{ "title": "ok" }]),
            "validation_failed",
            "body",
            "expected_object",
        ),
    ];
    for (body, code, field, field_code) in cases {
        let r = post(&api, &a.access_token, "/tasks", &body).await;
        let p = r.problem(422, code);
        assert_eq!(
            error_fields(&p),
            [(field.to_owned(), field_code.to_owned())],
            "{}: {}",
            short(&body),
            r.body
        );
    }
    let list = get(&api, &a.access_token, "/tasks").await.expect(200);
    assert_eq!(ids(&list).len(), 0, "no refused task was stored");

    // The bounds themselves are fine: characters, not bytes, after trimming.
    let t = create(
        &api,
        &a,
        json!({ "title": format!("  {}  ", "é".repeat(200)), "description": "d".repeat(10_000) }),
    )
    .await;
    assert_eq!(t["title"].as_str().map(|s| s.chars().count()), Some(200));
    assert_eq!(t["description"].as_str().map(str::len), Some(10_000));
    let t = create(&api, &a, json!({ "title": "x".repeat(200), "description": "" })).await;
    assert_eq!(t["description"], "");
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

#[tokio::test]
async fn other_users_tasks_are_404_and_untouched() {
    let api = spawn_api().await;
    let owner = signup_ok(&api).await;
    let other = signup_ok(&api).await;
    let task = create(&api, &owner, json!({ "title": "mine", "description": "private" })).await;
    let path = format!("/tasks/{}", id_of(&task));

    let r = get(&api, &other.access_token, &path).await;
    r.problem(404, "not_found");
    let not_found_body = r.body.clone();
    let r = patch(
        &api,
        &other.access_token,
        &path,
        &json!({ "title": "stolen", "completed": true }),
    )
    .await;
    r.problem(404, "not_found");
    assert_eq!(r.body, not_found_body);
    let r = delete(&api, &other.access_token, &path).await;
    r.problem(404, "not_found");
    assert_eq!(r.body, not_found_body);
    // Indistinguishable from a task that does not exist.
    let r = get(&api, &other.access_token, &format!("/tasks/{}", Uuid::now_v7())).await;
    r.problem(404, "not_found");
    assert_eq!(r.body, not_found_body);

    let list = get(&api, &other.access_token, "/tasks").await.expect(200);
    assert_eq!(ids(&list).len(), 0, "{list}");
    let seen = get(&api, &owner.access_token, &path).await.expect(200);
    assert_eq!(seen, task);

    let db = api.sql().await;
    let id: Uuid = id_of(&task).parse().expect("uuid");
    let row = db
        .query_one("SELECT user_id, title, description, completed, updated_at = created_at AS untouched FROM tasks WHERE id = $1", &[&id])
        .await
        .expect("the task is still there");
    assert_eq!(row.get::<_, Uuid>("user_id"), owner.user_id);
    assert_eq!(row.get::<_, String>("title"), "mine");
    assert_eq!(row.get::<_, Option<String>>("description").as_deref(), Some("private"));
    assert!(!row.get::<_, bool>("completed"));
    assert!(row.get::<_, bool>("untouched"));
}

#[tokio::test]
async fn non_uuid_ids_are_404() {
    let api = spawn_api().await;
    let a = signup_ok(&api).await;
    create(&api, &a, json!({ "title": "exists" })).await;
    for id in [
        "abc",
        "123",
        "00000000-0000-0000-0000-000000000000",
        "%27%20OR%201%3D1",
        "not-a-uuid-at-all-0000000000000000",
    ] {
        let path = format!("/tasks/{id}");
        get(&api, &a.access_token, &path).await.problem(404, "not_found");
        patch(&api, &a.access_token, &path, &json!({ "title": "x" }))
            .await
            .problem(404, "not_found");
        delete(&api, &a.access_token, &path).await.problem(404, "not_found");
    }
    let list = get(&api, &a.access_token, "/tasks").await.expect(200);
    assert_eq!(ids(&list).len(), 1);
    assert_eq!(list["items"][0]["title"], "exists");
}

#[tokio::test]
async fn tokens_that_are_missing_tampered_foreign_or_expired_are_401() {
    let api = spawn_api().await;
    let a = signup_ok(&api).await;
    let task = create(&api, &a, json!({ "title": "t" })).await;
    let task_path = format!("/tasks/{}", id_of(&task));

    // A token crafted with the test key for the live session is accepted: the crafting is right,
    // so the refusals below are about what each one changes.
    let now = now_secs();
    let good = mint_test_token(&claims(a.user_id, a.session_id, "user", now, 600));
    get(&api, &good, "/tasks").await.expect(200);

    // No token.
    for (method, path) in [
        (Method::GET, "/tasks"),
        (Method::GET, task_path.as_str()),
        (Method::DELETE, task_path.as_str()),
    ] {
        let r = send(&api, method, path, None, None).await;
        r.problem(401, "invalid_token");
        assert_eq!(r.body, INVALID_TOKEN_BODY);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    }

    let tampered = flip_signature_char(&a.access_token);
    let foreign_key = mint_foreign_token("test-key", &claims(a.user_id, a.session_id, "user", now, 600));
    let unknown_kid = mint_test_token_with_kid("other-key", &claims(a.user_id, a.session_id, "user", now, 600));
    let expired = mint_test_token(&claims(a.user_id, a.session_id, "user", now - 1000, 900)); // exp 100 s ago
    let not_yet = {
        let mut c = claims(a.user_id, a.session_id, "user", now, 600);
        c["nbf"] = json!(now + 300);
        mint_test_token(&c)
    };
    let wrong_aud = {
        let mut c = claims(a.user_id, a.session_id, "user", now, 600);
        c["aud"] = json!("someone-else");
        mint_test_token(&c)
    };
    let wrong_iss = {
        let mut c = claims(a.user_id, a.session_id, "user", now, 600);
        c["iss"] = json!("someone-else");
        mint_test_token(&c)
    };
    let no_exp = {
        let mut c = claims(a.user_id, a.session_id, "user", now, 600);
        c.as_object_mut().expect("object").remove("exp");
        mint_test_token(&c)
    };
    let wrong_typ = {
        let mut header = test_header();
        header.typ = Some("JWT".to_owned());
        mint_with_header(&header, &claims(a.user_id, a.session_id, "user", now, 600))
    };
    let alg_none = {
        use base64::Engine;
        let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let header = json!({ "alg": "none", "typ": "at+jwt", "kid": "test-key" });
        format!(
            "{}.{}.",
            b64(&header),
            b64(&claims(a.user_id, a.session_id, "user", now, 600))
        )
    };
    let (_, real_claims) = jwt_parts(&a.access_token);
    assert_eq!(real_claims["sid"], json!(a.session_id));
    let b = signup_ok(&api).await;

    // A token in the query string is not a Bearer token.
    let r = send(
        &api,
        Method::GET,
        &format!("/tasks?access_token={}", a.access_token),
        None,
        None,
    )
    .await;
    r.problem(401, "invalid_token");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));

    let bad = [
        ("tampered signature", tampered),
        ("signed by another key", foreign_key),
        ("unknown kid", unknown_kid),
        ("expired", expired),
        ("not yet valid", not_yet),
        ("wrong audience", wrong_aud),
        ("wrong issuer", wrong_iss),
        ("no exp", no_exp),
        ("typ JWT", wrong_typ),
        ("alg none", alg_none),
        ("oversized", format!("{}.{}", a.access_token, "A".repeat(9 * 1024))),
        // Well signed, but naming a session that is not the user's, or no session at all.
        (
            "someone else's session",
            mint_test_token(&claims(a.user_id, b.session_id, "user", now, 600)),
        ),
        (
            "unknown session",
            mint_test_token(&claims(a.user_id, Uuid::now_v7(), "user", now, 600)),
        ),
        (
            "unknown user",
            mint_test_token(&claims(Uuid::now_v7(), a.session_id, "user", now, 600)),
        ),
    ];
    for (what, token) in &bad {
        for (method, path, body) in [
            (Method::GET, "/tasks", None),
            (Method::POST, "/tasks", Some(json!({ "title": "sneaky" }))),
            (Method::GET, task_path.as_str(), None),
            (Method::PATCH, task_path.as_str(), Some(json!({ "title": "sneaky" }))),
            (Method::DELETE, task_path.as_str(), None),
        ] {
            let r = send(&api, method.clone(), path, Some(token), body.as_ref()).await;
            assert_eq!(r.status, 401, "{what}: {method} {path}: {}", r.body);
            r.problem(401, "invalid_token");
            assert_eq!(r.body, INVALID_TOKEN_BODY, "{what}");
            assert_eq!(
                r.header("www-authenticate"),
                Some(r#"Bearer error="invalid_token""#),
                "{what}"
            );
        }
    }
    // Nothing got through.
    let list = get(&api, &a.access_token, "/tasks").await.expect(200);
    assert_eq!(list["items"], json!([task]));
}

/// Change one character in the middle of a JWT's signature segment.
fn flip_signature_char(token: &str) -> String {
    let (rest, sig) = token.rsplit_once('.').expect("a JWT");
    let mut chars: Vec<char> = sig.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let tampered = format!("{rest}.{}", chars.into_iter().collect::<String>());
    assert_ne!(tampered, token);
    tampered
}

#[tokio::test]
async fn revoked_session_is_refused_on_the_next_request() {
    let api = spawn_api().await;
    let a = signup_ok(&api).await;
    let task = create(&api, &a, json!({ "title": "t" })).await;
    let path = format!("/tasks/{}", id_of(&task));
    // A second session of the same user is not affected.
    let second = crate::helpers::login_ok(&api, &a.email, &a.password).await;

    let db = api.sql().await;
    let n = db
        .execute("UPDATE sessions SET revoked_at = now() WHERE id = $1", &[&a.session_id])
        .await
        .expect("revoke");
    assert_eq!(n, 1);

    let r = get(&api, &a.access_token, "/tasks").await;
    r.problem(401, "invalid_token");
    assert_eq!(r.header("www-authenticate"), Some(r#"Bearer error="invalid_token""#));
    assert_eq!(r.body, INVALID_TOKEN_BODY);
    get(&api, &a.access_token, &path).await.problem(401, "invalid_token");
    // A non-UUID or someone else's id does not turn the dead session's 401 into a 404.
    get(&api, &a.access_token, "/tasks/not-a-uuid")
        .await
        .problem(401, "invalid_token");
    post(&api, &a.access_token, "/tasks", &json!({ "title": "after revoke" }))
        .await
        .problem(401, "invalid_token");
    patch(&api, &a.access_token, &path, &json!({ "title": "after revoke" }))
        .await
        .problem(401, "invalid_token");
    patch(&api, &a.access_token, &path, &json!({}))
        .await
        .problem(401, "invalid_token");
    delete(&api, &a.access_token, &path).await.problem(401, "invalid_token");

    let list = get(&api, &second.access_token, "/tasks").await.expect(200);
    assert_eq!(
        list["items"],
        json!([task]),
        "nothing was written with the revoked session"
    );

    // An expired session (idle timeout) is just as dead.
    db.execute(
        "UPDATE sessions SET idle_expires_at = now() - interval '1 second' WHERE id = $1",
        &[&second.session_id],
    )
    .await
    .expect("expire");
    get(&api, &second.access_token, "/tasks")
        .await
        .problem(401, "invalid_token");
}

#[tokio::test]
async fn disabled_or_deleted_user_is_refused_on_the_next_request() {
    let api = spawn_api().await;
    let a = signup_ok(&api).await;
    let b = signup_ok(&api).await;
    let task = create(&api, &a, json!({ "title": "t" })).await;
    let path = format!("/tasks/{}", id_of(&task));

    let db = api.sql().await;
    db.execute("UPDATE users SET disabled = true WHERE id = $1", &[&a.user_id])
        .await
        .expect("disable");
    get(&api, &a.access_token, "/tasks").await.problem(401, "invalid_token");
    get(&api, &a.access_token, &path).await.problem(401, "invalid_token");
    post(&api, &a.access_token, "/tasks", &json!({ "title": "x" }))
        .await
        .problem(401, "invalid_token");
    delete(&api, &a.access_token, &path).await.problem(401, "invalid_token");
    let n: i64 = db
        .query_one("SELECT count(*) FROM tasks", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 1);

    // A deleted user's token is dead too.
    db.execute("DELETE FROM users WHERE id = $1", &[&b.user_id])
        .await
        .expect("delete");
    get(&api, &b.access_token, "/tasks").await.problem(401, "invalid_token");
    post(&api, &b.access_token, "/tasks", &json!({ "title": "ghost" }))
        .await
        .problem(401, "invalid_token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_and_deletes_stay_consistent() {
    let api = spawn_api().await;
    let a = signup_ok(&api).await;
    let mut handles = Vec::new();
    for i in 0..12 {
        let client = crate::helpers::client();
        let url = api.url("/tasks");
        let token = a.access_token.clone();
        handles.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(token)
                .json(&json!({ "title": format!("c{i}") }))
                .send()
                .await;
            r.expect("request").status().as_u16()
        }));
    }
    for h in handles {
        assert_eq!(h.await.expect("join"), 201);
    }
    let all = get(&api, &a.access_token, "/tasks?limit=100").await.expect(200);
    let all_ids = ids(&all);
    assert_eq!(all_ids.len(), 12);

    // Delete every task twice at once: each id is deleted exactly once.
    let mut handles = Vec::new();
    for id in all_ids.iter().chain(all_ids.iter()) {
        let client = crate::helpers::client();
        let url = api.url(&format!("/tasks/{id}"));
        let token = a.access_token.clone();
        handles.push(tokio::spawn(async move {
            client
                .delete(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for h in handles {
        statuses.push(h.await.expect("join"));
    }
    assert_eq!(statuses.iter().filter(|s| **s == 204).count(), 12, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 404).count(), 12, "{statuses:?}");
    let all = get(&api, &a.access_token, "/tasks").await.expect(200);
    assert_eq!(ids(&all).len(), 0);
}
