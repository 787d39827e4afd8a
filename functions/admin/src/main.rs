#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    store::startup::run_http(|state, req| async move { admin::handle(&state, req).await }).await
}
