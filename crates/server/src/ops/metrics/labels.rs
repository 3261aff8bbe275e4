//! The label values of the server's metrics, and the label sets that carry
//! them. Every value is known in advance, so each enum lists its variants
//! in `ALL` (written by [`label_values!`] from the one list, so a new
//! variant cannot be left out), and `Metrics::new` creates every series at
//! 0: `rate()` and alerts work from the first scrape, as Prometheus'
//! instrumentation guide asks.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};

/// Declares a label-value enum and its `ALL`, every variant in order.
/// Variants are spelled as the values exported (the derive writes a
/// variant's name as it is), hence snake case.
macro_rules! label_values {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$doc:meta])* $variant:ident,)+ }) => {
        $(#[$meta])*
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
        pub enum $name {
            $($(#[$doc])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];
        }
    };
}

label_values! {
    /// Why a connection was refused before its handshake
    /// (`echo_connections_refused_total{reason}`).
    pub enum Refused {
        /// The server is at its connection limit.
        busy,
        /// The source (an address or IPv6 /64) is at one of its limits.
        per_ip,
    }
}

label_values! {
    /// How a handshake ended (`echo_handshakes_total{outcome}`).
    pub enum Handshake {
        /// Identified by address (ident mode).
        greeted,
        /// A new account.
        registered,
        /// A password login.
        logged_in,
        /// A session token.
        resumed,
        /// Ended otherwise, before its deadline.
        failed,
        /// Its deadline passed.
        timeout,
        /// The client closed (or reset) the connection without sending a
        /// byte: a port probe or a TCP health check, not a failed client.
        silent,
    }
}

label_values! {
    /// Why an authentication attempt was refused
    /// (`echo_auth_failures_total{reason}`): the wire error code's text, and
    /// `token_reused` for a rotated-away token.
    #[allow(missing_docs)]
    pub enum AuthFailure {
        invalid_credentials,
        invalid_name,
        name_taken,
        weak_password,
        rate_limited,
        token_invalid,
        token_reused,
        unavailable,
        internal,
    }
}

label_values! {
    /// Why a session chain was revoked (`echo_sessions_revoked_total{reason}`).
    pub enum Revoked {
        /// A rotated-away token was presented.
        reused,
        /// The client logged out.
        logout,
    }
}

label_values! {
    /// A store operation (`echo_store_operation_seconds{op}`): the
    /// `UserStore` method's name.
    #[allow(missing_docs)]
    pub enum StoreOp {
        identity,
        remember_identity,
        identities,
        forget_identity,
        familiar_since,
        note_familiar,
        user,
        users,
        create_user,
        register,
        set_password,
        remove_user,
        create_session,
        rotate_session,
        revoke_session,
        revoke_user_sessions,
        sessions,
        chains_alive,
        note_visit,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct RefusedLabel {
    pub reason: Refused,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct OutcomeLabel {
    pub outcome: Handshake,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct AuthFailureLabel {
    pub reason: AuthFailure,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct RevokedLabel {
    pub reason: Revoked,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct OpLabel {
    pub op: StoreOp,
}

/// `echo_build_info`'s label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct VersionLabel {
    pub version: String,
}
