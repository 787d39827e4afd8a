//! Guards `template.yaml` (AWS SAM) against drift from the code: the route table, the function
//! crates, the Gateway Responses the local API imitates, and least-privilege secret access.
//!
//! The template is parsed as plain YAML; CloudFormation short tags (`!Ref`, `!GetAtt`, `!Sub`,
//! `!If`, ...) come through as tagged values and are understood where they matter.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};
use shared::error::ApiError;
use shared::roles::{Access, ROUTES, Role};
use uuid::Uuid;

// --- reading the template ------------------------------------------------------------------

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn template() -> Value {
    let path = workspace_root().join("template.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Walk mapping keys (through tags).
fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, key| v.get(*key))
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

fn mapping_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Mapping> {
    at(v, path).and_then(Value::as_mapping)
}

/// The logical id a value points at: `!Ref X`, `{Ref: X}`, `!GetAtt X.Attr`,
/// `!GetAtt [X, Attr]`, `{"Fn::GetAtt": [X, Attr]}`.
fn reference(v: &Value) -> Option<String> {
    match v {
        Value::Tagged(t) if t.tag == "Ref" => t.value.as_str().map(str::to_owned),
        Value::Tagged(t) if t.tag == "GetAtt" => match &t.value {
            Value::String(s) => s.split('.').next().map(str::to_owned),
            Value::Sequence(seq) => seq.first().and_then(Value::as_str).map(str::to_owned),
            _ => None,
        },
        Value::Mapping(m) if m.len() == 1 => {
            if let Some(r) = m.get("Ref") {
                r.as_str().map(str::to_owned)
            } else if let Some(Value::Sequence(seq)) = m.get("Fn::GetAtt") {
                seq.first().and_then(Value::as_str).map(str::to_owned)
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Whether `v` refers to `logical_id` anywhere: a Ref/GetAtt, or `${Id}` / `${Id.Attr}` in a Sub.
fn mentions(v: &Value, logical_id: &str) -> bool {
    if reference(v).as_deref() == Some(logical_id) {
        return true;
    }
    match v {
        Value::String(s) => s.contains(&format!("${{{logical_id}}}")) || s.contains(&format!("${{{logical_id}.")),
        Value::Sequence(seq) => seq.iter().any(|x| mentions(x, logical_id)),
        Value::Mapping(m) => m
            .iter()
            .any(|(k, x)| mentions(k, logical_id) || mentions(x, logical_id)),
        Value::Tagged(t) => mentions(&t.value, logical_id),
        _ => false,
    }
}

/// Every resource of a type, by logical id.
fn resources_of_type<'a>(t: &'a Value, type_: &str) -> BTreeMap<String, &'a Value> {
    let resources = mapping_at(t, &["Resources"]).expect("template has Resources");
    resources
        .iter()
        .filter(|(_, r)| str_at(r, &["Type"]) == Some(type_))
        .map(|(k, r)| (k.as_str().expect("logical ids are strings").to_owned(), r))
        .collect()
}

fn functions(t: &Value) -> BTreeMap<String, &Value> {
    let f = resources_of_type(t, "AWS::Serverless::Function");
    assert!(!f.is_empty(), "template has no AWS::Serverless::Function");
    f
}

/// One `Type: Api` event.
#[derive(Debug)]
struct ApiEvent {
    function: String,
    event: String,
    method: String,
    path: String,
    properties: Value,
}

fn api_events(t: &Value) -> Vec<ApiEvent> {
    let mut out = Vec::new();
    for (name, f) in functions(t) {
        let Some(events) = mapping_at(f, &["Properties", "Events"]) else {
            continue;
        };
        for (event, e) in events {
            if str_at(e, &["Type"]) != Some("Api") {
                continue;
            }
            let event = event.as_str().expect("event names are strings").to_owned();
            let properties = at(e, &["Properties"]).unwrap_or_else(|| panic!("{name}.{event} has no Properties"));
            let method = str_at(properties, &["Method"])
                .unwrap_or_else(|| panic!("{name}.{event} has no Method"))
                .to_ascii_uppercase();
            let path = str_at(properties, &["Path"])
                .unwrap_or_else(|| panic!("{name}.{event} has no Path"))
                .to_owned();
            out.push(ApiEvent {
                function: name.clone(),
                event,
                method,
                path,
                properties: properties.clone(),
            });
        }
    }
    out
}

/// A function's environment variables (its own, not the Globals).
fn env_vars(f: &Value) -> Option<&Mapping> {
    mapping_at(f, &["Properties", "Environment", "Variables"])
}

/// The logical id of the function behind the API's default (TOKEN) authorizer.
fn authorizer_function(t: &Value) -> String {
    let api = api_resource(t);
    let default = str_at(api, &["Properties", "Auth", "DefaultAuthorizer"]).expect("the API has a DefaultAuthorizer");
    let arn = at(api, &["Properties", "Auth", "Authorizers", default, "FunctionArn"])
        .unwrap_or_else(|| panic!("authorizer {default} has no FunctionArn"));
    reference(arn).unwrap_or_else(|| panic!("authorizer {default}'s FunctionArn is not a !GetAtt: {arn:?}"))
}

/// The one `AWS::Serverless::Api`.
fn api_resource(t: &Value) -> &Value {
    let apis = resources_of_type(t, "AWS::Serverless::Api");
    assert_eq!(
        apis.len(),
        1,
        "expected exactly one AWS::Serverless::Api, found {:?}",
        apis.keys()
    );
    apis.into_values().next().expect("one API")
}

fn api_logical_id(t: &Value) -> String {
    let apis = resources_of_type(t, "AWS::Serverless::Api");
    apis.into_keys().next().expect("one API")
}

/// What `secretsmanager:GetSecretValue`-granting statements of a function allow: their Resource
/// values. Shapes that hide what may be read (policy templates, wildcard actions) are problems.
fn get_secret_value_resources(name: &str, f: &Value, problems: &mut Vec<String>) -> Vec<Value> {
    let mut out = Vec::new();
    let Some(policies) = at(f, &["Properties", "Policies"]) else {
        return out;
    };
    let policies: Vec<&Value> = match policies {
        Value::Sequence(seq) => seq.iter().collect(),
        other => vec![other],
    };
    for policy in policies {
        let Some(statements) = at(policy, &["Statement"]) else {
            // Managed policy names or SAM policy templates would hide what the function may read.
            if format!("{policy:?}").to_ascii_lowercase().contains("secret") {
                problems.push(format!(
                    "{name}: secret access must be an explicit Statement, found {policy:?}"
                ));
            }
            continue;
        };
        let statements: Vec<&Value> = match statements {
            Value::Sequence(seq) => seq.iter().collect(),
            other => vec![other],
        };
        for s in statements {
            if str_at(s, &["Effect"]) != Some("Allow") {
                continue;
            }
            let actions: Vec<&str> = match at(s, &["Action"]) {
                Some(Value::String(a)) => vec![a.as_str()],
                Some(Value::Sequence(seq)) => seq.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            let grants = actions.iter().any(|a| {
                let a = a.to_ascii_lowercase();
                a == "secretsmanager:getsecretvalue"
                    || (a.contains('*') && "secretsmanager:getsecretvalue".starts_with(a.trim_end_matches('*')))
            });
            if !grants {
                continue;
            }
            if actions.iter().any(|a| a.contains('*')) {
                problems.push(format!("{name}: wildcard action in a secrets statement: {actions:?}"));
            }
            match at(s, &["Resource"]) {
                Some(Value::Sequence(seq)) => out.extend(seq.iter().cloned()),
                Some(r) => out.push(r.clone()),
                None => problems.push(format!("{name}: GetSecretValue statement without Resource")),
            }
        }
    }
    out
}

#[track_caller]
fn assert_no_problems(problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "template.yaml drifted:\n  {}",
        problems.join("\n  ")
    );
}

// --- (a) routes ----------------------------------------------------------------------------

/// (method, path) pairs that are in the template but not in ROUTES, or the other way round.
fn route_set_problems(t: &Value) -> Vec<String> {
    let events = api_events(t);
    let in_template: BTreeSet<(String, String)> = events.iter().map(|e| (e.method.clone(), e.path.clone())).collect();
    let in_code: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.as_str().to_owned(), r.path.to_owned()))
        .collect();
    let mut problems: Vec<String> = in_template
        .difference(&in_code)
        .map(|(m, p)| format!("{m} {p} is an Api event in template.yaml but not in shared::roles::ROUTES"))
        .chain(
            in_code
                .difference(&in_template)
                .map(|(m, p)| format!("{m} {p} is in shared::roles::ROUTES but no Api event in template.yaml")),
        )
        .collect();
    // Two events with one method + path: SAM refuses to deploy.
    if events.len() != in_template.len() {
        problems.push(format!("duplicate (method, path) among the Api events: {events:#?}"));
    }
    problems
}

/// Public routes need `Auth: {Authorizer: NONE}`; every other route must keep the default.
fn auth_override_problems(t: &Value) -> Vec<String> {
    let none: Value = serde_yaml_ng::from_str("Authorizer: NONE").expect("yaml");
    let mut problems = Vec::new();
    for e in api_events(t) {
        let Some(route) = ROUTES
            .iter()
            .find(|r| r.method.as_str() == e.method && r.path == e.path)
        else {
            continue; // reported by route_set_problems
        };
        let auth = at(&e.properties, &["Auth"]);
        match route.access {
            Access::Public if auth != Some(&none) => problems.push(format!(
                "{} {} ({}.{}) is public: its event needs `Auth: {{Authorizer: NONE}}`, found {auth:?}",
                e.method, e.path, e.function, e.event
            )),
            Access::Roles(_) if auth.is_some() => problems.push(format!(
                "{} {} ({}.{}) needs a token: its event must not override Auth (found {auth:?}), so the \
                 default TOKEN authorizer applies",
                e.method, e.path, e.function, e.event
            )),
            _ => {}
        }
    }
    problems
}

/// Every Api event must attach to the one API (an event without RestApiId makes SAM create a
/// second, implicit API with no authorizer at all).
fn rest_api_problems(t: &Value) -> Vec<String> {
    let api_id = api_logical_id(t);
    api_events(t)
        .into_iter()
        .filter(|e| at(&e.properties, &["RestApiId"]).and_then(reference).as_deref() != Some(api_id.as_str()))
        .map(|e| {
            format!(
                "{}.{} ({} {}) must set RestApiId: !Ref {api_id}",
                e.function, e.event, e.method, e.path
            )
        })
        .collect()
}

/// The function serving a route is the one ROUTES names (`Function::Tasks` → `TasksFunction`).
fn function_mapping_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for e in api_events(t) {
        if let Some(route) = ROUTES
            .iter()
            .find(|r| r.method.as_str() == e.method && r.path == e.path)
        {
            let expected = format!("{:?}Function", route.function);
            if e.function != expected {
                problems.push(format!(
                    "{} {}: template has {}, ROUTES says {expected}",
                    e.method, e.path, e.function
                ));
            }
        }
    }
    problems
}

