//! Request body of POST /tasks: arbitrary bytes through
//! `web::http::parse_json_bytes::<tasks::CreateTask>`, the parser the function runs.
//! It must never panic; an accepted body must be a UTF-8 JSON object of known fields without
//! NUL; a refusal must be a 400/413/422 problem that names only the body, an accepted field or a
//! sent key (see `check_body`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    fuzz_support::check_body::<tasks::CreateTask>(data);
});
