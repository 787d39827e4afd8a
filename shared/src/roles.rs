//! Roles, and the one permission table that says which role may call which route.
//!
//! The authorizer's policy resources, the local API's gateway check and every function's own check
//! are all derived from [`ROUTES`]: adding a route or a role is a change here and nowhere else.

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

/// Which function serves a route (one Lambda function each; the local API maps them the same way).
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
    pub function: Function,
    pub access: Access,
}

const ANY_USER: Access = Access::Roles(&[Role::User, Role::Admin]);
const ADMIN_ONLY: Access = Access::Roles(&[Role::Admin]);

macro_rules! route {
    ($method:ident $path:literal => $function:ident, $access:expr) => {
        Route {
            method: Method::$method,
            path: $path,
            function: Function::$function,
            access: $access,
        }
    };
}

/// Every route of the API. `template.yaml` and the local API must match this table (tested).
pub static ROUTES: &[Route] = &[
    route!(POST "/auth/signup" => Signup, Access::Public),
    route!(POST "/auth/login" => Login, Access::Public),
    route!(POST "/auth/refresh" => Refresh, Access::Public),
    route!(POST "/auth/logout" => Logout, ANY_USER),
    route!(POST "/auth/logout-all" => Logout, ANY_USER),
    route!(GET "/auth/me" => Account, ANY_USER),
    route!(DELETE "/auth/me" => Account, ANY_USER),
    route!(POST "/auth/password" => Account, ANY_USER),
    route!(POST "/auth/password/forgot" => Recovery, Access::Public),
    route!(POST "/auth/password/reset" => Recovery, Access::Public),
    route!(POST "/auth/email/verify" => Recovery, Access::Public),
    route!(POST "/auth/email/verify/resend" => Account, ANY_USER),
    route!(GET "/.well-known/jwks.json" => Jwks, Access::Public),
    route!(GET "/tasks" => Tasks, ANY_USER),
    route!(POST "/tasks" => Tasks, ANY_USER),
    route!(GET "/tasks/{id}" => Tasks, ANY_USER),
    route!(PATCH "/tasks/{id}" => Tasks, ANY_USER),
    route!(DELETE "/tasks/{id}" => Tasks, ANY_USER),
    route!(GET "/admin/users" => Admin, ADMIN_ONLY),
    route!(GET "/admin/users/{id}" => Admin, ADMIN_ONLY),
    route!(PATCH "/admin/users/{id}" => Admin, ADMIN_ONLY),
    route!(DELETE "/admin/users/{id}" => Admin, ADMIN_ONLY),
];

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
    ROUTES
        .iter()
        .filter(|r| r.access != Access::Public && r.access.allows(role))
        .map(policy_resource)
        .collect()
}

/// Whether `role` may call the route with this method and path (the functions' own check).
pub fn allowed(role: Role, method: &Method, path: &str) -> bool {
    match_route(method, path).is_some_and(|(r, _)| r.access.allows(role))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn functions_check_the_same_table() {
        assert!(allowed(Role::Admin, &Method::GET, "/admin/users"));
        assert!(!allowed(Role::User, &Method::GET, "/admin/users"));
        assert!(!allowed(Role::User, &Method::GET, "/admin/users/"));
        assert!(allowed(Role::User, &Method::POST, "/auth/logout"));
    }
}
