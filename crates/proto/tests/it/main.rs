//! The proto crate's integration tests, one test binary: one module per
//! subject (the codec, the extension traits, the fast paths, the messages,
//! property tests, the protocol document's examples).
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod codec;
mod ext;
mod fast;
mod messages;
mod props;
mod protocol_doc;