#[test]
fn api_events_are_exactly_the_route_table() {
    assert_no_problems(route_set_problems(&template()));
}

#[test]
fn public_routes_and_only_they_opt_out_of_the_authorizer() {
    assert_no_problems(auth_override_problems(&template()));
}

#[test]
fn every_api_event_attaches_to_the_api_with_the_jwt_authorizer() {
    let t = template();
    assert_no_problems(rest_api_problems(&t));

    let api = api_resource(&t);
    let default = str_at(api, &["Properties", "Auth", "DefaultAuthorizer"]).expect("DefaultAuthorizer");
    let authorizer = at(api, &["Properties", "Auth", "Authorizers", default]).expect("the default authorizer");
    assert_eq!(str_at(authorizer, &["FunctionPayloadType"]), Some("TOKEN"));
    assert_eq!(str_at(authorizer, &["Identity", "Header"]), Some("Authorization"));
    let f = authorizer_function(&t);
    assert!(
        functions(&t).contains_key(&f),
        "the authorizer's FunctionArn names {f}, which is not a function"
    );
    assert!(
        functions(&t)
            .get(&f)
            .and_then(|f| at(f, &["Properties", "Events"]))
            .is_none(),
        "the authorizer function must not serve routes itself"
    );
    // The local API re-implements this expression (local_api::bearer_header_valid): change both.
    assert_eq!(
        str_at(authorizer, &["Identity", "ValidationExpression"]),
        Some("^Bearer [-0-9A-Za-z._~+/]+=*$"),
        "ValidationExpression changed: update local_api::bearer_header_valid to match, then this test"
    );
    for (header, valid) in [
        ("Bearer abc.DEF-123_~+/x==", true),
        ("Bearer a", true),
        ("Bearer ", false),
        ("Bearer ==", false),
        ("Bearer a=b", false),
        ("bearer abc", false),
        ("Bearer  abc", false),
        ("Bearer abc ", false),
        ("Basic abc", false),
    ] {
        assert_eq!(local_api::bearer_header_valid(header), valid, "{header:?}");
    }
}

