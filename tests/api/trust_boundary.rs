//! The crates along the trust boundary stay cut: the authorizer and the JWKS function link no
//! database driver, pool, password hasher or migration runner (`cargo tree`), and every
//! function's `Cargo.toml` lists only crates its code uses.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What must never be linked into a binary that sits in front of, or beside, the database.
const FORBIDDEN: &[&str] = &["tokio-postgres", "deadpool-postgres", "argon2", "refinery"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The names of the crates `package` links (normal dependencies, as a release build resolves
/// them for that package alone).
fn linked_crates(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["tree", "--locked", "--offline", "-p", package, "-e", "normal"])
        .args(["--prefix", "none", "--format", "{p}"])
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_authorizer_and_the_jwks_function_link_no_database_or_password_code() {
    for package in ["authorizer", "jwks"] {
        let linked = linked_crates(package);
        assert!(linked.iter().any(|c| c == "access"), "{package}: {linked:?}");
        let found: Vec<&&str> = FORBIDDEN.iter().filter(|f| linked.iter().any(|c| c == **f)).collect();
        assert!(found.is_empty(), "{package} links {found:?}");
    }
    // The check itself sees these crates where they are linked.
    let tasks = linked_crates("tasks");
    for f in FORBIDDEN {
        assert!(tasks.iter().any(|c| c == f), "tasks should link {f}: {tasks:?}");
    }
}

/// The `[dependencies]` names of a manifest (a small reader: one `name.workspace = true` or
/// `name = ...` per line, as this workspace writes them).
fn dependencies(manifest: &str) -> Vec<String> {
    let mut in_deps = false;
    let mut names = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['.', '=', ' ']).next().unwrap_or("");
            names.push(name.to_owned());
        }
    }
    names
}

#[test]
fn every_function_lists_only_the_crates_it_uses() {
    let mut problems = Vec::new();
    let functions = std::fs::read_dir(workspace_root().join("functions")).expect("functions/");
    for dir in functions.map(|e| e.expect("entry").path()) {
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
        let mut code = String::new();
        for file in std::fs::read_dir(dir.join("src")).expect("src/") {
            code.push_str(&std::fs::read_to_string(file.expect("entry").path()).expect("source"));
        }
        for name in dependencies(&manifest) {
            let ident = name.replace('-', "_");
            let used = code.contains(&format!("{ident}::"))
                || code.contains(&format!("use {ident}"))
                || (ident == "serde" && code.contains("derive(") && code.contains("Deserialize"))
                || (ident == "tokio" && code.contains("#[tokio::"));
            if !used {
                problems.push(format!("{}: {name} is listed but not used", dir.display()));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// No function links tracing-subscriber's `env-filter` and the regex engine it brings
/// (`matchers`, `regex-automata`): `RUST_LOG` goes through `Targets` (settings::telemetry), and
/// `lambda_http`/`lambda_runtime` are used without their `tracing` feature, which would turn
/// `env-filter` back on for every binary (about 1 MB, 8 %, of each function at 896564a).
#[test]
fn no_function_links_the_env_filter_regex_engine() {
    let functions = std::fs::read_dir(workspace_root().join("functions")).expect("functions/");
    let mut checked = 0;
    for entry in functions {
        let package = entry
            .expect("a directory entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let linked = linked_crates(&package);
        assert!(
            linked.iter().any(|c| c == "tracing-subscriber"),
            "{package}: {linked:?}"
        );
        assert!(
            !linked.iter().any(|c| c == "matchers"),
            "{package} links env-filter's regex engine (matchers): {linked:?}"
        );
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} functions found");
    let local_api = linked_crates("local-api");
    assert!(!local_api.iter().any(|c| c == "matchers"), "local-api links matchers");
}
