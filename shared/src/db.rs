//! The database: a `deadpool-postgres` pool over `tokio-postgres`, TLS through rustls with SNI,
//! and the SQL migrations (applied by `refinery`).
//!
//! Built for Neon's pooled endpoint (PgBouncer in transaction mode): no session-level `SET` and no
//! SQL `PREPARE`. Every statement goes through [`run`], which by default uses a protocol-level
//! named prepared statement cached on the connection (parsed and planned once per connection, not
//! once per request: half of PostgreSQL's CPU for `GET /tasks`, see BENCHMARKS.md). PgBouncer
//! 1.21+ carries those across transaction-mode pooling when `max_prepared_statements` is set, as
//! Neon's pooler does; for a pooler that does not, `DB_PREPARED_STATEMENTS=false` sends every
//! statement unnamed (`query_typed`: parse/bind/execute in one round trip, nothing outlives the
//! statement). No startup option either:
//! PgBouncer, and so Neon's pooled endpoint, refuses a connection whose startup packet sets
//! `statement_timeout` ("unsupported startup parameter in options"). The server-side statement
//! timeout is instead the role's default in this database, set by [`migrate`]
//! (`ALTER ROLE CURRENT_USER IN DATABASE ... SET statement_timeout`), which every server
//! connection a pooler opens inherits; and every call is bounded on the client side too.

use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Object, RecyclingMethod, Runtime};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::config::SslMode;

use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};

pub use deadpool_postgres::{Pool, Transaction};

use crate::auth::Caller;
use crate::config::DbSettings;
use crate::error::{ApiError, ApiResult};

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// rustls with the Mozilla roots (webpki-roots) and the same aws-lc-rs provider the AWS SDK uses:
/// one TLS stack in the binary. SNI is sent from the host name, which Neon needs to route.
fn tls() -> anyhow::Result<tokio_postgres_rustls::MakeRustlsConnect> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Parse the URL and apply our timeouts.
///
/// TLS: `sslmode=require` (what Neon's URLs say) gets rustls with full certificate and host name
/// verification (stricter than libpq's `require`) and SNI. Any other mode connects in plain text,
/// which is meant for a PostgreSQL on the same machine; `prefer` is not attempted opportunistically,
/// because an unverified TLS session protects against nothing that plain text does not.
pub fn pg_config(url: &SecretString, settings: &DbSettings) -> anyhow::Result<tokio_postgres::Config> {
    // The parse error can quote the URL, password included: say only that it is invalid.
    let mut config = tokio_postgres::Config::from_str(url.expose_secret())
        .map_err(|_| anyhow::anyhow!("the database URL is not a valid PostgreSQL connection string"))?;
    config.connect_timeout(settings.connect_timeout);
    if !requires_tls(&config) {
        config.ssl_mode(SslMode::Disable);
    }
    if config.get_application_name().is_none() {
        config.application_name("todo-api");
    }
    Ok(config)
}

/// Whether the URL asks for TLS (`sslmode=require`).
pub fn requires_tls(config: &tokio_postgres::Config) -> bool {
    config.get_ssl_mode() == SslMode::Require
}

/// Build the pool. Connections are made on first use, so a cold start does not fail when
/// PostgreSQL is briefly unreachable: the request gets a 503 and the next one retries.
pub fn pool(url: &SecretString, settings: &DbSettings) -> anyhow::Result<Pool> {
    let config = pg_config(url, settings)?;
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = if requires_tls(&config) {
        Manager::from_config(config, tls()?, manager_config)
    } else {
        Manager::from_config(config, tokio_postgres::NoTls, manager_config)
    };
    Pool::builder(manager)
        .max_size(settings.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(settings.operation_timeout))
        .create_timeout(Some(settings.connect_timeout))
        .recycle_timeout(Some(settings.connect_timeout))
        .build()
        .context("building the database pool")
}

/// A pooled connection, or 503 when none can be had in time.
pub async fn conn(pool: &Pool) -> ApiResult<Object> {
    Ok(pool.get().await?)
}