#[test]
fn each_route_is_served_by_the_function_the_table_names() {
    assert_no_problems(function_mapping_problems(&template()));
}

// --- (b) function crates -------------------------------------------------------------------

#[test]
fn every_function_binary_is_a_crate_with_a_main() {
    let t = template();
    let root = workspace_root();
    let mut problems = Vec::new();
    let mut binaries = BTreeSet::new();
    for (name, f) in functions(&t) {
        if str_at(f, &["Metadata", "BuildMethod"]) != Some("rust-cargolambda") {
            problems.push(format!("{name}: Metadata.BuildMethod must be rust-cargolambda"));
        }
        if str_at(f, &["Properties", "CodeUri"]) != Some(".") {
            problems.push(format!("{name}: CodeUri must be `.` (the workspace root)"));
        }
        let Some(binary) = str_at(f, &["Metadata", "BuildProperties", "Binary"]) else {
            problems.push(format!("{name}: no Metadata.BuildProperties.Binary"));
            continue;
        };
        binaries.insert(binary.to_owned());
        let dir = root.join("functions").join(binary);
        let main = dir.join("src").join("main.rs");
        if !main.is_file() {
            problems.push(format!(
                "{name}: Binary {binary:?} but {} does not exist",
                main.display()
            ));
            continue;
        }
        // The binary cargo-lambda builds is the package's default binary: its name is the package name.
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
        if !manifest.lines().any(|l| l.trim() == format!("name = \"{binary}\"")) {
            problems.push(format!(
                "{name}: functions/{binary}/Cargo.toml does not name the package {binary:?}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // The other direction: no function crate that the template never deploys.
    let mut orphans = Vec::new();
    for entry in std::fs::read_dir(root.join("functions")).expect("functions/") {
        let entry = entry.expect("dir entry");
        let dir = entry.file_name().to_string_lossy().into_owned();
        if entry.path().join("src").join("main.rs").is_file() && !binaries.contains(&dir) {
            orphans.push(dir);
        }
    }
    assert!(
        orphans.is_empty(),
        "function crates not deployed by template.yaml: {orphans:?}"
    );

    let globals = at(&t, &["Globals", "Function"]).expect("Globals.Function");
    assert_eq!(str_at(globals, &["Runtime"]), Some("provided.al2023"));
    assert_eq!(
        str_at(globals, &["Handler"]),
        Some("bootstrap"),
        "cargo-lambda builds a `bootstrap`"
    );
}

// --- (c) gateway responses == local API ----------------------------------------------------

/// A Gateway Response: status, headers (quotes stripped) and the application/json template.
struct GatewayResponse {
    status: Option<u64>,
    headers: BTreeMap<String, String>,
    body: String,
}

fn gateway_response(t: &Value, kind: &str) -> GatewayResponse {
    let r = at(api_resource(t), &["Properties", "GatewayResponses", kind])
        .unwrap_or_else(|| panic!("template has no Gateway Response {kind}"));
    let body = str_at(r, &["ResponseTemplates", "application/json"])
        .unwrap_or_else(|| panic!("{kind} has no application/json ResponseTemplate"))
        .to_owned();
    let headers = mapping_at(r, &["ResponseParameters", "Headers"])
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let k = k.as_str().expect("header name").to_ascii_lowercase();
                    let v = v
                        .as_str()
                        .unwrap_or_else(|| panic!("{kind} header {k} is not a literal"));
                    let v = v
                        .strip_prefix('\'')
                        .and_then(|v| v.strip_suffix('\''))
                        .unwrap_or_else(|| panic!("{kind} header {k} must be a quoted literal: {v}"));
                    (k, v.to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    GatewayResponse {
        status: at(r, &["StatusCode"]).and_then(Value::as_u64),
        headers,
        body,
    }
}

fn parse_json(what: &str, body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{what} is not JSON ({e}): {body}"))
}

fn body_text(response: lambda_http::Response<lambda_http::Body>) -> String {
    match response.into_body() {
        lambda_http::Body::Text(s) => s,
        lambda_http::Body::Binary(b) => String::from_utf8(b).expect("utf-8 body"),
        other => panic!("unexpected body {other:?}"),
    }
}

/// Assert that a local answer is byte-for-byte the gateway's, as JSON and as text.
#[track_caller]
fn assert_same_body(kind: &str, gateway: &GatewayResponse, local_status: u16, local_body: &str) {
    assert_eq!(
        gateway.status,
        Some(u64::from(local_status)),
        "{kind}: status differs from the local API's"
    );
    assert_eq!(
        parse_json(&format!("{kind} template"), &gateway.body),
        parse_json(&format!("local {local_status} body"), local_body),
        "{kind}: the gateway's body and the local API's differ as JSON"
    );
    assert_eq!(
        gateway.body, local_body,
        "{kind}: the gateway's body and the local API's differ as text"
    );
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("client")
}

#[track_caller]
fn assert_standard_headers(kind: &str, gateway: &GatewayResponse, local: &reqwest::header::HeaderMap) {
    for name in ["content-type", "cache-control"] {
        let local = local.get(name).map(|v| v.to_str().expect("ascii"));
        assert_eq!(
            gateway.headers.get(name).map(String::as_str),
            local,
            "{kind}: header {name}"
        );
    }
}

#[tokio::test]
async fn unauthorized_gateway_response_matches_the_local_api() {
    let t = template();
    let gateway = gateway_response(&t, "UNAUTHORIZED");
    let api = api_tests::spawn_api().await;
    let client = http();

    // No token at all.
    let r = client.get(api.url("/tasks")).send().await.expect("GET /tasks");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.text().await.expect("body");
    assert_eq!(status, 401, "{body}");
    assert_same_body("UNAUTHORIZED", &gateway, status, &body);
    assert_standard_headers("UNAUTHORIZED", &gateway, &headers);
    // The deployed gateway cannot tell "no token" from "bad token"; the local API is more precise.
    let www = headers.get("www-authenticate").map(|v| v.to_str().expect("ascii"));
    assert_eq!(www, Some("Bearer"), "no token sent: plain Bearer challenge");

    // A token that is refused: the same body, and the gateway's exact challenge.
    let r = client
        .get(api.url("/tasks"))
        .bearer_auth("not.a.jwt")
        .send()
        .await
        .expect("GET /tasks");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.text().await.expect("body");
    assert_eq!(status, 401, "{body}");
    assert_same_body("UNAUTHORIZED", &gateway, status, &body);
    assert_standard_headers("UNAUTHORIZED", &gateway, &headers);
    let www = headers.get("www-authenticate").map(|v| v.to_str().expect("ascii"));
    assert_eq!(
        www,
        gateway.headers.get("www-authenticate").map(String::as_str),
        "WWW-Authenticate for a bad token"
    );
}

#[tokio::test]
async fn access_denied_gateway_response_matches_the_local_api() {
    let t = template();
    let gateway = gateway_response(&t, "ACCESS_DENIED");
    let forbidden_route = ROUTES.iter().find(|r| !r.access.allows(Role::User));
    match forbidden_route {
        Some(route) => {
            let api = api_tests::spawn_api().await;
            let token = api
                .state
                .tokens
                .issue(Uuid::new_v4(), Uuid::new_v4(), Role::User)
                .expect("issue");
            let path = route.path.replace("{id}", &Uuid::new_v4().to_string());
            let method = reqwest::Method::from_bytes(route.method.as_str().as_bytes()).expect("method");
            let r = http()
                .request(method, api.url(&path))
                .bearer_auth(secrecy::ExposeSecret::expose_secret(&token.token))
                .send()
                .await
                .expect("request");
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            let body = r.text().await.expect("body");
            assert_eq!(status, 403, "a user token on {} {path}: {body}", route.method);
            assert_same_body("ACCESS_DENIED", &gateway, status, &body);
            assert_standard_headers("ACCESS_DENIED", &gateway, &headers);
        }
        None => {
            // No admin-only route yet: compare with the problem the local API would send.
            let body = body_text(ApiError::Forbidden.into_response());
            assert_same_body("ACCESS_DENIED", &gateway, 403, &body);
        }
    }
}

#[tokio::test]
async fn missing_authentication_token_gateway_response_is_the_local_404() {
    let t = template();
    let gateway = gateway_response(&t, "MISSING_AUTHENTICATION_TOKEN");
    let api = api_tests::spawn_api().await;
    let client = http();
    // An unknown path, and a known path with a method it does not have: API Gateway (REST)
    // answers both with MISSING_AUTHENTICATION_TOKEN.
    let unknown = format!("/no-such-route-{}", Uuid::new_v4());
    for (method, path) in [
        (reqwest::Method::GET, unknown.as_str()),
        (reqwest::Method::PUT, "/tasks"),
    ] {
        let r = client
            .request(method.clone(), api.url(path))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.text().await.expect("body");
        assert_eq!(status, 404, "{method} {path}: {body}");
        assert_same_body("MISSING_AUTHENTICATION_TOKEN", &gateway, status, &body);
        assert_standard_headers("MISSING_AUTHENTICATION_TOKEN", &gateway, &headers);
    }
}

#[test]
fn throttled_and_too_large_gateway_responses_match_the_functions_problems() {
    let t = template();
    let throttled = gateway_response(&t, "THROTTLED");
    let local = ApiError::RateLimited { retry_after_secs: 1 }.into_response();
    assert_eq!(
        throttled.headers.get("retry-after").map(String::as_str),
        Some("1"),
        "THROTTLED needs Retry-After"
    );
    assert_same_body("THROTTLED", &throttled, local.status().as_u16(), &body_text(local));

    let too_large = gateway_response(&t, "REQUEST_TOO_LARGE");
    let local = ApiError::PayloadTooLarge.into_response();
    assert_same_body(
        "REQUEST_TOO_LARGE",
        &too_large,
        local.status().as_u16(),
        &body_text(local),
    );
}

#[test]
fn every_gateway_response_is_problem_json_and_not_cached() {
    let t = template();
    let responses = mapping_at(api_resource(&t), &["Properties", "GatewayResponses"]).expect("GatewayResponses");
    for kind in [
        "UNAUTHORIZED",
        "ACCESS_DENIED",
        "MISSING_AUTHENTICATION_TOKEN",
        "DEFAULT_4XX",
        "DEFAULT_5XX",
    ] {
        assert!(responses.contains_key(kind), "GatewayResponses lacks {kind}");
    }
    for (kind, _) in responses {
        let kind = kind.as_str().expect("response type");
        let r = gateway_response(&t, kind);
        // `$context.error.messageString` is substituted as a quoted, escaped JSON string.
        let body = parse_json(kind, &r.body.replace("$context.error.messageString", r#""a message""#));
        assert!(body.get("type").and_then(|v| v.as_str()).is_some(), "{kind}: no `type`");
        assert!(body.get("code").and_then(|v| v.as_str()).is_some(), "{kind}: no `code`");
        assert_eq!(
            r.headers.get("content-type").map(String::as_str),
            Some("application/problem+json"),
            "{kind}"
        );
        assert_eq!(
            r.headers.get("cache-control").map(String::as_str),
            Some("no-store"),
            "{kind}"
        );
        if let (Some(status), Some(in_body)) = (r.status, body.get("status")) {
            assert_eq!(
                in_body.as_u64(),
                Some(status),
                "{kind}: body status differs from StatusCode"
            );
        }
    }
}

#[test]
fn gateway_templates_embed_error_messages_as_escaped_json_strings() {
    // `"$context.error.message"` inserts the raw message: a `"` or `\` in it breaks the JSON.
    // `$context.error.messageString` is the same message, already quoted and escaped.
    let t = template();
    let responses = mapping_at(api_resource(&t), &["Properties", "GatewayResponses"]).expect("GatewayResponses");
    let mut problems = Vec::new();
    for (kind, _) in responses {
        let kind = kind.as_str().expect("response type");
        let body = gateway_response(&t, kind).body;
        let raw_uses = body
            .match_indices("$context.error.message")
            .filter(|(i, m)| !body[i + m.len()..].starts_with("String"));
        if raw_uses.count() > 0 {
            problems.push(format!(
                "{kind}: use `$context.error.messageString` (unquoted) instead of `\"$context.error.message\"`: {body}"
            ));
        }
    }
    assert_no_problems(problems);
}

// --- (d) secrets and least privilege -------------------------------------------------------

const PLAIN_SECRET_VARS: &[&str] = &["DATABASE_URL", "JWT_SECRET", "JWT_SECRET_PREVIOUS"];
const SECRET_ARN_VARS: &[&str] = &[
    "DATABASE_URL_SECRET_ARN",
    "JWT_SECRET_ARN",
    "JWT_PRIVATE_KEY_ARN",
    "JWT_JWKS_ARN",
];

/// Secrets passed by value in an environment (functions' own and the Globals), and a database
/// URL parameter that CloudFormation would echo.
fn plain_secret_problems(t: &Value) -> Vec<String> {
    let mut envs: Vec<(String, &Mapping)> = functions(t)
        .into_iter()
        .filter_map(|(name, f)| env_vars(f).map(|vars| (name, vars)))
        .collect();
    if let Some(globals) = mapping_at(t, &["Globals", "Function", "Environment", "Variables"]) {
        envs.push(("Globals".to_owned(), globals));
    }
    let mut problems = Vec::new();
    for (name, vars) in envs {
        for var in PLAIN_SECRET_VARS {
            if vars.contains_key(*var) {
                problems.push(format!("{name} has {var} in its environment: pass secrets by ARN"));
            }
        }
    }
    let no_echo = at(t, &["Parameters", "DatabaseUrl", "NoEcho"]).and_then(Value::as_bool);
    if no_echo != Some(true) {
        problems.push("the DatabaseUrl parameter must be NoEcho: true".to_owned());
    }
    problems
}

/// The secret named by `var` across functions (they must all agree, and it must be a secret).
fn secret_named_by(t: &Value, var: &str) -> Result<String, String> {
    let ids: BTreeSet<String> = functions(t)
        .values()
        .filter_map(|f| env_vars(f).and_then(|v| v.get(var)))
        .map(|v| reference(v).ok_or_else(|| format!("{var} must be a !Ref to a secret, found {v:?}")))
        .collect::<Result<_, _>>()?;
    let mut ids = ids.into_iter();
    let (Some(id), None) = (ids.next(), ids.next()) else {
        return Err(format!("{var} must name exactly one secret across all functions"));
    };
    if !resources_of_type(t, "AWS::SecretsManager::Secret").contains_key(&id) {
        return Err(format!("{var} names {id}, which is not an AWS::SecretsManager::Secret"));
    }
    Ok(id)
}

/// The authorizer must work with Postgres down: no database secret in any form.
fn authorizer_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let name = authorizer_function(t);
    let all = functions(t);
    let Some(f) = all.get(&name) else {
        return vec![format!("the authorizer {name} is not a function")];
    };
    let db_secret = match secret_named_by(t, "DATABASE_URL_SECRET_ARN") {
        Ok(id) => id,
        Err(e) => return vec![e],
    };
    if at(f, &["Properties", "Policies"]).is_some_and(|p| mentions(p, &db_secret)) {
        problems.push(format!("{name}'s policies reference the database secret {db_secret}"));
    }
    if at(f, &["Properties"]).is_some_and(|p| mentions(p, &db_secret)) {
        problems.push(format!(
            "{name} must not be given the database secret {db_secret} in any form"
        ));
    }
    if env_vars(f).is_some_and(|v| v.contains_key("DATABASE_URL_SECRET_ARN")) {
        problems.push(format!("{name} must not read the database URL"));
    }
    // ... and it does read the signing key.
    match secret_named_by(t, "JWT_SECRET_ARN") {
        Ok(key) => {
            let reads = get_secret_value_resources(&name, f, &mut problems);
            if !reads.iter().any(|r| reference(r).as_deref() == Some(key.as_str())) {
                problems.push(format!("{name} has no GetSecretValue on the signing key {key}"));
            }
        }
        Err(e) => problems.push(e),
    }
    problems
}

/// Each `*_SECRET_ARN` variable has a GetSecretValue statement on exactly that secret, and no
/// function may read a secret none of its variables names (least privilege).
fn grant_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut saw_db = false;
    for (name, f) in functions(t) {
        let grants = get_secret_value_resources(&name, f, &mut problems);
        for r in &grants {
            if reference(r).is_none() {
                problems.push(format!(
                    "{name}: GetSecretValue on {r:?}, not one !Ref'd secret (wildcard?)"
                ));
            }
        }
        let granted: BTreeSet<String> = grants.iter().filter_map(reference).collect();
        let mut needed = BTreeSet::new();
        for var in SECRET_ARN_VARS {
            let Some(value) = env_vars(f).and_then(|v| v.get(*var)) else {
                continue;
            };
            saw_db |= *var == "DATABASE_URL_SECRET_ARN";
            let Some(secret) = reference(value) else {
                problems.push(format!("{name}: {var} is not a !Ref: {value:?}"));
                continue;
            };
            if !granted.contains(&secret) {
                problems.push(format!(
                    "{name}: has {var} = !Ref {secret} but no GetSecretValue statement on it"
                ));
            }
            needed.insert(secret);
        }
        for extra in granted.difference(&needed) {
            problems.push(format!("{name}: may read {extra}, which none of its variables names"));
        }
    }
    if !saw_db {
        problems.push("no function has DATABASE_URL_SECRET_ARN".to_owned());
    }
    problems
}

#[test]
fn no_function_gets_a_secret_as_a_plain_environment_variable() {
    assert_no_problems(plain_secret_problems(&template()));
}

#[test]
fn the_authorizer_never_touches_the_database_secret() {
    assert_no_problems(authorizer_problems(&template()));
}

#[test]
fn every_secret_arn_variable_has_a_get_secret_value_grant_on_exactly_that_secret() {
    assert_no_problems(grant_problems(&template()));
}

// --- the checks themselves catch drift -----------------------------------------------------

fn at_mut<'a>(v: &'a mut Value, path: &[&str]) -> &'a mut Value {
    path.iter().fold(v, |v, key| {
        v.get_mut(*key).unwrap_or_else(|| panic!("no {key} in {path:?}"))
    })
}

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).expect("test yaml")
}

/// Apply `edit` to a copy of the real template and return what `check` reports.
fn problems_after(check: fn(&Value) -> Vec<String>, edit: impl FnOnce(&mut Value)) -> String {
    let mut t = template();
    edit(&mut t);
    check(&t).join("\n")
}

#[test]
fn the_checks_catch_drift() {
    let events = ["Resources", "TasksFunction", "Properties", "Events"];

    // A route dropped from the template, and one the code does not know.
    let p = problems_after(route_set_problems, |t| {
        let e = at_mut(t, &events).as_mapping_mut().expect("events");
        e.remove("TaskDelete").expect("TaskDelete exists");
        e.insert(
            "Extra".into(),
            yaml("{Type: Api, Properties: {RestApiId: !Ref Api, Path: /extra, Method: get}}"),
        );
    });
    assert!(p.contains("DELETE /tasks/{id} is in shared::roles::ROUTES"), "{p}");
    assert!(p.contains("GET /extra is an Api event"), "{p}");

    // A public route that lost its opt-out, and a Bearer route that opted out.
    let p = problems_after(auth_override_problems, |t| {
        at_mut(
            t,
            &[
                "Resources",
                "SignupFunction",
                "Properties",
                "Events",
                "SignupPost",
                "Properties",
            ],
        )
        .as_mapping_mut()
        .expect("props")
        .remove("Auth");
        at_mut(t, &[&events[..], &["TasksList", "Properties"]].concat())
            .as_mapping_mut()
            .expect("props")
            .insert("Auth".into(), yaml("{Authorizer: NONE}"));
    });
    assert!(p.contains("POST /auth/signup") && p.contains("GET /tasks "), "{p}");

    // An event on an implicit API.
    let p = problems_after(rest_api_problems, |t| {
        at_mut(t, &[&events[..], &["TasksList", "Properties"]].concat())
            .as_mapping_mut()
            .expect("props")
            .remove("RestApiId");
    });
    assert!(p.contains("TasksFunction.TasksList"), "{p}");

    // A secret by value, in a function and in the Globals.
    let p = problems_after(plain_secret_problems, |t| {
        at_mut(
            t,
            &["Resources", "LoginFunction", "Properties", "Environment", "Variables"],
        )
        .as_mapping_mut()
        .expect("vars")
        .insert("JWT_SECRET".into(), "x".into());
        at_mut(t, &["Globals", "Function", "Environment", "Variables"])
            .as_mapping_mut()
            .expect("vars")
            .insert("DATABASE_URL".into(), yaml("!Ref DatabaseUrl"));
    });
    assert!(
        p.contains("LoginFunction has JWT_SECRET") && p.contains("Globals has DATABASE_URL"),
        "{p}"
    );

    // The authorizer given the database secret (only in a policy, written as a Sub).
    let p = problems_after(authorizer_problems, |t| {
        at_mut(t, &["Resources", "AuthorizerFunction", "Properties", "Policies"])
            .as_sequence_mut()
            .expect("policies")
            .push(yaml(
                "Statement: [{Effect: Allow, Action: secretsmanager:GetSecretValue, Resource: !Sub '${DatabaseUrlSecret}'}]",
            ));
    });
    assert!(
        p.contains("policies reference the database secret DatabaseUrlSecret"),
        "{p}"
    );

    // A missing grant, a wildcard resource, and a grant on a secret the function does not read.
    let p = problems_after(grant_problems, |t| {
        let statements = at_mut(t, &["Resources", "TasksFunction", "Properties", "Policies"])
            .as_sequence_mut()
            .expect("policies")[0]
            .get_mut("Statement")
            .and_then(Value::as_sequence_mut)
            .expect("statements");
        statements.remove(0); // ReadDatabaseUrl
        at_mut(t, &["Resources", "CleanupFunction", "Properties", "Policies"])
            .as_sequence_mut()
            .expect("policies")
            .push(yaml("Statement: [{Effect: Allow, Action: [secretsmanager:GetSecretValue], Resource: !Ref JwtSigningKeySecret}]"));
        at_mut(t, &["Resources", "LoginFunction", "Properties", "Policies"])
            .as_sequence_mut()
            .expect("policies")
            .push(yaml(
                "Statement: {Effect: Allow, Action: 'secretsmanager:*', Resource: '*'}",
            ));
    });
    assert!(p.contains("TasksFunction: has DATABASE_URL_SECRET_ARN"), "{p}");
    assert!(p.contains("CleanupFunction: may read JwtSigningKeySecret"), "{p}");
    assert!(
        p.contains("LoginFunction: wildcard action") && p.contains("LoginFunction: GetSecretValue on"),
        "{p}"
    );

    // A route served by the wrong function.
    let p = problems_after(function_mapping_problems, |t| {
        let ev = at_mut(t, &events)
            .as_mapping_mut()
            .expect("events")
            .remove("TaskGet")
            .expect("TaskGet");
        at_mut(t, &["Resources", "LoginFunction", "Properties", "Events"])
            .as_mapping_mut()
            .expect("events")
            .insert("TaskGet".into(), ev);
    });
    assert!(
        p.contains("GET /tasks/{id}: template has LoginFunction, ROUTES says TasksFunction"),
        "{p}"
    );
}

/// EdDSA mode: only the functions that issue tokens (and the rotation function) may read the
/// private key; every other function verifies with the public JWKS.
#[test]
fn only_token_issuers_can_read_the_private_key() {
    let t = template();
    let private = secret_named_by(&t, "JWT_PRIVATE_KEY_ARN").expect("a private key secret");
    let issuers = [
        "SignupFunction",
        "LoginFunction",
        "RefreshFunction",
        "RotateKeyFunction",
    ];
    let mut readers = Vec::new();
    for (name, f) in functions(&t) {
        let mut problems = Vec::new();
        let reads = get_secret_value_resources(&name, f, &mut problems);
        if reads.iter().any(|r| reference(r).as_deref() == Some(private.as_str())) {
            readers.push(name.clone());
        }
        if !issuers.contains(&name.as_str()) {
            assert!(
                !at(f, &["Properties"]).is_some_and(|p| mentions(p, &private)),
                "{name} must not be given the private key in any form"
            );
        }
    }
    readers.sort();
    let mut expected: Vec<String> = issuers.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(readers, expected);
    let authorizer = functions(&t)
        .get("AuthorizerFunction")
        .map(|f| env_vars(f).is_some_and(|v| v.contains_key("JWT_JWKS_ARN")));
    assert_eq!(
        authorizer,
        Some(true),
        "the authorizer verifies with the public JWKS in EdDSA mode"
    );
}
