//! Feeds arbitrary bytes to the frame decoder in chunks whose sizes come from
//! the input itself, and checks that the frames do not depend on the split.
#![no_main]

use bytes::{BufMut, BytesMut};
use echo_proto::FrameCodec;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

const MAX: usize = 4096;

fn decode(stream: &[u8], chunk: usize) -> (Vec<BytesMut>, bool) {
    let mut codec = FrameCodec::with_max_frame_length(MAX);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in stream.chunks(chunk.max(1)) {
        buf.put_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= MAX);
                    frames.push(frame);
                }
                Ok(None) => break,
                Err(_) => return (frames, true),
            }
        }
    }
    (frames, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let whole = decode(stream, stream.len());
    let split = decode(stream, usize::from(chunk));
    assert_eq!(whole, split);
});
