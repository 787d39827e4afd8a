//! `Authorization` header values. `local_api::bearer_header_valid` must say exactly what API
//! Gateway's identity validation expression in template.yaml says; whatever it lets through,
//! `access::tokens::bearer_token` must take out whole; what `bearer_token` returns must be a
//! trimmed, space-free part of the header; the authorizer must accept only a header that carries
//! a token `Tokens::verify` accepts. None of it may panic.
#![no_main]

use std::sync::LazyLock;

use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerRequest;
use fuzz_support::TOKENS;
use libfuzzer_sys::fuzz_target;
use regex::Regex;
use access::tokens::bearer_token;

/// `ValidationExpression` of the TOKEN authorizer in template.yaml.
static GATEWAY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[Bb][Ee][Aa][Rr][Ee][Rr] [-0-9A-Za-z._~+/]+=*$").expect("the expression compiles"));

const METHOD_ARN: &str = "arn:aws:execute-api:eu-west-1:123456789012:abc123/v1/GET/tasks";

fuzz_target!(|data: &[u8]| {
    let value = String::from_utf8_lossy(data);
    let valid = local_api::bearer_header_valid(&value);
    assert_eq!(
        valid,
        GATEWAY.is_match(&value),
        "local API and API Gateway disagree on {value:?}"
    );
    let token = bearer_token(&value);
    if valid {
        assert_eq!(
            token,
            value.get(7..),
            "gateway-valid header {value:?} not taken out whole"
        );
    }
    if let Some(token) = token {
        assert!(
            !token.is_empty() && !token.contains(' ') && token == token.trim(),
            "{token:?}"
        );
        let (scheme, _) = value.split_once(' ').expect("a token follows a space");
        assert!(scheme.eq_ignore_ascii_case("bearer"));
        assert!(value.ends_with(token) || value.trim_end().ends_with(token));
    }
    let mut event = ApiGatewayCustomAuthorizerRequest::default();
    event.type_ = Some("TOKEN".into());
    event.authorization_token = Some(value.to_string());
    event.method_arn = Some(METHOD_ARN.into());
    let decision = authorizer::handle(&TOKENS, &event);
    let verified = token.is_some_and(|t| TOKENS.verify(t).is_ok());
    assert_eq!(
        decision.is_ok(),
        verified,
        "authorizer decision differs from verify for {value:?}"
    );
});
