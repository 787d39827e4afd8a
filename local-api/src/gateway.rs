//! What only API Gateway does, played locally: matching a request to a route of the permission
//! table, evaluating the authorizer's IAM policy against the method ARN, and choosing the function
//! that serves a route. None of this is in the deployed code: there, API Gateway does it.

use access::roles::{ROUTES, Route};
use aws_lambda_events::apigw::ApiGatewayCustomAuthorizerPolicy;
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
use http::Method;

/// The function that serves a route (one Lambda function each in template.yaml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    Signup,
    Login,
    Refresh,
    Logout,
    Account,
    Tasks,
    Admin,
    Jwks,
    Recovery,
    Mfa,
    MfaVerify,
}

impl Function {
    /// The crate, and the `cargo lambda watch` function name.
    pub fn crate_name(self) -> &'static str {
        match self {
            Function::Signup => "signup",
            Function::Login => "login",
            Function::Refresh => "refresh",
            Function::Logout => "logout",
            Function::Account => "account",
            Function::Tasks => "tasks",
            Function::Admin => "admin",
            Function::Jwks => "jwks",
            Function::Recovery => "recovery",
            Function::Mfa => "mfa",
            Function::MfaVerify => "mfa-verify",
        }
    }
}

/// Which function serves each resource path: every method of a path goes to one function, as in
/// template.yaml (tested against it, and every route of the table has an entry).
pub static DISPATCH: &[(&str, Function)] = &[
    ("/auth/signup", Function::Signup),
    ("/auth/login", Function::Login),
    ("/auth/refresh", Function::Refresh),
    ("/auth/logout", Function::Logout),
    ("/auth/logout-all", Function::Logout),
    ("/auth/me", Function::Account),
    ("/auth/password", Function::Account),
    ("/auth/password/forgot", Function::Recovery),
    ("/auth/password/reset", Function::Recovery),
    ("/auth/email/verify", Function::Recovery),
    ("/auth/email/verify/resend", Function::Account),
    ("/auth/sessions", Function::Account),
    ("/auth/sessions/{id}", Function::Account),
    ("/auth/events", Function::Account),
    ("/.well-known/jwks.json", Function::Jwks),
    ("/tasks", Function::Tasks),
    ("/tasks/{id}", Function::Tasks),
    ("/admin/users", Function::Admin),
    ("/admin/users/{id}", Function::Admin),
    ("/admin/events", Function::Admin),
    ("/auth/mfa/totp", Function::Mfa),
    ("/auth/mfa/totp/confirm", Function::Mfa),
    ("/auth/mfa/recovery-codes", Function::Mfa),
    ("/auth/mfa/verify", Function::MfaVerify),
];

/// The function that serves `route`.
pub fn function_for(route: &Route) -> Option<Function> {
    DISPATCH.iter().find(|(path, _)| *path == route.path).map(|(_, f)| *f)
}

/// Find the route for a method and a concrete path, with its path parameters.
pub fn match_route(method: &Method, path: &str) -> Option<(&'static Route, Vec<(&'static str, String)>)> {
    ROUTES
        .iter()
        .filter(|r| r.method == method)
        .find_map(|r| match_path(r.path, path).map(|p| (r, p)))
}

/// Whether any route has this path (for telling 404 from a wrong method).
pub fn path_exists(path: &str) -> bool {
    ROUTES.iter().any(|r| match_path(r.path, path).is_some())
}

/// Match a concrete path against a template: each `{name}` matches one non-empty segment.
/// A trailing slash or an empty segment never matches (API Gateway treats them as other paths).
pub fn match_path(template: &'static str, path: &str) -> Option<Vec<(&'static str, String)>> {
    let mut params = Vec::new();
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(params),
            (Some(ts), Some(ps)) => {
                if let Some(name) = ts.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    if ps.is_empty() {
                        return None;
                    }
                    params.push((name, ps.to_owned()));
                } else if ts != ps {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

/// Whether `role` may call the route with this method and path, by the permission table.
pub fn allowed(role: access::roles::Role, method: &Method, path: &str) -> bool {
    match_route(method, path).is_some_and(|(r, _)| r.access.allows(role))
}

/// Evaluate a policy for a method ARN the way API Gateway does: allowed when an Allow statement
/// matches and no Deny does. (`*` matches any run of characters, `?` one.)
pub fn policy_allows(policy: &ApiGatewayCustomAuthorizerPolicy, method_arn: &str) -> bool {
    let matches = |s: &IamPolicyStatement| {
        s.action.iter().any(|a| a == "execute-api:Invoke" || a == "*")
            && s.resource
                .iter()
                .any(|r| glob_match(r.as_bytes(), method_arn.as_bytes()))
    };
    let denied = policy
        .statement
        .iter()
        .any(|s| s.effect == IamPolicyEffect::Deny && matches(s));
    let allowed = policy
        .statement
        .iter()
        .any(|s| s.effect == IamPolicyEffect::Allow && matches(s));
    allowed && !denied
}

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative wildcard matching with backtracking to the last `*`.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use access::roles::Role;

    use super::*;

    #[test]
    fn every_route_has_a_function() {
        for route in ROUTES {
            assert!(
                function_for(route).is_some(),
                "{} {} has no function",
                route.method,
                route.path
            );
        }
    }

    #[test]
    fn path_matching() {
        assert!(match_path("/tasks", "/tasks").is_some());
        assert!(match_path("/tasks", "/tasks/").is_none());
        assert!(match_path("/tasks/{id}", "/tasks/").is_none());
        assert!(match_path("/tasks/{id}", "/tasks/a/b").is_none());
        assert!(match_path("/tasks/{id}", "/TASKS/a").is_none());
        assert_eq!(
            match_path("/tasks/{id}", "/tasks/abc"),
            Some(vec![("id", "abc".to_owned())])
        );
    }

    #[test]
    fn the_gateway_checks_the_same_table() {
        assert!(allowed(Role::Admin, &Method::GET, "/admin/users"));
        assert!(!allowed(Role::User, &Method::GET, "/admin/users"));
        assert!(!allowed(Role::User, &Method::GET, "/admin/users/"));
        assert!(allowed(Role::User, &Method::POST, "/auth/logout"));
    }

    #[test]
    fn globs() {
        assert!(glob_match(b"a/GET/tasks/*", b"a/GET/tasks/1"));
        assert!(!glob_match(b"a/GET/tasks/*", b"a/GET/tasks"));
        assert!(glob_match(b"a/GET/tasks", b"a/GET/tasks"));
        assert!(!glob_match(b"a/GET/tasks", b"a/GET/tasks/x"));
        assert!(!glob_match(b"a/GET/tasks/*", b"a/GET/admin/users"));
        assert!(glob_match(b"*", b""));
    }
}
