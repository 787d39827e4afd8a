//! The security event log (`security_events`, migrations/V9): who did what to which account,
//! from where, when. Never a password, token, code or hash of one.
//!
//! An event is written by the code path that causes it, in the same transaction as the change it
//! records, so a rolled-back change leaves no event and a committed one always has its event:
//! [`cte`] puts the insert into the change's own statement (most paths: one round trip), and
//! [`record`] runs it inside the caller's transaction. Failures that change nothing
//! (`login_failed`, `login_throttled`, `mfa_failed`) are bounded instead ([`record_failure`]):
//! one row per type, account, address (an IPv6 client by its /64) and minute, counting the
//! attempts, and per type, address and minute when no account is known (an unknown email, an
//! address over its limit), so nobody can fill the table: what is typed never makes a new row. Each event also goes to the function's log as one line with fixed field names
//! ([`log`]): `security_event` (the type), `user_id`, `actor_id`, `session_id`, `request_id`.

use std::net::IpAddr;

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use serde::Serialize;
use settings::DbSettings;
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;
use web::error::ApiResult;

use crate::db::{self, Pool, Transaction};

/// Longest user agent kept, in characters.
pub const MAX_USER_AGENT_CHARS: usize = 256;

/// The stored and published names, in the order of [`EventType`]'s variants.
const NAMES: [&str; 20] = [
    "signup",
    "login_succeeded",
    "login_failed",
    "login_throttled",
    "mfa_failed",
    "refresh_reuse_detected",
    "logout",
    "logout_all",
    "session_revoked",
    "password_changed",
    "password_reset_requested",
    "password_reset",
    "email_verified",
    "mfa_enabled",
    "mfa_disabled",
    "recovery_code_used",
    "role_changed",
    "user_disabled",
    "user_enabled",
    "user_deleted",
];

/// Every event type. `as_str` is the stored and published name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Signup,
    LoginSucceeded,
    LoginFailed,
    LoginThrottled,
    MfaFailed,
    RefreshReuseDetected,
    Logout,
    LogoutAll,
    SessionRevoked,
    PasswordChanged,
    PasswordResetRequested,
    PasswordReset,
    EmailVerified,
    MfaEnabled,
    MfaDisabled,
    RecoveryCodeUsed,
    RoleChanged,
    UserDisabled,
    UserEnabled,
    UserDeleted,
}

impl EventType {
    pub const ALL: &'static [EventType] = &[
        EventType::Signup,
        EventType::LoginSucceeded,
        EventType::LoginFailed,
        EventType::LoginThrottled,
        EventType::MfaFailed,
        EventType::RefreshReuseDetected,
        EventType::Logout,
        EventType::LogoutAll,
        EventType::SessionRevoked,
        EventType::PasswordChanged,
        EventType::PasswordResetRequested,
        EventType::PasswordReset,
        EventType::EmailVerified,
        EventType::MfaEnabled,
        EventType::MfaDisabled,
        EventType::RecoveryCodeUsed,
        EventType::RoleChanged,
        EventType::UserDisabled,
        EventType::UserEnabled,
        EventType::UserDeleted,
    ];

    pub fn as_str(self) -> &'static str {
        NAMES[self as usize]
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.iter().copied().find(|t| t.as_str() == s)
    }

    /// A failure that changes nothing: recorded bounded ([`record_failure`]).
    pub fn bounded(self) -> bool {
        matches!(
            self,
            EventType::LoginFailed | EventType::LoginThrottled | EventType::MfaFailed
        )
    }
}

/// Where a request came from: API Gateway's `sourceIp` (the TCP peer locally; a forwarded header
/// is never consulted), the `User-Agent` cut to [`MAX_USER_AGENT_CHARS`] characters, and the
/// request id (for the log line only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl Origin {
    pub fn of(req: &Request) -> Self {
        let request_id = match req.request_context_ref() {
            Some(RequestContext::ApiGatewayV1(ctx)) => ctx.request_id.clone(),
            Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
            _ => None,
        };
        let user_agent = req
            .headers()
            .get(http::header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        Self::new(web::http::client_ip(req), user_agent.as_deref(), request_id)
    }

    pub fn new(ip: Option<IpAddr>, user_agent: Option<&str>, request_id: Option<String>) -> Self {
        Origin {
            ip: ip.map(|ip| ip.to_canonical().to_string()),
            user_agent: user_agent.map(truncate_user_agent).filter(|ua| !ua.is_empty()),
            request_id,
        }
    }
}

