//! Round trip: for every (created_at, id) at PostgreSQL's microsecond precision, in any UTC
//! offset, `decode(encode(t, id)) == Some((t, id))`, and the cursor fits `MAX_CURSOR_LEN`.
//! A time with sub-microsecond digits comes back within one microsecond.
#![no_main]

use libfuzzer_sys::fuzz_target;
use web::cursor::{MAX_CURSOR_LEN, decode, encode};
use time::{Duration, OffsetDateTime, UtcOffset};
use uuid::Uuid;

/// Microseconds from the epoch to the end of year 9999 (the `time` crate's range).
const RANGE_MICROS: i64 = 253_402_300_800_000_000;

fuzz_target!(|input: (i64, u128, u16, i32)| {
    let (raw_micros, raw_id, sub_micro, offset_secs) = input;
    let micros = raw_micros % RANGE_MICROS;
    let id = Uuid::from_u128(raw_id);
    let Ok(time) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000) else {
        return;
    };
    let time = UtcOffset::from_whole_seconds(offset_secs % 86_400)
        .ok()
        .and_then(|o| time.checked_to_offset(o))
        .unwrap_or(time);
    let cursor = encode(time, id);
    assert!(
        cursor.len() <= MAX_CURSOR_LEN,
        "cursor of {} bytes will be refused",
        cursor.len()
    );
    assert_eq!(decode(&cursor), Some((time, id)), "round trip failed for {cursor}");

    let Some(finer) = time.checked_add(Duration::nanoseconds(i64::from(sub_micro % 1000))) else {
        return;
    };
    let Some((back, back_id)) = decode(&encode(finer, id)) else {
        unreachable!("cursor of {finer} does not decode");
    };
    assert_eq!(back_id, id);
    assert!(
        (back - finer).abs() < Duration::microseconds(1),
        "{finer} came back as {back}"
    );
});
