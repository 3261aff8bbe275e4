//! What a connection holds while it waits for its next frame (#30): no
//! read buffer and no write buffer, and nothing of a frame is lost when
//! the read buffer is given back between reads.

use std::{sync::Arc, time::Duration};

use echo_proto::{
    ClientMsg, Mode, ServerMsg,
    ext::{AsyncFrameRead, AsyncFrameWrite},
};
use futures_util::FutureExt;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use super::{OutputLimits, READ_BUFFER, Wire};
use crate::conn::session::hello;

const LONG: Duration = Duration::from_secs(60);

fn pair(shutdown: &CancellationToken) -> (Wire<DuplexStream>, DuplexStream) {
    let (server, client) = duplex(1 << 20);
    let limits = OutputLimits {
        write_timeout: LONG,
        max_output: 1 << 20,
    };
    let wire = Wire::new(server, shutdown.clone(), 1 << 20, limits, Arc::default());
    (wire, client)
}

fn name(name: &str) -> ClientMsg {
    ClientMsg::Name { name: name.into() }
}

#[tokio::test]
async fn a_connection_waiting_for_its_next_frame_holds_no_buffers() {
    let shutdown = CancellationToken::new();
    let (mut wire, mut client) = pair(&shutdown);
    wire.send(hello(Mode::Ident)).await.unwrap();
    client.send_msg(&name("ann")).await.unwrap();
    assert_eq!(wire.recv(Instant::now() + LONG).await.unwrap(), name("ann"));
    let (read, write) = wire.buffers_held();
    assert!(read > 0 && write > 0, "read {read}, write {write}");
    // The next wait flushes `hello`, finds nothing to read, and gives both
    // buffers up before it sleeps.
    assert!(wire.recv(Instant::now() + LONG).now_or_never().is_none());
    assert_eq!(wire.buffers_held(), (0, 0));
    assert!(matches!(
        client.recv_msg().await.unwrap(),
        Some(ServerMsg::Hello { .. })
    ));
    // A frame that comes later is read into a buffer taken for it.
    client.send_msg(&name("bob")).await.unwrap();
    assert_eq!(wire.recv(Instant::now() + LONG).await.unwrap(), name("bob"));
}

#[tokio::test]
async fn a_frame_split_across_reads_keeps_its_buffer_until_it_is_whole() {
    let shutdown = CancellationToken::new();
    let (mut wire, mut client) = pair(&shutdown);
    let mut frame = Vec::new();
    frame.send_msg(&name("carol")).await.unwrap();
    let (head, tail) = frame.split_at(frame.len() / 2);
    client.write_all(head).await.unwrap();
    assert!(wire.recv(Instant::now() + LONG).now_or_never().is_none());
    assert!(wire.buffers_held().0 > 0, "half a frame is held");
    client.write_all(tail).await.unwrap();
    assert_eq!(
        wire.recv(Instant::now() + LONG).await.unwrap(),
        name("carol")
    );
}

#[tokio::test]
async fn a_buffer_grown_for_a_large_frame_is_let_go_once_the_frame_is_read() {
    let shutdown = CancellationToken::new();
    let (mut wire, mut client) = pair(&shutdown);
    let large = "x".repeat(4 * READ_BUFFER);
    client.send_msg(&name(&large)).await.unwrap();
    assert_eq!(
        wire.recv(Instant::now() + LONG).await.unwrap(),
        name(&large)
    );
    assert!(wire.recv(Instant::now() + LONG).now_or_never().is_none());
    assert_eq!(wire.buffers_held().0, 0);
    // The next read takes a buffer of the usual size, not the grown one.
    client.send_msg(&name("dan")).await.unwrap();
    assert_eq!(wire.recv(Instant::now() + LONG).await.unwrap(), name("dan"));
    assert!(wire.buffers_held().0 <= READ_BUFFER);
}

#[tokio::test]
async fn replies_queued_into_the_emptied_write_buffer_wait_for_the_flush() {
    let shutdown = CancellationToken::new();
    let (mut wire, mut client) = pair(&shutdown);
    wire.send(hello(Mode::Ident)).await.unwrap();
    assert!(wire.recv(Instant::now() + LONG).now_or_never().is_none());
    assert!(matches!(
        client.recv_msg().await.unwrap(),
        Some(ServerMsg::Hello { .. })
    ));
    assert_eq!(wire.buffers_held().1, 0);
    // The write buffer starts from nothing again, and the replies still
    // wait in it, to leave together in one write before the next wait.
    wire.send_replies(7, ["a", "b", "c"]).await.unwrap();
    let mut byte = [0u8; 1];
    assert!(
        client.read(&mut byte).now_or_never().is_none(),
        "written before the wait"
    );
    assert!(wire.recv(Instant::now() + LONG).now_or_never().is_none());
    for _ in 0..3 {
        assert!(matches!(
            client.recv_msg().await.unwrap(),
            Some(ServerMsg::Reply { re: 7, .. })
        ));
    }
}
