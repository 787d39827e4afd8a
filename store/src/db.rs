//! The database: a `deadpool-postgres` pool over `tokio-postgres`, TLS through rustls with SNI
//! (never silently off: see [`pg_config`]),
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

use settings::DbSettings;
use web::auth::Caller;
use web::error::{ApiError, ApiResult};

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// How the connection is protected, decided once at start from the URL (see [`pg_config`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// Plain text: a loopback or Unix-socket host without `sslmode`, or `sslmode=disable`.
    Plain,
    /// TLS required, the certificate chain verified against the roots and the host name checked
    /// against the certificate; SNI is the URL's host.
    VerifyFull,
}

/// Where the trusted roots for [`TlsPolicy::VerifyFull`] come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// The Mozilla roots (webpki-roots): what Neon's publicly trusted certificates chain to.
    /// Also what `sslrootcert=system` means.
    Public,
    /// Exactly the certificates in this PEM file (`sslrootcert=PATH`), nothing else.
    File(std::path::PathBuf),
}

/// A parsed database URL: the driver's configuration and the TLS decision.
#[derive(Clone)]
pub struct Target {
    pub config: tokio_postgres::Config,
    pub tls: TlsPolicy,
    pub roots: Roots,
    /// The rustls client configuration when `tls` is `VerifyFull` (built at start, so a bad
    /// `sslrootcert` stops the function there rather than failing every request).
    client_tls: Option<Arc<rustls::ClientConfig>>,
}

impl Target {
    /// The TLS connector, when TLS is on.
    pub fn connector(&self) -> Option<tokio_postgres_rustls::MakeRustlsConnect> {
        self.client_tls
            .as_ref()
            .map(|c| tokio_postgres_rustls::MakeRustlsConnect::new(c.as_ref().clone()))
    }
}

/// rustls on the same aws-lc-rs provider the AWS SDK uses: one TLS stack in the binary.
/// rustls always verifies the chain and the host name, and sends the host name as SNI (which
/// Neon needs to route) whenever it is a DNS name.
fn client_tls(roots: &Roots) -> anyhow::Result<rustls::ClientConfig> {
    let store = match roots {
        Roots::Public => rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
        Roots::File(path) => {
            use rustls::pki_types::{CertificateDer, pem::PemObject};
            let shown = path.display();
            let mut store = rustls::RootCertStore::empty();
            let certs =
                CertificateDer::pem_file_iter(path).with_context(|| format!("sslrootcert: cannot read {shown}"))?;
            for cert in certs {
                let cert = cert.with_context(|| format!("sslrootcert: {shown} is not a PEM certificate file"))?;
                store
                    .add(cert)
                    .with_context(|| format!("sslrootcert: a certificate in {shown} is not usable as a root"))?;
            }
            anyhow::ensure!(!store.is_empty(), "sslrootcert: {shown} holds no certificate");
            store
        }
    };
    Ok(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(store)
            .with_no_client_auth(),
    )
}

/// libpq's `sslmode` values, as written in the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslModeParam {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for SslModeParam {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            // The mode is no secret: quote it, so the operator sees the typo.
            other => anyhow::bail!(
                "the database URL's sslmode={other:?} is not one of disable, prefer, require, verify-ca, verify-full"
            ),
        })
    }
}

/// Whether a host is this machine: a Unix socket directory, `localhost`, or a loopback address.
/// Only then may an URL without `sslmode` connect in plain text.
pub fn is_local_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    if host.starts_with('/') || host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn all_hosts_local(config: &tokio_postgres::Config) -> bool {
    use tokio_postgres::config::Host;
    let hosts_local = config.get_hosts().iter().all(|h| match h {
        Host::Tcp(name) => is_local_host(name),
        #[cfg(unix)]
        Host::Unix(_) => true,
    });
    hosts_local && config.get_hostaddrs().iter().all(|a| a.is_loopback())
}

