//! Time-ordered ids (UUIDv7) for the hot paths: request ids and validation records.
//!
//! `Uuid::now_v7` keeps a process-wide counter behind a mutex so that ids made in the same
//! millisecond stay in order; these ids only need to be unique and roughly time-ordered, so they
//! are made from a timestamp the caller already has and random bits, without that lock.

use chrono::{DateTime, Utc};
use uuid::{NoContext, Timestamp, Uuid};

/// A UUIDv7 for the instant `at`: its first 48 bits are `at` in milliseconds, the rest random.
pub fn v7_at(at: DateTime<Utc>) -> Uuid {
    let seconds = u64::try_from(at.timestamp()).unwrap_or(0);
    Uuid::new_v7(Timestamp::from_unix(
        NoContext,
        seconds,
        at.timestamp_subsec_nanos(),
    ))
}

/// A UUIDv7 for now.
pub fn v7_now() -> Uuid {
    v7_at(Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_instant_and_differ() {
        let at = DateTime::parse_from_rfc3339("2026-11-21T10:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        let (a, b) = (v7_at(at), v7_at(at));
        assert_ne!(a, b);
        assert_eq!(a.get_version_num(), 7);
        let (seconds, nanos) = a.get_timestamp().unwrap().to_unix();
        assert_eq!(
            (seconds, nanos / 1_000_000),
            (u64::try_from(at.timestamp()).unwrap(), 123)
        );
        assert!(v7_at(at + chrono::TimeDelta::milliseconds(1)) > a);
    }
}
