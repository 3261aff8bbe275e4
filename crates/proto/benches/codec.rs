//! Codec micro-benchmark: encode and decode throughput of the proto crate.
//!
//!   cargo bench -p echo-proto --bench codec
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use echo_proto::{ClientMsg, FrameCodec, Json, MAX_FRAME_LENGTH, ServerMsg, decode_message};
use tokio_util::codec::{Decoder, Encoder};

fn frames(count: usize, payload: usize) -> BytesMut {
    let mut codec = FrameCodec::with_max_frame_length(MAX_FRAME_LENGTH);
    let mut buf = BytesMut::new();
    for id in 0..count as u64 {
        let msg = ClientMsg::Say {
            id,
            text: "x".repeat(payload),
        };
        codec.encode(Json(&msg), &mut buf).unwrap();
    }
    buf
}

fn codec(c: &mut Criterion) {
    for payload in [64, 16 * 1024] {
        let mut group = c.benchmark_group(format!("payload {payload} B"));
        let stream = frames(100, payload);
        group.throughput(Throughput::Bytes(stream.len() as u64));
        group.bench_function("decode 100 frames", |b| {
            b.iter(|| {
                let mut codec = FrameCodec::with_max_frame_length(MAX_FRAME_LENGTH);
                let mut buf = stream.clone();
                let mut n = 0;
                while let Some(frame) = codec.decode(&mut buf).unwrap() {
                    n += black_box(frame).len();
                }
                n
            });
        });
        group.bench_function("decode 100 frames and parse say", |b| {
            b.iter(|| {
                let mut codec = FrameCodec::with_max_frame_length(MAX_FRAME_LENGTH);
                let mut buf = stream.clone();
                while let Some(frame) = codec.decode(&mut buf).unwrap() {
                    black_box(decode_message::<ClientMsg>(&frame).unwrap());
                }
            });
        });
        let reply = ServerMsg::Reply {
            re: 7,
            text: "x".repeat(payload),
            last: true,
        };
        group.bench_function("encode 100 replies", |b| {
            let mut codec = FrameCodec::with_max_frame_length(MAX_FRAME_LENGTH);
            let mut buf = BytesMut::with_capacity(stream.len() * 2);
            b.iter(|| {
                buf.clear();
                for _ in 0..100 {
                    codec.encode(Json(black_box(&reply)), &mut buf).unwrap();
                }
            });
        });
        group.finish();
    }
}

criterion_group!(benches, codec);
criterion_main!(benches);