/// Take `sslmode` and `sslrootcert` out of the connection string, which the driver does not
/// understand in full (it knows neither `verify-ca`/`verify-full` nor `sslrootcert`), returning
/// the rest for the driver and the two values (the last one wins, as in libpq).
fn split_tls_params(url: &str) -> anyhow::Result<(String, Option<String>, Option<String>)> {
    let mut mode = None;
    let mut rootcert = None;
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_owned(), None, None));
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded =
                || percent_decode(value).context("the database URL has an invalid percent-encoding in its query");
            match key {
                "sslmode" => mode = Some(decoded()?),
                "sslrootcert" => rootcert = Some(decoded()?),
                _ => kept.push(pair),
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, mode, rootcert));
    }
    // Key/value form: `host=h sslmode=verify-full sslrootcert='/a b/ca.pem'`.
    let mut rest = String::with_capacity(url.len());
    let mut chars = url.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        let mut key = String::new();
        while let Some(&(_, c)) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            chars.next();
        }
        anyhow::ensure!(
            chars.next().is_some_and(|(_, c)| c == '='),
            "the database URL is not a valid PostgreSQL connection string"
        );
        while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        let quoted = chars.peek().is_some_and(|(_, c)| *c == '\'');
        if quoted {
            chars.next();
        }
        let mut closed = !quoted;
        while let Some((_, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                '\'' if quoted => {
                    closed = true;
                    break;
                }
                c if !quoted && c.is_whitespace() => break,
                c => value.push(c),
            }
        }
        anyhow::ensure!(closed, "the database URL is not a valid PostgreSQL connection string");
        let end = chars.peek().map_or(url.len(), |(i, _)| *i);
        match key.as_str() {
            "sslmode" => mode = Some(value),
            "sslrootcert" => rootcert = Some(value),
            _ => {
                rest.push_str(&url[start..end]);
                rest.push(' ');
            }
        }
    }
    Ok((rest.trim_end().to_owned(), mode, rootcert))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Parse the URL, decide TLS and apply our timeouts.
///
/// TLS is never silently off. The rules (libpq's `sslmode` names; where libpq is weaker, we are
/// stricter, because TLS without verification stops only a passive eavesdropper and gives an
/// active attacker on the path the password and every row):
///
/// | `sslmode` | loopback or Unix socket | any other host |
/// |---|---|---|
/// | (none) | plain | verify-full |
/// | `disable` | plain | plain (said explicitly; a warning is logged at start) |
/// | `allow` | refused at start | refused at start |
/// | `prefer` | plain | verify-full (never falls back to plain) |
/// | `require` | verify-full | verify-full (libpq would not verify) |
/// | `verify-ca` | verify-full | verify-full (the host name is checked too) |
/// | `verify-full` | verify-full | verify-full |
///
/// verify-full: the chain is verified against `sslrootcert` (a PEM file: exactly its
/// certificates) or, without it or with `sslrootcert=system`, the Mozilla roots; the host name is
/// checked against the certificate and sent as SNI. Anything else in `sslmode` stops the function
/// at start with a message that names the value.
pub fn pg_config(url: &SecretString, settings: &DbSettings) -> anyhow::Result<Target> {
    let (rest, mode, rootcert) = split_tls_params(url.expose_secret())?;
    // The parse error can quote the URL, password included: say only that it is invalid.
    let mut config = tokio_postgres::Config::from_str(&rest)
        .map_err(|_| anyhow::anyhow!("the database URL is not a valid PostgreSQL connection string"))?;
    let mode = mode.as_deref().map(SslModeParam::from_str).transpose()?;
    let local = all_hosts_local(&config);
    let tls = match mode {
        Some(SslModeParam::Allow) => anyhow::bail!(
            "the database URL's sslmode=\"allow\" is not supported: it tries plain text first. \
             Say sslmode=disable to connect in plain text, or verify-full"
        ),
        Some(SslModeParam::Disable) => {
            if !local {
                tracing::warn!("DATABASE_URL names a remote host with sslmode=disable: connecting without TLS");
            }
            TlsPolicy::Plain
        }
        None | Some(SslModeParam::Prefer) if local => TlsPolicy::Plain,
        _ => TlsPolicy::VerifyFull,
    };
    let roots = match rootcert.as_deref() {
        None | Some("system") => Roots::Public,
        Some("") => anyhow::bail!("the database URL's sslrootcert is empty"),
        Some(path) => Roots::File(path.into()),
    };
    let client_tls = match tls {
        TlsPolicy::Plain => {
            config.ssl_mode(SslMode::Disable);
            None
        }
        TlsPolicy::VerifyFull => {
            // Require: the driver fails when the server does not offer TLS, never falls back.
            config.ssl_mode(SslMode::Require);
            Some(Arc::new(client_tls(&roots)?))
        }
    };
    config.connect_timeout(settings.connect_timeout);
    if config.get_application_name().is_none() {
        config.application_name("todo-api");
    }
    Ok(Target {
        config,
        tls,
        roots,
        client_tls,
    })
}

