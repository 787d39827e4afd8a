//! Arbitrary text as a `cursor` query parameter: `web::cursor::decode` must never panic, and
//! only the canonical spelling of a position of ours may decode (microsecond precision, UTC,
//! re-encoding gives the same text).
#![no_main]

use libfuzzer_sys::fuzz_target;
use web::cursor::{MAX_CURSOR_LEN, decode, encode};
use time::UtcOffset;

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let Some((time, id)) = decode(&raw) else {
        return;
    };
    assert!(raw.len() <= MAX_CURSOR_LEN, "over-long cursor decoded");
    assert_eq!(encode(time, id), raw, "non-canonical cursor decoded");
    assert_eq!(
        time.nanosecond() % 1000,
        0,
        "cursor finer than PostgreSQL's microseconds"
    );
    assert_eq!(time.offset(), UtcOffset::UTC);
});
