//! The TOKEN authorizer called with the event API Gateway sends (`tests/fixtures/`), and its
//! answer as API Gateway reads it: an Allow policy for every route the role may call, or the
//! failure `Unauthorized` that API Gateway turns into a 401.

use access::roles::{Access, ROUTES, Role, policy_resources};
use access::tokens::{AccessClaims, KeySet, SigningKey, TokenSettings, Tokens, now_secs};
use authorizer::{AuthorizerResponse, Unauthorized};
use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequest;
use aws_lambda_events::iam::IamPolicyEffect;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use lambda_http::lambda_runtime::Diagnostic;
use local_api::gateway::policy_allows;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use uuid::Uuid;

const EVENT: &str = include_str!("../fixtures/apigw-token-authorizer.json");
/// The `arn:...:api-id/stage` part of the fixture's method ARN.
const STAGE_ARN: &str = "arn:aws:execute-api:us-west-2:123456789012:ymy8tbxw7b/prod";

fn settings() -> TokenSettings {
    store::state::token_settings(&api_tests::test_config())
}

fn tokens() -> Tokens {
    Tokens::hs256(api_tests::test_keys(), settings())
}

/// The fixture with `authorizationToken` = `Bearer <token>`, for a call to `GET /tasks/<id>`.
fn event(token: &str) -> ApiGatewayCustomAuthorizerRequest {
    let task = Uuid::new_v4().to_string();
    let text = EVENT.replace("__TOKEN__", token).replace("__TASK_ID__", &task);
    serde_json::from_str(&text).unwrap()
}

/// The fixture with `authorizationToken` set to exactly `value`, or absent.
fn event_with_header(value: Option<&str>) -> ApiGatewayCustomAuthorizerRequest {
    let mut event: Value = serde_json::from_str(EVENT).unwrap();
    match value {
        Some(v) => event["authorizationToken"] = json!(v),
        None => {
            event.as_object_mut().unwrap().remove("authorizationToken");
        }
    }
    serde_json::from_value(event).unwrap()
}

fn arn(resource: &str) -> String {
    format!("{STAGE_ARN}/{resource}")
}

struct Issued {
    user: Uuid,
    session: Uuid,
    token: String,
}

fn issue(tokens: &Tokens, role: Role) -> Issued {
    let (user, session) = (Uuid::new_v4(), Uuid::new_v4());
    let issued = tokens.issue(user, session, role).unwrap();
    Issued {
        user,
        session,
        token: issued.token.expose_secret().to_owned(),
    }
}

fn allow(token: &str) -> AuthorizerResponse {
    authorizer::handle(&tokens(), &event(token)).unwrap()
}

#[track_caller]
fn assert_unauthorized(result: Result<AuthorizerResponse, Unauthorized>) {
    match result {
        Err(e) => {
            assert_eq!(e, Unauthorized);
            let diagnostic = Diagnostic::from(e);
            assert_eq!(
                diagnostic.error_message, "Unauthorized",
                "API Gateway answers 401 only for exactly this"
            );
        }
        Ok(response) => panic!("expected Unauthorized, got {response:?}"),
    }
}

// ---- a valid token -----------------------------------------------------------------------------

#[test]
fn valid_user_token_gets_an_allow_policy_for_every_user_route() {
    let issued = issue(&tokens(), Role::User);
    let response = allow(&issued.token);

    assert_eq!(response.principal_id.as_deref(), Some(issued.user.to_string().as_str()));
    let policy = &response.policy_document;
    assert_eq!(policy.version.as_deref(), Some("2012-10-17"));
    assert_eq!(policy.statement.len(), 1);
    let statement = &policy.statement[0];
    assert_eq!(statement.effect, IamPolicyEffect::Allow);
    assert_eq!(statement.action, ["execute-api:Invoke"]);
    assert!(statement.condition.is_none());

    let mut expected: Vec<String> = policy_resources(Role::User).iter().map(|r| arn(r)).collect();
    let mut actual = statement.resource.clone();
    expected.sort();
    actual.sort();
    assert_eq!(actual, expected);
    // Spelled out for the routes that exist today.
    for resource in [
        "GET/tasks",
        "POST/tasks",
        "GET/tasks/*",
        "PATCH/tasks/*",
        "DELETE/tasks/*",
    ] {
        assert!(actual.contains(&arn(resource)), "{resource} missing from {actual:?}");
    }
    // Every non-public route the role may call is there, and nothing else.
    let routes = ROUTES
        .iter()
        .filter(|r| r.access != Access::Public && r.access.allows(Role::User))
        .count();
    assert_eq!(actual.len(), routes);
    assert!(
        !actual
            .iter()
            .any(|r| r.contains("/auth/signup") || r.contains("/auth/login"))
    );

    // `exp` is the token's own, so a function can refuse it once API Gateway's cache outlives it.
    let claims = tokens().verify(&issued.token).unwrap();
    assert_eq!(
        response.context,
        json!({
            "sub": issued.user.to_string(),
            "sid": issued.session.to_string(),
            "role": "user",
            "exp": claims.exp.to_string(),
            // How the session was made, and why a route left out of the policy is refused (the
            // ACCESS_DENIED Gateway Response shows `denied` as the problem's code).
            "amr": "pwd",
            "denied": "forbidden",
            "denied_detail": "Your role may not use this route.",
        })
    );
}