/// Bound a database call, so that a hung connection answers 503 instead of running into the
/// function timeout.
pub async fn bounded<T, F>(settings: &DbSettings, work: F) -> ApiResult<T>
where
    F: Future<Output = ApiResult<T>>,
{
    match tokio::time::timeout(settings.operation_timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::ServiceUnavailable(anyhow::anyhow!("database call timed out"))),
    }
}

/// One connection outside the pool (migrations, command-line tools).
pub async fn connect(url: &SecretString, settings: &DbSettings) -> anyhow::Result<tokio_postgres::Client> {
    let config = pg_config(url, settings)?;
    if requires_tls(&config) {
        let (client, connection) = config.connect(tls()?).await.context("connecting to PostgreSQL")?;
        tokio::spawn(drive(connection));
        Ok(client)
    } else {
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .context("connecting to PostgreSQL")?;
        tokio::spawn(drive(connection));
        Ok(client)
    }
}

async fn drive<F: Future<Output = Result<(), tokio_postgres::Error>>>(connection: F) {
    if let Err(e) = connection.await {
        tracing::warn!(error = %e, "database connection closed");
    }
}

/// Apply pending migrations from `migrations/`.
///
/// Then makes `settings.statement_timeout` the connecting role's default in this database (zero
/// removes it), so that every new server session, including those a pooler opens, starts with it.
pub async fn migrate(client: &mut tokio_postgres::Client, settings: &DbSettings) -> anyhow::Result<Vec<String>> {
    let report = embedded::migrations::runner()
        .run_async(client)
        .await
        .context("applying migrations")?;
    backfill_canonical_emails(client).await?;
    set_role_statement_timeout(client, settings.statement_timeout).await?;
    Ok(report.applied_migrations().iter().map(|m| m.to_string()).collect())
}

/// Apply the migrations up to and including `version`, and nothing else (for tests of a later
/// migration's treatment of existing rows).
pub async fn migrate_up_to(client: &mut tokio_postgres::Client, version: u32) -> anyhow::Result<()> {
    embedded::migrations::runner()
        .set_target(refinery::Target::Version(version))
        .run_async(client)
        .await
        .context("applying migrations")?;
    Ok(())
}

/// Rows per backfill batch.
const BACKFILL_BATCH: i64 = 1000;

/// Fill `users.email_canonical` for rows that predate it (V3), with the one Rust definition
/// ([`crate::users::canonical_email`]), in batches, then make the column NOT NULL. Two existing
/// accounts whose emails share a canonical form are never merged or renamed silently: the
/// command stops, naming their ids, and an operator decides (rename or delete one, then migrate
/// again). Idempotent: a database already filled costs one catalog look-up.
pub async fn backfill_canonical_emails(client: &mut tokio_postgres::Client) -> anyhow::Result<u64> {
    let not_null: bool = client
        .query_typed(
            "SELECT attnotnull FROM pg_attribute
              WHERE attrelid = 'users'::regclass AND attname = 'email_canonical' AND NOT attisdropped",
            &[],
        )
        .await
        .context("reading users.email_canonical")?
        .first()
        .context("users.email_canonical is missing: V3 was not applied")?
        .try_get(0)?;
    if not_null {
        return Ok(0);
    }
    let mut filled = 0u64;
    loop {
        let tx = client.transaction().await.context("backfill: begin")?;
        let rows = tx
            .query_typed(
                "SELECT id, email FROM users WHERE email_canonical IS NULL ORDER BY id LIMIT $1 FOR UPDATE",
                &[(&BACKFILL_BATCH, Type::INT8)],
            )
            .await
            .context("backfill: reading emails")?;
        if rows.is_empty() {
            tx.batch_execute("ALTER TABLE users ALTER COLUMN email_canonical SET NOT NULL")
                .await
                .context("backfill: making email_canonical NOT NULL")?;
            tx.commit().await.context("backfill: commit")?;
            return Ok(filled);
        }
        let mut ids = Vec::with_capacity(rows.len());
        let mut canonicals = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: uuid::Uuid = row.try_get("id")?;
            let email: String = row.try_get("email")?;
            ids.push(id);
            canonicals.push(crate::users::canonical_email(&email));
        }
        // Every pair of accounts, in this batch or against rows already filled, that would share
        // a canonical form.
        let clashes = tx
            .query_typed(
                "WITH batch AS (SELECT * FROM unnest($1::uuid[], $2::text[]) AS b(id, canonical))
                 SELECT a.id AS first, b.id AS second
                   FROM batch a JOIN batch b ON a.canonical = b.canonical AND a.id < b.id
                 UNION ALL
                 SELECT u.id, b.id FROM batch b JOIN users u ON u.email_canonical = b.canonical",
                &[(&ids, Type::UUID_ARRAY), (&canonicals, Type::TEXT_ARRAY)],
            )
            .await
            .context("backfill: looking for clashes")?;
        if !clashes.is_empty() {
            let pairs: Vec<String> = clashes
                .iter()
                .map(|r| {
                    let (a, b): (uuid::Uuid, uuid::Uuid) = (r.get("first"), r.get("second"));
                    format!("{a} and {b}")
                })
                .collect();
            anyhow::bail!(
                "these accounts have emails that are one address once canonicalised (case folding, NFKC): {}; \
                 rename or delete one of each pair, then migrate again",
                pairs.join(", ")
            );
        }
        let n = tx
            .query_typed(
                "UPDATE users u SET email_canonical = b.canonical
                   FROM unnest($1::uuid[], $2::text[]) AS b(id, canonical) WHERE u.id = b.id
                 RETURNING u.id",
                &[(&ids, Type::UUID_ARRAY), (&canonicals, Type::TEXT_ARRAY)],
            )
            .await
            .context("backfill: writing canonical emails")?
            .len() as u64;
        tx.commit().await.context("backfill: commit")?;
        filled += n;
    }
}

