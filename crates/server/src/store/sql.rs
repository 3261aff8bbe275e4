//! Values as the SQL stores keep them.

use crate::sys::clock::UnixTime;

/// Unix seconds as a signed 64-bit column (`bigint`, `INTEGER`).
pub(crate) fn secs(value: UnixTime) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A column of Unix seconds (never negative when we wrote it).
pub(crate) fn unix(value: i64) -> UnixTime {
    UnixTime::try_from(value).unwrap_or(0)
}
