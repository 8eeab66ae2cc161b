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

/// How many threads to use: enough to keep memory and the disk busy, never
/// more than the machine has.
pub fn worker_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(8)
}

/// Apply `f` to every item, on up to [`worker_count`] threads when `parallel`
/// and there are several items; results come back in the items' order.
///
/// Threads take the next item from a shared queue, so put the heaviest
/// items first and the load balances itself.
pub fn map<T: Send, R: Send>(items: Vec<T>, parallel: bool, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let workers = if parallel { worker_count().min(items.len()) } else { 1 };
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
        for parallel in [false, true] {
            let out = map((0..100u64).collect(), parallel, |i| i * i);
            assert_eq!(out, (0..100u64).map(|i| i * i).collect::<Vec<_>>());
        }
        assert!(map(Vec::<u8>::new(), true, |x| x).is_empty());
    }
}
