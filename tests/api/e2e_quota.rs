//! End to end over HTTP against the local API, real PostgreSQL: the per-user task quota is a
//! counter (`task_counts`) kept exact by the statements that create and delete tasks, so a create
//! costs the same whether the user has 0 tasks or 9,999, and concurrent creates stop exactly at
//! the quota (the count-based check before it let every request in flight through).

use std::sync::Arc;

use api_tests::{TestApi, spawn_api_with, test_config};
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::sync::Barrier;
use uuid::Uuid;

use crate::helpers::{Account, client, send, send_with, signup_ok};

async fn api_with_quota(quota: i64) -> Arc<TestApi> {
    let mut config = test_config();
    config.task_quota = quota;
    Arc::new(spawn_api_with(config).await)
}

async fn create(api: &TestApi, who: &Account, title: &str) -> crate::helpers::Resp {
    send(
        api,
        Method::POST,
        "/tasks",
        Some(&who.access_token),
        Some(&json!({ "title": title })),
    )
    .await
}

/// The user's stored tasks and their counter (`None`: no counter row).
async fn counts(api: &TestApi, user: Uuid) -> (i64, Option<i32>) {
    let db = api.sql().await;
    let real: i64 = db
        .query_one("SELECT count(*) FROM tasks WHERE user_id = $1", &[&user])
        .await
        .expect("count tasks")
        .get(0);
    let counter: Option<i32> = db
        .query_opt("SELECT n FROM task_counts WHERE user_id = $1", &[&user])
        .await
        .expect("read the counter")
        .map(|row| row.get(0));
    (real, counter)
}

#[tokio::test]
async fn ten_concurrent_creates_at_quota_minus_five_end_exactly_at_the_quota() {
    const QUOTA: i64 = 25;
    let api = api_with_quota(QUOTA).await;
    // Three users in turn, so a lucky interleaving on the old code cannot pass by chance.
    for round in 0..3 {
        let who = Arc::new(signup_ok(&api).await);
        for i in 0..QUOTA - 5 {
            create(&api, &who, &format!("before {i}")).await.expect(201);
        }
        let barrier = Arc::new(Barrier::new(10));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..10 {
            let (api, who, barrier) = (api.clone(), who.clone(), barrier.clone());
            tasks.spawn(async move {
                let http = client();
                barrier.wait().await;
                send_with(
                    &http,
                    &api,
                    Method::POST,
                    "/tasks",
                    Some(&who.access_token),
                    Some(&json!({ "title": format!("racing {i}") })),
                )
                .await
            });
        }
        let (mut created, mut refused) = (0, 0);
        while let Some(r) = tasks.join_next().await {
            let r = r.expect("request task");
            match r.status {
                StatusCode::CREATED => created += 1,
                StatusCode::CONFLICT => {
                    r.problem(409, "task_quota_exceeded");
                    refused += 1;
                }
                other => panic!("round {round}: unexpected {other}: {}", r.body),
            }
        }
        let (real, counter) = counts(&api, who.user_id).await;
        assert_eq!(
            (created, refused, real),
            (5, 5, QUOTA),
            "round {round}: exactly 5 of 10 concurrent creates fit, and the user ends at the quota"
        );
        assert_eq!(
            counter,
            Some(QUOTA as i32),
            "round {round}: the counter equals the real count"
        );
    }
}