/// Build the pool. Connections are made on first use, so a cold start does not fail when
/// PostgreSQL is briefly unreachable: the request gets a 503 and the next one retries.
pub fn pool(url: &SecretString, settings: &DbSettings) -> anyhow::Result<Pool> {
    let target = pg_config(url, settings)?;
    let manager_config = ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    };
    let manager = match target.connector() {
        Some(tls) => Manager::from_config(target.config, tls, manager_config),
        None => Manager::from_config(target.config, tokio_postgres::NoTls, manager_config),
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

/// Run `work` on a pooled connection, bounded by the operation timeout (waiting for the
/// connection included), so that a hung connection answers 503 instead of running into the
/// function timeout.
///
/// When the bound expires with `work` unfinished, the connection is closed instead of going back
/// to the pool. Its last message may still be on its way: queued in PgBouncer, waiting for a
/// server during an outage (a statement, or the COMMIT of a password change), it would run when
/// the server is back, after this request was answered 503; or waiting on the server for a lock,
/// with the next request on that connection queued behind it. Closing the socket makes PgBouncer
/// drop what it has not yet sent to a server, and the next request gets a fresh connection.
pub async fn bounded<T>(
    pool: &Pool,
    settings: &DbSettings,
    work: impl AsyncFnOnce(&mut Object) -> ApiResult<T>,
) -> ApiResult<T> {
    let deadline = tokio::time::Instant::now() + settings.operation_timeout;
    let mut client = match tokio::time::timeout_at(deadline, conn(pool)).await {
        Ok(client) => client?,
        Err(_) => return Err(timed_out()),
    };
    let outcome = tokio::time::timeout_at(deadline, work(&mut client)).await;
    match outcome {
        Ok(result) => result,
        Err(_) => {
            // Dropping the taken client aborts its connection task, which closes the socket.
            drop(Object::take(client));
            Err(timed_out())
        }
    }
}

/// One connection outside the pool (migrations, command-line tools).
pub async fn connect(url: &SecretString, settings: &DbSettings) -> anyhow::Result<tokio_postgres::Client> {
    let target = pg_config(url, settings)?;
    match target.connector() {
        Some(tls) => {
            let (client, connection) = target.config.connect(tls).await.context("connecting to PostgreSQL")?;
            tokio::spawn(drive(connection));
            Ok(client)
        }
        None => {
            let (client, connection) = target
                .config
                .connect(tokio_postgres::NoTls)
                .await
                .context("connecting to PostgreSQL")?;
            tokio::spawn(drive(connection));
            Ok(client)
        }
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
/// ([`crate::email::canonical_email`]), in batches, then make the column NOT NULL. Two existing
/// accounts whose emails share a canonical form are never merged or renamed silently: the
/// command stops, naming their ids, and an operator decides (delete one, or rename it with
/// `email_canonical` set back to NULL, then migrate again; README). The old `lower(email)` unique
/// index is dropped in the transaction that makes the column NOT NULL, so one of the two always
/// holds. Idempotent: a database already filled costs one catalog look-up.
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
            // Uniqueness moves from the old index to the canonical one in one step: until here a
            // row without its canonical form was only protected by `lower(email)`.
            tx.batch_execute(
                "ALTER TABLE users ALTER COLUMN email_canonical SET NOT NULL;
                 DROP INDEX IF EXISTS users_email_lower_key",
            )
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
            canonicals.push(crate::email::canonical_email(&email));
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
                 delete one of each pair, or rename it with its canonical form recomputed \
                 (UPDATE users SET email = '<new>', email_canonical = NULL WHERE id = '<id>'), \
                 then migrate again",
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

/// Proof that statements do not stay with this connection's server session: one we prepared a
/// moment ago is gone (`26000` right after preparing it again), or a name we never used there
/// already exists (`42P05`: another client's statement, on a server session shared through a
/// transaction-mode pooler).
fn session_not_ours(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    e.code()
        .is_some_and(|code| *code == SqlState::INVALID_SQL_STATEMENT_NAME || *code == SqlState::DUPLICATE_PSTATEMENT)
}

/// From now on, send every statement unnamed (see [`run`]), and say why once.
fn fall_back_to_unnamed(settings: &DbSettings, e: &tokio_postgres::Error) {
    if !settings
        .prepared_fallback
        .swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        tracing::error!(
            code = ?e.code(),
            "the database server session does not keep this connection's prepared statements \
             (a transaction-mode pooler without prepared-statement support?): sending every \
             statement unnamed from now on; set DB_PREPARED_STATEMENTS=false"
        );
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
///
/// Behind a transaction-mode pooler without prepared-statement support (PgBouncer before 1.21 or
/// with `max_prepared_statements = 0`), consecutive statements of one connection may reach
/// different server sessions. The first proof of it ([`session_not_ours`]) switches this process
/// to unnamed statements for good (logged as an error: the setting is wrong) and, outside a
/// transaction, answers this call unnamed; a transaction that hit it fails (503) and the next
/// request works. Before that proof nothing wrong can run: statement names carry a random tag
/// per process (vendor/tokio-postgres/PATCHED.md; upstream names them `s0`, `s1`, ... in every
/// process), so a name is found only on a server session where this process prepared it, and
/// anywhere else the server answers `26000`. Still a safety net, not a configuration: such a
/// pooler should get `DB_PREPARED_STATEMENTS=false`.
pub async fn run<C: Runner>(
    client: &C,
    settings: &DbSettings,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let sql = &*statement_text(settings, sql);
    if !settings.prepared_statements || settings.prepared_fallback.load(std::sync::atomic::Ordering::Relaxed) {
        return client.query_unnamed(sql, params).await;
    }
    let types: Vec<Type> = params.iter().map(|(_, t)| t.clone()).collect();
    let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|(v, _)| *v).collect();
    // Both preparations below: a `42P05` there is proof too.
    let prepare = || async {
        match client.prepare_typed_cached(sql, &types).await {
            Err(e) if session_not_ours(&e) => {
                fall_back_to_unnamed(settings, &e);
                Err(e)
            }
            other => other,
        }
    };
    let unnamed_retry = |e: tokio_postgres::Error| async move {
        if C::CAN_RETRY {
            client.query_unnamed(sql, params).await
        } else {
            Err(e)
        }
    };
    let statement = match prepare().await {
        Err(e) if session_not_ours(&e) => return unnamed_retry(e).await,
        other => other?,
    };
    match client.query(&statement, &values).await {
        Err(e) if stale_statement(&e) => {
            tracing::warn!(code = ?e.code(), "cached statement refused by the server; preparing it again");
            client.statements().remove(sql, &types);
            if !C::CAN_RETRY {
                return Err(e);
            }
            let statement = match prepare().await {
                Err(e) if session_not_ours(&e) => return unnamed_retry(e).await,
                other => other?,
            };
            match client.query(&statement, &values).await {
                Err(e) if session_not_ours(&e) => {
                    client.statements().remove(sql, &types);
                    fall_back_to_unnamed(settings, &e);
                    unnamed_retry(e).await
                }
                result => result,
            }
        }
        result => result,
    }
}

macro_rules! live_caller_check {
    () => {
        "caller AS (
    SELECT u.id AS user_id, u.role AS role, s.mfa AS mfa
      FROM sessions s JOIN users u ON u.id = s.user_id
     WHERE s.id = $1 AND s.user_id = $2
       AND s.revoked_at IS NULL
       AND s.idle_expires_at > now() AND s.absolute_expires_at > now()
       AND NOT u.disabled)"
    };
}

macro_rules! touch_last_used {
    () => {
        ",
 last_used AS (
    UPDATE sessions SET last_used_at = now()
     WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL
       AND last_used_at < now() - interval '1 minute')"
    };
}

/// The caller's session, live: not revoked, not past its idle or absolute expiry, and its user
/// exists and is enabled. Every data query starts `WITH` this and joins on `caller.user_id`, so
/// revocation bites on the very next request in the same round trip as the work.
/// `$1` is the session id (`sid`), `$2` the user id (`sub`). `mfa`: the session was made with a
/// second factor.
///
/// In the same statement, [`TOUCH_LAST_USED`] moves the session's `last_used_at` forward when it
/// is over a minute old: no round trip of its own, and at most one row update per session and
/// minute (`SESSION_TRACK_LAST_USED=false` takes it out of every statement, see [`run`]);
/// [`caller_query`] also leaves it out of all but one request a minute per session.
pub const LIVE_CALLER: &str = concat!(live_caller_check!(), touch_last_used!());

/// [`LIVE_CALLER`] without the `last_used_at` update, for statements that update the caller's
/// own session row themselves (logout, ending a session): one statement must not update a row
/// twice (PostgreSQL would silently keep only one of the two changes).
pub const LIVE_CALLER_CHECK: &str = live_caller_check!();

/// The part of [`LIVE_CALLER`] that tracks `last_used_at` (a CTE nothing reads: PostgreSQL
/// runs a data-modifying CTE whether or not it is referenced).
pub const TOUCH_LAST_USED: &str = touch_last_used!();

/// The statement as sent: without [`TOUCH_LAST_USED`] when tracking is off.
fn statement_text<'a>(settings: &DbSettings, sql: &'a str) -> std::borrow::Cow<'a, str> {
    if settings.track_last_used || !sql.contains(TOUCH_LAST_USED) {
        std::borrow::Cow::Borrowed(sql)
    } else {
        std::borrow::Cow::Owned(sql.replace(TOUCH_LAST_USED, ""))
    }
}

