#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    store::startup::run_http_mfa(|state, req| async move { mfa_verify::handle(&state, req).await }).await
}
