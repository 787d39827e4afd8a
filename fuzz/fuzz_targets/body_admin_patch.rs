//! Request body of PATCH /admin/users/{id}: arbitrary bytes through
//! `web::http::parse_json_bytes::<admin::PatchUser>`, the parser the function runs.
//! It must never panic; an accepted body must be a UTF-8 JSON object of known fields without
//! NUL; a refusal must be a 400/413/422 problem that names only the body, an accepted field or a
//! sent key (see `check_body`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(body) = fuzz_support::check_body::<admin::PatchUser>(data) else {
        return;
    };
    // What the handler does next with `role`: only the known role names parse.
    if let Some(role) = fuzz_support::str_field(&body, "role") {
        let parsed = access::roles::Role::parse(role);
        assert_eq!(parsed.is_some(), matches!(role, "user" | "admin"), "role {role:?}");
    }
});