/// At most [`MAX_USER_AGENT_CHARS`] characters, control characters removed.
pub fn truncate_user_agent(ua: &str) -> String {
    ua.chars()
        .filter(|c| !c.is_control())
        .take(MAX_USER_AGENT_CHARS)
        .collect()
}

/// One event to record.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    pub id: Uuid,
    pub kind: EventType,
    /// The account the event is about (`None`: an unknown email, or taken from the statement:
    /// see [`Sources`]).
    pub user_id: Option<Uuid>,
    /// The account that acted (`None`: anonymous).
    pub actor_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub origin: &'a Origin,
}

impl<'a> Event<'a> {
    pub fn new(kind: EventType, origin: &'a Origin) -> Self {
        Event {
            id: Uuid::now_v7(),
            kind,
            user_id: None,
            actor_id: None,
            session_id: None,
            origin,
        }
    }

    /// The user acted on its own account.
    pub fn by_user(kind: EventType, user_id: Uuid, session_id: Option<Uuid>, origin: &'a Origin) -> Self {
        Event {
            user_id: Some(user_id),
            actor_id: Some(user_id),
            session_id,
            ..Event::new(kind, origin)
        }
    }

    /// The parameters of [`cte`] / [`record`], in order: id, type, user, actor, session, ip,
    /// user agent.
    pub fn params(&self) -> [(&(dyn ToSql + Sync), Type); PARAMS] {
        [
            (&self.id, Type::UUID),
            (&NAMES[self.kind as usize], Type::TEXT),
            (&self.user_id, Type::UUID),
            (&self.actor_id, Type::UUID),
            (&self.session_id, Type::UUID),
            (&self.origin.ip, Type::TEXT),
            (&self.origin.user_agent, Type::TEXT),
        ]
    }
}

/// How many parameters an event takes in a statement.
pub const PARAMS: usize = 7;

/// SQL expressions for the columns an [`Event`] leaves `None`, evaluated over the CTE's `FROM`
/// (for example the user a statement found). `NULL` by default.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'s> {
    pub user_id: &'s str,
    pub actor_id: &'s str,
    pub session_id: &'s str,
}

impl Default for Sources<'_> {
    fn default() -> Self {
        Sources {
            user_id: "NULL",
            actor_id: "NULL",
            session_id: "NULL",
        }
    }
}

/// A CTE (to put after a statement's `WITH`) named `name` that records the event whose
/// parameters ([`Event::params`]) start at `$first`, once per row of `from` (a `FROM` clause
/// body, with its `WHERE`: `"new_session"`, `"caller c WHERE EXISTS (SELECT 1 FROM revoked)"`).
/// A column the event leaves `None` takes the matching [`Sources`] expression.
pub fn cte(name: &str, first: usize, from: &str, sources: Sources<'_>) -> String {
    let p = |i: usize| format!("${}", first + i);
    format!(
        "{name} AS (
            INSERT INTO security_events (id, type, user_id, actor_id, session_id, ip, user_agent)
            SELECT {id}, {kind}, COALESCE({user}, {su}), COALESCE({actor}, {sa}), COALESCE({session}, {ss}), {ip}, {ua}
              FROM {from})",
        id = p(0),
        kind = p(1),
        user = p(2),
        actor = p(3),
        session = p(4),
        ip = p(5),
        ua = p(6),
        su = sources.user_id,
        sa = sources.actor_id,
        ss = sources.session_id,
    )
}

/// Record `event` inside the caller's transaction (committed or rolled back with the change).
pub async fn record(tx: &Transaction<'_>, settings: &DbSettings, event: &Event<'_>) -> ApiResult<()> {
    let sql = format!(
        "WITH {} SELECT 1 AS recorded",
        cte("recorded_event", 1, "(VALUES (1)) one", Sources::default())
    );
    db::run(tx, settings, &sql, &event.params()).await?;
    Ok(())
}

/// The bounded insert of a failure event: one row per (type, bucket key, minute), counting the
/// attempts. The bucket key is never anything the client typed, nor a digest of it:
/// `user <id> <address>` for the account the event is about (`$3`, or else the account of the
/// canonical email `$9`), `address <address>` when no account is known. The address is the rate
/// limits' key (`$8`: [`address_key`], an IPv6 client by its /64); `ip` keeps the first full
/// address of the minute.
const RECORD_FAILURE: &str = "
INSERT INTO security_events AS e (id, type, user_id, actor_id, session_id, ip, user_agent, bucket_key, bucket_minute)
SELECT $1, $2, a.user_id, $4, $5, $6, $7,
       COALESCE('user ' || a.user_id::text, 'address') || ' ' || $8, date_trunc('minute', now())
  FROM (SELECT COALESCE($3, (SELECT id FROM users WHERE email_canonical = $9)) AS user_id) a
