//! Text that PostgreSQL refuses to hold (a NUL character in any text
//! parameter): answered as the file store answers it, never as an internal
//! error. Issue #24, row 9.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use echo_proto::{
    ClientMsg, ErrorCode, ServerMsg,
    ext::{BlockingFrameRead, BlockingFrameWrite},
};
use echo_server::{
    store::ledger::{Attempt, AttemptLedger},
    store::{Lifetimes, PgStore, PgUrl, StoreError, TokenHash, UserRecord, UserStore},
};
use echo_testkit::{PASSWORD, login, register};
use echo_testkit::{
    cluster::{Client, Cluster, UNLIMITED},
    postgres::Postgres,
};

const NUL_NAME: &str = "ann\0x";

#[tokio::test]
async fn a_nul_in_any_text_is_nothing_found_or_refused_never_a_database_error() {
    let Some(pg) = Postgres::start() else { return };
    let url = PgUrl::parse(&pg.url(), None).unwrap();
    let store = PgStore::open(&url, Lifetimes::default(), 2).await.unwrap();
    let ledger = store.ledger();
    // Lookups: nobody has such a name.
    assert!(store.user(NUL_NAME).await.unwrap().is_none());
    assert!(store.sessions(NUL_NAME, 10).await.unwrap().is_empty());
    assert_eq!(store.revoke_user_sessions(NUL_NAME).await.unwrap(), 0);
    let no_such = |result: Result<_, StoreError>| {
        assert!(
            matches!(result, Err(StoreError::NoSuchUser(_))),
            "{result:?}"
        );
    };
    no_such(store.remove_user(NUL_NAME).await.map(drop));
    no_such(store.set_password(NUL_NAME, "x".into()).await.map(drop));
    no_such(
        store
            .create_session(TokenHash::of("t"), NUL_NAME, 10)
            .await
            .map(drop),
    );
    let ip: IpAddr = "192.0.2.1".parse().unwrap();
    for familiar in [false, true] {
        let attempt = || Attempt::new(NUL_NAME, ip, familiar);
        assert_eq!(ledger.check_account(attempt(), 10).await.unwrap(), Ok(()));
        ledger.record_failure(attempt(), 10).await.unwrap();
        ledger.record_success(attempt()).await.unwrap();
    }
    assert_eq!(store.familiar_since(NUL_NAME, ip, 10).await.unwrap(), None);
    // Writes: refused as text the store cannot hold.
    let record = UserRecord {
        name: NUL_NAME.into(),
        password_hash: "h".into(),
        created: 1,
    };
    let refused = |result: Result<(), StoreError>| {
        assert!(
            matches!(result, Err(StoreError::InvalidText(_))),
            "{result:?}"
        );
    };
    refused(store.create_user(record.clone()).await);
    refused(store.register(record, TokenHash::of("u")).await.map(drop));
    refused(store.remember_identity(ip, NUL_NAME, 10).await);
    refused(store.note_visit(ip, NUL_NAME, 10).await);
    refused(store.note_familiar(NUL_NAME, ip, 10).await);
    // The store is fine afterwards.
    assert!(!store.is_unreachable());
    assert!(store.users().await.unwrap().is_empty());
}

#[test]
fn a_nul_in_a_name_is_answered_as_the_file_store_does_without_an_error_logged() {
    let Some(pg) = Postgres::start() else { return };
    let cluster = Cluster::start(&pg, 1, UNLIMITED);
    for _ in 0..3 {
        let answer = Client::connect(cluster.addr(0)).ask(&login(NUL_NAME, "some password 1"));
        answer.assert_refused(ErrorCode::InvalidCredentials);
    }
    let answer = Client::connect(cluster.addr(0)).ask(&register(NUL_NAME, PASSWORD));
    answer.assert_refused(ErrorCode::InvalidName);
    // Identification mode: the name is refused and asked for again.
    let dir = tempfile::tempdir().unwrap();
    let ident = echo_testkit::ServerProcess::start(
        dir.path(),
        &["--port", "0", "--mode", "ident", "--store", &pg.url()],
        &[],
    );
    let mut stream = echo_testkit::connect_blocking(ident.addr());
    assert!(matches!(
        stream.recv_msg::<ServerMsg>().unwrap(),
        Some(ServerMsg::AskName { .. })
    ));
    stream
        .send_msg(&ClientMsg::Name {
            name: NUL_NAME.into(),
        })
        .unwrap();
    match stream.recv_msg::<ServerMsg>().unwrap() {
        Some(ServerMsg::Error { code, .. }) => assert_eq!(code, ErrorCode::InvalidName),
        other => panic!("expected invalid_name, got {other:?}"),
    }
    for dir in [cluster.servers[0].0.path(), dir.path()] {
        let logs = echo_testkit::read_logs(dir);
        assert!(!logs.contains("ERROR"), "an error was logged:\n{logs}");
    }
}
