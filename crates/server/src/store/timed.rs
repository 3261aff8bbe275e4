//! [`Timed`]: any store, with each operation's time recorded in
//! `echo_store_operation_seconds{op}`. The server wraps its store in it, so
//! every backend is measured the same way.

use std::{future::Future, net::IpAddr, sync::Arc, time::Instant};

use uuid::Uuid;

use super::{
    EndCause, Identity, Rotation, SessionInfo, StoreError, TokenHash, UnixTime, UserRecord,
    UserStore,
};
use crate::ops::metrics::{Metrics, StoreOp};

/// A store whose operations are timed.
#[derive(Debug, Clone)]
pub struct Timed<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> Timed<S> {
    /// Times `inner`'s operations into `metrics`.
    pub fn new(inner: S, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    async fn time<T>(&self, op: StoreOp, operation: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let outcome = operation.await;
        self.metrics.store_operation(op, started.elapsed());
        outcome
    }
}

impl<S: UserStore> UserStore for Timed<S> {
    async fn identity(&self, ip: IpAddr, now: UnixTime) -> Result<Option<Identity>, StoreError> {
        self.time(StoreOp::identity, self.inner.identity(ip, now))
            .await
    }

    async fn remember_identity(
        &self,
        ip: IpAddr,
        name: &str,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let operation = self.inner.remember_identity(ip, name, now);
        self.time(StoreOp::remember_identity, operation).await
    }

    async fn identities(&self, now: UnixTime) -> Result<Vec<(IpAddr, Identity)>, StoreError> {
        self.time(StoreOp::identities, self.inner.identities(now))
            .await
    }

    async fn forget_identity(&self, ip: IpAddr) -> Result<bool, StoreError> {
        self.time(StoreOp::forget_identity, self.inner.forget_identity(ip))
            .await
    }

    async fn familiar_since(
        &self,
        account: &str,
        ip: IpAddr,
        now: UnixTime,
    ) -> Result<Option<UnixTime>, StoreError> {
        let operation = self.inner.familiar_since(account, ip, now);
        self.time(StoreOp::familiar_since, operation).await
    }

    async fn note_familiar(
        &self,
        account: &str,
        ip: IpAddr,
        now: UnixTime,
    ) -> Result<(), StoreError> {
        let operation = self.inner.note_familiar(account, ip, now);
        self.time(StoreOp::note_familiar, operation).await
    }

    async fn user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        self.time(StoreOp::user, self.inner.user(name)).await
    }

    async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.time(StoreOp::users, self.inner.users()).await
    }

    async fn create_user(&self, user: UserRecord) -> Result<(), StoreError> {
        self.time(StoreOp::create_user, self.inner.create_user(user))
            .await
    }

    async fn register(
        &self,
        user: UserRecord,
        token: TokenHash,
    ) -> Result<SessionInfo, StoreError> {
        self.time(StoreOp::register, self.inner.register(user, token))
            .await
    }

    async fn set_password(&self, name: &str, password_hash: String) -> Result<(), StoreError> {
        let operation = self.inner.set_password(name, password_hash);
        self.time(StoreOp::set_password, operation).await
    }

    async fn remove_user(&self, name: &str) -> Result<(), StoreError> {
        self.time(StoreOp::remove_user, self.inner.remove_user(name))
            .await
    }

    async fn create_session(
        &self,
        token: TokenHash,
        user: &str,
        now: UnixTime,
    ) -> Result<SessionInfo, StoreError> {
        let operation = self.inner.create_session(token, user, now);
        self.time(StoreOp::create_session, operation).await
    }

    async fn rotate_session(
        &self,
        presented: TokenHash,
        next: TokenHash,
        now: UnixTime,
    ) -> Result<Rotation, StoreError> {
        let operation = self.inner.rotate_session(presented, next, now);
        self.time(StoreOp::rotate_session, operation).await
    }

    async fn revoke_session(&self, chain: Uuid, cause: EndCause) -> Result<bool, StoreError> {
        let operation = self.inner.revoke_session(chain, cause);
        self.time(StoreOp::revoke_session, operation).await
    }

    async fn revoke_user_sessions(&self, user: &str) -> Result<usize, StoreError> {
        let operation = self.inner.revoke_user_sessions(user);
        self.time(StoreOp::revoke_user_sessions, operation).await
    }

    async fn sessions(&self, user: &str, now: UnixTime) -> Result<Vec<SessionInfo>, StoreError> {
        self.time(StoreOp::sessions, self.inner.sessions(user, now))
            .await
    }

    async fn chains_alive(&self, chains: Vec<Uuid>) -> Result<Vec<Uuid>, StoreError> {
        self.time(StoreOp::chains_alive, self.inner.chains_alive(chains))
            .await
    }

    fn revocations(&self) -> Option<tokio::sync::broadcast::Receiver<super::Revocation>> {
        self.inner.revocations()
    }

    fn is_unreachable(&self) -> bool {
        self.inner.is_unreachable()
    }

    fn hearing_revocations(&self) -> impl Future<Output = ()> + Send {
        self.inner.hearing_revocations()
    }

    async fn note_visit(&self, ip: IpAddr, name: &str, now: UnixTime) -> Result<(), StoreError> {
        self.time(StoreOp::note_visit, self.inner.note_visit(ip, name, now))
            .await
    }
}