/// How often this process sends a session's `last_used_at` update: the database moves it at most
/// once a minute anyway ([`TOUCH_LAST_USED`]'s own condition), so sending the update more often
/// only costs PostgreSQL a data-modifying statement (result relation and its indexes opened,
/// the row looked up) on every request for nothing.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// The most sessions [`touch_due`] remembers; past it, entries older than [`TOUCH_EVERY`] are
/// dropped (and, if that is not enough, all of them: the database's own condition still keeps
/// the updates to one a minute, so forgetting only costs an update that finds nothing to do).
const TOUCH_GATE_MAX: usize = 65_536;

/// When this process last sent each session's `last_used_at` update. Per process on purpose: a
/// Lambda instance, or the local API, gates its own requests; what several instances send
/// together is still bounded by the statement's condition in the database.
static TOUCHED: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<uuid::Uuid, std::time::Instant>>> =
    std::sync::LazyLock::new(Default::default);

/// Whether a request of `session` should carry the `last_used_at` update: the first one this
/// process sees, then one a minute at most. Marks it as sent.
fn touch_due(session: uuid::Uuid) -> bool {
    let now = std::time::Instant::now();
    // A panic while the lock was held cannot leave the map inconsistent (single inserts and
    // retains): keep using it.
    let mut seen = TOUCHED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if seen
        .get(&session)
        .is_some_and(|at| now.duration_since(*at) < TOUCH_EVERY)
    {
        return false;
    }
    if seen.len() >= TOUCH_GATE_MAX {
        seen.retain(|_, at| now.duration_since(*at) < TOUCH_EVERY);
        if seen.len() >= TOUCH_GATE_MAX {
            seen.clear();
        }
    }
    seen.insert(session, now);
    true
}

