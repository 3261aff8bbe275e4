//! The wire over an in-memory duplex stream: no sockets.

use std::{sync::Arc, time::Duration};

use echo_proto::{
    ByeReason, ClientMsg, ErrorCode, ServerMsg,
    ext::{AsyncFrameRead, AsyncFrameWrite},
};
use tokio::{
    io::{AsyncWriteExt, DuplexStream, duplex},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::{Ending, OutputLimits, Wire};
use crate::{
    live::sessions::{StopReason, Stopper},
    store::EndCause,
};

const LONG: Duration = Duration::from_secs(60);

fn limits(write_timeout: Duration) -> OutputLimits {
    OutputLimits {
        write_timeout,
        max_output: 1 << 20,
    }
}

fn pair(shutdown: &CancellationToken) -> (Wire<DuplexStream>, DuplexStream) {
    let (server, client) = duplex(1 << 20);
    (
        Wire::new(server, shutdown.clone(), 4096, limits(LONG), Arc::default()),
        client,
    )
}

async fn next(client: &mut DuplexStream) -> ServerMsg {
    client.recv_msg().await.unwrap().unwrap()
}

/// Queues more replies than the pipe holds, for a client that reads none:
/// how that write ended.
async fn replies_nobody_reads(wire: &mut Wire<DuplexStream>) -> Ending {
    wire.send_replies(1, (0..10_000).map(|i| format!("reply {i}")))
        .await
        .unwrap_err()
}

#[tokio::test]
async fn a_bad_payload_gets_an_error_and_the_wait_goes_on() {
    let shutdown = CancellationToken::new();
    let (mut wire, mut client) = pair(&shutdown);
    client.send_text("{not json").await.unwrap();
    client
        .send_msg(&ClientMsg::Name { name: "ann".into() })
        .await
        .unwrap();
    let msg = wire.recv(Instant::now() + LONG).await.unwrap();
    assert_eq!(msg, ClientMsg::Name { name: "ann".into() });
    wire.flush().await.unwrap();
    assert!(matches!(
        next(&mut client).await,
        ServerMsg::Error {
            code: ErrorCode::BadJson,
            fatal: false,
            ..
        }
    ));
}

#[tokio::test]
async fn replies_queued_between_reads_leave_together_before_the_next_wait() {
    let shutdown = CancellationToken::new();
    let (mut wire, mut client) = pair(&shutdown);
    wire.send_replies(7, ["a".to_owned(), "b".to_owned(), "c".to_owned()])
        .await
        .unwrap();
    // Nothing is written until the wire waits for input.
    let waited = tokio::spawn(async move {
        let ending = wire.next_frame(Instant::now() + LONG).await.unwrap_err();
        (wire, ending)
    });
    let mut got = Vec::new();
    for _ in 0..3 {
        match next(&mut client).await {
            ServerMsg::Reply { re: 7, text, last } => got.push((text, last)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        got,
        [
            ("a".to_owned(), false),
            ("b".to_owned(), false),
            ("c".to_owned(), true)
        ]
    );
    client.shutdown().await.unwrap();
    drop(client);
    let (_, ending) = waited.await.unwrap();
    assert!(matches!(ending, Ending::ClientLeft), "{ending}");
}

#[tokio::test(start_paused = true)]
async fn a_wait_ends_at_the_deadline() {
    let shutdown = CancellationToken::new();
    let (mut wire, _client) = pair(&shutdown);
    let started = Instant::now();
    let ending = wire
        .next_frame(started + Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(matches!(ending, Ending::Timeout));
    assert_eq!(started.elapsed(), Duration::from_secs(30));
}

#[tokio::test]
async fn a_wait_ends_at_shutdown() {
    let shutdown = CancellationToken::new();
    let (mut wire, _client) = pair(&shutdown);
    shutdown.cancel();
    let ending = wire.next_frame(Instant::now() + LONG).await.unwrap_err();
    assert!(matches!(ending, Ending::Shutdown));
}

#[tokio::test]
async fn the_frame_limit_is_raised_once_the_client_is_trusted() {
    let shutdown = CancellationToken::new();
    let (mut wire, mut client) = pair(&shutdown);
    wire.set_max_frame(8192);
    client.send_text(&"x".repeat(5000)).await.unwrap();
    assert_eq!(
        wire.next_frame(Instant::now() + LONG).await.unwrap().len(),
        5000
    );
}

#[tokio::test]
async fn an_oversized_frame_is_a_violation_that_names_its_code() {
    let shutdown = CancellationToken::new();
    let (mut wire, mut client) = pair(&shutdown);
    client.send_text(&"x".repeat(5000)).await.unwrap();
    let ending = wire.next_frame(Instant::now() + LONG).await.unwrap_err();
    let Some(ServerMsg::Error { code, fatal, .. }) = ending.farewell() else {
        panic!("{ending}")
    };
    assert_eq!((code, fatal), (ErrorCode::FrameTooLarge, true));
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_dropped_after_the_write_timeout() {
    let shutdown = CancellationToken::new();
    let (server, _client) = duplex(1024);
    let mut wire = Wire::new(
        server,
        shutdown,
        4096,
        limits(Duration::from_secs(10)),
        Arc::default(),
    );
    let started = Instant::now();
    let ending = replies_nobody_reads(&mut wire).await;
    assert!(matches!(ending, Ending::WriteTimedOut), "{ending}");
    assert_eq!(started.elapsed(), Duration::from_secs(10));
}

#[tokio::test]
async fn the_last_frame_goes_out_with_what_was_queued() {
    let shutdown = CancellationToken::new();
    let (mut wire, mut client) = pair(&shutdown);
    wire.send(ServerMsg::AskName {}).await.unwrap();
    let bye = ServerMsg::bye(ByeReason::Timeout);
    let _stream = wire.finish(Some(bye.clone()), true).await;
    assert_eq!(next(&mut client).await, ServerMsg::AskName {});
    assert_eq!(next(&mut client).await, bye);
}

#[tokio::test]
async fn output_past_the_limit_ends_the_connection() {
    let shutdown = CancellationToken::new();
    let (server, _client) = duplex(1 << 20);
    let limits = OutputLimits {
        write_timeout: LONG,
        max_output: 100_000,
    };
    let mut wire = Wire::new(server, shutdown, 4096, limits, Arc::default());
    wire.send_replies(1, ["x".repeat(50_000)]).await.unwrap();
    let ending = wire
        .send_replies(2, ["y".repeat(100_000)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            ending,
            Ending::OutputOverLimit {
                max_output: 100_000,
                ..
            }
        ),
        "{ending}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_that_does_not_read_holds_little_output() {
    let shutdown = CancellationToken::new();
    let (server, _client) = duplex(64 * 1024);
    let mut wire = Wire::new(
        server,
        shutdown,
        4096,
        limits(Duration::from_secs(10)),
        Arc::default(),
    );
    let text = "z".repeat(65_000);
    // 100 replies of 65,000 bytes are made one at a time: the write waits
    // for the client long before they are all made.
    let ending = wire
        .send_replies(1, std::iter::repeat_n(text, 100))
        .await
        .unwrap_err();
    assert!(matches!(ending, Ending::WriteTimedOut), "{ending}");
    let held = wire.framed.write_buffer().len();
    assert!(
        held < 200_000,
        "{held} bytes held for a client that does not read"
    );
}

#[tokio::test]
async fn the_bytes_and_replies_reach_the_metrics_before_the_wire_waits() {
    let shutdown = CancellationToken::new();
    let (server, mut client) = duplex(1 << 20);
    let metrics = Arc::new(crate::ops::metrics::Metrics::new());
    let mut wire = Wire::new(server, shutdown, 4096, limits(LONG), Arc::clone(&metrics));
    client.send_text("{\"type\":\"logout\"}").await.unwrap();
    wire.next_frame(Instant::now() + LONG).await.unwrap();
    wire.send_replies(1, ["a", "b"]).await.unwrap();
    assert_eq!(
        metrics.replies.get(),
        0,
        "counted per connection, not per reply"
    );
    let waiting = tokio::spawn(async move {
        let _ = wire.next_frame(Instant::now() + LONG).await;
        wire
    });
    let first = client.recv_frame().await.unwrap().unwrap();
    let second = client.recv_frame().await.unwrap().unwrap();
    client.shutdown().await.unwrap();
    drop(client);
    let _wire = waiting.await.unwrap();
    assert_eq!(metrics.replies.get(), 2);
    assert_eq!(metrics.bytes_received.get(), 4 + 17);
    let sent = (first.len() + second.len() + 8) as u64;
    assert_eq!(metrics.bytes_sent.get(), sent);
}

/// A wire stopped by a stopper within its shutdown, as a listed session's.
fn stoppable(pipe: usize) -> (Wire<DuplexStream>, DuplexStream, CancellationToken, Stopper) {
    let shutdown = CancellationToken::new();
    let (server, client) = duplex(pipe);
    let mut wire = Wire::new(server, shutdown.clone(), 4096, limits(LONG), Arc::default());
    let stopper = Stopper::within(&shutdown);
    wire.end_when(stopper.clone());
    (wire, client, shutdown, stopper)
}

#[tokio::test(start_paused = true)]
async fn a_kick_ends_a_write_that_waits_for_the_client() {
    let (mut wire, _client, _shutdown, stopper) = stoppable(1024);
    let kick = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        stopper.stop(StopReason::Kicked);
    });
    let started = Instant::now();
    let ending = replies_nobody_reads(&mut wire).await;
    assert!(matches!(ending, Ending::Kicked), "{ending}");
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(1),
        "not the write timeout"
    );
    kick.await.unwrap();
}

#[tokio::test]
async fn a_stopped_wait_says_why() {
    let (mut wire, _client, _shutdown, stopper) = stoppable(1024);
    stopper.stop(StopReason::Revoked(Some(EndCause::Operator)));
    let ending = wire.next_frame(Instant::now() + LONG).await.unwrap_err();
    assert!(
        matches!(ending, Ending::Revoked(Some(EndCause::Operator))),
        "{ending}"
    );
    let (mut wire, _client, shutdown, _stopper) = stoppable(1024);
    shutdown.cancel();
    let ending = wire.next_frame(Instant::now() + LONG).await.unwrap_err();
    assert!(matches!(ending, Ending::Shutdown), "{ending}");
}

#[tokio::test(start_paused = true)]
async fn a_frame_sent_while_the_flush_waits_is_read() {
    // The flush before the wait has to wait for the client, which meanwhile
    // sends a frame: the wakeup that frame gave was taken by the flush, so
    // the wait must read again instead of trusting the read before it.
    let (mut wire, mut client) = {
        let (server, client) = duplex(64);
        let wire = Wire::new(
            server,
            CancellationToken::new(),
            4096,
            limits(LONG),
            Arc::default(),
        );
        (wire, client)
    };
    wire.send_replies(1, ["x".repeat(4000)]).await.unwrap();
    let peer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        client
            .send_text("{\"type\":\"say\",\"id\":2,\"text\":\"hi\"}")
            .await
            .unwrap();
        let reply = next(&mut client).await;
        (client, reply)
    });
    let started = Instant::now();
    let frame = wire.next_frame(started + Duration::from_secs(5)).await;
    assert_eq!(
        &frame.unwrap()[..],
        b"{\"type\":\"say\",\"id\":2,\"text\":\"hi\"}"
    );
    // At once, not when the deadline woke the wait up.
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    let (_client, reply) = peer.await.unwrap();
    assert!(matches!(reply, ServerMsg::Reply { re: 1, .. }), "{reply:?}");
}
