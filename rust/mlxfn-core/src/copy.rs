//! Copying constant bytes out of the mapping into memory someone else owns.
//!
//! Loading a model is dominated by this copy and by the first touch of the
//! destination pages (a page fault each); splitting it over a few threads
//! overlaps those faults.

/// Below this size one thread copies: thread start-up would cost more.
const PARALLEL_THRESHOLD: usize = 16 << 20;

/// Copy `src` into `dst` (equal lengths), on several threads when large.
pub fn copy_parallel(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len(), "copy_parallel needs equal lengths");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    if threads == 1 || src.len() < PARALLEL_THRESHOLD {
        dst.copy_from_slice(src);
        return;
    }
    // Chunks on 2 MiB boundaries so each thread owns whole (huge) pages.
    let chunk = src.len().div_ceil(threads).next_multiple_of(2 << 20);
    std::thread::scope(|s| {
        for (d, c) in dst.chunks_mut(chunk).zip(src.chunks(chunk)) {
            s.spawn(move || d.copy_from_slice(c));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_small_and_large() {
        for len in [0, 1, 4097, PARALLEL_THRESHOLD + 12345] {
            let src: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let mut dst = vec![0u8; len];
            copy_parallel(&mut dst, &src);
            assert_eq!(dst, src);
        }
    }
}
