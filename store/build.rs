//! `refinery::embed_migrations!` reads `migrations/` while compiling this crate, but cargo does
//! not know it does: without this, a build that reuses a compiled `shared` (a warm target
//! directory) keeps the migrations it saw last, and a new migration's tables are missing at run
//! time ("relation ... does not exist").
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
