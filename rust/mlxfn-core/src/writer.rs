//! Write an mlxfn file: validate, dedupe constants, lay them out, then write
//! them into an [`AtomicFile`] renamed over the target.
//!
//! Every constant's bytes are read once: each is hashed in the same pass that
//! writes it, piece by piece, while the piece is still in the CPU's cache.
//! Duplicates must be known before the layout, without reading everything
//! twice: a cheap fingerprint (length, dtype, shape and a hash of the first
//! and last 4 KiB) tells almost every pair apart, and only constants whose
//! fingerprints collide are hashed (and compared) in full beforehand.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use xxhash_rust::xxh3::{xxh3_64, Xxh3};

use crate::atomic::AtomicFile;
use crate::codec::{self, ConstantEntry};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::header::{Header, HEADER_SIZE};
use crate::layout::{self, Layout, LENGTH_PREFIX};
use crate::model::Graph;
use crate::parallel;

/// One constant handed to the writer: metadata and borrowed bytes.
#[derive(Clone, Copy, Debug)]
pub struct ConstantData<'a> {
    /// Dimensions.
    pub shape: &'a [i64],
    /// Element type.
    pub dtype: DType,
    /// The bytes, row-major.
    pub bytes: &'a [u8],
}

/// How to write.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteOptions {
    /// fsync the file (and its directory) before and after the rename.
    pub durable: bool,
}

/// What was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriteSummary {
    /// Total bytes of the file.
    pub file_size: u64,
    /// Constants stored (after deduplication).
    pub constant_count: usize,
    /// Bytes of the stored constants.
    pub constant_bytes: u64,
    /// Constants that were equal to another and not stored again.
    pub deduplicated_count: usize,
}

/// Bytes hashed and written at a time: small enough to stay in cache
/// between the hash and the write.
const PIECE: usize = 1 << 20;

/// The stored constants after deduplication.
struct Deduped {
    /// For each input constant, the index of its stored copy.
    map: Vec<u32>,
    /// For each stored constant, the input constant holding its bytes.
    unique: Vec<usize>,
    /// Full hashes known before writing (constants whose fingerprints collided).
    known: HashMap<usize, u64>,
}

fn fingerprint(c: &ConstantData<'_>) -> (u64, DType, Vec<i64>, u64, u64) {
    const EDGE: usize = 4096;
    let n = c.bytes.len();
    let head = xxh3_64(&c.bytes[..n.min(EDGE)]);
    let tail = xxh3_64(&c.bytes[n.saturating_sub(EDGE)..]);
    (n as u64, c.dtype, c.shape.to_vec(), head, tail)
}

