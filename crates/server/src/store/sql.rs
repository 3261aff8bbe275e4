//! Values as the SQL stores keep them.

use uuid::Uuid;

use crate::{
    store::{Lifetimes, SessionInfo},
    sys::clock::UnixTime,
};

/// Unix seconds as a signed 64-bit column (`bigint`, `INTEGER`).
pub(crate) fn secs(value: UnixTime) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A column of Unix seconds (never negative when we wrote it).
pub(crate) fn unix(value: i64) -> UnixTime {
    UnixTime::try_from(value).unwrap_or(0)
}

/// A chain's description from its stored columns, its expiry worked out
/// with `lifetimes`.
pub(crate) fn session_info(
    lifetimes: Lifetimes,
    chain: Uuid,
    user: String,
    created: i64,
    last_used: i64,
) -> SessionInfo {
    let (created, last_used) = (unix(created), unix(last_used));
    SessionInfo {
        chain,
        user,
        created,
        last_used,
        expires: lifetimes.expires(created, last_used),
    }
}
