//! Guards `template.yaml` (AWS SAM) against drift from the code: the route table, the function
//! crates, the Gateway Responses the local API imitates, and least-privilege secret access.
//!
//! The template is parsed as plain YAML; CloudFormation short tags (`!Ref`, `!GetAtt`, `!Sub`,
//! `!If`, ...) come through as tagged values and are understood where they matter. Checks that
//! depend on parameters run on the template *resolved* for given values (conditions evaluated,
//! `!If` chosen, `AWS::NoValue` dropped), once per value that matters; checks of what SAM really
//! deploys (stages, managed policies) run on the SAM transform's output (`scripts/sam-transform.py`,
//! the same translator CloudFormation runs, offline).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use access::roles::{Access, ROUTES, Role};
use serde_yaml_ng::value::TaggedValue;
use serde_yaml_ng::{Mapping, Value};
use uuid::Uuid;
use web::error::ApiError;

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

// --- conditions and parameters ------------------------------------------------------------

/// Parameter values: the template's defaults, with `overrides` on top.
fn parameters(t: &Value, overrides: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, p) in mapping_at(t, &["Parameters"]).into_iter().flatten() {
        let default = match at(p, &["Default"]) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::Bool(b)) => b.to_string(),
            _ => String::new(),
        };
        out.insert(name.as_str().expect("parameter names are strings").to_owned(), default);
    }
    for (name, value) in overrides {
        assert!(out.contains_key(*name), "template.yaml has no parameter {name}");
        out.insert((*name).to_owned(), (*value).to_owned());
    }
    out
}

/// The argument of a short-tag function (`!Ref x` → `x`), if `v` is that function.
fn tagged<'a>(v: &'a Value, tag: &str) -> Option<&'a Value> {
    match v {
        Value::Tagged(t) if t.tag == tag => Some(&t.value),
        _ => None,
    }
}

fn scalar(v: &Value, params: &BTreeMap<String, String>) -> String {
    if let Some(name) = tagged(v, "Ref").and_then(Value::as_str) {
        return params
            .get(name)
            .unwrap_or_else(|| panic!("condition refers to {name}, not a parameter"))
            .clone();
    }
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("cannot evaluate {other:?} in a condition"),
    }
}

fn condition_expr(t: &Value, v: &Value, params: &BTreeMap<String, String>) -> bool {
    let args = |tag| tagged(v, tag).and_then(Value::as_sequence);
    if let Some(a) = args("Equals") {
        scalar(&a[0], params) == scalar(&a[1], params)
    } else if let Some(a) = args("Not") {
        !condition_expr(t, &a[0], params)
    } else if let Some(a) = args("And") {
        a.iter().all(|x| condition_expr(t, x, params))
    } else if let Some(a) = args("Or") {
        a.iter().any(|x| condition_expr(t, x, params))
    } else if let Some(name) = tagged(v, "Condition").and_then(Value::as_str) {
        condition(t, name, params)
    } else {
        panic!("unknown condition function {v:?}")
    }
}

fn condition(t: &Value, name: &str, params: &BTreeMap<String, String>) -> bool {
    let c = at(t, &["Conditions", name]).unwrap_or_else(|| panic!("no condition {name}"));
    condition_expr(t, c, params)
}

fn resolve_value(t: &Value, v: &Value, params: &BTreeMap<String, String>) -> Option<Value> {
    if let Some(args) = tagged(v, "If").and_then(Value::as_sequence) {
        let name = args[0].as_str().expect("!If names a condition");
        let chosen = if condition(t, name, params) { &args[1] } else { &args[2] };
        return resolve_value(t, chosen, params);
    }
    if tagged(v, "Ref").and_then(Value::as_str) == Some("AWS::NoValue") {
        return None;
    }
    Some(match v {
        Value::Mapping(m) => Value::Mapping(
            m.iter()
                .filter_map(|(k, x)| resolve_value(t, x, params).map(|x| (k.clone(), x)))
                .collect(),
        ),
        Value::Sequence(seq) => Value::Sequence(seq.iter().filter_map(|x| resolve_value(t, x, params)).collect()),
        Value::Tagged(tv) => Value::Tagged(Box::new(TaggedValue {
            tag: tv.tag.clone(),
            value: resolve_value(t, &tv.value, params).unwrap_or(Value::Null),
        })),
        other => other.clone(),
    })
}

/// The template as CloudFormation sees it for these parameter values (the rest at their
/// defaults): conditions evaluated, `!If` chosen, `AWS::NoValue` dropped, resources whose
/// condition is false removed.
fn resolve(t: &Value, overrides: &[(&str, &str)]) -> Value {
    let params = parameters(t, overrides);
    let mut out = resolve_value(t, t, &params).expect("a template");
    if let Some(resources) = out.get_mut("Resources").and_then(Value::as_mapping_mut) {
        resources.retain(|_, r| str_at(r, &["Condition"]).is_none_or(|c| condition(t, c, &params)));
    }
    out
}

/// The values of `JwtAlgorithm`: every check of secret access runs for each.
const ALGORITHMS: [&str; 2] = ["HS256", "EdDSA"];

/// The template resolved for `JwtAlgorithm = algorithm`.
fn template_for(algorithm: &str) -> Value {
    resolve(&template(), &[("JwtAlgorithm", algorithm)])
}

/// `check` on the template resolved for each algorithm, its problems prefixed with the algorithm.
fn for_each_algorithm(check: fn(&Value) -> Vec<String>) -> Vec<String> {
    ALGORITHMS
        .iter()
        .flat_map(|alg| {
            check(&template_for(alg))
                .into_iter()
                .map(move |p| format!("[{alg}] {p}"))
        })
        .collect()
}

// --- the SAM transform's output --------------------------------------------------------------

/// The Python that has cfn-lint (and so aws-sam-translator): `TODO_API_PYTHON`, else the venv
/// `scripts/test.sh` makes (`$TODO_API_STATE_DIR` or `~/.cache/todo-api`), else `python3`.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("TODO_API_PYTHON") {
        return p.into();
    }
    let state = std::env::var_os("TODO_API_STATE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/todo-api")));
    state
        .map(|s| s.join("venv/bin/python"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| "python3".into())
}

/// `template_path` through the SAM transform, with these parameter values, as JSON.
fn transform(template_path: &Path, overrides: &[(&str, &str)]) -> serde_json::Value {
    let script = workspace_root().join("scripts/sam-transform.py");
    let mut cmd = std::process::Command::new(python());
    cmd.arg(&script).arg(template_path);
    for (k, v) in overrides {
        cmd.arg(format!("{k}={v}"));
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "running {} {}: {e} (scripts/test.sh makes the venv with cfn-lint; or set TODO_API_PYTHON)",
            python().display(),
            script.display()
        )
    });
    assert!(
        out.status.success(),
        "the SAM transform failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the transform prints JSON")
}

