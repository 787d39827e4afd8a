//! `todo-admin`: operations run against `DATABASE_URL` (local or Neon).
//!
//!   todo-admin migrate              apply pending migrations
//!   todo-admin grant-admin EMAIL    make an existing account an admin (the first admin of a
//!                                   fresh deployment: sign up, then run this once)
//!
//! There is no default account and no default password anywhere.

use anyhow::{Context, bail};
use secrecy::SecretString;
use shared::config::{Config, EnvReader};
use tokio_postgres::types::Type;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init();
    let env = EnvReader::process();
    let config = Config::from_env()?;
    let url = SecretString::from(env.get("DATABASE_URL").context("DATABASE_URL must be set")?);
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["migrate"] => {
            let mut client = shared::db::connect(&url, &config.db).await?;
            let applied = shared::db::migrate(&mut client, &config.db).await?;
            if applied.is_empty() {
                println!("no pending migrations");
            }
            for m in applied {
                println!("applied {m}");
            }
            Ok(())
        }
        ["grant-admin", email] => {
            let client = shared::db::connect(&url, &config.db).await?;
            let email = email.trim().to_owned();
            let canonical = shared::users::canonical_email(&email);
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
