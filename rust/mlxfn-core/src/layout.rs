//! Where the writer puts each constant (format version 2; FORMAT.md).
//!
//! ```text
//! [header][graph][pad]  segment 0: small constants, packed    [pad] segment k: one large constant ...
//!                       [len|bytes][pad][len|bytes]...          [len] bytes at a multiple of 16 KiB
//! ```
//!
//! - Every non-empty constant starts on a multiple of 64 bytes and the 8
//!   bytes before it hold its length (u64, little-endian).  That is the
//!   layout of a buffer of MLX's CPU allocator, so a reader can hand the
//!   mapped bytes to MLX as an array without a copy (`bridge/`).
//! - Constants of at least [`ALIGNED_CONSTANT_MIN`] bytes start on a
//!   multiple of [`SEGMENT_ALIGNMENT`] of the file, the page size of Apple
//!   silicon: unified-memory backends adopt only page-aligned memory.  The
//!   padding that costs (under 16 KiB) is under 1.6 % of such a constant.
//! - Smaller constants are packed right after the graph: a file holding a
//!   few small arrays stays small.

use crate::codec::SegmentEntry;

/// Large constants start on a multiple of this many bytes of the file.
pub const SEGMENT_ALIGNMENT: u64 = 16 * 1024;
/// Constants of at least this many bytes are page-aligned (own segment).
pub const ALIGNED_CONSTANT_MIN: u64 = 1 << 20;
/// Every constant starts on a multiple of this (every dtype is aligned).
pub const SMALL_CONSTANT_ALIGNMENT: u64 = 64;
/// Bytes before each constant that hold its length.
pub const LENGTH_PREFIX: u64 = 8;

/// Round `value` up to a multiple of `alignment`.
pub fn align_up(value: u64, alignment: u64) -> u64 {
    value.div_ceil(alignment) * alignment
}

/// Whether a constant of `len` bytes is packed with the small ones (segment
/// 0) rather than page-aligned in a segment of its own.
pub fn is_packed(len: u64) -> bool {
    len < ALIGNED_CONSTANT_MIN
}

/// The placement of every constant, given their lengths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Start of the segment area in the file.
    pub segments_offset: u64,
    /// Bytes of the segment area.
    pub segments_size: u64,
    /// The segments, relative to `segments_offset`.
    pub segments: Vec<SegmentEntry>,
    /// For each constant: (segment index, offset within the segment).
    pub places: Vec<(u32, u64)>,
}

impl Layout {
    /// Absolute file offset of constant `i`.
    pub fn offset_of(&self, i: usize) -> u64 {
        let (segment, offset) = self.places[i];
        self.segments_offset + self.segments[segment as usize].offset + offset
    }
}

/// Lay out constants of the given `lengths` after a graph ending at `graph_end`.
pub fn place(lengths: &[u64], graph_end: u64) -> Layout {
    let segments_offset = align_up(graph_end, SMALL_CONSTANT_ALIGNMENT);
    let mut places = vec![(0u32, 0u64); lengths.len()];
    let mut segments = Vec::new();
    if lengths.iter().any(|&len| is_packed(len)) {
        let mut used = 0u64;
        for (i, &len) in lengths.iter().enumerate() {
            if is_packed(len) && len > 0 {
                let at = align_up(used + LENGTH_PREFIX, SMALL_CONSTANT_ALIGNMENT);
                places[i] = (0, at);
                used = at + len;
            }
        }
        segments.push(SegmentEntry { offset: 0, size: used });
    }
    let mut end = segments_offset + segments.first().map_or(0, |s| s.size);
    let mut any_large = false;
    for (i, &len) in lengths.iter().enumerate() {
        if !is_packed(len) {
            let at = align_up(end + LENGTH_PREFIX, SEGMENT_ALIGNMENT);
            places[i] = (segments.len() as u32, 0);
            segments.push(SegmentEntry { offset: at - segments_offset, size: len });
            end = at + len;
            any_large = true;
        }
    }
    if any_large {
        // The last large constant, as every other, owns whole pages up to the
        // next page boundary: Metal adopts a no-copy buffer of whole pages only.
        end = align_up(end, SEGMENT_ALIGNMENT);
    }
    Layout { segments_offset, segments_size: end - segments_offset, segments, places }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_packed_large_aligned_every_one_prefixed() {
        let lengths = [24, ALIGNED_CONSTANT_MIN + 3, 0, 100, 2 * ALIGNED_CONSTANT_MIN];
        let layout = place(&lengths, 1000);
        assert_eq!(layout.segments_offset, 1024);
        let offsets: Vec<u64> = (0..lengths.len()).map(|i| layout.offset_of(i)).collect();
        assert_eq!(offsets[0], 1024 + 64, "the first small constant leaves room for its prefix");
        assert_eq!(offsets[3], 1024 + 128);
        assert_eq!(offsets[1] % SEGMENT_ALIGNMENT, 0);
        assert_eq!(offsets[4] % SEGMENT_ALIGNMENT, 0);
        assert!(offsets[4] >= offsets[1] + lengths[1] + LENGTH_PREFIX);
        let mut spans: Vec<(u64, u64)> =
            (0..lengths.len()).filter(|&i| lengths[i] > 0).map(|i| (offsets[i], lengths[i])).collect();
        spans.sort();
        let mut end = 1000;
        for (at, len) in spans {
            assert!(at % SMALL_CONSTANT_ALIGNMENT == 0 && at - LENGTH_PREFIX >= end, "{at} after {end}");
            end = at + len;
        }
        assert_eq!(layout.segments_offset + layout.segments_size, align_up(end, SEGMENT_ALIGNMENT));
    }

    #[test]
    fn every_large_constant_owns_whole_pages() {
        // Metal's no-copy buffers want a page-aligned start and a length of
        // whole pages: from each large constant to the next page boundary
        // there is nothing but padding, and the region lies inside the file.
        let lengths = [ALIGNED_CONSTANT_MIN + 1, 7, 3 * SEGMENT_ALIGNMENT, ALIGNED_CONSTANT_MIN + 4095];
        let layout = place(&lengths, 300);
        let file_end = layout.segments_offset + layout.segments_size;
        let mut regions: Vec<(u64, u64)> = (0..lengths.len())
            .filter(|&i| !is_packed(lengths[i]))
            .map(|i| (layout.offset_of(i), align_up(layout.offset_of(i) + lengths[i], SEGMENT_ALIGNMENT)))
            .collect();
        regions.sort();
        for pair in regions.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "{pair:?}");
        }
        for (start, end) in regions {
            assert!(start % SEGMENT_ALIGNMENT == 0 && end <= file_end, "{start}..{end} in a file of {file_end}");
        }
        assert_eq!(file_end % SEGMENT_ALIGNMENT, 0);
    }

    #[test]
    fn no_constants_no_segments() {
        let layout = place(&[], 200);
        assert_eq!((layout.segments_offset, layout.segments_size), (256, 0));
        assert!(layout.segments.is_empty());
    }
}
