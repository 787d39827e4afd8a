//! API Gateway TOKEN authorizer: verify the access token and answer with a policy.
//!
//! A missing, malformed, expired, wrongly signed or wrong-audience token makes the function fail
//! with exactly `Unauthorized`, which API Gateway turns into a 401. A valid token gets an Allow
//! policy for every route its role may call (wildcards from the permission table, so a policy
//! cached for one route is right on all of them), `principalId` = user id and context
//! `{sub, sid, role, exp, amr, denied, denied_detail}`. A route the role may not call is missing
//! from the policy: API Gateway answers 403, its ACCESS_DENIED body taking `code` and `detail` from
//! `denied` and `denied_detail`. With `ADMIN_REQUIRE_MFA` on, the admin routes are left out of the
//! policy of a session made without a second factor (`amr` without `otp`): 403 `mfa_required`.
//! No database is touched.

use access::roles::{denied_code, denied_detail, policy_resources_for};
use access::tokens::{Tokens, bearer_token};
use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerRequest, ApiGatewayCustomAuthorizerResponse,
};
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use lambda_runtime::Diagnostic;
use serde_json::json;

/// The one failure API Gateway understands as "answer 401".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unauthorized;

impl std::fmt::Display for Unauthorized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Unauthorized")
    }
}

impl std::error::Error for Unauthorized {}

impl From<Unauthorized> for Diagnostic {
    fn from(_: Unauthorized) -> Self {
        Diagnostic {
            error_type: "Unauthorized".into(),
            error_message: "Unauthorized".into(),
        }
    }
}

pub type AuthorizerResponse = ApiGatewayCustomAuthorizerResponse<serde_json::Value>;

/// `arn:aws:execute-api:region:account:api-id/stage` from a method ARN
/// `arn:aws:execute-api:region:account:api-id/stage/METHOD/path...`.
pub fn api_stage_arn(method_arn: &str) -> Option<&str> {
    let mut parts = method_arn.splitn(6, ':');
    let prefix: Vec<&str> = parts.by_ref().take(5).collect();
    let resource = parts.next()?;
    if prefix.len() != 5 || prefix[0] != "arn" || prefix[2] != "execute-api" {
        return None;
    }
    let mut segments = resource.splitn(3, '/');
    let (api, stage) = (segments.next()?, segments.next()?);
    if api.is_empty() || stage.is_empty() {
        return None;
    }
    let end = method_arn.len() - resource.len() + api.len() + 1 + stage.len();
    method_arn.get(..end)
}

/// What the authorizer is configured with besides its keys.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// `ADMIN_REQUIRE_MFA`.
    pub admin_require_mfa: bool,
}

/// [`handle_with`] with the default options (`ADMIN_REQUIRE_MFA` off).
pub fn handle(tokens: &Tokens, event: &ApiGatewayCustomAuthorizerRequest) -> Result<AuthorizerResponse, Unauthorized> {
    handle_with(tokens, event, Options::default())
}

pub fn handle_with(
    tokens: &Tokens,
    event: &ApiGatewayCustomAuthorizerRequest,
    options: Options,
) -> Result<AuthorizerResponse, Unauthorized> {
    let claims = tokens.verify(bearer(event)?).map_err(refused)?;
    policy_for(&claims, event, options)
}

/// [`handle`], reloading the keys first when they are stale, and once more (rate-limited) when
/// the token names a key this instance has not seen yet (the key was just rotated).
pub async fn handle_fresh(
    tokens: &Tokens,
    event: &ApiGatewayCustomAuthorizerRequest,
) -> Result<AuthorizerResponse, Unauthorized> {
    handle_fresh_with(tokens, event, Options::default()).await
}

/// [`handle_fresh`] with these options (what the deployed function and the local API call).
pub async fn handle_fresh_with(
    tokens: &Tokens,
    event: &ApiGatewayCustomAuthorizerRequest,
    options: Options,
) -> Result<AuthorizerResponse, Unauthorized> {
    let claims = tokens.verify_fresh(bearer(event)?).await.map_err(refused)?;
    policy_for(&claims, event, options)
}

fn bearer(event: &ApiGatewayCustomAuthorizerRequest) -> Result<&str, Unauthorized> {
    event
        .authorization_token
        .as_deref()
        .and_then(bearer_token)
        .ok_or(Unauthorized)
}

fn refused(reason: access::tokens::TokenError) -> Unauthorized {
    tracing::info!(%reason, "token refused");
    Unauthorized
}

/// The Allow policy for every route the token's role may call.
fn policy_for(
    claims: &access::tokens::AccessClaims,
    event: &ApiGatewayCustomAuthorizerRequest,
    options: Options,
) -> Result<AuthorizerResponse, Unauthorized> {
    let base = event.method_arn.as_deref().and_then(api_stage_arn).ok_or_else(|| {
        tracing::warn!("authorizer event without a usable methodArn");
        Unauthorized
    })?;
    let step_up_ok = !options.admin_require_mfa || claims.mfa();
    let resources: Vec<String> = policy_resources_for(claims.role, step_up_ok)
        .iter()
        .map(|r| format!("{base}/{r}"))
        .collect();
    let statement = if resources.is_empty() {
        statement(IamPolicyEffect::Deny, vec![format!("{base}/*")])
    } else {
        statement(IamPolicyEffect::Allow, resources)
    };
    let mut policy = ApiGatewayCustomAuthorizerPolicy::default();
    policy.version = Some("2012-10-17".into());
    policy.statement = vec![statement];
    let mut response = AuthorizerResponse::default();
    response.principal_id = Some(claims.sub.to_string());
    response.policy_document = policy;
    // `exp` lets the function refuse a token that expired while API Gateway still had this
    // answer cached (it caches per token for `AuthorizerCacheTtl`, whatever the token's `exp`).
    response.context = json!({
        "sub": claims.sub.to_string(),
        "sid": claims.sid.to_string(),
        "role": claims.role.as_str(),
        "exp": claims.exp.to_string(),
        "amr": claims.amr.join(" "),
        "denied": denied_code(claims.role, step_up_ok),
        "denied_detail": denied_detail(denied_code(claims.role, step_up_ok)),
    });
    Ok(response)
}

fn statement(effect: IamPolicyEffect, resource: Vec<String>) -> IamPolicyStatement {
    let mut s = IamPolicyStatement::default();
    s.action = vec!["execute-api:Invoke".into()];
    s.effect = effect;
    s.resource = resource;
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_arn() {
        let arn = "arn:aws:execute-api:eu-west-1:123456789012:abc123/v1/GET/tasks/42";
        assert_eq!(
            api_stage_arn(arn),
            Some("arn:aws:execute-api:eu-west-1:123456789012:abc123/v1")
        );
        assert_eq!(api_stage_arn("arn:aws:s3:::bucket"), None);
        assert_eq!(api_stage_arn("nonsense"), None);
    }
}