ON CONFLICT (type, bucket_key, bucket_minute) WHERE bucket_key IS NOT NULL
DO UPDATE SET count = e.count + 1";

/// The address part of a bounded event's key: the rate limits' key of the origin's address
/// (`unknown` without one), so one client cannot make rows by rotating addresses inside its /64.
pub fn address_key(origin: &Origin) -> String {
    crate::ratelimit::ip_key(origin.ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok()))
}

/// Record a failure that changes nothing ([`EventType::bounded`]): a new row the first time in a
/// minute for this type, account (or none) and address, a higher count after that. One statement
/// of its own, after the refusal was decided.
///
/// The account is `event.user_id`, or else the account of `canonical_email` (a login throttled
/// on its account's counter, before any look-up); give `canonical_email` only then: an email
/// matching no account keys the row by the address alone, so random emails cannot multiply rows.
pub async fn record_failure(
    pool: &Pool,
    settings: &DbSettings,
    event: &Event<'_>,
    canonical_email: Option<&str>,
) -> ApiResult<()> {
    debug_assert!(event.kind.bounded(), "only failures that change nothing are bounded");
    let address = address_key(event.origin);
    let mut params: Vec<(&(dyn ToSql + Sync), Type)> = event.params().to_vec();
    params.push((&address, Type::TEXT));
    params.push((&canonical_email, Type::TEXT));
    db::query(pool, settings, RECORD_FAILURE, &params).await?;
    log(event);
    Ok(())
}

/// The event's log line (after it is committed): fixed field names, so CloudWatch Logs Insights
/// can filter on them (README). Nothing but ids and the type.
pub fn log(event: &Event<'_>) {
    let none = String::new();
    tracing::info!(
        security_event = event.kind.as_str(),
        user_id = %event.user_id.map(|u| u.to_string()).unwrap_or_default(),
        actor_id = %event.actor_id.map(|u| u.to_string()).unwrap_or_default(),
        session_id = %event.session_id.map(|u| u.to_string()).unwrap_or_default(),
        request_id = %event.origin.request_id.as_ref().unwrap_or(&none),
        "security event"
    );
}

/// An event as `GET /auth/events` and `GET /admin/events` show it.
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub user_id: Option<Uuid>,
    pub actor_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// The columns [`EventView::from_row`] reads, from `security_events e`.
pub const VIEW_COLUMNS: &str = "e.id, e.type, e.user_id, e.actor_id, e.session_id, e.ip, e.user_agent, e.created_at";

impl EventView {
    /// `None` for the row of an outer join that found no event.
    pub fn from_row(row: &Row) -> ApiResult<Option<Self>> {
        let Some(id) = row.try_get::<_, Option<Uuid>>("id")? else {
            return Ok(None);
        };
        Ok(Some(EventView {
            id,
            kind: row.try_get("type")?,
            user_id: row.try_get("user_id")?,
            actor_id: row.try_get("actor_id")?,
            session_id: row.try_get("session_id")?,
            ip: row.try_get("ip")?,
            user_agent: row.try_get("user_agent")?,
            created_at: row.try_get("created_at")?,
        }))
    }
}

/// A page of events: `{items, next_cursor}`.
#[derive(Debug, Serialize)]
pub struct EventList {
    pub items: Vec<EventView>,
    pub next_cursor: Option<String>,
}

/// Which events a list shows.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    /// The caller's own (`GET /auth/events`).
    Own,
    /// Every user's, for an admin, optionally one user's and one type (`GET /admin/events`).
    Admin {
        user_id: Option<Uuid>,
        kind: Option<EventType>,
    },
}

