//! The public recovery routes deployed. They sign and verify no access token, so this function
//! holds no key at all (`FunctionSettings::keyless_from_env`); none of its routes reads a caller.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    store::startup::run_http_keyless(|state, req| async move { recovery::handle(&state, req).await }).await
}