fn dedupe(constants: &[ConstantData<'_>]) -> Deduped {
    let mut by_fingerprint: HashMap<_, Vec<usize>> = HashMap::new();
    for (i, c) in constants.iter().enumerate() {
        by_fingerprint.entry(fingerprint(c)).or_default().push(i);
    }
    // Only candidates for equality are read in full now.
    let suspects: Vec<usize> = by_fingerprint.values().filter(|g| g.len() > 1).flatten().copied().collect();
    let suspect_bytes: u64 = suspects.iter().map(|&i| constants[i].bytes.len() as u64).sum();
    let threads = parallel::threads_for(suspect_bytes, parallel::worker_count());
    let hashes = parallel::map(suspects.clone(), threads, |i| xxh3_64(constants[i].bytes));
    let known: HashMap<usize, u64> = suspects.into_iter().zip(hashes).collect();

    let mut seen: HashMap<(u64, DType, &[i64]), Vec<u32>> = HashMap::new();
    let mut unique: Vec<usize> = Vec::new();
    let mut map = Vec::with_capacity(constants.len());
    for (i, c) in constants.iter().enumerate() {
        let Some(&hash) = known.get(&i) else {
            unique.push(i);
            map.push((unique.len() - 1) as u32);
            continue;
        };
        let candidates = seen.entry((hash, c.dtype, c.shape)).or_default();
        let found = candidates.iter().copied().find(|&u| constants[unique[u as usize]].bytes == c.bytes);
        let index = found.unwrap_or_else(|| {
            unique.push(i);
            let u = (unique.len() - 1) as u32;
            candidates.push(u);
            u
        });
        map.push(index);
    }
    Deduped { map, unique, known }
}

fn validate(path: &str, graph: &Graph, constants: &[ConstantData<'_>]) -> Result<()> {
    let invalid = |what: String| Error::InvalidGraph { path: path.to_owned(), what };
    for (i, c) in constants.iter().enumerate() {
        c.dtype
            .check_length(c.shape, c.bytes.len() as u64)
            .map_err(|problem| invalid(format!("constant {i} {problem}")))?;
    }
    for (t, trace) in graph.traces.iter().enumerate() {
        trace.check_ids(constants.len()).map_err(|what| invalid(format!("trace {t}: {what}")))?;
    }
    Ok(())
}

/// The constant table for `layout`, with `hashes` (placeholders before the
/// write: the table's encoded size must not shrink when they are filled in).
fn table(constants: &[ConstantData<'_>], d: &Deduped, layout: &Layout, hashes: &[u64]) -> Vec<ConstantEntry> {
    d.unique
        .iter()
        .enumerate()
        .map(|(u, &i)| ConstantEntry {
            shape: constants[i].shape.to_vec(),
            dtype: constants[i].dtype,
            segment: layout.places[u].0,
            offset: layout.places[u].1,
            length: constants[i].bytes.len() as u64,
            hash: hashes[u],
        })
        .collect()
}

/// Hash `bytes` while writing them at `at`, one cache-sized piece at a time.
fn hash_and_write(file: &File, bytes: &[u8], at: u64) -> std::io::Result<u64> {
    let mut hasher = Xxh3::new();
    for (k, piece) in bytes.chunks(PIECE).enumerate() {
        hasher.update(piece);
        file.write_all_at(piece, at + (k * PIECE) as u64)?;
    }
    Ok(hasher.digest())
}

/// Write the stored constants with their length prefixes; returns their
/// hashes.  Segment 0 (the small constants) is assembled in memory and
/// written at once; each large constant is written by one thread, the
/// largest first.
fn write_constants(
    file: &File,
    constants: &[ConstantData<'_>],
    d: &Deduped,
    layout: &Layout,
) -> std::io::Result<Vec<u64>> {
    let mut hashes = vec![0u64; d.unique.len()];
    let bytes_of = |u: usize| constants[d.unique[u]].bytes;
    let (small, mut large): (Vec<usize>, Vec<usize>) =
        (0..d.unique.len()).partition(|&u| layout::is_packed(bytes_of(u).len() as u64));
    if let Some(segment) = layout.segments.first().filter(|_| !small.is_empty()) {
        let mut buffer = vec![0u8; segment.size as usize];
        for &u in &small {
            let bytes = bytes_of(u);
            if bytes.is_empty() {
                hashes[u] = xxh3_64(bytes);
                continue;
            }
            let at = layout.places[u].1 as usize;
            buffer[at - LENGTH_PREFIX as usize..at].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            buffer[at..at + bytes.len()].copy_from_slice(bytes);
            hashes[u] = d.known.get(&d.unique[u]).copied().unwrap_or_else(|| xxh3_64(bytes));
        }
        file.write_all_at(&buffer, layout.segments_offset + segment.offset)?;
    }
    large.sort_by_key(|&u| std::cmp::Reverse(bytes_of(u).len()));
    let total: u64 = large.iter().map(|&u| bytes_of(u).len() as u64).sum();
    let written = parallel::map(large.clone(), parallel::threads_for(total, parallel::worker_count()), |u| {
        let at = layout.offset_of(u);
        file.write_all_at(&(bytes_of(u).len() as u64).to_le_bytes(), at - LENGTH_PREFIX)?;
        hash_and_write(file, bytes_of(u), at)
    });
    for (u, hash) in large.into_iter().zip(written) {
        hashes[u] = hash?;
    }
    Ok(hashes)
}

/// Write `graph` and its `constants` into `out` (not yet committed).
pub fn write_into(out: &AtomicFile, graph: &Graph, constants: &[ConstantData<'_>]) -> Result<WriteSummary> {
    let shown = out.target().display().to_string();
    validate(&shown, graph, constants)?;
    let deduped = dedupe(constants);
    let mut graph = graph.clone();
    for trace in &mut graph.traces {
        for c in &mut trace.constants {
            *c = deduped.map[*c as usize];
        }
    }
    let mlxfn_version = env!("CARGO_PKG_VERSION");
    let format_version = graph.format_version();
    let lengths: Vec<u64> = deduped.unique.iter().map(|&i| constants[i].bytes.len() as u64).collect();
    // The graph holds the layout and the layout starts after the graph: size
    // the graph with every offset and hash set to a placeholder that no real
    // value encodes larger than (FlatBuffers omits zeros), then lay out the
    // constants after that size.  Segment indices and sizes do not depend on
    // where the segment area starts.
    let mut draft = layout::place(&lengths, 0);
    draft.segments.iter_mut().for_each(|s| s.offset = u64::MAX);
    draft.places.iter_mut().for_each(|p| p.1 = u64::MAX);
    let placeholders = vec![u64::MAX; lengths.len()];
    let draft_table = table(constants, &deduped, &draft, &placeholders);
    let sized = codec::encode(&graph, format_version, mlxfn_version, &draft_table, &draft.segments);
    let layout = layout::place(&lengths, (HEADER_SIZE + sized.len()) as u64);

    let io = |e: std::io::Error| Error::io(&shown, e);
    let file = out.file();
    let file_size = layout.segments_offset + layout.segments_size;
    file.set_len(file_size).map_err(io)?;
    let hashes = write_constants(file, constants, &deduped, &layout).map_err(io)?;
    crate::atomic::checkpoint("constants");
    let entries = table(constants, &deduped, &layout, &hashes);
    let flatbuffer = codec::encode(&graph, format_version, mlxfn_version, &entries, &layout.segments);
    debug_assert!(flatbuffer.len() <= sized.len(), "the sized graph must be the larger");
    let header = Header {
        format_version,
        flatbuffer_offset: HEADER_SIZE as u64,
        flatbuffer_size: flatbuffer.len() as u64,
        segments_offset: layout.segments_offset,
        segments_size: layout.segments_size,
        file_size,
        flatbuffer_crc32: crc32fast::hash(&flatbuffer),
    };
    file.write_all_at(&header.encode(), 0).map_err(io)?;
    file.write_all_at(&flatbuffer, HEADER_SIZE as u64).map_err(io)?;
    crate::atomic::checkpoint("graph");
    Ok(WriteSummary {
        file_size,
        constant_count: entries.len(),
        constant_bytes: lengths.iter().sum(),
        deduplicated_count: constants.len() - entries.len(),
    })
}

/// Write `graph` and its `constants` to `path` atomically.
pub fn write_file(
    path: &Path,
    graph: &Graph,
    constants: &[ConstantData<'_>],
    options: WriteOptions,
) -> Result<WriteSummary> {
    let out = AtomicFile::create(path)?;
    let summary = write_into(&out, graph, constants)?;
    out.commit(options.durable)?;
    Ok(summary)
}