#[test]
fn response_json_has_the_field_names_api_gateway_expects() {
    let issued = issue(&tokens(), Role::User);
    let json = serde_json::to_value(allow(&issued.token)).unwrap();

    assert_eq!(json["principalId"], issued.user.to_string());
    let document = &json["policyDocument"];
    assert_eq!(document["Version"], "2012-10-17");
    let statements = document["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 1);
    assert_eq!(statements[0]["Effect"], "Allow");
    assert_eq!(statements[0]["Action"], json!(["execute-api:Invoke"]));
    let resources = statements[0]["Resource"].as_array().unwrap();
    assert!(resources.contains(&json!(arn("GET/tasks/*"))));
    assert!(
        resources
            .iter()
            .all(|r| r.as_str().is_some_and(|r| r.starts_with(STAGE_ARN)))
    );

    // The context reaches the function as `requestContext.authorizer`: flat, string values only
    // (API Gateway refuses objects and arrays there).
    let context = json["context"].as_object().unwrap();
    let mut keys: Vec<&str> = context.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["amr", "denied", "denied_detail", "exp", "role", "sid", "sub"]);
    assert!(context.values().all(Value::is_string), "{context:?}");
    assert_eq!(context["sid"], issued.session.to_string());

    // No field under another spelling (API Gateway's names are case-sensitive).
    for wrong in ["principal_id", "policy_document", "PolicyDocument"] {
        assert!(json.get(wrong).is_none(), "{wrong} in {json}");
    }
    for wrong in ["version", "statement"] {
        assert!(document.get(wrong).is_none(), "{wrong} in {document}");
    }
}

#[test]
fn valid_admin_token_gets_every_admin_route() {
    let issued = issue(&tokens(), Role::Admin);
    let response = allow(&issued.token);
    let mut expected: Vec<String> = policy_resources(Role::Admin).iter().map(|r| arn(r)).collect();
    let mut actual = response.policy_document.statement[0].resource.clone();
    expected.sort();
    actual.sort();
    assert_eq!(actual, expected);
    assert_eq!(response.context["role"], "admin");
}

#[test]
fn token_from_the_fixture_event_is_taken_case_insensitively_as_bearer() {
    let issued = issue(&tokens(), Role::User);
    let response = authorizer::handle(&tokens(), &event_with_header(Some(&format!("bearer {}", issued.token))));
    assert!(response.is_ok());
}

// ---- refused tokens ----------------------------------------------------------------------------

#[test]
fn missing_token_is_unauthorized() {
    assert_unauthorized(authorizer::handle(&tokens(), &event_with_header(None)));
    assert_unauthorized(authorizer::handle(&tokens(), &event_with_header(Some(""))));
    assert_unauthorized(authorizer::handle(&tokens(), &event_with_header(Some("Bearer"))));
    assert_unauthorized(authorizer::handle(&tokens(), &event_with_header(Some("Bearer "))));
}

#[test]
fn malformed_token_is_unauthorized() {
    let issued = issue(&tokens(), Role::User);
    for header in [
        "Bearer not-a-jwt".to_owned(),
        "Bearer a.b.c".to_owned(),
        issued.token.clone(), // no scheme
        format!("Basic {}", issued.token),
        format!("Bearer {} extra", issued.token),
        format!("Bearer {}x", issued.token),
        format!("Bearer {}", "a".repeat(9000)),
    ] {
        assert_unauthorized(authorizer::handle(&tokens(), &event_with_header(Some(&header))));
    }
}

#[test]
fn expired_token_is_unauthorized() {
    let s = settings();
    let now = now_secs();
    let claims = AccessClaims {
        iss: s.issuer,
        aud: s.audience,
        sub: Uuid::new_v4(),
        sid: Uuid::new_v4(),
        role: Role::User,
        iat: now - 3600,
        nbf: now - 3600,
        exp: now - 2700,
        jti: Uuid::new_v4(),
        amr: access::tokens::amr(false),
    };
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some("test-key".into());
    let token = encode(
        &header,
        &claims,
        &EncodingKey::from_secret(api_tests::TEST_JWT_SECRET.as_bytes()),
    )
    .unwrap();
    assert_unauthorized(authorizer::handle(&tokens(), &event(&token)));

    // The same token, not expired, is allowed: it is the expiry that was refused.
    let fresh = AccessClaims {
        iat: now,
        nbf: now,
        exp: now + 900,
        ..claims
    };
    let token = encode(
        &header,
        &fresh,
        &EncodingKey::from_secret(api_tests::TEST_JWT_SECRET.as_bytes()),
    )
    .unwrap();
    assert!(authorizer::handle(&tokens(), &event(&token)).is_ok());
}

