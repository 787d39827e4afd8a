//! `todo-admin`: operations run against `DATABASE_URL` (local or Neon). For a deployed stack,
//! read the URL from its secret first (README, "Deploy"); this command never talks to AWS itself,
//! so it links no AWS SDK.
//!
//!   todo-admin migrate              apply pending migrations
//!   todo-admin grant-admin EMAIL    make an existing account an admin (the first admin of a
//!                                   fresh deployment: sign up, then run this once)
//!
//! There is no default account and no default password anywhere.

use access::keys::EnvOnly;
use anyhow::{Context, bail};
use settings::DatabaseSettings;
use tokio_postgres::types::Type;

#[tokio::main]
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
        _ => bail!("usage: todo-admin migrate | todo-admin grant-admin EMAIL"),
    }
}