/// One page of events, newest first, after `page.after`, checked against the caller's live
/// session in the same statement. `Ok(None)`: the session is not live. Otherwise the caller's
/// current role (re-read: the admin function refuses a non-admin) and the page. An admin scope
/// reads nothing for a caller whose role is not `admin`.
pub async fn list(
    pool: &Pool,
    settings: &DbSettings,
    caller: &web::auth::Caller,
    scope: Scope,
    page: &web::cursor::Page,
) -> ApiResult<Option<(String, EventList)>> {
    let (user_filter, kind_filter) = match scope {
        Scope::Own => (None, None),
        Scope::Admin { user_id, kind } => (user_id, kind),
    };
    let mut conditions = String::from(match scope {
        Scope::Own => "se.user_id = c.user_id",
        Scope::Admin { .. } => "c.role = 'admin'",
    });
    // One statement text per combination of filters, as in the other lists: each has only the
    // conditions it needs (the indexes of migrations/V9 answer each); unused parameters are
    // ignored.
    if user_filter.is_some() {
        conditions.push_str(" AND se.user_id = $3");
    }
    if kind_filter.is_some() {
        conditions.push_str(" AND se.type = $4");
    }
    if page.after.is_some() {
        conditions.push_str(" AND (se.created_at, se.id) < ($5, $6)");
    }
    let sql = format!(
        "WITH {live}
         SELECT c.role AS caller_role, {VIEW_COLUMNS}
           FROM caller c
           LEFT JOIN LATERAL (
                SELECT * FROM security_events se
                 WHERE {conditions}
                 ORDER BY se.created_at DESC, se.id DESC
                 LIMIT $7) e ON true
          ORDER BY e.created_at DESC, e.id DESC",
        live = db::LIVE_CALLER
    );
    let (after_time, after_id) = page.after.map_or((None, None), |(t, id)| (Some(t), Some(id)));
    let kind_name = kind_filter.map(EventType::as_str);
    let fetch = page.limit + 1;
    let params: [(&(dyn ToSql + Sync), Type); 5] = [
        (&user_filter, Type::UUID),
        (&kind_name, Type::TEXT),
        (&after_time, Type::TIMESTAMPTZ),
        (&after_id, Type::UUID),
        (&fetch, Type::INT8),
    ];
    let rows = db::caller_query(pool, settings, caller, &sql, &params).await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let role: String = first.try_get("caller_role")?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some(event) = EventView::from_row(row)? {
            items.push(event);
        }
    }
    let (items, next_cursor) = web::cursor::finish_page(items, page.limit, |e| (e.created_at, e.id));
    Ok(Some((role, EventList { items, next_cursor })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(*t));
            assert_eq!(EventType::ALL[*t as usize], *t);
        }
        assert_eq!(EventType::parse("Signup"), None);
        assert_eq!(EventType::Signup.as_str(), "signup");
        assert_eq!(EventType::LoginFailed.as_str(), "login_failed");
        assert_eq!(EventType::RecoveryCodeUsed.as_str(), "recovery_code_used");
        assert_eq!(EventType::UserDeleted.as_str(), "user_deleted");
        assert_eq!(EventType::ALL.len(), 20);
    }

    #[test]
    fn a_user_agent_is_cut_to_256_characters_on_a_character_boundary() {
        let long = "é".repeat(300);
        let ua = truncate_user_agent(&long);
        assert_eq!(ua.chars().count(), MAX_USER_AGENT_CHARS);
        assert_eq!(truncate_user_agent("a\u{0}b\nc"), "abc");
        let o = Origin::new(
            Some("::ffff:192.0.2.7".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))),
            Some(""),
            None,
        );
        assert_eq!(o.ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(o.user_agent, None);
    }

    #[test]
    fn a_bounded_event_is_keyed_by_the_rate_limit_address_not_the_full_one() {
        let of = |ip: &str| address_key(&Origin::new(ip.parse().ok(), None, None));
        // Every address of one IPv6 /64 is one client: rotating them makes no new row.
        assert_eq!(of("2001:db8:1:2::1"), of("2001:db8:1:2:ffff:ffff:ffff:9"));
        assert_eq!(of("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_ne!(of("2001:db8:1:2::1"), of("2001:db8:1:3::1"));
        assert_eq!(of("192.0.2.7"), "192.0.2.7");
        assert_eq!(of("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(address_key(&Origin::default()), "unknown");
    }

    #[test]
    fn the_bounded_insert_keys_by_account_or_address_and_never_by_typed_input() {
        assert!(RECORD_FAILURE.contains("ON CONFLICT (type, bucket_key, bucket_minute)"));
        for n in 1..=9 {
            assert!(RECORD_FAILURE.contains(&format!("${n}")), "${n} missing");
        }
        assert!(!RECORD_FAILURE.contains("$10"));
    }
}
