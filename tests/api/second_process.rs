//! Test bodies that run in a second process, started by a test of another module (a child of the
//! test binary, `--ignored --exact`): what two function instances do to each other needs two
//! processes. Outside that they fail at once: the parent passes what they need by environment.

use std::sync::Arc;

use api_tests::spawn_api_on;
use secrecy::SecretString;

use crate::db_path::{NOPREP_CHILD_DB, env, noprep_config, noprep_workload};

/// The second process of [`crate::db_path::prepared_statements_against_a_pooler_without_support_never_answer_wrong`]:
/// the same workload on the same database through the same pooler, listing before creating.
#[tokio::test]
#[ignore = "second process of prepared_statements_against_a_pooler_without_support_never_answer_wrong"]
async fn noprep_second_process() {
    let name = env(NOPREP_CHILD_DB);
    let admin = std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL");
    let db = api_tests::TestDb {
        url: SecretString::from(api_tests::with_database(&env("TEST_PGBOUNCER_NOPREP_URL"), &name)),
        direct_url: SecretString::from(api_tests::with_database(&admin, &name)),
        name,
    };
    let api = Arc::new(spawn_api_on(noprep_config(), db).await);
    let (ok, unavailable) = noprep_workload(api, true).await;
    println!("second process: {ok} right answers, {unavailable} answered 503");
    assert!(ok > 0);
}

pub(crate) const STATEMENT_NAME_CHILD_DB_URL: &str = "TODO_TEST_STATEMENT_NAME_CHILD_DB_URL";

/// The second process of [`crate::database::statement_names_are_unique_per_process`]: prints the name its statement
/// got. Run only by that test (it re-runs this test binary with `--ignored --exact`).
#[tokio::test]
#[ignore = "helper process of statement_names_are_unique_per_process"]
async fn statement_name_child_process() {
    let url = std::env::var(STATEMENT_NAME_CHILD_DB_URL).expect("run by statement_names_are_unique_per_process");
    let name = crate::database::statement_name_in_this_process(&secrecy::SecretString::from(url)).await;
    println!("statement-name={name}");
}
