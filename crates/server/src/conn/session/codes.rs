//! The wire's error code for each of the authenticator's refusals: the auth
//! layer decides why, the session says it in the protocol's terms.

use echo_proto::ErrorCode;

use crate::auth::Reason;

/// The `error` frame's code for a refusal for `reason`.
pub(super) fn wire_code(reason: Reason) -> ErrorCode {
    match reason {
        Reason::InvalidName => ErrorCode::InvalidName,
        Reason::NameTaken => ErrorCode::NameTaken,
        Reason::WeakPassword => ErrorCode::WeakPassword,
        Reason::InvalidCredentials => ErrorCode::InvalidCredentials,
        Reason::TokenInvalid => ErrorCode::TokenInvalid,
        Reason::RateLimited => ErrorCode::RateLimited,
        Reason::Internal => ErrorCode::Internal,
        Reason::Unavailable => ErrorCode::Unavailable,
    }
}
