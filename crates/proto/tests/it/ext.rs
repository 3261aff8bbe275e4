//! The stream extension traits over real and in-memory streams.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::{
    net::{TcpListener as StdListener, TcpStream as StdStream},
    thread,
};

use echo_proto::{
    ClientMsg, ProtoError, ServerMsg,
    ext::{AsyncFrameRead, AsyncFrameWrite, BlockingFrameRead, BlockingFrameWrite},
};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
};

#[tokio::test]
async fn tokio_tcp_stream_sends_and_receives_text_and_messages() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let text = stream.recv_text().await.unwrap().unwrap();
        stream.send_text(&text.to_uppercase()).await.unwrap();
        let msg: ClientMsg = stream.recv_msg().await.unwrap().unwrap();
        let ClientMsg::Say { id, text } = msg else {
            panic!("expected say")
        };
        stream
            .send_msg(&ServerMsg::Reply {
                re: id,
                text,
                last: true,
            })
            .await
            .unwrap();
    });
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.send_text("ping").await.unwrap();
    assert_eq!(client.recv_text().await.unwrap().unwrap(), "PING");
    client
        .send_msg(&ClientMsg::Say {
            id: 9,
            text: "hi".into(),
        })
        .await
        .unwrap();
    let reply: ServerMsg = client.recv_msg().await.unwrap().unwrap();
    assert_eq!(
        reply,
        ServerMsg::Reply {
            re: 9,
            text: "hi".into(),
            last: true
        }
    );
    server.await.unwrap();
}

#[tokio::test]
async fn split_halves_gain_the_methods_too() {
    let (a, b) = tokio::io::duplex(64);
    let (mut a_read, _a_write) = tokio::io::split(a);
    let (_b_read, mut b_write) = tokio::io::split(b);
    b_write.send_text("over the half").await.unwrap();
    assert_eq!(a_read.recv_text().await.unwrap().unwrap(), "over the half");
}

#[tokio::test]
async fn clean_end_of_stream_is_none() {
    let (mut a, b) = tokio::io::duplex(64);
    drop(b);
    assert!(a.recv_frame().await.unwrap().is_none());
}

#[tokio::test]
async fn end_of_stream_inside_a_header_is_an_error() {
    let (mut a, mut b) = tokio::io::duplex(64);
    b.write_all(&[0, 0]).await.unwrap();
    drop(b);
    let err = a.recv_frame().await.unwrap_err();
    assert!(matches!(err, ProtoError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof));
}

#[tokio::test]
async fn end_of_stream_inside_a_payload_is_an_error() {
    let (mut a, mut b) = tokio::io::duplex(64);
    b.write_all(&[0, 0, 0, 5, b'a']).await.unwrap();
    drop(b);
    assert!(matches!(
        a.recv_frame().await.unwrap_err(),
        ProtoError::Io(_)
    ));
}

#[tokio::test]
async fn oversized_header_is_refused_before_reading_the_payload() {
    let (mut a, mut b) = tokio::io::duplex(64);
    b.write_all(&1000u32.to_be_bytes()).await.unwrap();
    let err = a.recv_frame_max(999).await.unwrap_err();
    assert!(matches!(
        err,
        ProtoError::FrameTooLarge {
            len: 1000,
            max: 999
        }
    ));
}

#[tokio::test]
async fn invalid_utf8_text_is_an_error() {
    let (mut a, mut b) = tokio::io::duplex(64);
    b.send_frame(&[0xc3, 0x28]).await.unwrap();
    assert!(matches!(
        a.recv_text().await.unwrap_err(),
        ProtoError::InvalidUtf8(_)
    ));
}

#[test]
fn std_tcp_stream_has_the_blocking_twin() {
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        while let Some(text) = stream.recv_text().unwrap() {
            stream.send_text(&format!("echo: {text}")).unwrap();
        }
    });
    let mut client = StdStream::connect(addr).unwrap();
    for word in ["one", "two", ""] {
        client.send_text(word).unwrap();
        assert_eq!(
            client.recv_text().unwrap().unwrap(),
            format!("echo: {word}")
        );
    }
    client.send_msg(&ClientMsg::Logout {}).unwrap();
    assert_eq!(
        client.recv_text().unwrap().unwrap(),
        r#"echo: {"type":"logout"}"#
    );
    client.shutdown(std::net::Shutdown::Write).unwrap();
    server.join().unwrap();
}

#[test]
fn blocking_reader_reports_a_truncated_frame() {
    let mut bytes: &[u8] = &[0, 0, 0, 9, b'x'];
    assert!(matches!(
        BlockingFrameRead::recv_frame(&mut bytes).unwrap_err(),
        ProtoError::Io(_)
    ));
}

#[test]
fn blocking_writer_and_reader_agree_on_the_header() {
    let mut out = Vec::new();
    BlockingFrameWrite::send_text(&mut out, "abc").unwrap();
    assert_eq!(out, [0, 0, 0, 3, b'a', b'b', b'c']);
    let mut input: &[u8] = &out;
    assert_eq!(
        BlockingFrameRead::recv_text(&mut input).unwrap().unwrap(),
        "abc"
    );
}
