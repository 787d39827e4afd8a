//! Roles, and the one permission table that says which role may call which route.
//!
//! The authorizer's policy resources and the local API's gateway check are both derived from
//! [`ROUTES`]: adding a route or a role is a change here (and, for a new route, in the function
//! that serves it). Which function serves a route is not this crate's business: template.yaml
//! and the local API's dispatch say it, and tests check them against each other.

use std::fmt;

use http::Method;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub const ALL: &'static [Role] = &[Role::User, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.iter().copied().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed (the gateway runs no authorizer).
    Public,
    /// A valid access token whose role is listed.
    Roles(&'static [Role]),
}

impl Access {
    pub fn allows(self, role: Role) -> bool {
        match self {
            Access::Public => true,
            Access::Roles(roles) => roles.contains(&role),
        }
    }
}

/// A route as API Gateway knows it: a method and a resource path with `{param}` segments.
#[derive(Debug, Clone)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

const ANY_USER: Access = Access::Roles(&[Role::User, Role::Admin]);
const ADMIN_ONLY: Access = Access::Roles(&[Role::Admin]);

macro_rules! route {
    ($method:ident $path:literal, $access:expr) => {
        Route {
            method: Method::$method,
            path: $path,
            access: $access,
        }
    };
}

/// Every route of the API. `template.yaml`, openapi.yaml, the local API and the `cargo lambda
/// watch` router must match this table (tested).
pub static ROUTES: &[Route] = &[
    route!(POST "/auth/signup", Access::Public),
    route!(POST "/auth/login", Access::Public),
    route!(POST "/auth/refresh", Access::Public),
    route!(POST "/auth/logout", ANY_USER),
    route!(POST "/auth/logout-all", ANY_USER),
    route!(GET "/auth/me", ANY_USER),
    route!(DELETE "/auth/me", ANY_USER),
    route!(POST "/auth/password", ANY_USER),
    route!(POST "/auth/password/forgot", Access::Public),
    route!(POST "/auth/password/reset", Access::Public),
    route!(POST "/auth/email/verify", Access::Public),
    route!(POST "/auth/email/verify/resend", ANY_USER),
    route!(GET "/auth/sessions", ANY_USER),
    route!(DELETE "/auth/sessions/{id}", ANY_USER),
    route!(GET "/auth/events", ANY_USER),
    route!(GET "/.well-known/jwks.json", Access::Public),
    route!(GET "/tasks", ANY_USER),
    route!(POST "/tasks", ANY_USER),
    route!(GET "/tasks/{id}", ANY_USER),
    route!(PATCH "/tasks/{id}", ANY_USER),
    route!(DELETE "/tasks/{id}", ANY_USER),
    route!(GET "/admin/users", ADMIN_ONLY),
    route!(GET "/admin/users/{id}", ADMIN_ONLY),
    route!(PATCH "/admin/users/{id}", ADMIN_ONLY),
    route!(DELETE "/admin/users/{id}", ADMIN_ONLY),
    route!(GET "/admin/events", ADMIN_ONLY),
    route!(POST "/auth/mfa/totp", ANY_USER),
    route!(DELETE "/auth/mfa/totp", ANY_USER),
    route!(POST "/auth/mfa/totp/confirm", ANY_USER),
    route!(POST "/auth/mfa/recovery-codes", ANY_USER),
    route!(POST "/auth/mfa/verify", Access::Public),
];

impl Route {
    /// Whether the route needs a session made with a second factor when `ADMIN_REQUIRE_MFA` is
    /// on: the admin routes.
    pub fn step_up(&self) -> bool {
        self.access == ADMIN_ONLY
    }
}

/// The API Gateway resource of a route for an execute-api ARN: `GET/tasks/*` for `/tasks/{id}`.
pub fn policy_resource(route: &Route) -> String {
    let path: Vec<&str> = route
        .path
        .split('/')
        .map(|s| if s.starts_with('{') { "*" } else { s })
        .collect();
    format!("{}{}", route.method.as_str(), path.join("/"))
}

/// Every resource a role may call: the authorizer allows all of them at once, so a cached policy is
/// right on every route.
pub fn policy_resources(role: Role) -> Vec<String> {
    policy_resources_for(role, true)
}

/// [`policy_resources`], leaving out the step-up (admin) routes unless `step_up_ok` (the session
/// was made with a second factor, or `ADMIN_REQUIRE_MFA` is off).
pub fn policy_resources_for(role: Role, step_up_ok: bool) -> Vec<String> {
    ROUTES
        .iter()
        .filter(|r| r.access != Access::Public && r.access.allows(role) && (step_up_ok || !r.step_up()))
        .map(policy_resource)
        .collect()
}

/// Why a route left out of a token's policy is refused: the `denied` key of the authorizer's
/// context, which the gateway's ACCESS_DENIED response shows as the problem's `code`.
pub fn denied_code(role: Role, step_up_ok: bool) -> &'static str {
    if role == Role::Admin && !step_up_ok {
        MFA_REQUIRED
    } else {
        FORBIDDEN
    }
}

/// The `detail` of the 403 with code `code` ([`denied_code`]): what the gateway's ACCESS_DENIED
/// response and the functions' problems say.
pub fn denied_detail(code: &str) -> &'static str {
    if code == MFA_REQUIRED {
        MFA_REQUIRED_DETAIL
    } else {
        FORBIDDEN_DETAIL
    }
}

pub const FORBIDDEN_DETAIL: &str = "Your role may not use this route.";
pub const MFA_REQUIRED_DETAIL: &str = "This route needs a session signed in with a second factor.";

/// The code of a 403 for a role that may not use a route.
pub const FORBIDDEN: &str = "forbidden";
/// The code of a 403 for an admin route called from a session without a second factor.
pub const MFA_REQUIRED: &str = "mfa_required";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_per_role() {
        let user = policy_resources(Role::User);
        assert!(user.contains(&"GET/tasks".to_owned()));
        assert!(user.contains(&"PATCH/tasks/*".to_owned()));
        assert!(
            !user.iter().any(|r| r.contains("auth/signup")),
            "public routes need no policy"
        );
        assert!(!user.iter().any(|r| r.contains("admin")));
        let admin = policy_resources(Role::Admin);
        assert!(admin.contains(&"DELETE/admin/users/*".to_owned()));
        assert!(admin.contains(&"GET/tasks".to_owned()));
        let no_step_up = policy_resources_for(Role::Admin, false);
        assert!(!no_step_up.iter().any(|r| r.contains("admin")));
        assert!(no_step_up.contains(&"GET/tasks".to_owned()));
        assert!(no_step_up.contains(&"POST/auth/mfa/totp".to_owned()));
        assert_eq!(denied_code(Role::Admin, false), MFA_REQUIRED);
        assert_eq!(denied_code(Role::User, false), FORBIDDEN);
        assert_eq!(denied_code(Role::Admin, true), FORBIDDEN);
    }
}
