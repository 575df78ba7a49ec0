//! Storage for the encoded frames of one ring: small frames packed side by side in shared blocks.
//!
//! Owns where a frame's bytes live. A small frame (at most [`PACKED_FRAME_MAX_BYTES`]) is written
//! into the free end of the current block ([`BLOCK_BYTES`]) and handed out as a [`Bytes`] slice of
//! it: no allocation and no reference count of its own, so a ~40-byte frame costs its 40 bytes
//! instead of two allocations (the bytes, and the count `Bytes` adds on first clone). Cloning it
//! for fan-out is the same one atomic increment as before, on the block's count. A block is freed
//! once every frame in it is dropped, so packing is only for a ring whose records leave oldest
//! first (a ring that removes records from the middle gives each frame an allocation of exactly
//! its length). A connection's queue holding an old frame keeps its block alive: the frames it
//! holds are consecutive, so at most one block more than what it queued. It never decides what
//! is kept (the ring does) and never encodes (the caller writes the bytes).

use bytes::{Bytes, BytesMut};

/// Size of one block of packed frames.
pub(super) const BLOCK_BYTES: usize = 16 * 1024;

/// Longest frame packed into a block; a longer one gets an allocation of its own. At most this
/// much of a block is left unused at its end.
pub(super) const PACKED_FRAME_MAX_BYTES: usize = 1024;

/// Bytes a packed frame is charged beyond its length: its share of a block's unused end and of
/// the block's allocation header and reference count (48 bytes), rounded up.
pub(crate) fn packed_overhead_bytes(len: usize) -> usize {
    (len * (PACKED_FRAME_MAX_BYTES + 48)).div_ceil(BLOCK_BYTES - PACKED_FRAME_MAX_BYTES)
}

/// The free end of the current block.
#[derive(Debug, Default)]
pub(super) struct FrameArena {
    block: BytesMut,
}

impl FrameArena {
    /// A frame of exactly `len` bytes, written by `write`, packed into the current block when it
    /// is small. Returns the frame and whether it was packed.
    ///
    /// # Panics
    /// When `write` does not write exactly `len` bytes.
    pub(super) fn frame(&mut self, len: usize, write: impl FnOnce(&mut BytesMut)) -> (Bytes, bool) {
        if len > PACKED_FRAME_MAX_BYTES {
            let mut own = BytesMut::with_capacity(len);
            write(&mut own);
            assert_eq!(own.len(), len, "a frame is written at its computed length");
            return (own.freeze(), false);
        }
        if self.block.capacity() < len {
            self.block = BytesMut::with_capacity(BLOCK_BYTES);
        }
        write(&mut self.block);
        assert_eq!(
            self.block.len(),
            len,
            "a frame is written at its computed length"
        );
        (self.block.split().freeze(), true)
    }

    /// A packed copy of `frame`; `None` when it is too long to pack.
    pub(super) fn pack(&mut self, frame: &[u8]) -> Option<Bytes> {
        (frame.len() <= PACKED_FRAME_MAX_BYTES).then(|| {
            self.frame(frame.len(), |buf| buf.extend_from_slice(frame))
                .0
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    #[test]
    fn small_frames_share_a_block_and_outlive_it() {
        let mut arena = FrameArena::default();
        let (a, packed_a) = arena.frame(3, |b| b.put_slice(b"abc"));
        let (b, packed_b) = arena.frame(2, |b| b.put_slice(b"de"));
        assert!(packed_a && packed_b);
        assert_eq!((&a[..], &b[..]), (&b"abc"[..], &b"de"[..]));
        assert_eq!(
            b.as_ptr(),
            a.as_ptr().wrapping_add(3),
            "the second frame follows the first in one block"
        );
        drop(arena);
        let copy = b.clone();
        drop(b);
        assert_eq!(
            &copy[..],
            b"de",
            "a frame outlives the arena and its siblings"
        );
    }

    #[test]
    fn a_full_block_is_followed_by_a_new_one_and_large_frames_stand_alone() {
        let mut arena = FrameArena::default();
        let big = vec![b'x'; PACKED_FRAME_MAX_BYTES + 1];
        let (frame, packed) = arena.frame(big.len(), |b| b.put_slice(&big));
        assert!(!packed);
        assert_eq!(&frame[..], &big[..]);
        let frames: Vec<_> = (0..BLOCK_BYTES / 1000 + 2)
            .map(|i| {
                let text = vec![b'0' + (i % 10) as u8; 1000];
                let (frame, packed) = arena.frame(text.len(), |b| b.put_slice(&text));
                assert!(packed);
                (frame, text)
            })
            .collect();
        for (frame, text) in &frames {
            assert_eq!(&frame[..], &text[..], "no frame overwrote another");
        }
    }
}
