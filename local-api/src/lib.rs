//! The local API: one process that plays API Gateway in front of every function.
//!
//! For each request it does what the deployed gateway does, in the same order: match the route
//! from the permission table (unknown: 404), run the authorizer's own code on Bearer routes
//! (401 for a missing or refused token, 403 when the returned policy does not cover the route,
//! with the same bodies as the Gateway Responses in `template.yaml`), then call the function's
//! handler with a REST (v1) event context: the authorizer context, and the TCP peer as
//! `sourceIp`. It contains no business logic.
//!
//! Like API Gateway with `ReauthorizeEvery` (template.yaml's `AuthorizerCacheTtl`), it caches the
//! authorizer's answer per `Authorization` header value ([`AuthorizerCache`]), so the same
//! revocation-after-caching behaviour is exercised locally: revocation still bites on the next
//! request because the functions check the session in the database.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use access::roles::Access;
use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerRequest, ApiGatewayProxyRequestContext,
};
use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use lambda_http::request::RequestContext;
use lambda_http::{Body, RequestExt};
use store::AppState;
use tokio::net::TcpListener;
use web::error::{ApiError, Challenge};
use web::http::MAX_BODY_BYTES;

use crate::gateway::{Function, function_for, match_route, policy_allows};

pub mod gateway;

pub mod mail;

/// The fake account and API id in local method ARNs.
const LOCAL_ARN_PREFIX: &str = "arn:aws:execute-api:local:000000000000:local/local";

/// API Gateway's identity-source check on the `Authorization` header (`ValidationExpression` in
/// `template.yaml`): a header that does not look like `Bearer <token>` (scheme in any case) is
/// refused before the authorizer runs. The grammar is `access::tokens::bearer_token`'s, so the
/// gateway, the local API and the functions cannot disagree.
pub fn bearer_header_valid(value: &str) -> bool {
    access::tokens::bearer_token(value).is_some()
}

/// What the authorizer answered for one token: the policy, and the context handed to functions.
#[derive(Debug)]
pub struct Decision {
    policy: ApiGatewayCustomAuthorizerPolicy,
    fields: HashMap<String, serde_json::Value>,
}

/// API Gateway's authorizer cache: the answer for an `Authorization` header value is reused, for
/// every route called with that header, until `ttl` has passed, and (stricter than API Gateway)
/// never past the token's own `exp`. Refusals are not cached. A zero `ttl` disables it. At most
/// [`AuthorizerCache::MAX_ENTRIES`] entries: when full, expired ones go, then all of them.
pub struct AuthorizerCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Arc<Decision>, Instant)>>,
}

