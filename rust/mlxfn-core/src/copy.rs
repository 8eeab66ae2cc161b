//! Copying constant bytes out of the mapping into memory someone else owns.
//!
//! Loading a model is dominated by this copy and by the first touch of the
//! destination pages (a page fault each); splitting it over a few threads
//! overlaps those faults.

/// Below this size one thread copies: thread start-up would cost more.
const PARALLEL_THRESHOLD: usize = 16 << 20;

/// Run `fill(offset, chunk)` over `dst` split into chunks, on several
/// threads when it is large; the first error wins.
pub fn for_chunks<E: Send>(
    dst: &mut [u8],
    fill: impl Fn(usize, &mut [u8]) -> Result<(), E> + Sync,
) -> Result<(), E> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    if threads == 1 || dst.len() < PARALLEL_THRESHOLD {
        return fill(0, dst);
    }
    // Chunks on 2 MiB boundaries so each thread owns whole (huge) pages.
    let chunk = dst.len().div_ceil(threads).next_multiple_of(2 << 20);
    let fill = &fill;
    std::thread::scope(|s| {
        let handles: Vec<_> =
            dst.chunks_mut(chunk).enumerate().map(|(i, d)| s.spawn(move || fill(i * chunk, d))).collect();
        handles.into_iter().map(|h| h.join().expect("copy thread panicked")).collect()
    })
}

/// Copy `src` into `dst` (equal lengths), on several threads when large.
pub fn copy_parallel(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len(), "copy_parallel needs equal lengths");
    let _ = for_chunks::<()>(dst, |offset, chunk| {
        chunk.copy_from_slice(&src[offset..offset + chunk.len()]);
        Ok(())
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
