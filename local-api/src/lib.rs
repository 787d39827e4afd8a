//! The local API: one process that plays API Gateway in front of every function.
//!
//! For each request it does what the deployed gateway does, in the same order: match the route
//! from the permission table (unknown: 404), run the authorizer's own code on Bearer routes
//! (401 for a missing or refused token, 403 when the returned policy does not cover the route,
//! with the same bodies as the Gateway Responses in `template.yaml`), then call the function's
//! handler with a REST (v1) event context: the authorizer context, and the TCP peer as
//! `sourceIp`. It contains no business logic.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayCustomAuthorizerRequest, ApiGatewayProxyRequestContext};
use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use lambda_http::request::RequestContext;
use lambda_http::{Body, RequestExt};
use shared::AppState;
use shared::error::{ApiError, Challenge};
use shared::http::MAX_BODY_BYTES;
use shared::roles::{Access, Function, match_route};
use tokio::net::TcpListener;

/// The fake account and API id in local method ARNs.
const LOCAL_ARN_PREFIX: &str = "arn:aws:execute-api:local:000000000000:local/local";

/// API Gateway's identity-source check on the `Authorization` header (see `template.yaml`):
/// a header that does not look like `Bearer <token>` is refused before the authorizer runs.
pub fn bearer_header_valid(value: &str) -> bool {
    let Some(token) = value.strip_prefix("Bearer ") else {
        return false;
    };
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/'))
}

/// Serve until the listener fails. Each connection is served on its own task.
pub async fn serve(listener: TcpListener, state: Arc<AppState>) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req, peer).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
}

fn to_hyper(response: lambda_http::Response<Body>) -> Response<Full<Bytes>> {
    let (parts, body) = response.into_parts();
    let bytes = match body {
        Body::Empty => Bytes::new(),
        Body::Text(s) => Bytes::from(s),
        Body::Binary(b) => Bytes::from(b),
        _ => Bytes::new(),
    };
    Response::from_parts(parts, Full::new(bytes))
}

fn problem(err: ApiError) -> Response<Full<Bytes>> {
    to_hyper(err.into_response())
}

/// One request through the gateway logic and the function.
pub async fn handle(state: &AppState, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = route(state, req, peer.ip()).await;
    tracing::info!(%method, %path, status = response.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    response
}

async fn route(state: &AppState, req: Request<Incoming>, peer: IpAddr) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let Some((route, params)) = match_route(&method, &path) else {
        return problem(ApiError::NoRoute);
    };

    let mut authorizer_fields = HashMap::new();
    if route.access != Access::Public {
        let header = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or(""));
        let Some(header) = header else {
            return problem(ApiError::Unauthenticated(Challenge::Bearer));
        };
        if !bearer_header_valid(header) {
            return problem(ApiError::Unauthenticated(Challenge::InvalidToken));
        }
        let method_arn = format!("{LOCAL_ARN_PREFIX}/{}{}", method.as_str(), path);
        let mut event = ApiGatewayCustomAuthorizerRequest::default();
        event.type_ = Some("TOKEN".into());
        event.authorization_token = Some(header.to_owned());
        event.method_arn = Some(method_arn.clone());
        let Ok(decision) = authorizer::handle_fresh(&state.tokens, &event).await else {
            return problem(ApiError::Unauthenticated(Challenge::InvalidToken));
        };
        if !authorizer::policy_allows(&decision.policy_document, &method_arn) {
            return problem(ApiError::Forbidden);
        }
        if let Some(principal) = decision.principal_id {
            authorizer_fields.insert("principalId".to_owned(), serde_json::Value::String(principal));
        }
        if let serde_json::Value::Object(context) = decision.context {
            authorizer_fields.extend(context);
        }
    }

    let (parts, body) = req.into_parts();
    let bytes = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return problem(ApiError::PayloadTooLarge),
        Err(_) => return problem(ApiError::MalformedJson("the body could not be read".into())),
    };

    let mut context = ApiGatewayProxyRequestContext::default();
    context.http_method = method.clone();
    context.resource_path = Some(route.path.to_owned());
    context.path = Some(path.clone());
    context.stage = Some("local".into());
    context.request_id = Some(uuid::Uuid::new_v4().to_string());
    context.identity.source_ip = Some(peer.to_string());
    context.authorizer.fields = authorizer_fields;

    let query: lambda_http::aws_lambda_events::query_map::QueryMap =
        parts.uri.query().unwrap_or("").parse().unwrap_or_default();
    let path_params: HashMap<String, String> = params.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let body = if bytes.is_empty() {
        Body::Empty
    } else {
        match String::from_utf8(bytes.to_vec()) {
            Ok(text) => Body::Text(text),
            Err(e) => Body::Binary(e.into_bytes()),
        }
    };
    let request = lambda_http::Request::from_parts(parts, body)
        .with_request_context(RequestContext::ApiGatewayV1(context))
        .with_path_parameters(path_params)
        .with_query_string_parameters(query);

    let response = match route.function {
        Function::Signup => signup::handle(state, request).await,
        Function::Login => login::handle(state, request).await,
        Function::Refresh => refresh::handle(state, request).await,
        Function::Logout => logout::handle(state, request).await,
        Function::Account => account::handle(state, request).await,
        Function::Tasks => tasks::handle(state, request).await,
        Function::Admin => admin::handle(state, request).await,
        Function::Jwks => jwks::handle(Some(&state.tokens)).await,
    };
    to_hyper(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_validation_expression() {
        assert!(bearer_header_valid("Bearer abc.def-ghi_jkl"));
        assert!(bearer_header_valid("Bearer abc=="));
        assert!(!bearer_header_valid("Bearer "));
        assert!(!bearer_header_valid("bearer abc"));
        assert!(!bearer_header_valid("Bearer a b"));
        assert!(!bearer_header_valid("Basic abc"));
    }
}