/// template.yaml through the SAM transform with the default parameter values (computed once).
fn transformed() -> &'static serde_json::Value {
    static T: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    T.get_or_init(|| transform(&workspace_root().join("template.yaml"), &[]))
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
        .map(|(m, p)| format!("{m} {p} is an Api event in template.yaml but not in access::roles::ROUTES"))
        .chain(
            in_code
                .difference(&in_template)
                .map(|(m, p)| format!("{m} {p} is in access::roles::ROUTES but no Api event in template.yaml")),
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

/// The function serving a route is the one ROUTES names (`local_api::gateway::function_for`: `Function::Tasks` → `TasksFunction`).
fn function_mapping_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    for e in api_events(t) {
        if let Some(route) = ROUTES
            .iter()
            .find(|r| r.method.as_str() == e.method && r.path == e.path)
        {
            let expected = format!(
                "{:?}Function",
                local_api::gateway::function_for(route).expect("every route has a function")
            );
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

/// A gateway response template with its `$context.authorizer.<key>` variables substituted from
/// the authorizer's context, as API Gateway does (simple substitution, no VTL).
fn render_authorizer_context(template: &str, context: &serde_json::Value) -> String {
    let mut out = template.to_owned();
    let Some(fields) = context.as_object() else { return out };
    // Longest keys first: `denied_detail` before `denied`.
    let mut keys: Vec<&String> = fields.keys().collect();
    keys.sort_by_key(|k| std::cmp::Reverse(k.len()));
    for key in keys {
        let value = fields[key.as_str()].as_str().unwrap_or_default();
        out = out.replace(&format!("$context.authorizer.{key}"), value);
    }
    out
}

/// ACCESS_DENIED for a token whose policy leaves out the route: the gateway's template, filled in
/// from the authorizer's own context for that token, is byte for byte the local API's answer.
/// Both reasons: a role that may not use the route (`forbidden`), and an admin route from a
/// session without a second factor while ADMIN_REQUIRE_MFA is on (`mfa_required`).
#[tokio::test]
async fn access_denied_gateway_response_matches_the_local_api() {
    let t = template();
    let gateway = gateway_response(&t, "ACCESS_DENIED");
    let route = ROUTES
        .iter()
        .find(|r| !r.access.allows(Role::User))
        .expect("an admin-only route");
    let mut config = api_tests::test_config();
    config.mfa.admin_require_mfa = true;
    let api = api_tests::spawn_api_with(config).await;
    let path = route.path.replace("{id}", &Uuid::new_v4().to_string());
    let method = reqwest::Method::from_bytes(route.method.as_str().as_bytes()).expect("method");
    for (role, expected_code) in [(Role::User, "forbidden"), (Role::Admin, "mfa_required")] {
        let token = api
            .state
            .tokens
            .issue(Uuid::new_v4(), Uuid::new_v4(), role)
            .expect("issue");
        let token = secrecy::ExposeSecret::expose_secret(&token.token).to_owned();
        let mut event = aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequest::default();
        event.type_ = Some("TOKEN".into());
        event.authorization_token = Some(format!("Bearer {token}"));
        event.method_arn = Some(format!(
            "arn:aws:execute-api:eu-west-1:123456789012:abc123/v1/{}{path}",
            route.method
        ));
        let options = authorizer::Options {
            admin_require_mfa: true,
        };
        let decision = authorizer::handle_with(&api.state.tokens, &event, options).expect("a valid token");
        let r = http()
            .request(method.clone(), api.url(&path))
            .bearer_auth(&token)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.text().await.expect("body");
        assert_eq!(status, 403, "a {role} token on {} {path}: {body}", route.method);
        let rendered = GatewayResponse {
            status: gateway.status,
            headers: gateway.headers.clone(),
            body: render_authorizer_context(&gateway.body, &decision.context),
        };
        assert_same_body("ACCESS_DENIED", &rendered, status, &body);
        assert_standard_headers("ACCESS_DENIED", &gateway, &headers);
        assert_eq!(parse_json("local body", &body)["code"], expected_code, "{role}: {body}");
    }
    // A token with a second factor is not refused at the gateway (the function then checks the
    // session in the database).
    let token = api
        .state
        .tokens
        .issue_with_amr(Uuid::new_v4(), Uuid::new_v4(), Role::Admin, true)
        .expect("issue");
    let r = http()
        .request(method, api.url(&path))
        .bearer_auth(secrecy::ExposeSecret::expose_secret(&token.token))
        .send()
        .await
        .expect("request");
    assert_ne!(r.status().as_u16(), 403, "an admin token with otp passes the gateway");
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

const PLAIN_SECRET_VARS: &[&str] = &[
    "DATABASE_URL",
    "JWT_SECRET",
    "JWT_SECRET_PREVIOUS",
    "MFA_ENCRYPTION_KEY",
    "MFA_ENCRYPTION_KEY_PREVIOUS",
];
const SECRET_ARN_VARS: &[&str] = &[
    "DATABASE_URL_SECRET_ARN",
    "JWT_SECRET_ARN",
    "JWT_PRIVATE_KEY_ARN",
    "JWT_JWKS_ARN",
    "MFA_ENCRYPTION_KEY_ARN",
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
    // ... and it does read the verification key of the configured algorithm: the HMAC key
    // (HS256) or the public JWKS (EdDSA), whichever variable the resolved template gives it.
    let vars: Vec<&str> = ["JWT_SECRET_ARN", "JWT_JWKS_ARN"]
        .into_iter()
        .filter(|v| env_vars(f).is_some_and(|vars| vars.contains_key(*v)))
        .collect();
    let [var] = vars[..] else {
        problems.push(format!(
            "{name} must have exactly one of JWT_SECRET_ARN, JWT_JWKS_ARN, found {vars:?}"
        ));
        return problems;
    };
    match secret_named_by(t, var) {
        Ok(key) => {
            let reads = get_secret_value_resources(&name, f, &mut problems);
            if !reads.iter().any(|r| reference(r).as_deref() == Some(key.as_str())) {
                problems.push(format!("{name} has no GetSecretValue on its verification key {key}"));
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
    assert_no_problems(for_each_algorithm(authorizer_problems));
}

#[test]
fn every_secret_arn_variable_has_a_get_secret_value_grant_on_exactly_that_secret() {
    assert_no_problems(for_each_algorithm(grant_problems));
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

/// Apply `edit` to a copy of the real template (resolved for HS256) and return what `check` reports.
fn problems_after(check: fn(&Value) -> Vec<String>, edit: impl FnOnce(&mut Value)) -> String {
    let mut t = template_for("HS256");
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
    assert!(p.contains("DELETE /tasks/{id} is in access::roles::ROUTES"), "{p}");
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
/// private key; every other function verifies with the public JWKS or holds no key. HS256 mode:
/// nobody may read it.
#[test]
fn only_token_issuers_can_read_the_private_key() {
    for alg in ALGORITHMS {
        let t = template_for(alg);
        let private = "JwtPrivateKeySecret";
        let mut readers = Vec::new();
        for (name, f) in functions(&t) {
            let mut problems = Vec::new();
            let reads = get_secret_value_resources(&name, f, &mut problems);
            if reads.iter().any(|r| reference(r).as_deref() == Some(private)) {
                readers.push(name.clone());
            }
            if !ISSUERS.contains(&name.as_str()) && name != "RotateKeyFunction" {
                assert!(
                    !at(f, &["Properties"]).is_some_and(|p| mentions(p, private)),
                    "[{alg}] {name} must not be given the private key in any form"
                );
            }
        }
        readers.sort();
        let expected: Vec<String> = match alg {
            "EdDSA" => {
                let mut e: Vec<String> = ISSUERS.iter().map(|s| s.to_string()).collect();
                e.push("RotateKeyFunction".into());
                e.sort();
                e
            }
            _ => Vec::new(),
        };
        assert_eq!(readers, expected, "[{alg}] readers of the private key");
    }
}

// --- secret access by algorithm ------------------------------------------------------------

/// The functions that sign access tokens.
const ISSUERS: [&str; 4] = [
    "SignupFunction",
    "LoginFunction",
    "RefreshFunction",
    "MfaVerifyFunction",
];

/// Functions whose policies mention `secret` in any form, sorted.
fn readers_of(t: &Value, secret: &str) -> Vec<String> {
    functions(t)
        .into_iter()
        .filter(|(_, f)| at(f, &["Properties", "Policies"]).is_some_and(|p| mentions(p, secret)))
        .map(|(name, _)| name)
        .collect()
}

fn names(list: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// HS256: only the issuers, the authorizer and the rotation function can read the HMAC key;
/// EdDSA: nobody can, the verifiers read only the JWKS. The data functions read no key in
/// either mode.
#[test]
fn secret_access_follows_the_algorithm() {
    let [signup, login, refresh, mfa] = ISSUERS;
    let hs256 = template_for("HS256");
    assert_eq!(
        readers_of(&hs256, "JwtSigningKeySecret"),
        names(&["AuthorizerFunction", signup, login, refresh, mfa, "RotateKeyFunction"])
    );
    assert_eq!(readers_of(&hs256, "JwtPrivateKeySecret"), Vec::<String>::new());
    assert_eq!(readers_of(&hs256, "JwtJwksSecret"), Vec::<String>::new());

    let eddsa = template_for("EdDSA");
    assert_eq!(readers_of(&eddsa, "JwtSigningKeySecret"), Vec::<String>::new());
    assert_eq!(
        readers_of(&eddsa, "JwtJwksSecret"),
        names(&[
            "AuthorizerFunction",
            signup,
            login,
            refresh,
            mfa,
            "JwksFunction",
            "RotateKeyFunction"
        ])
    );
    // Every function still passes the least-privilege checks in both modes.
    assert_no_problems(for_each_algorithm(grant_problems));
}

/// The functions every route of which has the TOKEN authorizer (no public route).
fn bearer_only_functions() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for f in ROUTES.iter().map(|r| {
        format!(
            "{:?}Function",
            local_api::gateway::function_for(r).expect("every route has a function")
        )
    }) {
        if ROUTES
            .iter()
            .filter(|r| {
                format!(
                    "{:?}Function",
                    local_api::gateway::function_for(r).expect("every route has a function")
                ) == f
            })
            .all(|r| r.access != Access::Public)
        {
            out.insert(f);
        }
    }
    out
}

/// `JWT_TRUST_AUTHORIZER_CONTEXT=true` is safe only where API Gateway always runs the authorizer
/// first: exactly the functions that serve only Bearer routes have it, and they hold no key.
fn trust_problems(t: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let bearer_only = bearer_only_functions();
    for (name, f) in functions(t) {
        let trusts = env_vars(f)
            .and_then(|v| v.get("JWT_TRUST_AUTHORIZER_CONTEXT"))
            .and_then(Value::as_str)
            == Some("true");
        if trusts != bearer_only.contains(&name) {
            problems.push(format!(
                "{name}: JWT_TRUST_AUTHORIZER_CONTEXT is {trusts}, but it {} only Bearer routes",
                if trusts { "does not serve" } else { "serves" }
            ));
        }
        if trusts {
            for secret in ["JwtSigningKeySecret", "JwtPrivateKeySecret", "JwtJwksSecret"] {
                if at(f, &["Properties"]).is_some_and(|p| mentions(p, secret)) {
                    problems.push(format!("{name} trusts the authorizer but is given {secret}"));
                }
            }
        }
    }
    problems
}

#[test]
fn data_functions_trust_the_authorizer_and_hold_no_key() {
    assert!(!bearer_only_functions().is_empty());
    assert_no_problems(for_each_algorithm(trust_problems));
    // The check bites: a public route's function given the flag, a data function given the key.
    let p = problems_after(trust_problems, |t| {
        at_mut(
            t,
            &["Resources", "LoginFunction", "Properties", "Environment", "Variables"],
        )
        .as_mapping_mut()
        .expect("vars")
        .insert("JWT_TRUST_AUTHORIZER_CONTEXT".into(), "true".into());
        at_mut(t, &["Resources", "TasksFunction", "Properties", "Policies"])
            .as_sequence_mut()
            .expect("policies")
            .push(yaml("Statement: [{Effect: Allow, Action: secretsmanager:GetSecretValue, Resource: !Ref JwtSigningKeySecret}]"));
    });
    assert!(p.contains("LoginFunction: JWT_TRUST_AUTHORIZER_CONTEXT is true"), "{p}");
    assert!(
        p.contains("TasksFunction trusts the authorizer but is given JwtSigningKeySecret"),
        "{p}"
    );
}

/// The code half of the keyless data functions: `JWT_TRUST_AUTHORIZER_CONTEXT=true` starts with
/// no key at all, serves a request that carries the authorizer's context, and refuses (401) one
/// without it even when its token is valid, since nothing can check that token (fail closed).
#[tokio::test]
async fn a_function_that_trusts_the_authorizer_holds_no_key_and_fails_closed() {
    use access::keys::KeySource;
    use api_tests::tokens_from_source;
    use settings::EnvReader;

    let env = |vars: &'static [(&'static str, &'static str)]| {
        EnvReader::new(move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned()))
    };
    let api = api_tests::spawn_api().await;
    let settings = store::state::token_settings(&api.state.config);
    for alg in ALGORITHMS {
        let vars: &'static [(&str, &str)] = match alg {
            "HS256" => &[("JWT_TRUST_AUTHORIZER_CONTEXT", "true"), ("JWT_ALGORITHM", "HS256")],
            _ => &[("JWT_TRUST_AUTHORIZER_CONTEXT", "true"), ("JWT_ALGORITHM", "EdDSA")],
        };
        let e = env(vars);
        assert_eq!(api_tests::key_source(&e), KeySource::AuthorizerContext);
        let keyless = tokens_from_source(api_tests::key_source(&e), &e, None, settings.clone())
            .await
            .unwrap_or_else(|err| panic!("[{alg}] no key is needed: {err:#}"));
        assert!(keyless.snapshot().verifying_keys().is_empty(), "[{alg}] holds no key");
        assert!(
            keyless.issue(Uuid::new_v4(), Uuid::new_v4(), Role::User).is_err(),
            "[{alg}] cannot sign"
        );
    }
    // A value that is neither true nor false stops start-up.
    let e = env(&[
        ("JWT_TRUST_AUTHORIZER_CONTEXT", "yes"),
        ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
    ]);
    let Err(err) = tokens_from_source(api_tests::key_source(&e), &e, None, settings.clone()).await else {
        panic!("`yes` is refused");
    };
    assert!(format!("{err:#}").contains("JWT_TRUST_AUTHORIZER_CONTEXT"), "{err:#}");

    // A real account and token, from the normal (keyed) local API on the same database.
    let r = http()
        .post(api.url("/auth/signup"))
        .json(&serde_json::json!({"email": format!("keyless-{}@example.com", Uuid::new_v4()), "password": "Quartz-Lantern-93-Mosaic"}))
        .send()
        .await
        .expect("signup");
    assert_eq!(r.status(), 201);
    let body: serde_json::Value = r.json().await.expect("json");
    let token = body["access_token"].as_str().expect("access_token").to_owned();
    let claims = api.state.tokens.verify(&token).expect("a valid token");

    let e = env(&[("JWT_TRUST_AUTHORIZER_CONTEXT", "true")]);
    let tokens = tokens_from_source(api_tests::key_source(&e), &e, None, settings)
        .await
        .expect("keyless tokens");
    let state = store::AppState::with_tokens(api.state.config.clone(), api.state.pool.clone(), tokens).expect("state");

    let v1 = |with_context: bool| {
        let text = include_str!("../fixtures/apigw-v1-list-tasks.json")
            .replace("__SUB__", &claims.sub.to_string())
            .replace("__SID__", &claims.sid.to_string())
            .replace("__ROLE__", "user")
            .replace("__TOKEN__", &token)
            .replace("__EXP__", &(claims.exp).to_string());
        let mut event: serde_json::Value = serde_json::from_str(&text).expect("fixture");
        if !with_context {
            event["requestContext"]["authorizer"] = serde_json::json!({});
        }
        let lambda: lambda_http::request::LambdaRequest = serde_json::from_value(event).expect("v1 event");
        lambda_http::Request::from(lambda)
    };
    // Behind API Gateway: the authorizer's context is the caller.
    assert_eq!(tasks::handle(&state, v1(true)).await.status(), 200);
    // The same request without the context (a misrouted or direct invocation): 401.
    assert_eq!(tasks::handle(&state, v1(false)).await.status(), 401);
    // `cargo lambda watch`'s v2 event with a valid token: 401 here, since this function has no
    // key (under watch the functions get JWT_SECRET and verify it).
    let mut v2: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/apigw-v2-list-tasks.json")).expect("fixture");
    v2["headers"]["authorization"] = format!("Bearer {token}").into();
    let lambda: lambda_http::request::LambdaRequest = serde_json::from_value(v2).expect("v2 event");
    assert_eq!(
        tasks::handle(&state, lambda_http::Request::from(lambda)).await.status(),
        401
    );
    // ... and the keyed local API serves that same token.
    let r = http()
        .get(api.url("/tasks"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
}

#[test]
fn only_the_secret_the_algorithm_uses_is_rotated() {
    for (alg, secret) in [("HS256", "JwtSigningKeySecret"), ("EdDSA", "JwtPrivateKeySecret")] {
        let t = template_for(alg);
        let rotated: Vec<String> = resources_of_type(&t, "AWS::SecretsManager::RotationSchedule")
            .values()
            .map(|r| {
                at(r, &["Properties", "SecretId"])
                    .and_then(reference)
                    .expect("SecretId is a !Ref")
            })
            .collect();
        assert_eq!(rotated, vec![secret.to_owned()], "[{alg}]");
    }
}

// --- what SAM deploys: one stage, managed policies -------------------------------------------

fn resources_of_json<'a>(t: &'a serde_json::Value, type_: &str) -> Vec<(&'a String, &'a serde_json::Value)> {
    t["Resources"]
        .as_object()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"] == type_)
        .collect()
}

/// Every stage the transform deploys: `AWS::ApiGateway::Stage` resources, and the stage a
/// `Deployment` with a `StageName` creates on its own (SAM's "Stage" without OpenApiVersion).
fn stage_problems(t: &serde_json::Value) -> Vec<String> {
    let mut problems = Vec::new();
    for (id, d) in resources_of_json(t, "AWS::ApiGateway::Deployment") {
        if let Some(name) = d["Properties"].get("StageName") {
            problems.push(format!(
                "deployment {id} creates stage {name} of its own: no throttles, WAF or access logs"
            ));
        }
    }
    let stages = resources_of_json(t, "AWS::ApiGateway::Stage");
    let [(stage_id, stage)] = stages[..] else {
        problems.push(format!(
            "expected exactly one AWS::ApiGateway::Stage, found {:?}",
            stages.iter().map(|(id, _)| id).collect::<Vec<_>>()
        ));
        return problems;
    };
    let props = &stage["Properties"];
    let settings = props["MethodSettings"].as_array().cloned().unwrap_or_default();
    let throttled = |path: &str| {
        settings.iter().any(|s| {
            s["ResourcePath"] == path && s["ThrottlingRateLimit"].is_number() && s["ThrottlingBurstLimit"].is_number()
        })
    };
    for path in ["/*", "/~1auth~1signup", "/~1auth~1login", "/~1auth~1refresh"] {
        if !throttled(path) {
            problems.push(format!("stage {stage_id} has no throttle on {path}"));
        }
    }
    let logs = &props["AccessLogSetting"]["Fn::If"];
    if logs[0] != "AccessLoggingEnabled" || logs[1]["DestinationArn"]["Fn::GetAtt"][0] != "ApiAccessLogGroup" {
        problems.push(format!(
            "stage {stage_id} has no access log setting: {}",
            props["AccessLogSetting"]
        ));
    }
    let associations = resources_of_json(t, "AWS::WAFv2::WebACLAssociation");
    let waf_on_stage = associations.iter().any(|(_, a)| {
        a["Properties"]["ResourceArn"]["Fn::Sub"]
            .as_str()
            .is_some_and(|arn| arn.contains(&format!("/stages/${{{stage_id}}}")))
            && a["Properties"]["WebACLArn"]["Fn::GetAtt"][0] == "WebAcl"
    });
    if !waf_on_stage {
        problems.push(format!("no WAF web ACL association names stage {stage_id}"));
    }
    problems
}

#[test]
fn the_deployed_api_has_exactly_one_stage_with_throttles_waf_and_logs() {
    assert_no_problems(stage_problems(transformed()));

    // Without OpenApiVersion the transform adds the unprotected "Stage": the check sees it.
    let text = std::fs::read_to_string(workspace_root().join("template.yaml")).expect("template");
    // Drop the whole `Globals: Api:` block (OpenApiVersion is all it holds).
    let globals = text.find("\nGlobals:\n").expect("Globals");
    let api = globals + text[globals..].find("\n  Api:\n").expect("Globals: Api");
    let function = api + text[api..].find("\n  Function:\n").expect("Globals: Function");
    let without = format!("{}{}", &text[..api], &text[function..]);
    assert!(
        !without.contains("OpenApiVersion"),
        "OpenApiVersion moved: update this test"
    );
    let path = std::env::temp_dir().join(format!("todo-api-template-{}.yaml", Uuid::new_v4()));
    std::fs::write(&path, without).expect("write temp template");
    let bad = transform(&path, &[]);
    let _ = std::fs::remove_file(&path);
    let p = stage_problems(&bad).join("\n");
    assert!(p.contains("creates stage \"Stage\" of its own"), "{p}");
}

/// Managed policies on the roles SAM makes, for these parameter values.
fn managed_policies(t: &serde_json::Value) -> BTreeSet<String> {
    resources_of_json(t, "AWS::IAM::Role")
        .into_iter()
        .flat_map(|(_, r)| {
            r["Properties"]["ManagedPolicyArns"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|arn| arn.as_str().map_or_else(|| arn.to_string(), str::to_owned))
        .collect()
}

/// Every `Resource` of every inline statement, through `Fn::If` branches.
fn inline_resources(v: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
    match v {
        serde_json::Value::Object(m) => {
            if m.contains_key("Effect") {
                match m.get("Resource") {
                    Some(serde_json::Value::Array(a)) => out.extend(a.iter().cloned()),
                    Some(r) => out.push(r.clone()),
                    None => {}
                }
            } else {
                m.values().for_each(|x| inline_resources(x, out));
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| inline_resources(x, out)),
        _ => {}
    }
}

/// No inline statement on `*`, and the only managed policies (whose `*` SAM adds and we cannot
/// scope) are the ones the README explains: the basic execution role always, X-Ray only when
/// `LambdaTracing=Active` asks for it.
#[test]
fn no_wildcard_resource_that_the_readme_does_not_explain() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).expect("README.md");
    let basic = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole";
    let xray = "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess";
    let default = managed_policies(transformed());
    assert_eq!(
        default,
        BTreeSet::from([basic.to_owned()]),
        "managed policies by default"
    );
    let traced = transform(&workspace_root().join("template.yaml"), &[("LambdaTracing", "Active")]);
    assert_eq!(
        managed_policies(&traced),
        BTreeSet::from([basic.to_owned(), xray.to_owned()]),
        "managed policies with LambdaTracing=Active"
    );
    for arn in [basic, xray] {
        let name = arn.rsplit('/').next().expect("policy name");
        assert!(
            readme.contains(name),
            "README.md must say why {name} (Resource \"*\") is there"
        );
    }
    for t in [transformed(), &traced] {
        for (id, role) in resources_of_json(t, "AWS::IAM::Role") {
            let mut resources = Vec::new();
            inline_resources(&role["Properties"]["Policies"], &mut resources);
            for r in resources {
                assert!(
                    r.as_str().is_none_or(|s| !s.contains('*')),
                    "{id}: an inline statement on {r}"
                );
            }
        }
    }
}

// --- the Bearer scheme: the gateway, the local API and the functions agree ----------------------

/// `Authorization` values and whether they carry a Bearer token. The scheme is case-insensitive
/// (RFC 7235 section 2.1); the rest is API Gateway's identity validation.
const BEARER_HEADERS: &[(&str, bool)] = &[
    ("Bearer abc.DEF-123_~+/x==", true),
    ("Bearer a", true),
    ("bearer abc", true),
    ("BEARER abc", true),
    ("bEaReR abc", true),
    ("Bearer ", false),
    ("Bearer ==", false),
    ("Bearer a=b", false),
    ("Bearer  abc", false),
    ("Bearer abc ", false),
    ("Bearer a b", false),
    ("Bearer\tabc", false),
    ("Bearerabc", false),
    ("Basic abc", false),
    ("Bearer é", false),
    ("", false),
];

fn validation_expression() -> regex::Regex {
    let t = template();
    let api = api_resource(&t);
    let default = str_at(api, &["Properties", "Auth", "DefaultAuthorizer"]).expect("DefaultAuthorizer");
    let expr = str_at(
        api,
        &[
            "Properties",
            "Auth",
            "Authorizers",
            default,
            "Identity",
            "ValidationExpression",
        ],
    )
    .expect("the authorizer has a ValidationExpression");
    regex::Regex::new(expr).expect("the ValidationExpression compiles")
}

#[test]
fn the_gateway_the_local_api_and_the_functions_parse_bearer_alike() {
    let gateway = validation_expression();
    for (header, valid) in BEARER_HEADERS {
        assert_eq!(
            gateway.is_match(header),
            *valid,
            "API Gateway's ValidationExpression on {header:?}"
        );
        assert_eq!(
            local_api::bearer_header_valid(header),
            *valid,
            "local API on {header:?}"
        );
        assert_eq!(
            access::tokens::bearer_token(header),
            valid.then(|| &header[7..]),
            "the functions (and cargo lambda watch) on {header:?}"
        );
    }
}

/// A real token under each spelling of the scheme through the three paths a request can take:
/// the deployed gateway (identity validation, then the authorizer), the local API over HTTP, and
/// a function called as `cargo lambda watch` calls it (v2 event, no authorizer context).
#[tokio::test]
async fn every_path_accepts_the_scheme_in_any_case() {
    let gateway = validation_expression();
    let api = api_tests::spawn_api().await;
    let client = http();
    let r = client
        .post(api.url("/auth/signup"))
        .json(&serde_json::json!({"email": format!("bearer-{}@example.com", Uuid::new_v4()), "password": "Quartz-Lantern-93-Mosaic"}))
        .send()
        .await
        .expect("signup");
    assert_eq!(r.status(), 201);
    let body: serde_json::Value = r.json().await.expect("json");
    let token = body["access_token"].as_str().expect("access_token").to_owned();

    for (scheme, accepted) in [
        ("Bearer", true),
        ("bearer", true),
        ("BEARER", true),
        ("bEaReR", true),
        ("Basic", false),
    ] {
        let header = format!("{scheme} {token}");
        // The deployed gateway.
        let mut event = aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequest::default();
        event.type_ = Some("TOKEN".into());
        event.authorization_token = Some(header.clone());
        event.method_arn = Some("arn:aws:execute-api:eu-west-1:123456789012:abc123/v1/GET/tasks".into());
        let gateway_ok = gateway.is_match(&header) && authorizer::handle(&api.state.tokens, &event).is_ok();
        assert_eq!(gateway_ok, accepted, "API Gateway with {scheme:?}");
        // The local API.
        let r = client
            .get(api.url("/tasks"))
            .header("authorization", &header)
            .send()
            .await
            .expect("GET /tasks");
        assert_eq!(r.status() == 200, accepted, "local API with {scheme:?}: {}", r.status());
        // cargo lambda watch: the function verifies the token itself.
        let mut v2: serde_json::Value =
            serde_json::from_str(include_str!("../fixtures/apigw-v2-list-tasks.json")).expect("fixture");
        v2["headers"]["authorization"] = header.clone().into();
        let lambda: lambda_http::request::LambdaRequest = serde_json::from_value(v2).expect("v2 event");
        let response = tasks::handle(&api.state, lambda_http::Request::from(lambda)).await;
        assert_eq!(
            response.status() == 200,
            accepted,
            "cargo lambda watch with {scheme:?}: {}",
            response.status()
        );
    }
}

// --- complete gateway responses ------------------------------------------------------------

/// Every response type API Gateway (REST) has besides the two defaults, with the status this API
/// answers it with.
const GATEWAY_RESPONSE_TYPES: &[(&str, u64)] = &[
    ("ACCESS_DENIED", 403),
    ("API_CONFIGURATION_ERROR", 500),
    ("AUTHORIZER_CONFIGURATION_ERROR", 500),
    ("AUTHORIZER_FAILURE", 500),
    ("BAD_REQUEST_BODY", 400),
    ("BAD_REQUEST_PARAMETERS", 400),
    ("EXPIRED_TOKEN", 403),
    ("INTEGRATION_FAILURE", 502),
    ("INTEGRATION_TIMEOUT", 504),
    ("INVALID_API_KEY", 403),
    ("INVALID_SIGNATURE", 403),
    ("MISSING_AUTHENTICATION_TOKEN", 404),
    ("QUOTA_EXCEEDED", 429),
    ("REQUEST_TOO_LARGE", 413),
    ("RESOURCE_NOT_FOUND", 404),
    ("THROTTLED", 429),
    ("UNAUTHORIZED", 401),
    ("UNSUPPORTED_MEDIA_TYPE", 415),
    ("WAF_FILTERED", 403),
    ("DEFAULT_4XX", 400),
    ("DEFAULT_5XX", 500),
];

#[test]
fn every_gateway_response_type_is_a_complete_problem() {
    let t = template();
    let responses = mapping_at(api_resource(&t), &["Properties", "GatewayResponses"]).expect("GatewayResponses");
    let listed: BTreeSet<&str> = responses.keys().filter_map(Value::as_str).collect();
    let known: BTreeSet<&str> = GATEWAY_RESPONSE_TYPES.iter().map(|(k, _)| *k).collect();
    assert_eq!(listed, known, "GatewayResponses must list every response type");
    let mut codes = BTreeMap::new();
    for (kind, status) in GATEWAY_RESPONSE_TYPES {
        let r = gateway_response(&t, kind);
        assert_eq!(r.status, Some(*status), "{kind}: StatusCode");
        let body = parse_json(kind, &r.body.replace("$context.error.messageString", r#""a message""#));
        let code = body["code"].as_str().unwrap_or_else(|| panic!("{kind}: no code"));
        assert_eq!(body["status"].as_u64(), Some(*status), "{kind}: body status");
        assert_eq!(body["type"], web::error::problem_type(code), "{kind}: type");
        let reason = http::StatusCode::from_u16(*status as u16)
            .expect("status")
            .canonical_reason();
        assert_eq!(body["title"].as_str(), reason, "{kind}: title is the reason phrase");
        assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{kind}: detail");
        assert_eq!(
            body.as_object().map(|o| o.len()),
            Some(5),
            "{kind}: exactly type, title, status, code, detail"
        );
        assert_eq!(
            r.headers.get("cache-control").map(String::as_str),
            Some("no-store"),
            "{kind}"
        );
        assert_eq!(
            r.headers.contains_key("www-authenticate"),
            *status == 401,
            "{kind}: WWW-Authenticate on exactly the 401s"
        );
        // One code means one thing: the same code never comes with two statuses.
        if let Some(other) = codes.insert(code.to_owned(), *status) {
            assert_eq!(other, *status, "code {code} is used with two statuses");
        }
    }
}

#[test]
fn gateway_responses_the_functions_also_produce_are_the_same_bytes() {
    let t = template();
    for (kind, error) in [
        ("UNSUPPORTED_MEDIA_TYPE", ApiError::UnsupportedMediaType),
        ("RESOURCE_NOT_FOUND", ApiError::NoRoute),
        ("DEFAULT_5XX", ApiError::Internal(anyhow::anyhow!("boom"))),
    ] {
        let local = error.into_response();
        assert_same_body(
            kind,
            &gateway_response(&t, kind),
            local.status().as_u16(),
            &body_text(local),
        );
    }
}

#[tokio::test]
async fn request_too_large_gateway_response_matches_the_local_api() {
    let t = template();
    let gateway = gateway_response(&t, "REQUEST_TOO_LARGE");
    let api = api_tests::spawn_api().await;
    let r = http()
        .post(api.url("/auth/login"))
        .header("content-type", "application/json")
        .body(vec![b' '; web::http::MAX_BODY_BYTES + 1])
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.text().await.expect("body");
    assert_same_body("REQUEST_TOO_LARGE", &gateway, status, &body);
    assert_standard_headers("REQUEST_TOO_LARGE", &gateway, &headers);
}

// --- blast radius ----------------------------------------------------------------------------

/// What in a function's source runs argon2id: the password hasher itself, or a store function
/// that checks a password with it.
const ARGON2_USES: &[&str] = &[".passwords", "check_password", "check_mfa_route_password"];

/// Functions that run argon2id: their crate's code (comments aside) uses the password hasher.
fn argon2_functions(t: &Value) -> Vec<String> {
    let root = workspace_root();
    functions(t)
        .into_iter()
        .filter(|(_, f)| {
            let binary = str_at(f, &["Metadata", "BuildProperties", "Binary"]).expect("Binary");
            let src = root.join("functions").join(binary).join("src");
            std::fs::read_dir(&src).into_iter().flatten().flatten().any(|e| {
                std::fs::read_to_string(e.path()).is_ok_and(|s| {
                    s.lines()
                        .filter(|l| !l.trim_start().starts_with("//"))
                        .any(|l| ARGON2_USES.iter().any(|u| l.contains(u)))
                })
            })
        })
        .map(|(name, _)| name)
        .collect()
}

#[test]
fn argon2_functions_have_reserved_concurrency_and_capacity_sized_throttles() {
    let t = template();
    let params = parameters(&t, &[]);
    let reserved: u64 = params["Argon2ReservedConcurrency"].parse().expect("a number");
    assert!(reserved > 0, "argon2 functions are capped by default");
    let resolved = resolve(&t, &[]);
    let argon2 = argon2_functions(&resolved);
    assert!(
        argon2.len() >= 3,
        "signup, login and account hash passwords: {argon2:?}"
    );
    for name in &argon2 {
        let f = &functions(&resolved)[name];
        assert_eq!(
            at(f, &["Properties", "ReservedConcurrentExecutions"])
                .and_then(reference)
                .as_deref(),
            Some("Argon2ReservedConcurrency"),
            "{name} runs argon2id: it needs ReservedConcurrentExecutions"
        );
    }
    // 0 means "do not reserve" (accounts with a small concurrency quota): the property goes away.
    let off = resolve(&t, &[("Argon2ReservedConcurrency", "0")]);
    for name in &argon2 {
        assert!(at(functions(&off)[name], &["Properties", "ReservedConcurrentExecutions"]).is_none());
    }

    // The throttles of the password-taking routes (every POST of these functions, and the two
    // DELETEs that take a password) never promise more than the reserved instances can hash: one
    // hash takes >= 0.2 s on 512 MB, so 5 per second per instance.
    let settings = at(api_resource(&resolved), &["Properties", "MethodSettings"])
        .and_then(Value::as_sequence)
        .expect("MethodSettings");
    let rate_of = |path: &str, method: &str| {
        settings
            .iter()
            .find(|s| {
                str_at(s, &["ResourcePath"]) == Some(path)
                    && str_at(s, &["HttpMethod"]).is_some_and(|m| m == "*" || m.eq_ignore_ascii_case(method))
            })
            .and_then(|s| at(s, &["ThrottlingRateLimit"]).and_then(Value::as_u64))
    };
    let stage_rate = rate_of("/*", "*").expect("a stage-wide throttle");
    const PASSWORD_DELETES: [&str; 2] = ["/auth/me", "/auth/mfa/totp"];
    for e in api_events(&resolved).iter().filter(|e| {
        argon2.contains(&e.function)
            && (e.method == "POST" || (e.method == "DELETE" && PASSWORD_DELETES.contains(&e.path.as_str())))
    }) {
        let path = e.path.replace('/', "~1");
        let rate = rate_of(&format!("/{path}"), &e.method)
            .unwrap_or_else(|| panic!("{} {} runs argon2id: it needs a method throttle", e.method, e.path));
        assert!(
            rate <= reserved * 5,
            "{} {}: {rate}/s is more than {reserved} instances hash",
            e.method,
            e.path
        );
        assert!(rate <= stage_rate);
    }
}

/// Finding 7: the second login step is not in the argon2 pool. `POST /auth/mfa/verify` is served
/// by a function that runs no argon2, whose reserved concurrency is its own parameter (not
/// Argon2ReservedConcurrency), and which can read the database URL, the MFA encryption key and the
/// signing key of the configured algorithm, nothing else; the MFA function keeps the password
/// routes, in the argon2 pool, and no longer holds a signing key.
#[test]
fn the_second_login_step_has_its_own_function_and_concurrency() {
    let t = template();
    let params = parameters(&t, &[]);
    let reserved: u64 = params["MfaVerifyReservedConcurrency"].parse().expect("a number");
    assert!(reserved > 0, "the second login step is reserved by default");
    let resolved = resolve(&t, &[]);
    let verify_events: Vec<_> = api_events(&resolved)
        .into_iter()
        .filter(|e| e.path == "/auth/mfa/verify")
        .collect();
    assert_eq!(verify_events.len(), 1);
    assert_eq!(verify_events[0].function, "MfaVerifyFunction");
    let argon2 = argon2_functions(&resolved);
    assert!(argon2.contains(&"MfaFunction".to_owned()), "{argon2:?}");
    assert!(!argon2.contains(&"MfaVerifyFunction".to_owned()), "{argon2:?}");
    let verify = functions(&resolved)["MfaVerifyFunction"];
    assert_eq!(
        at(verify, &["Properties", "ReservedConcurrentExecutions"])
            .and_then(reference)
            .as_deref(),
        Some("MfaVerifyReservedConcurrency")
    );
    // Every other function serves no route of the second step, and no function in the argon2
    // pool serves a route of the verify function.
    for e in api_events(&resolved)
        .iter()
        .filter(|e| e.function == "MfaVerifyFunction")
    {
        assert_eq!((e.method.as_str(), e.path.as_str()), ("POST", "/auth/mfa/verify"));
    }
    let off = resolve(&t, &[("MfaVerifyReservedConcurrency", "0")]);
    assert!(
        at(
            functions(&off)["MfaVerifyFunction"],
            &["Properties", "ReservedConcurrentExecutions"]
        )
        .is_none()
    );
    // The argon2 pool's parameter set to 0 leaves the verify function reserved.
    let argon2_off = resolve(&t, &[("Argon2ReservedConcurrency", "0")]);
    assert!(
        at(
            functions(&argon2_off)["MfaVerifyFunction"],
            &["Properties", "ReservedConcurrentExecutions"]
        )
        .is_some()
    );

    for alg in ALGORITHMS {
        let t = template_for(alg);
        let secrets = [
            "DatabaseUrlSecret",
            "MfaEncryptionKeySecret",
            "JwtSigningKeySecret",
            "JwtPrivateKeySecret",
            "JwtJwksSecret",
        ];
        let read = |name: &str| -> Vec<&str> {
            let f = functions(&t)[name];
            secrets
                .into_iter()
                .filter(|s| at(f, &["Properties", "Policies"]).is_some_and(|p| mentions(p, s)))
                .collect()
        };
        let signing: &[&str] = match alg {
            "HS256" => &["JwtSigningKeySecret"],
            _ => &["JwtPrivateKeySecret", "JwtJwksSecret"],
        };
        let mut expected = vec!["DatabaseUrlSecret", "MfaEncryptionKeySecret"];
        expected.extend_from_slice(signing);
        assert_eq!(
            read("MfaVerifyFunction"),
            expected,
            "[{alg}] what the verify function reads"
        );
        assert_eq!(
            read("MfaFunction"),
            ["DatabaseUrlSecret", "MfaEncryptionKeySecret"],
            "[{alg}] what the MFA function reads"
        );
    }
}

#[test]
fn waf_rate_rules_per_address_on_auth_are_on_by_default() {
    let t = template();
    assert_eq!(parameters(&t, &[])["EnableWaf"], "true", "WAF is the default");
    let on = resolve(&t, &[]);
    let acl = resources_of_type(&on, "AWS::WAFv2::WebACL");
    let [(_, acl)] = acl.iter().collect::<Vec<_>>()[..] else {
        panic!("one web ACL by default, found {:?}", acl.keys());
    };
    let rules = at(acl, &["Properties", "Rules"])
        .and_then(Value::as_sequence)
        .expect("rules");
    let auth_rule = rules.iter().find(|r| {
        let rate = at(r, &["Statement", "RateBasedStatement"]);
        let scope = rate.and_then(|s| at(s, &["ScopeDownStatement", "ByteMatchStatement"]));
        rate.and_then(|s| str_at(s, &["AggregateKeyType"])) == Some("IP")
            && scope.and_then(|s| str_at(s, &["PositionalConstraint"])) == Some("STARTS_WITH")
            && scope
                .and_then(|s| at(s, &["SearchString"]))
                .and_then(|v| tagged(v, "Sub"))
                .and_then(Value::as_str)
                == Some("/${StageName}/auth/")
    });
    let auth_rule = auth_rule.expect("a per-address rate rule scoped to /<stage>/auth/");
    assert!(at(auth_rule, &["Action", "Block"]).is_some());
    // The path is percent-decoded, then normalised, before it is compared: "//auth/login",
    // "/./auth/login" or "/%61uth/login" must not escape the rule.
    let mut transformations: Vec<(i64, &str)> = at(
        auth_rule,
        &[
            "Statement",
            "RateBasedStatement",
            "ScopeDownStatement",
            "ByteMatchStatement",
            "TextTransformations",
        ],
    )
    .and_then(Value::as_sequence)
    .expect("text transformations")
    .iter()
    .map(|t| {
        (
            at(t, &["Priority"]).and_then(Value::as_i64).expect("priority"),
            str_at(t, &["Type"]).expect("type"),
        )
    })
    .collect();
    transformations.sort_unstable();
    let order: Vec<&str> = transformations.iter().map(|(_, t)| *t).collect();
    assert_eq!(order, ["URL_DECODE", "NORMALIZE_PATH"], "decoded, then normalised");
    assert_eq!(resources_of_type(&on, "AWS::WAFv2::WebACLAssociation").len(), 1);
    // ... and a parameter turns it off.
    let off = resolve(&t, &[("EnableWaf", "false")]);
    assert!(resources_of_type(&off, "AWS::WAFv2::WebACL").is_empty());
    assert!(resources_of_type(&off, "AWS::WAFv2::WebACLAssociation").is_empty());
}

#[test]
fn every_function_has_a_log_group_with_retention() {
    let t = template();
    let groups = resources_of_type(&t, "AWS::Logs::LogGroup");
    for name in functions(&t).keys() {
        let found = groups.values().any(|g| {
            at(g, &["Properties", "LogGroupName"])
                .and_then(|v| tagged(v, "Sub"))
                .and_then(Value::as_str)
                == Some(format!("/aws/lambda/${{{name}}}").as_str())
                && at(g, &["Properties", "RetentionInDays"]).is_some()
        });
        assert!(found, "{name} has no log group with a retention");
    }
}

#[test]
fn secrets_outlive_the_stack_and_outputs_are_partition_neutral() {
    let t = template();
    for (name, secret) in resources_of_type(&t, "AWS::SecretsManager::Secret") {
        for policy in ["DeletionPolicy", "UpdateReplacePolicy"] {
            assert_eq!(str_at(secret, &[policy]), Some("Retain"), "{name}: {policy}");
        }
    }
    for (name, output) in mapping_at(&t, &["Outputs"]).expect("Outputs") {
        let text = format!("{output:?}");
        assert!(
            !text.contains("amazonaws.com"),
            "{name:?}: use ${{AWS::URLSuffix}}: {text}"
        );
    }
    let samconfig = std::fs::read_to_string(workspace_root().join("samconfig.toml")).expect("samconfig.toml");
    assert!(
        !samconfig.lines().any(|l| l.trim_start().starts_with("beta_features")),
        "samconfig.toml: no beta_features (no feature in use needs one)"
    );
}

/// The clean-up's event retention is a stack parameter (issue 18), and the parameter allows
/// exactly what the function's configuration accepts: its bounds and default are read by
/// `settings::DatabaseSettings`, one past either bound is refused there, and the default is the
/// function's own default.
#[test]
fn event_retention_is_a_stack_parameter_with_the_bounds_the_function_accepts() {
    let t = template();
    let cleanup = functions(&t).remove("CleanupFunction").expect("CleanupFunction");
    let var = env_vars(cleanup)
        .and_then(|vars| vars.get("EVENT_RETENTION_DAYS"))
        .and_then(reference);
    assert_eq!(var.as_deref(), Some("EventRetentionDays"));
    let param = at(&t, &["Parameters", "EventRetentionDays"]).expect("parameter EventRetentionDays");
    let number = |key: &str| {
        at(param, &[key])
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("EventRetentionDays.{key}"))
    };
    let (default, min, max) = (number("Default"), number("MinValue"), number("MaxValue"));
    let read = |days: Option<u64>| {
        let days = days.map(|d| d.to_string());
        settings::DatabaseSettings::from_reader(settings::EnvReader::new(move |name| match name {
            "DATABASE_URL" => Some("postgres://u@127.0.0.1/db".to_owned()),
            "EVENT_RETENTION_DAYS" => days.clone(),
            _ => None,
        }))
    };
    const DAY: u64 = 86_400;
    for days in [min, default, max] {
        let s = read(Some(days)).unwrap_or_else(|e| panic!("{days} days refused: {e}"));
        assert_eq!(s.event_retention.as_secs(), days * DAY);
    }
    for days in [min - 1, max + 1] {
        let e = read(Some(days)).expect_err("outside the parameter's bounds");
        assert!(e.to_string().contains("EVENT_RETENTION_DAYS"), "{e}");
    }
    let unset = read(None).expect("default");
    assert_eq!(
        unset.event_retention.as_secs(),
        default * DAY,
        "the parameter's default is the function's"
    );
}
