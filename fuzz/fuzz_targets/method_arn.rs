//! Method ARNs and policies. `authorizer::api_stage_arn` must cut exactly
//! `arn:PARTITION:execute-api:REGION:ACCOUNT:API/STAGE` off an ARN (checked against a regex); the
//! authorizer must answer for a valid token iff the ARN has that shape; the policy it returns,
//! evaluated by `local_api::gateway::policy_allows`, must allow every route the role may call, never an
//! admin-only route for a user, and nothing on another stage; and `policy_allows` on arbitrary
//! statements must agree with a reference wildcard matcher. None of it may panic.
//!
//! Input: one flag byte (bit 0: admin token; bits 1-3: HTTP method), then fields separated by 0xFF
//! (never in UTF-8): method ARN, request path, text to match, then any number of policy patterns
//! (a leading `!` makes a Deny statement, else Allow).
#![no_main]

use std::sync::LazyLock;

use aws_lambda_events::apigw::{ApiGatewayCustomAuthorizerPolicy, ApiGatewayCustomAuthorizerRequest};
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use fuzz_support::{TOKENS, glob_reference};
use http::Method;
use libfuzzer_sys::fuzz_target;
use regex::Regex;
use secrecy::ExposeSecret;
use access::roles::Role;
use local_api::gateway::{allowed, match_route};
use uuid::Uuid;

static STAGE_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(arn:[^:]*:execute-api:[^:]*:[^:]*:[^/]+/[^/]+)(?:/|$)").expect("the expression compiles")
});

/// One access token per role, issued once (valid for 15 minutes: longer than a fuzz run).
static BEARER: LazyLock<[(Role, String); 2]> = LazyLock::new(|| {
    let issue = |role| {
        let issued = TOKENS
            .issue(Uuid::from_u128(1), Uuid::from_u128(2), role)
            .expect("issuing with a fixed key works");
        (role, format!("Bearer {}", issued.token.expose_secret()))
    };
    [issue(Role::User), issue(Role::Admin)]
});

const METHODS: &[Method] = &[
    Method::GET,
    Method::POST,
    Method::PATCH,
    Method::DELETE,
    Method::PUT,
    Method::HEAD,
    Method::OPTIONS,
];

struct Input {
    arn: String,
    admin: bool,
    method: u8,
    path: String,
    text: String,
    statements: Vec<(bool, String)>,
}

impl Input {
    fn parse(data: &[u8]) -> Option<Self> {
        let (&flags, rest) = data.split_first()?;
        let mut fields = rest
            .split(|&b| b == 0xFF)
            .map(|f| String::from_utf8_lossy(f).into_owned());
        let arn = fields.next().unwrap_or_default();
        let path = fields.next().unwrap_or_default();
        let text = fields.next().unwrap_or_default();
        let statements = fields
            .map(|p| match p.strip_prefix('!') {
                Some(deny) => (true, deny.to_owned()),
                None => (false, p),
            })
            .collect();
        Some(Self {
            arn,
            admin: flags & 1 == 1,
            method: flags >> 1,
            path,
            text,
            statements,
        })
    }
}

fn statement(effect: IamPolicyEffect, resource: Vec<String>) -> IamPolicyStatement {
    let mut s = IamPolicyStatement::default();
    s.action = vec!["execute-api:Invoke".into()];
    s.effect = effect;
    s.resource = resource;
    s
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    // 1. The stage ARN.
    let stage = authorizer::api_stage_arn(&input.arn);
    let expected = STAGE_ARN
        .captures(&input.arn)
        .and_then(|c| c.get(1))
        .map(|m| m.as_str());
    assert_eq!(stage, expected, "api_stage_arn({:?})", input.arn);

    // 2. The authorizer's policy for a valid token of the chosen role.
    let (role, bearer) = &BEARER[usize::from(input.admin)];
    let mut event = ApiGatewayCustomAuthorizerRequest::default();
    event.type_ = Some("TOKEN".into());
    event.authorization_token = Some(bearer.clone());
    event.method_arn = Some(input.arn.clone());
    let decision = authorizer::handle(&TOKENS, &event);
    assert_eq!(decision.is_ok(), stage.is_some(), "valid token, ARN {:?}", input.arn);
    if let (Ok(response), Some(base)) = (&decision, stage) {
        assert_eq!(
            response.principal_id.as_deref(),
            Some(Uuid::from_u128(1).to_string().as_str())
        );
        assert_eq!(response.context["role"], role.as_str());
        let policy = &response.policy_document;
        let method = &METHODS[usize::from(input.method) % METHODS.len()];
        let path = if input.path.starts_with('/') {
            input.path.to_owned()
        } else {
            format!("/{}", input.path)
        };
        let arn = format!("{base}/{}{path}", method.as_str());
        let allows = local_api::gateway::policy_allows(policy, &arn);
        if allowed(*role, method, &path) {
            assert!(allows, "{role} may call {method} {path} but the policy denies {arn}");
        }
        if match_route(method, &path).is_some_and(|(route, _)| !route.access.allows(Role::User)) && *role == Role::User
        {
            assert!(!allows, "user policy allows admin route {arn}");
        }
        if !base.contains(['*', '?']) {
            let other = format!("{base}x/{}{path}", method.as_str());
            assert!(
                !local_api::gateway::policy_allows(policy, &other),
                "policy for {base} allows {other}"
            );
        }
    }

    // 3. policy_allows against the reference matcher, on arbitrary statements.
    let work: usize = input.statements.iter().map(|(_, p)| p.len() + 1).sum::<usize>() * (input.text.len() + 1);
    if work > 4_000_000 {
        return;
    }
    let mut policy = ApiGatewayCustomAuthorizerPolicy::default();
    let (mut allow, mut deny) = (false, false);
    for (is_deny, pattern) in &input.statements {
        let matched = glob_reference(pattern.as_bytes(), input.text.as_bytes());
        let effect = if *is_deny {
            deny |= matched;
            IamPolicyEffect::Deny
        } else {
            allow |= matched;
            IamPolicyEffect::Allow
        };
        policy.statement.push(statement(effect, vec![pattern.clone()]));
    }
    assert_eq!(
        local_api::gateway::policy_allows(&policy, &input.text),
        allow && !deny,
        "policy_allows disagrees with the reference for {:?} on {:?}",
        input.statements,
        input.text
    );
});