/// `ALTER ROLE CURRENT_USER IN DATABASE <this one> SET statement_timeout = '<ms>ms'` (or `RESET`
/// for zero). A role may always set its own defaults. Utility statements take no parameters, so
/// the statement is built by PostgreSQL's `format` (`%I`, `%L` quote) from bound values.
pub async fn set_role_statement_timeout(client: &tokio_postgres::Client, timeout: Duration) -> anyhow::Result<()> {
    let ms = i64::try_from(timeout.as_millis()).context("statement timeout out of range")?;
    // `query_typed` (unnamed statement), like every other query here: safe through a pooler too.
    let rows = client
        .query_typed(
            "SELECT CASE WHEN $1::int8 = 0
                         THEN format('ALTER ROLE CURRENT_USER IN DATABASE %I RESET statement_timeout',
                                     current_database())
                         ELSE format('ALTER ROLE CURRENT_USER IN DATABASE %I SET statement_timeout = %L',
                                     current_database(), $1::int8 || 'ms')
                    END",
            &[(&ms, tokio_postgres::types::Type::INT8)],
        )
        .await
        .context("building the statement-timeout default")?;
    let statement: String = rows
        .first()
        .context("building the statement-timeout default: no row")?
        .try_get(0)
        .context("building the statement-timeout default")?;
    client
        .batch_execute(&statement)
        .await
        .context("setting the role's statement timeout in this database")?;
    Ok(())
}

/// Where a statement can run: a pooled connection, or a transaction on one. Both share the
/// connection's statement cache.
pub trait Runner: deadpool_postgres::GenericClient + Sync {
    /// Whether a statement that failed can be run again here: not inside a transaction, which
    /// the error has aborted.
    const CAN_RETRY: bool;

