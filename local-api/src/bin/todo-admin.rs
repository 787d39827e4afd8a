//! `todo-admin`: operations run against `DATABASE_URL` (local or Neon). For a deployed stack,
//! read the URL from its secret first (README, "Deploy"); this command never talks to AWS itself,
//! so it links no AWS SDK.
//!
//!   todo-admin migrate              apply pending migrations
//!   todo-admin grant-admin EMAIL    make an existing account an admin (the first admin of a
//!                                   fresh deployment: sign up, then run this once)
//!   todo-admin reencrypt-mfa-secrets
//!                                   seal every TOTP secret not under the current MFA encryption
//!                                   key again under it, in batches (after a rotation, before the
//!                                   previous key is dropped; README, "Rotating the MFA encryption
//!                                   key"). Keys from MFA_ENCRYPTION_KEY[_PREVIOUS][_ID].
//!
//! There is no default account and no default password anywhere.

use access::keys::EnvOnly;
use anyhow::{Context, bail};
use settings::DatabaseSettings;
use tokio_postgres::types::Type;

/// Rows per transaction of `reencrypt-mfa-secrets`: each batch holds its rows' locks until it
/// commits, so a login's verify of one of them waits for one short batch at most.
const REENCRYPT_BATCH: i64 = 500;

/// The keys `reencrypt-mfa-secrets` works with, with their ids (given, or the fingerprints the
/// local API uses).
fn mfa_keys(env: &settings::MfaKeyEnv) -> anyhow::Result<store::mfa_key::MfaKeys> {
    use store::mfa_key::fingerprint_id;
    let id = |given: &Option<String>, key: &secrecy::SecretString| given.clone().unwrap_or_else(|| fingerprint_id(key));
    store::mfa_key::MfaKeys::new(
        (id(&env.current_id, &env.current), &env.current),
        env.previous.as_ref().map(|p| (id(&env.previous_id, p), p)),
    )
    .context("MFA_ENCRYPTION_KEY")
}

// One task at a time: the current-thread runtime, without the multi-thread scheduler's code.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    settings::telemetry::init()?;
    let settings = DatabaseSettings::from_env()?;
    // The functions' start-up path, with secrets from the environment only.
    let url = &store::startup::load_database_url(&settings.database, Some(&EnvOnly))
        .await
        .context("loading the database URL (todo-admin reads DATABASE_URL only)")?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["migrate"] => {
            let applied = store::startup::apply_migrations(url, &settings.db).await?;
            if applied.is_empty() {
                println!("no pending migrations");
            }
            for m in applied {
                println!("applied {m}");
            }
            Ok(())
        }
        ["grant-admin", email] => {
            let client = store::db::connect(url, &settings.db).await?;
            let email = email.trim().to_owned();
            let canonical = store::users::canonical_email(&email);
            let rows = client
                .query_typed(
                    "UPDATE users SET role = 'admin', updated_at = now() WHERE email_canonical = $1 RETURNING id",
                    &[(&canonical, Type::TEXT)],
                )
                .await?;
            match rows.first() {
                Some(row) => {
                    let id: uuid::Uuid = row.try_get("id")?;
                    println!("{email} ({id}) is now an admin; it takes effect on the next login or refresh");
                    Ok(())
                }
                None => bail!("no account with email {email}: sign up first"),
            }
        }
        ["reencrypt-mfa-secrets"] => {
            let env = settings::MfaKeyEnv::from_env()?;
            let keys = mfa_keys(&env)?;
            let mut client = store::db::connect(url, &settings.db).await?;
            let report = store::mfa_key::reencrypt_all(&mut client, &keys, REENCRYPT_BATCH).await?;
            println!(
                "re-encrypted {} TOTP secret(s) under key {}",
                report.reencrypted,
                keys.current_id()
            );
            if report.unreadable > 0 {
                bail!(
                    "{} TOTP secret(s) could not be read with these keys (their user and key ids are logged above): \
                     keep the previous key until they are",
                    report.unreadable
                );
            }
            println!("no TOTP secret is under another key: the previous key can be dropped");
            Ok(())
        }
        _ => bail!("usage: todo-admin migrate | todo-admin grant-admin EMAIL | todo-admin reencrypt-mfa-secrets"),
    }
}
