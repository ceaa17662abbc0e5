//! Each worker's spare read buffers. A connection that receives through the buffer ring gives
//! its empty read buffer up while it waits and takes one as large when bytes arrive
//! (`ring_receive::read_from_ring`): with a message in flight on each connection, that was a
//! free and an allocation of 4–16 KiB per message, too large for the allocator's thread cache,
//! and the worker's heap was trimmed and grown again hundreds of times a second (a `madvise`
//! and the page faults after it). A few spare buffers kept here absorb that; what does not fit
//! goes back to the allocator, so the spares never hold more than [`MAX_SPARE_BYTES`].

use std::cell::RefCell;

/// At most this many bytes of spare buffers per worker.
pub const MAX_SPARE_BYTES: usize = 2 << 20;
/// At most this many spare buffers per worker (each taken by a scan).
const MAX_SPARE_BUFFERS: usize = 128;
/// Buffers smaller than this go back to the allocator, whose thread cache serves them well.
const MIN_SPARE: usize = 1024;

#[derive(Default)]
struct Spares {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

thread_local! {
    static SPARES: RefCell<Spares> = RefCell::default();
}

/// Keeps `buf`'s memory for the next [`take`] of this worker, if there is room (else frees it).
pub fn give(mut buf: Vec<u8>) {
    let capacity = buf.capacity();
    if capacity < MIN_SPARE {
        return;
    }
    buf.clear();
    SPARES.with_borrow_mut(|spares| {
        if spares.buffers.len() < MAX_SPARE_BUFFERS && spares.bytes + capacity <= MAX_SPARE_BYTES {
            spares.bytes += capacity;
            spares.buffers.push(buf);
        }
    });
}

/// An empty buffer of at least `capacity` bytes (and at most twice that): the spare given
/// last that fits, or a new one.
pub fn take(capacity: usize) -> Vec<u8> {
    if capacity >= MIN_SPARE {
        let spare = SPARES.with_borrow_mut(|spares| {
            let fits = |buf: &Vec<u8>| (capacity..=2 * capacity).contains(&buf.capacity());
            let at = spares.buffers.iter().rposition(fits)?;
            let buf = spares.buffers.swap_remove(at);
            spares.bytes -= buf.capacity();
            Some(buf)
        });
        if let Some(buf) = spare {
            return buf;
        }
    }
    Vec::with_capacity(capacity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_comes_back_for_a_take_it_fits() {
        let buf = Vec::<u8>::with_capacity(16 * 1024);
        let at = buf.as_ptr();
        give(buf);
        // Too large for a take of 4 KiB (more than twice that): a new buffer.
        let small = take(4096);
        assert_ne!(small.as_ptr(), at);
        let again = take(16 * 1024);
        assert_eq!((again.as_ptr(), again.len()), (at, 0));
        assert!(again.capacity() >= 16 * 1024);
        // Nothing spare is left.
        let new = take(16 * 1024);
        assert_ne!(new.as_ptr(), at);
    }

    #[test]
    fn small_buffers_and_buffers_past_the_bound_are_freed() {
        give(Vec::with_capacity(256));
        assert_eq!(SPARES.with_borrow(|s| s.buffers.len()), 0);
        for _ in 0..MAX_SPARE_BUFFERS + 10 {
            give(Vec::with_capacity(64 * 1024));
        }
        let (count, bytes) = SPARES.with_borrow(|s| (s.buffers.len(), s.bytes));
        assert!(bytes <= MAX_SPARE_BYTES && count <= MAX_SPARE_BUFFERS);
        assert_eq!(bytes, count * 64 * 1024);
    }
}
