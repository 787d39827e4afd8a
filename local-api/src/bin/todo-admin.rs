//! `todo-admin`: operations run against `DATABASE_URL` (local or Neon).
//!
//!   todo-admin migrate        apply pending migrations

use anyhow::{Context, bail};
use secrecy::SecretString;
use shared::config::{Config, EnvReader};

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
            let applied = shared::db::migrate(&mut client).await?;
            if applied.is_empty() {
                println!("no pending migrations");
            }
            for m in applied {
                println!("applied {m}");
            }
            Ok(())
        }
        _ => bail!("usage: todo-admin migrate"),
    }
}
