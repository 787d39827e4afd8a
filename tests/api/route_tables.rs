//! One route table: `access::roles::ROUTES`. Besides `template.yaml` (tests/api/template.rs), the
//! two other places that list routes are checked against it here, so a route added, removed or
//! moved to another function in one place and not the others fails a test:
//! - `openapi.yaml` (the API reference), every path and method, and which need a Bearer token;
//! - the `cargo lambda watch` router in the root `Cargo.toml`
//!   (`[workspace.metadata.lambda.watch.router]`), every path, method and function.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use access::roles::{Access, ROUTES};
use local_api::gateway::function_for;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn read(name: &str) -> String {
    let path = workspace_root().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The differences between two sets, as readable lines.
fn differences<T: Ord + std::fmt::Debug>(what: &str, table: &BTreeSet<T>, other: &BTreeSet<T>) -> Vec<String> {
    let mut problems: Vec<String> = table
        .difference(other)
        .map(|r| format!("{r:?} is in access::roles::ROUTES but not in {what}"))
        .collect();
    problems.extend(
        other
            .difference(table)
            .map(|r| format!("{r:?} is in {what} but not in access::roles::ROUTES")),
    );
    problems
}

#[test]
fn openapi_operations_are_exactly_the_route_table() {
    let spec: serde_yaml_ng::Value = serde_yaml_ng::from_str(&read("openapi.yaml")).expect("openapi.yaml is YAML");
    let paths = spec
        .get("paths")
        .and_then(|p| p.as_mapping())
        .expect("openapi.yaml has paths");
    let global_security = spec.get("security").cloned();
    let mut in_spec = BTreeSet::new();
    for (path, item) in paths {
        let path = path.as_str().expect("a path is a string");
        let item = item.as_mapping().expect("a path item is a mapping");
        for (method, op) in item {
            let method = method.as_str().expect("a key is a string");
            if !["get", "put", "post", "delete", "options", "head", "patch", "trace"].contains(&method) {
                continue;
            }
            // An operation without `security` inherits the document's; `security: []` is public.
            let security = op.get("security").cloned().or(global_security.clone());
            let bearer = security
                .as_ref()
                .and_then(|s| s.as_sequence())
                .is_some_and(|s| !s.is_empty());
            in_spec.insert((method.to_uppercase(), path.to_owned(), bearer));
        }
    }
    let in_table: BTreeSet<(String, String, bool)> = ROUTES
        .iter()
        .map(|r| {
            (
                r.method.as_str().to_owned(),
                r.path.to_owned(),
                !matches!(r.access, Access::Public),
            )
        })
        .collect();
    let problems = differences("openapi.yaml (method, path, needs a Bearer token)", &in_table, &in_spec);
    assert!(
        problems.is_empty(),
        "openapi.yaml drifted from the route table:\n{}",
        problems.join("\n")
    );
}

#[test]
fn cargo_lambda_watch_router_is_exactly_the_route_table() {
    let manifest: toml::Table = read("Cargo.toml").parse().expect("Cargo.toml is TOML");
    let router = manifest
        .get("workspace")
        .and_then(|w| w.get("metadata"))
        .and_then(|m| m.get("lambda"))
        .and_then(|l| l.get("watch"))
        .and_then(|w| w.get("router"))
        .and_then(|r| r.as_table())
        .expect("Cargo.toml has [workspace.metadata.lambda.watch.router]");
    let mut in_router = BTreeSet::new();
    for (path, entries) in router {
        let entries = entries
            .as_array()
            .expect("a router entry is an array of {function, method}");
        for entry in entries {
            let function = entry
                .get("function")
                .and_then(|f| f.as_str())
                .expect("entry has a function");
            let method = entry
                .get("method")
                .and_then(|m| m.as_str())
                .expect("entry has a method");
            in_router.insert((method.to_owned(), path.clone(), function.to_owned()));
        }
    }
    let in_table: BTreeSet<(String, String, String)> = ROUTES
        .iter()
        .map(|r| {
            (
                r.method.as_str().to_owned(),
                r.path.to_owned(),
                function_for(r).map_or("(none)", |f| f.crate_name()).to_owned(),
            )
        })
        .collect();
    let problems = differences(
        "the cargo lambda watch router (method, path, function)",
        &in_table,
        &in_router,
    );
    assert!(
        problems.is_empty(),
        "Cargo.toml's router drifted from the route table:\n{}",
        problems.join("\n")
    );

    // Every function the router names is a workspace crate of that name with a binary.
    for function in in_router.iter().map(|(_, _, f)| f).collect::<BTreeSet<_>>() {
        let main = workspace_root().join("functions").join(function).join("src/main.rs");
        assert!(
            main.is_file(),
            "the router names {function}, but {} does not exist",
            main.display()
        );
    }
}

/// Finding 7: the second login step is served by a function of its own (`mfa-verify`), which
/// serves nothing else; the MFA function (argon2, reserved with the other hashing functions)
/// keeps the four signed-in routes and serves no public one.
#[test]
fn the_second_login_step_is_served_by_its_own_function() {
    use local_api::gateway::Function;
    let served_by = |f: Function| -> BTreeSet<(String, &'static str)> {
        ROUTES
            .iter()
            .filter(|r| function_for(r) == Some(f))
            .map(|r| (r.method.as_str().to_owned(), r.path))
            .collect()
    };
    assert_eq!(
        served_by(Function::MfaVerify),
        BTreeSet::from([("POST".to_owned(), "/auth/mfa/verify")])
    );
    assert_eq!(Function::MfaVerify.crate_name(), "mfa-verify");
    let mfa = served_by(Function::Mfa);
    assert_eq!(mfa.len(), 4, "{mfa:?}");
    assert!(!mfa.iter().any(|(_, p)| *p == "/auth/mfa/verify"), "{mfa:?}");
    assert!(
        ROUTES
            .iter()
            .filter(|r| function_for(r) == Some(Function::Mfa))
            .all(|r| r.access != Access::Public),
        "the MFA function serves signed-in routes only"
    );
}

#[test]
fn the_api_reference_documents_every_route() {
    let docs = read("docs/API.md");
    let missing: Vec<String> = ROUTES
        .iter()
        .map(|r| format!("`{} {}", r.method.as_str(), r.path))
        .filter(|needle| !docs.contains(needle.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/API.md does not document these routes of access::roles::ROUTES: {missing:?}"
    );
}

/// The README and the API reference point only at files in the repository, and those exist.
#[test]
fn docs_link_only_into_the_repository() {
    for doc in ["README.md", "docs/API.md"] {
        let text = read(doc);
        let base = workspace_root().join(doc).parent().expect("a parent").to_path_buf();
        // Markdown links `](target)`; external http(s) links are not files.
        for (i, _) in text.match_indices("](") {
            let rest = &text[i + 2..];
            let Some(end) = rest.find(')') else { continue };
            let target = rest[..end].split('#').next().unwrap_or_default();
            if target.is_empty() || target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let path = base.join(target);
            let inside = path
                .canonicalize()
                .is_ok_and(|p| p.starts_with(workspace_root().canonicalize().expect("root")));
            assert!(inside, "{doc} links to {target}, which is not a file in the repository");
        }
    }
}
