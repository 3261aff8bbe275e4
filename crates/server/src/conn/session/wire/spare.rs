//! Read buffers lent for one read at a time. A connection takes one when
//! it reads and gives it back as soon as a read finds nothing and the
//! buffer holds no part of a frame, so a connection waiting for its next
//! frame holds none (#30: the read buffer was the largest part of an idle
//! session). A few given-back buffers are kept per worker thread, so
//! taking one is a pop from a short list, not an allocation and a first
//! touch of fresh pages.

use std::cell::RefCell;

use bytes::BytesMut;

/// Buffers kept for reuse per thread: enough for the connections one
/// worker serves in a row; the rest go back to the allocator.
const KEPT_PER_THREAD: usize = 8;

thread_local! {
    /// This thread's spare read buffers, each empty with its full capacity.
    static SPARE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// A read buffer of `capacity` bytes: a spare one, or a new one.
pub(super) fn take(capacity: usize) -> BytesMut {
    SPARE
        .with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| BytesMut::with_capacity(capacity))
}

/// Gives back an emptied read buffer. It is kept for reuse when it is the
/// usual size and no frame still shares its memory; a buffer grown for a
/// large frame, or still shared, is dropped (freed once the frame is).
pub(super) fn give_back(mut buffer: BytesMut, capacity: usize) {
    buffer.clear();
    if buffer.capacity() > capacity || !buffer.try_reclaim(capacity) {
        return;
    }
    SPARE.with_borrow_mut(|spare| {
        if spare.len() < KEPT_PER_THREAD {
            spare.push(buffer);
        }
    });
}

/// How many spare buffers this thread keeps now (for the tests).
#[cfg(test)]
pub(super) fn kept() -> usize {
    SPARE.with_borrow(Vec::len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: usize = 64 * 1024;

    #[test]
    fn an_emptied_buffer_is_lent_again_without_allocating() {
        let mut buffer = take(SIZE);
        buffer.extend_from_slice(b"a frame");
        let at = buffer.as_ptr();
        let before = kept();
        give_back(buffer, SIZE);
        assert_eq!(kept(), before + 1);
        let again = take(SIZE);
        assert_eq!(
            (again.as_ptr(), again.capacity(), again.len()),
            (at, SIZE, 0)
        );
    }

    #[test]
    fn a_buffer_a_frame_still_shares_or_grown_past_the_size_is_not_kept() {
        let mut shared = BytesMut::with_capacity(SIZE);
        shared.extend_from_slice(b"payload");
        let frame = shared.split_to(7);
        let before = kept();
        give_back(shared, SIZE);
        assert_eq!(kept(), before, "still shared with the frame");
        drop(frame);
        give_back(BytesMut::with_capacity(4 * SIZE), SIZE);
        assert_eq!(kept(), before, "grown for a large frame");
    }
}