    /// The statement sent unnamed: parsed and planned for this one execution.
    fn query_unnamed(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> impl Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + Send;

    /// This connection's prepared-statement cache.
    fn statements(&self) -> &deadpool_postgres::StatementCache;
}

// Both deref to a `tokio_postgres` client or transaction, whose `query_typed` sends the unnamed
// statement.
macro_rules! runner {
    ($($t:ty => $retry:expr),*) => {$(
        impl Runner for $t {
            const CAN_RETRY: bool = $retry;

            async fn query_unnamed(
                &self,
                sql: &str,
                params: &[(&(dyn ToSql + Sync), Type)],
            ) -> Result<Vec<Row>, tokio_postgres::Error> {
                self.query_typed(sql, params).await
            }

            fn statements(&self) -> &deadpool_postgres::StatementCache {
                &self.statement_cache
            }
        }
    )*};
}

runner!(deadpool_postgres::Client => true, deadpool_postgres::Transaction<'_> => false);

/// A cached statement the server can no longer run as prepared: a migration changed its result
/// type ("cached plan must not change result type"), or the server session lost it (a pooler
/// without prepared-statement support, `DEALLOCATE`). Preparing it again fixes both.
fn stale_statement(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    match e.code() {
        Some(code) if *code == SqlState::INVALID_SQL_STATEMENT_NAME => true,
        Some(code) if *code == SqlState::FEATURE_NOT_SUPPORTED => e
            .as_db_error()
            .is_some_and(|db| db.message().contains("cached plan must not change result type")),
        _ => false,
    }
}

/// Run one statement with typed parameters (every parameter's type is given, so nothing is
/// inferred differently between the two paths). With `settings.prepared_statements` the statement
/// is prepared once per connection (keyed by its text and parameter types) and executed by name
/// afterwards; otherwise it is sent unnamed. SQL text is always a constant of the code, never
/// built from input, so the cache holds a fixed, small set of statements. Every statement names
/// its result columns (no top-level `SELECT *` or `RETURNING *`). A cached statement the server
/// refuses as stale is dropped from the cache and, outside a transaction, prepared and run once
/// more (the error comes before anything is executed); inside one, the error stands and the next
/// request prepares it afresh.
pub async fn run<C: Runner>(
    client: &C,
    settings: &DbSettings,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    if !settings.prepared_statements {
        return client.query_unnamed(sql, params).await;
    }
    let types: Vec<Type> = params.iter().map(|(_, t)| t.clone()).collect();
    let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|(v, _)| *v).collect();
    let statement = client.prepare_typed_cached(sql, &types).await?;
    match client.query(&statement, &values).await {
        Err(e) if stale_statement(&e) => {
            tracing::warn!(code = ?e.code(), "cached statement refused by the server; preparing it again");
            client.statements().remove(sql, &types);
            if !C::CAN_RETRY {
                return Err(e);
            }
            let statement = client.prepare_typed_cached(sql, &types).await?;
            client.query(&statement, &values).await
        }
        result => result,
    }
}

/// The caller's session, live: not revoked, not past its idle or absolute expiry, and its user
/// exists and is enabled. Every data query starts `WITH` this and joins on `caller.user_id`, so
/// revocation bites on the very next request in the same round trip as the work.
/// `$1` is the session id (`sid`), `$2` the user id (`sub`).
pub const LIVE_CALLER: &str = "caller AS (
    SELECT u.id AS user_id, u.role AS role
      FROM sessions s JOIN users u ON u.id = s.user_id
     WHERE s.id = $1 AND s.user_id = $2
       AND s.revoked_at IS NULL
       AND s.idle_expires_at > now() AND s.absolute_expires_at > now()
       AND NOT u.disabled)";

/// Run one statement that starts `WITH` [`LIVE_CALLER`]: the caller's session and user id are
/// bound as `$1` and `$2`, `params` follow from `$3`. Bounded like every database call.
pub async fn caller_query(
    pool: &Pool,
    settings: &DbSettings,
    caller: &Caller,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
) -> ApiResult<Vec<Row>> {
    let mut all: Vec<(&(dyn ToSql + Sync), Type)> =
        vec![(&caller.session_id, Type::UUID), (&caller.user_id, Type::UUID)];
    all.extend(params.iter().map(|(v, t)| (*v, t.clone())));
    bounded(settings, async {
        let client = conn(pool).await?;
        Ok(run(&client, settings, sql, &all).await?)
    })
    .await
}

/// Run one statement on a pooled connection, bounded.
pub async fn query(
    pool: &Pool,
    settings: &DbSettings,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
) -> ApiResult<Vec<Row>> {
    bounded(settings, async {
        let client = conn(pool).await?;
        Ok(run(&client, settings, sql, params).await?)
    })
    .await
}
