//! Fast-path replies over an in-memory duplex stream.

use std::{sync::Arc, time::Duration};

use echo_proto::{
    ClientMsg, ServerMsg,
    ext::{AsyncFrameRead, AsyncFrameWrite},
    fast::RawReply,
};
use futures_util::FutureExt;
use tokio::{
    io::{AsyncReadExt, DuplexStream, duplex},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::conn::session::{
    ending::Ending,
    wire::{OutputLimits, Wire},
};

const LONG: Duration = Duration::from_secs(60);

/// A wire whose client end takes at most `pipe` bytes before it is read.
fn pair(pipe: usize, max_output: usize) -> (Wire<DuplexStream>, DuplexStream) {
    let (server, client) = duplex(pipe);
    let limits = OutputLimits {
        write_timeout: LONG,
        max_output,
    };
    let wire = Wire::new(
        server,
        CancellationToken::new(),
        1 << 20,
        limits,
        Arc::default(),
    );
    (wire, client)
}

/// A reply echoing `text` (a JSON string, quotes and all).
fn reply(re: u64, text: &str) -> RawReply<'_> {
    RawReply {
        re,
        text,
        last: true,
    }
}

fn encoded(re: u64, text: &str) -> Vec<u8> {
    let frame = reply(re, text).frame(usize::MAX).unwrap();
    frame.parts().concat()
}

#[tokio::test]
async fn a_reply_leaves_at_once_when_nothing_else_waits() {
    let (mut wire, mut client) = pair(1 << 20, 1 << 20);
    wire.reply(reply(3, "\"hello\"")).await.unwrap();
    // No flush: the frame is already on the stream, and counted.
    assert!(wire.framed.write_buffer().is_empty());
    let expected = encoded(3, "\"hello\"");
    let mut got = vec![0; expected.len()];
    let read = client.read_exact(&mut got).now_or_never();
    assert!(matches!(read, Some(Ok(_))), "the reply was not written");
    assert_eq!(got, expected);
    assert_eq!(wire.framed.get_ref().written(), expected.len() as u64);
}

#[tokio::test]
async fn what_the_stream_does_not_take_leaves_with_the_next_flush() {
    let (mut wire, mut client) = pair(1000, 1 << 20);
    let text = format!("\"{}\"", "x".repeat(20_000));
    wire.reply(reply(4, &text)).await.unwrap();
    let held = wire.framed.write_buffer().len();
    assert_eq!(held, encoded(4, &text).len() - 1000);
    let flushed = tokio::spawn(async move {
        wire.flush().await.unwrap();
        wire
    });
    let got: ServerMsg = client.recv_msg().await.unwrap().unwrap();
    let _wire = flushed.await.unwrap();
    let want = ServerMsg::Reply {
        re: 4,
        text: "x".repeat(20_000),
        last: true,
    };
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_reply_behind_queued_output_or_before_buffered_input_is_queued() {
    let (mut wire, mut client) = pair(1 << 20, 1 << 20);
    wire.send(ServerMsg::AskName {}).await.unwrap();
    wire.reply(reply(1, "\"first\"")).await.unwrap();
    // Two requests at once: the answer to the first waits for the second's.
    let name = ClientMsg::Name { name: "ann".into() };
    client.send_msg(&name).await.unwrap();
    client.send_msg(&name).await.unwrap();
    wire.next_frame(Instant::now() + LONG).await.unwrap();
    assert!(!wire.framed.read_buffer().is_empty(), "both requests read");
    wire.reply(reply(2, "\"second\"")).await.unwrap();
    let queued = wire.framed.write_buffer().len();
    assert!(queued > 0, "the reply did not wait for the others");
    wire.flush().await.unwrap();
    assert_eq!(
        client.recv_msg::<ServerMsg>().await.unwrap(),
        Some(ServerMsg::AskName {})
    );
    for (re, text) in [(1, "first"), (2, "second")] {
        let got: ServerMsg = client.recv_msg().await.unwrap().unwrap();
        let text = text.to_owned();
        assert_eq!(
            got,
            ServerMsg::Reply {
                re,
                text,
                last: true
            }
        );
    }
}

#[tokio::test]
async fn a_reply_past_the_output_limit_ends_the_connection() {
    let (mut wire, _client) = pair(1000, 5000);
    let text = format!("\"{}\"", "y".repeat(10_000));
    let ending = wire.reply(reply(5, &text)).await.unwrap_err();
    assert!(
        matches!(
            ending,
            Ending::OutputOverLimit {
                max_output: 5000,
                ..
            }
        ),
        "{ending}"
    );
}

#[tokio::test]
async fn a_reply_over_the_frame_cap_is_refused_with_an_error() {
    let (mut wire, mut client) = pair(1 << 20, 1 << 20);
    let text = format!("\"{}\"", "z".repeat(echo_proto::MAX_FRAME_LENGTH));
    wire.reply(reply(6, &text)).await.unwrap();
    wire.flush().await.unwrap();
    let got: ServerMsg = client.recv_msg().await.unwrap().unwrap();
    assert!(
        matches!(got, ServerMsg::Error { fatal: false, .. }),
        "{got:?}"
    );
}