#[test]
fn token_signed_with_another_key_is_unauthorized() {
    let other = SigningKey::hmac(
        "test-key",
        SecretString::from("an-attackers-key-of-more-than-32-bytes".to_owned()),
    )
    .unwrap();
    let forger = Tokens::hs256(
        KeySet {
            current: other,
            previous: None,
        },
        settings(),
    );
    let issued = issue(&forger, Role::Admin);
    assert_unauthorized(authorizer::handle(&tokens(), &event(&issued.token)));
}

#[test]
fn token_for_another_audience_is_unauthorized() {
    let mut other = settings();
    other.audience = "some-other-api".into();
    let issued = issue(&Tokens::hs256(api_tests::test_keys(), other), Role::User);
    assert_unauthorized(authorizer::handle(&tokens(), &event(&issued.token)));
}

#[test]
fn token_from_another_issuer_is_unauthorized() {
    let mut other = settings();
    other.issuer = "https://evil.example".into();
    let issued = issue(&Tokens::hs256(api_tests::test_keys(), other), Role::User);
    assert_unauthorized(authorizer::handle(&tokens(), &event(&issued.token)));
}

#[test]
fn unusable_method_arn_is_unauthorized() {
    let issued = issue(&tokens(), Role::User);
    for method_arn in [None, Some(""), Some("nonsense"), Some("arn:aws:s3:::bucket/key")] {
        let mut event = event(&issued.token);
        event.method_arn = method_arn.map(str::to_owned);
        assert_unauthorized(authorizer::handle(&tokens(), &event));
    }
}

// ---- the policy, evaluated ---------------------------------------------------------------------

#[test]
fn user_policy_allows_the_users_routes_and_nothing_else() {
    let issued = issue(&tokens(), Role::User);
    let policy = allow(&issued.token).policy_document;
    let id = Uuid::new_v4();

    for allowed in [
        format!("GET/tasks/{id}"),
        "GET/tasks".to_owned(),
        "POST/tasks".to_owned(),
        format!("PATCH/tasks/{id}"),
        format!("DELETE/tasks/{id}"),
    ] {
        assert!(policy_allows(&policy, &arn(&allowed)), "{allowed} refused");
    }
    for refused in [
        "GET/admin/users".to_owned(),
        format!("GET/admin/users/{id}"),
        format!("PATCH/admin/users/{id}"),
        format!("DELETE/admin/users/{id}"),
        format!("PUT/tasks/{id}"),
        "DELETE/tasks".to_owned(),
        "GET/taskszzz".to_owned(),
    ] {
        assert!(!policy_allows(&policy, &arn(&refused)), "{refused} allowed");
    }
    // Another stage or another API is not covered by the policy.
    let other_stage = "arn:aws:execute-api:us-west-2:123456789012:ymy8tbxw7b/staging/GET/tasks";
    assert!(!policy_allows(&policy, other_stage));
    let other_api = "arn:aws:execute-api:us-west-2:123456789012:otherapi00/prod/GET/tasks";
    assert!(!policy_allows(&policy, other_api));
}

#[test]
fn user_policy_allows_no_route_the_user_role_may_not_call() {
    let issued = issue(&tokens(), Role::User);
    let policy = allow(&issued.token).policy_document;
    let id = Uuid::new_v4().to_string();
    for route in ROUTES {
        let path: Vec<String> = route
            .path
            .split('/')
            .map(|s| if s.starts_with('{') { id.clone() } else { s.to_owned() })
            .collect();
        let method_arn = format!("{STAGE_ARN}/{}{}", route.method, path.join("/"));
        let expect = route.access != Access::Public && route.access.allows(Role::User);
        assert_eq!(policy_allows(&policy, &method_arn), expect, "{method_arn}");
    }
}

#[test]
fn stage_arn_comes_from_the_method_arn() {
    assert_eq!(
        authorizer::api_stage_arn("arn:aws:execute-api:us-west-2:123456789012:ymy8tbxw7b/prod/GET/tasks/1"),
        Some(STAGE_ARN)
    );
    // The shipped example: stage `*` (a test invocation from the console).
    let issued = issue(&tokens(), Role::User);
    let mut event = event(&issued.token);
    event.method_arn = Some("arn:aws:execute-api:us-west-2:123456789012:ymy8tbxw7b/*/GET/".into());
    let response = authorizer::handle(&tokens(), &event).unwrap();
    let resources = &response.policy_document.statement[0].resource;
    assert!(resources.contains(&"arn:aws:execute-api:us-west-2:123456789012:ymy8tbxw7b/*/GET/tasks".to_owned()));
}
