//! Work spread over a few scoped threads: the writer's hash-and-write of
//! each constant and the reader's copies out of the file.
//!
//! Threads are started per call (`std::thread::scope`) rather than kept in a
//! pool, so nothing survives a call: a process that forks (Python's
//! multiprocessing does) never inherits a pool whose threads are gone.

use std::sync::Mutex;

/// Below this many bytes of work one thread does it all: starting threads
/// would cost more than it saves.
pub const PARALLEL_MIN_BYTES: u64 = 8 << 20;

/// How many threads to hash and write with: one per core, at most 8.
pub fn worker_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(8)
}

/// How many threads to copy out of a file with: two per core (at most 8),
/// so that one thread's page faults on fresh memory overlap another's
/// copy.  Measured here (2 cores, 4 GB, fresh process each, sleeping
/// between runs): 2 threads x 8 MiB pieces 2.09 s, 4 x 32 MiB 1.83 s,
/// MLX's loader (4 x 32 MiB) 2.00 s.
pub fn copy_worker_count() -> usize {
    (2 * worker_count()).min(8)
}

/// Threads for `bytes` of work: 1 below [`PARALLEL_MIN_BYTES`], else `threads`.
pub fn threads_for(bytes: u64, threads: usize) -> usize {
    if bytes < PARALLEL_MIN_BYTES {
        1
    } else {
        threads
    }
}

/// Apply `f` to every item on up to `threads` threads; results come back in
/// the items' order.
///
/// Threads take the next item from a shared queue, so put the heaviest
/// items first and the load balances itself.
pub fn map<T: Send, R: Send>(items: Vec<T>, threads: usize, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let workers = threads.min(items.len());
    if workers <= 1 {
        return items.into_iter().map(f).collect();
    }
    let count = items.len();
    let queue = Mutex::new(items.into_iter().enumerate());
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..count).map(|_| None).collect());
    let (f, queue_ref, results_ref) = (&f, &queue, &results);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(move || loop {
                let next = queue_ref.lock().unwrap_or_else(|p| p.into_inner()).next();
                let Some((index, item)) = next else { break };
                let result = f(item);
                results_ref.lock().unwrap_or_else(|p| p.into_inner())[index] = Some(result);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.expect("a worker thread stopped before finishing its item"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_keeps_order_in_parallel_and_alone() {
        for threads in [1, 2, 5] {
            let out = map((0..100u64).collect(), threads, |i| i * i);
            assert_eq!(out, (0..100u64).map(|i| i * i).collect::<Vec<_>>());
        }
        assert!(map(Vec::<u8>::new(), 4, |x| x).is_empty());
        assert_eq!((threads_for(10, 4), threads_for(PARALLEL_MIN_BYTES, 4)), (1, 4));
    }
}
