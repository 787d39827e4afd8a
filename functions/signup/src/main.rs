#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    store::startup::run_http(|state, req| async move { signup::handle(&state, req).await }).await
}