/// The statement for this caller's request: with tracking on, [`TOUCH_LAST_USED`] stays in only
/// when [`touch_due`] says this session's update is due (otherwise the statement is read-only:
/// nothing to update within the minute); with tracking off, [`statement_text`] takes it out.
fn caller_statement<'a>(settings: &DbSettings, caller: &Caller, sql: &'a str) -> std::borrow::Cow<'a, str> {
    if settings.track_last_used && sql.contains(TOUCH_LAST_USED) && !touch_due(caller.session_id) {
        std::borrow::Cow::Owned(sql.replace(TOUCH_LAST_USED, ""))
    } else {
        std::borrow::Cow::Borrowed(sql)
    }
}

/// Run one statement that starts `WITH` [`LIVE_CALLER`]: the caller's session and user id are
/// bound as `$1` and `$2`, `params` follow from `$3`. Bounded like every database call. The
/// `last_used_at` update rides along at most once a minute per session ([`caller_statement`]).
pub async fn caller_query(
    pool: &Pool,
    settings: &DbSettings,
    caller: &Caller,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
) -> ApiResult<Vec<Row>> {
    let sql = caller_statement(settings, caller, sql);
    query(pool, settings, &sql, &with_caller(caller, params)).await
}

/// The caller's session and user id as `$1` and `$2`, then `params`.
fn with_caller<'a>(
    caller: &'a Caller,
    params: &[(&'a (dyn ToSql + Sync), Type)],
) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    let mut all: Vec<(&(dyn ToSql + Sync), Type)> =
        vec![(&caller.session_id, Type::UUID), (&caller.user_id, Type::UUID)];
    all.extend(params.iter().map(|(v, t)| (*v, t.clone())));
    all
}