#[tokio::test]
async fn the_counter_follows_every_create_and_delete() {
    let api = api_with_quota(100).await;
    let a = signup_ok(&api).await;
    let b = signup_ok(&api).await;
    assert_eq!(counts(&api, a.user_id).await, (0, None), "no tasks, no counter row");

    let mut ids = Vec::new();
    for i in 0..4 {
        let task = create(&api, &a, &format!("t{i}")).await.expect(201);
        ids.push(task["id"].as_str().expect("id").to_owned());
    }
    let theirs = create(&api, &b, "b's").await.expect(201);
    assert_eq!(counts(&api, a.user_id).await, (4, Some(4)));
    assert_eq!(counts(&api, b.user_id).await, (1, Some(1)));

    // Refused creates (validation) and refused deletes (another user's task, a missing one, twice
    // the same) leave the counter alone; a delete decrements it.
    let r = send(
        &api,
        Method::POST,
        "/tasks",
        Some(&a.access_token),
        Some(&json!({ "title": "" })),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let theirs_path = format!("/tasks/{}", theirs["id"].as_str().expect("id"));
    send(&api, Method::DELETE, &theirs_path, Some(&a.access_token), None)
        .await
        .problem(404, "not_found");
    let missing = format!("/tasks/{}", Uuid::now_v7());
    send(&api, Method::DELETE, &missing, Some(&a.access_token), None)
        .await
        .problem(404, "not_found");
    let first = format!("/tasks/{}", ids[0]);
    send(&api, Method::DELETE, &first, Some(&a.access_token), None)
        .await
        .expect(204);
    send(&api, Method::DELETE, &first, Some(&a.access_token), None)
        .await
        .problem(404, "not_found");
    assert_eq!(counts(&api, a.user_id).await, (3, Some(3)));
    assert_eq!(counts(&api, b.user_id).await, (1, Some(1)));

    // Concurrent deletes of the same tasks and creates: still exact.
    let mut tasks = tokio::task::JoinSet::new();
    for id in ids.iter().skip(1).chain(ids.iter().skip(1)) {
        let (api, token, path) = (api.clone(), a.access_token.clone(), format!("/tasks/{id}"));
        tasks.spawn(async move { send(&api, Method::DELETE, &path, Some(&token), None).await.status });
    }
    for i in 0..3 {
        let (api, token) = (api.clone(), a.access_token.clone());
        tasks.spawn(async move {
            send(
                &api,
                Method::POST,
                "/tasks",
                Some(&token),
                Some(&json!({ "title": format!("n{i}") })),
            )
            .await
            .status
        });
    }
    while let Some(status) = tasks.join_next().await {
        let status = status.expect("request task");
        assert!([201, 204, 404].contains(&status.as_u16()), "{status}");
    }
    assert_eq!(counts(&api, a.user_id).await, (3, Some(3)));

    // The counter goes with the user, like the tasks.
    send(
        &api,
        Method::DELETE,
        "/auth/me",
        Some(&a.access_token),
        Some(&json!({ "password": a.password })),
    )
    .await
    .expect(204);
    assert_eq!(counts(&api, a.user_id).await, (0, None));
    assert_eq!(counts(&api, b.user_id).await, (1, Some(1)));
}

#[tokio::test]
async fn an_admin_deleting_a_user_takes_the_counter_too() {
    let api = api_with_quota(100).await;
    let admin = signup_ok(&api).await;
    let db = api.sql().await;
    db.execute("UPDATE users SET role = 'admin' WHERE id = $1", &[&admin.user_id])
        .await
        .expect("grant admin");
    let admin = crate::helpers::login_ok(&api, &admin.email, &admin.password).await;
    let victim = signup_ok(&api).await;
    create(&api, &victim, "soon gone").await.expect(201);
    assert_eq!(counts(&api, victim.user_id).await, (1, Some(1)));
    send(
        &api,
        Method::DELETE,
        &format!("/admin/users/{}", victim.user_id),
        Some(&admin.access_token),
        None,
    )
    .await
    .expect(204);
    assert_eq!(counts(&api, victim.user_id).await, (0, None));
}

/// The quota is read from the counter, not from the rows: a create costs the same at any size.
#[tokio::test]
async fn the_quota_check_reads_the_counter_not_the_rows() {
    let api = api_with_quota(10).await;
    let a = signup_ok(&api).await;
    create(&api, &a, "one").await.expect(201);
    let db = api.sql().await;
    db.execute("UPDATE task_counts SET n = 10 WHERE user_id = $1", &[&a.user_id])
        .await
        .expect("set the counter");
    create(&api, &a, "over").await.problem(409, "task_quota_exceeded");
    db.execute("UPDATE task_counts SET n = 9 WHERE user_id = $1", &[&a.user_id])
        .await
        .expect("set the counter");
    create(&api, &a, "fits").await.expect(201);
    assert_eq!(counts(&api, a.user_id).await, (2, Some(10)));
}