impl AuthorizerCache {
    pub const MAX_ENTRIES: usize = 1000;

    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The cached decision for `header`, if it is still fresh at `now`.
    pub fn get(&self, header: &str, now: Instant) -> Option<Arc<Decision>> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(header)
            .filter(|(_, until)| now < *until)
            .map(|(d, _)| d.clone())
    }

    /// Remember `decision` for `header` from `now`, for the TTL, but not past `expires_in` (the
    /// time left before the token's `exp`).
    pub fn insert(&self, header: &str, decision: Arc<Decision>, now: Instant, expires_in: Duration) {
        let keep = self.ttl.min(expires_in);
        if keep.is_zero() {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= Self::MAX_ENTRIES && !entries.contains_key(header) {
            entries.retain(|_, (_, until)| now < *until);
            if entries.len() >= Self::MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(header.to_owned(), (decision, now + keep));
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Serve until the listener fails. Each connection is served on its own task.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, authorizer_cache_ttl: Duration) -> std::io::Result<()> {
    let cache = Arc::new(AuthorizerCache::new(authorizer_cache_ttl));
    loop {
        let (stream, peer) = listener.accept().await?;
        let state = state.clone();
        let cache = cache.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                let cache = cache.clone();
                async move { Ok::<_, Infallible>(handle(&state, &cache, req, peer).await) }
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

/// The gateway's ACCESS_DENIED answer: its template takes `code` and `detail` from the
/// authorizer's context (`denied`, `denied_detail`), so the problem follows the same keys here.
pub fn access_denied(fields: &HashMap<String, serde_json::Value>) -> ApiError {
    match fields.get("denied").and_then(|v| v.as_str()) {
        Some(access::roles::MFA_REQUIRED) => web::error::MFA_REQUIRED,
        _ => ApiError::Forbidden,
    }
}

/// One request through the gateway logic and the function.
pub async fn handle(
    state: &AppState,
    cache: &AuthorizerCache,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = route(state, cache, req, peer.ip()).await;
    let elapsed = started.elapsed();
    tracing::info!(%method, %path, status = response.status().as_u16(), elapsed_ms = elapsed.as_millis() as u64,
        elapsed_us = elapsed.as_micros() as u64, "request");
    response
}

/// Run the authorizer on a header that passed the identity check, or reuse its cached answer.
async fn authorize(
    state: &AppState,
    cache: &AuthorizerCache,
    header: &str,
    method_arn: &str,
) -> Result<Arc<Decision>, authorizer::Unauthorized> {
    let now = Instant::now();
    if let Some(decision) = cache.get(header, now) {
        return Ok(decision);
    }
    let mut event = ApiGatewayCustomAuthorizerRequest::default();
    event.type_ = Some("TOKEN".into());
    event.authorization_token = Some(header.to_owned());
    event.method_arn = Some(method_arn.to_owned());
    let options = authorizer::Options {
        admin_require_mfa: state.config.mfa.admin_require_mfa,
    };
    let response = authorizer::handle_fresh_with(&state.tokens, &event, options).await?;
    // The answer is cached no longer than the token lives: its `exp` is in the context.
    let exp = response
        .context
        .get("exp")
        .and_then(|v| v.as_str())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let mut fields = HashMap::new();
    if let Some(principal) = response.principal_id {
        fields.insert("principalId".to_owned(), serde_json::Value::String(principal));
    }
    if let serde_json::Value::Object(context) = response.context {
        fields.extend(context);
    }
    let decision = Arc::new(Decision {
        policy: response.policy_document,
        fields,
    });
    let unix_now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let expires_in = Duration::from_secs(exp).saturating_sub(unix_now);
    cache.insert(header, decision.clone(), now, expires_in);
    Ok(decision)
}

async fn route(
    state: &AppState,
    cache: &AuthorizerCache,
    req: Request<Incoming>,
    peer: IpAddr,
) -> Response<Full<Bytes>> {
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
        let Ok(decision) = authorize(state, cache, header, &method_arn).await else {
            return problem(ApiError::Unauthenticated(Challenge::InvalidToken));
        };
        if !policy_allows(&decision.policy, &method_arn) {
            return problem(access_denied(&decision.fields));
        }
        authorizer_fields.clone_from(&decision.fields);
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

    let Some(function) = function_for(route) else {
        return problem(ApiError::NoRoute);
    };
    let response = match function {
        Function::Signup => signup::handle(state, request).await,
        Function::Login => login::handle(state, request).await,
        Function::Refresh => refresh::handle(state, request).await,
        Function::Logout => logout::handle(state, request).await,
        Function::Account => account::handle(state, request).await,
        Function::Tasks => tasks::handle(state, request).await,
        Function::Admin => admin::handle(state, request).await,
        Function::Jwks => jwks::handle(Some(&state.tokens)).await,
        Function::Recovery => recovery::handle(state, request).await,
        Function::Mfa => mfa::handle(state, request).await,
        Function::MfaVerify => mfa_verify::handle(state, request).await,
    };
    to_hyper(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision() -> Arc<Decision> {
        Arc::new(Decision {
            policy: ApiGatewayCustomAuthorizerPolicy::default(),
            fields: HashMap::new(),
        })
    }

    #[test]
    fn cached_until_the_ttl() {
        let cache = AuthorizerCache::new(Duration::from_secs(300));
        let t0 = Instant::now();
        cache.insert("Bearer a", decision(), t0, Duration::from_secs(900));
        assert!(cache.get("Bearer a", t0 + Duration::from_secs(299)).is_some());
        assert!(cache.get("Bearer a", t0 + Duration::from_secs(300)).is_none());
        assert!(cache.get("Bearer b", t0).is_none(), "per header value");
    }

    #[test]
    fn never_past_the_tokens_exp() {
        let cache = AuthorizerCache::new(Duration::from_secs(300));
        let t0 = Instant::now();
        cache.insert("Bearer a", decision(), t0, Duration::from_secs(10));
        assert!(cache.get("Bearer a", t0 + Duration::from_secs(9)).is_some());
        assert!(cache.get("Bearer a", t0 + Duration::from_secs(10)).is_none());
        cache.insert("Bearer gone", decision(), t0, Duration::ZERO);
        assert!(cache.get("Bearer gone", t0).is_none(), "an expired token is not cached");
    }

    #[test]
    fn a_zero_ttl_disables_it() {
        let cache = AuthorizerCache::new(Duration::ZERO);
        let t0 = Instant::now();
        cache.insert("Bearer a", decision(), t0, Duration::from_secs(900));
        assert!(cache.get("Bearer a", t0).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn bounded() {
        let cache = AuthorizerCache::new(Duration::from_secs(300));
        let t0 = Instant::now();
        for i in 0..AuthorizerCache::MAX_ENTRIES {
            cache.insert(&format!("Bearer {i}"), decision(), t0, Duration::from_secs(900));
        }
        assert_eq!(cache.len(), AuthorizerCache::MAX_ENTRIES);
        // Full of live entries: they all go, and the new one is kept.
        cache.insert("Bearer new", decision(), t0, Duration::from_secs(900));
        assert_eq!(cache.len(), 1);
        assert!(cache.get("Bearer new", t0).is_some());
        // Expired entries go first when full.
        for i in 0..AuthorizerCache::MAX_ENTRIES - 1 {
            cache.insert(&format!("Bearer short {i}"), decision(), t0, Duration::from_secs(1));
        }
        let later = t0 + Duration::from_secs(2);
        cache.insert("Bearer later", decision(), later, Duration::from_secs(900));
        assert_eq!(cache.len(), 2, "the expired ones were dropped, the live ones kept");
        assert!(cache.get("Bearer new", later).is_some());
    }

    #[test]
    fn identity_validation_expression() {
        assert!(bearer_header_valid("Bearer abc.def-ghi_jkl"));
        assert!(bearer_header_valid("Bearer abc=="));
        assert!(!bearer_header_valid("Bearer "));
        assert!(bearer_header_valid("bearer abc"), "the scheme is case-insensitive");
        assert!(bearer_header_valid("BEARER abc"));
        assert!(!bearer_header_valid("Bearer a b"));
        assert!(!bearer_header_valid("Basic abc"));
    }
}