/// [`caller_query`], with the statement sent unnamed whatever the settings: PostgreSQL plans it
/// for these very parameters. For the few statements whose best plan depends on a parameter's
/// value (a search pattern's selectivity), where a prepared statement's generic plan would be
/// chosen once for all values.
pub async fn caller_query_planned(
    pool: &Pool,
    settings: &DbSettings,
    caller: &Caller,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
) -> ApiResult<Vec<Row>> {
    let all = with_caller(caller, params);
    let gated = caller_statement(settings, caller, sql);
    let sql = &*statement_text(settings, &gated);
    bounded(pool, settings, async |client| {
        Ok(client.query_unnamed(sql, &all).await?)
    })
    .await
}

/// Run one statement on a pooled connection, bounded by the operation timeout ([`bounded`]: past
/// it, the connection is closed rather than pooled).
pub async fn query(
    pool: &Pool,
    settings: &DbSettings,
    sql: &str,
    params: &[(&(dyn ToSql + Sync), Type)],
) -> ApiResult<Vec<Row>> {
    bounded(pool, settings, async |client| {
        Ok(run(&*client, settings, sql, params).await?)
    })
    .await
}

fn timed_out() -> ApiError {
    ApiError::ServiceUnavailable(anyhow::anyhow!("database call timed out"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use settings::{Config, EnvReader};

    #[test]
    fn the_last_used_update_is_due_once_a_minute_per_session() {
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        assert!(touch_due(a), "first request of a session");
        assert!(!touch_due(a), "again within the minute");
        assert!(touch_due(b), "another session is its own");
        // A minute later it is due again.
        if let Some(at) = TOUCHED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(&a)
        {
            *at = at.checked_sub(TOUCH_EVERY).unwrap_or(*at);
        }
        assert!(touch_due(a));
        assert!(!touch_due(a));
    }

    fn settings() -> anyhow::Result<DbSettings> {
        Ok(Config::from_reader(EnvReader::new(|_| None))?.db)
    }

    fn target(url: &str) -> anyhow::Result<Target> {
        pg_config(&SecretString::from(url.to_owned()), &settings()?)
    }

    fn policy(url: &str) -> anyhow::Result<TlsPolicy> {
        Ok(target(url)?.tls)
    }

    fn refusal(url: &str) -> String {
        match target(url) {
            Ok(t) => format!("accepted with {:?}", t.tls),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn a_remote_host_gets_verified_tls_unless_the_url_says_disable() -> anyhow::Result<()> {
        use TlsPolicy::*;
        for url in [
            "postgres://u:p@db.example.com/app",
            "postgres://u:p@db.example.com/app?sslmode=prefer",
            "postgres://u:p@db.example.com/app?sslmode=require",
            "postgres://u:p@db.example.com/app?sslmode=verify-ca",
            "postgres://u:p@db.example.com/app?sslmode=verify-full",
            "postgres://u:p@10.1.2.3:6543/app",
            "postgres://u:p@[2001:db8::1]/app",
            // One remote host among local ones is enough.
            "postgres://u:p@localhost,db.example.com/app",
            "postgres://u:p@db.example.com/app?hostaddr=10.0.0.1",
            "host=db.example.com user=u dbname=app",
            "host=db.example.com user=u dbname=app sslmode='require'",
        ] {
            assert_eq!(policy(url)?, VerifyFull, "{url}");
            assert_eq!(
                target(url)?.config.get_ssl_mode(),
                SslMode::Require,
                "{url}: never falls back"
            );
        }
        for url in [
            "postgres://u:p@db.example.com/app?sslmode=disable",
            "host=db.example.com user=u sslmode=disable",
        ] {
            assert_eq!(policy(url)?, Plain, "{url}: said explicitly");
        }
        Ok(())
    }

    #[test]
    fn loopback_and_unix_sockets_are_plain_unless_tls_is_asked_for() -> anyhow::Result<()> {
        use TlsPolicy::*;
        for url in [
            "postgres://postgres@127.0.0.1:5432/postgres",
            "postgres://postgres@127.8.9.10/postgres",
            "postgres://postgres@localhost/postgres",
            "postgres://postgres@[::1]:5432/postgres",
            "postgres://postgres@%2Fvar%2Frun%2Fpostgresql/postgres",
            "host=/var/run/postgresql user=postgres",
            "postgres://postgres@127.0.0.1/postgres?sslmode=prefer",
            "postgres://postgres@127.0.0.1/postgres?sslmode=disable",
        ] {
            assert_eq!(policy(url)?, Plain, "{url}");
        }
        for url in [
            "postgres://postgres@localhost/postgres?sslmode=require",
            "postgres://postgres@localhost/postgres?sslmode=verify-ca",
            "postgres://postgres@localhost/postgres?sslmode=verify-full",
        ] {
            assert_eq!(policy(url)?, VerifyFull, "{url}");
        }
        Ok(())
    }

    #[test]
    fn an_unknown_or_plaintext_first_sslmode_stops_at_start_with_a_clear_message() {
        let bad = refusal("postgres://u:secret-pw@db.example.com/app?sslmode=verify_full");
        assert!(bad.contains("sslmode=\"verify_full\""), "{bad}");
        assert!(
            bad.contains("disable, prefer, require, verify-ca, verify-full"),
            "{bad}"
        );
        assert!(!bad.contains("secret-pw"), "the password is never quoted: {bad}");
        let bad = refusal("host=db.example.com password=secret-pw sslmode=on");
        assert!(bad.contains("sslmode=\"on\""), "{bad}");
        assert!(!bad.contains("secret-pw"), "{bad}");
        let allow = refusal("postgres://u@db.example.com/app?sslmode=allow");
        assert!(allow.contains("sslmode=\"allow\" is not supported"), "{allow}");
    }

    #[test]
    fn sslrootcert_is_understood_and_a_bad_one_stops_at_start() -> anyhow::Result<()> {
        let t = target("postgres://u@db.example.com/app?sslmode=verify-full&sslrootcert=system")?;
        assert_eq!(t.roots, Roots::Public);
        let t = target("postgres://u@db.example.com/app?sslmode=verify-full")?;
        assert_eq!(t.roots, Roots::Public);
        let missing = refusal("postgres://u@db.example.com/app?sslmode=verify-full&sslrootcert=%2Fno%2Fsuch%2Fca.pem");
        assert!(
            missing.contains("sslrootcert: cannot read /no/such/ca.pem"),
            "{missing}"
        );
        let dir = std::env::temp_dir().join(format!("todo-api-db-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n")?;
        let url = format!("host=db.example.com sslrootcert='{}'", empty.display());
        let refused = refusal(&url);
        std::fs::remove_dir_all(&dir)?;
        assert!(refused.contains("holds no certificate"), "{refused}");
        Ok(())
    }

    #[test]
    fn the_driver_gets_the_rest_of_the_url() -> anyhow::Result<()> {
        let t = target("postgres://u@db.example.com:6543/app?sslmode=require&application_name=x&connect_timeout=1")?;
        assert_eq!(t.config.get_application_name(), Some("x"));
        assert_eq!(t.config.get_ports(), [6543]);
        assert_eq!(t.config.get_dbname(), Some("app"));
        let t = target("host=db.example.com port=6543 sslmode=require dbname='my app'")?;
        assert_eq!(t.config.get_dbname(), Some("my app"));
        Ok(())
    }

    /// The SNI a connection sends is the URL's host name, even when the address is given apart
    /// (`hostaddr`): Neon routes on it.
    #[tokio::test]
    async fn the_sni_sent_is_the_urls_host() -> anyhow::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await?;
            let mut ssl_request = [0u8; 8];
            sock.read_exact(&mut ssl_request).await?;
            anyhow::ensure!(ssl_request[4..] == [0x04, 0xd2, 0x16, 0x2f], "an SSLRequest first");
            sock.write_all(b"S").await?;
            let mut acceptor = rustls::server::Acceptor::default();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = sock.read(&mut buf).await?;
                anyhow::ensure!(n > 0, "the client closed before a full ClientHello");
                acceptor.read_tls(&mut &buf[..n])?;
                if let Some(accepted) = acceptor.accept().map_err(|(e, _)| e)? {
                    return Ok(accepted.client_hello().server_name().map(str::to_owned));
                }
            }
        });
        let t = target(&format!(
            "postgres://u@db.example-sni.test:{port}/app?hostaddr=127.0.0.1&sslmode=verify-full"
        ))?;
        let tls = t.connector().context("TLS on")?;
        // The handshake cannot complete (the server side only reads the hello): that is fine.
        let _ = tokio::time::timeout(Duration::from_secs(5), t.config.connect(tls)).await;
        let sni = server.await??;
        assert_eq!(sni.as_deref(), Some("db.example-sni.test"));
        Ok(())
    }
}
