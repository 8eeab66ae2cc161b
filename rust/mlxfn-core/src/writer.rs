//! Write an mlxfn file: validate, dedupe constants, lay out segments, then
//! write everything to a temporary file beside the target and rename it into
//! place, so the target holds either the old file or the complete new one.
//!
//! A writer killed mid-way (SIGKILL, power loss) leaves its temporary file
//! behind.  Each writer holds an exclusive `flock` on its temporary file while
//! it writes, and before writing removes the temporaries of the same target
//! that nobody holds: those of dead writers, never a live one's.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::Path;

use xxhash_rust::xxh3::xxh3_64;

use crate::codec::{self, ConstantEntry, SegmentEntry};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::header::{Header, FORMAT_VERSION, HEADER_SIZE, SEGMENT_ALIGNMENT, SMALL_CONSTANT_ALIGNMENT};
use crate::model::Graph;

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

fn align_up(value: u64, alignment: u64) -> u64 {
    value.div_ceil(alignment) * alignment
}

/// How many threads to hash and write with: enough to keep the disk and
/// memory busy, never more than the machine has.
fn worker_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(8)
}

/// Run `f` over `items` on a few threads, in contiguous chunks of about equal
/// byte weight. Returns the results in order.
fn parallel_map<T: Sync, R: Send>(items: &[T], weight: impl Fn(&T) -> u64, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let total: u64 = items.iter().map(&weight).sum();
    let workers = worker_count();
    if workers == 1 || items.len() < 2 || total < (8 << 20) {
        return items.iter().map(f).collect();
    }
    let target = total.div_ceil(workers as u64);
    let mut chunks: Vec<&[T]> = Vec::new();
    let (mut start, mut acc) = (0, 0u64);
    for (i, item) in items.iter().enumerate() {
        acc += weight(item);
        if acc >= target {
            chunks.push(&items[start..=i]);
            (start, acc) = (i + 1, 0);
        }
    }
    chunks.push(&items[start..]);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks.iter().map(|c| s.spawn(move || c.iter().map(f).collect::<Vec<_>>())).collect();
        handles.into_iter().flat_map(|h| h.join().expect("writer thread panicked")).collect()
    })
}

/// The stored constants after deduplication, and the index map.
struct Deduped {
    /// For each input constant, the index of its stored copy.
    map: Vec<u32>,
    /// For each stored constant, the input constant holding its bytes.
    unique: Vec<usize>,
    /// Hash per input constant.
    hashes: Vec<u64>,
}

fn dedupe(constants: &[ConstantData<'_>]) -> Deduped {
    let hashes = parallel_map(constants, |c| c.bytes.len() as u64, |c| xxh3_64(c.bytes));
    let mut seen: HashMap<(u64, DType, &[i64]), Vec<u32>> = HashMap::new();
    let mut unique: Vec<usize> = Vec::new();
    let mut map = Vec::with_capacity(constants.len());
    for (i, c) in constants.iter().enumerate() {
        let candidates = seen.entry((hashes[i], c.dtype, c.shape)).or_default();
        let found = candidates.iter().copied().find(|&u| constants[unique[u as usize]].bytes == c.bytes);
        let index = found.unwrap_or_else(|| {
            unique.push(i);
            let u = (unique.len() - 1) as u32;
            candidates.push(u);
            u
        });
        map.push(index);
    }
    Deduped { map, unique, hashes }
}

/// Place constants: small ones packed in segment 0 at 64-byte steps, each
/// large one in its own segment; segments start on 16 KiB boundaries of the
/// segment area (itself 16 KiB aligned in the file).
fn layout(constants: &[ConstantData<'_>], d: &Deduped) -> (Vec<ConstantEntry>, Vec<SegmentEntry>) {
    let is_small = |i: usize| (constants[i].bytes.len() as u64) < SEGMENT_ALIGNMENT;
    let mut segments = Vec::new();
    let mut entries: Vec<Option<ConstantEntry>> = vec![None; d.unique.len()];
    let entry = |i: usize, segment: u32, offset: u64| ConstantEntry {
        shape: constants[i].shape.to_vec(),
        dtype: constants[i].dtype,
        segment,
        offset,
        length: constants[i].bytes.len() as u64,
        hash: d.hashes[i],
    };
    let mut cursor = 0u64;
    if d.unique.iter().any(|&i| is_small(i)) {
        let mut used = 0u64;
        for (u, &i) in d.unique.iter().enumerate() {
            if is_small(i) {
                used = align_up(used, SMALL_CONSTANT_ALIGNMENT);
                entries[u] = Some(entry(i, 0, used));
                used += constants[i].bytes.len() as u64;
            }
        }
        segments.push(SegmentEntry { offset: 0, size: used });
        cursor = align_up(used, SEGMENT_ALIGNMENT);
    }
    for (u, &i) in d.unique.iter().enumerate() {
        if !is_small(i) {
            let size = constants[i].bytes.len() as u64;
            entries[u] = Some(entry(i, segments.len() as u32, 0));
            segments.push(SegmentEntry { offset: cursor, size });
            cursor = align_up(cursor + size, SEGMENT_ALIGNMENT);
        }
    }
    (entries.into_iter().map(|e| e.expect("every constant placed")).collect(), segments)
}

fn validate(path: &str, graph: &Graph, constants: &[ConstantData<'_>]) -> Result<()> {
    let invalid = |what: String| Error::InvalidGraph { path: path.to_owned(), what };
    for (i, c) in constants.iter().enumerate() {
        match c.dtype.nbytes(c.shape) {
            Some(n) if n == c.bytes.len() as u64 => {}
            expected => {
                return Err(invalid(format!(
                    "constant {i} has {} bytes but its shape {:?} and dtype {:?} need {}",
                    c.bytes.len(),
                    c.shape,
                    c.dtype,
                    expected.map_or("an impossible size".into(), |n| n.to_string())
                )))
            }
        }
    }
    for (t, trace) in graph.traces.iter().enumerate() {
        trace.check_ids(constants.len()).map_err(|what| invalid(format!("trace {t}: {what}")))?;
    }
    Ok(())
}

const TEMP_SUFFIX: &str = ".tmp";

fn temp_prefix(name: &str) -> String {
    format!(".{name}.")
}

/// A new temporary file beside the target, exclusively locked for as long as
/// it is open.  Another writer's cleanup can delete it in the instant between
/// its creation and the lock; that is detected (the name no longer leads to
/// our file) and a fresh one is made.
fn locked_temporary(dir: &Path, name: &str) -> std::io::Result<tempfile::NamedTempFile> {
    loop {
        let tmp = tempfile::Builder::new()
            .prefix(&temp_prefix(name))
            .suffix(TEMP_SUFFIX)
            .permissions(std::fs::Permissions::from_mode(0o666)) // the umask applies, as for any new file
            .tempfile_in(dir)?;
        tmp.as_file().lock()?;
        let ours = tmp.as_file().metadata()?;
        match std::fs::symlink_metadata(tmp.path()) {
            Ok(named) if named.ino() == ours.ino() && named.dev() == ours.dev() => return Ok(tmp),
            _ => continue, // removed under us before we held the lock
        }
    }
}

/// Remove `dir/.{name}.*.tmp` files left by writers that died: a file whose
/// lock can be taken has no live writer.  Best effort: a file that cannot be
/// opened or removed is left alone.
pub fn remove_stale_temporaries(dir: &Path, name: &str) {
    let prefix = temp_prefix(name);
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else { continue };
        if !(file_name.starts_with(&prefix) && file_name.ends_with(TEMP_SUFFIX)) {
            continue;
        }
        let path = entry.path();
        let Ok(file) = File::open(&path) else { continue };
        if !matches!(file.metadata(), Ok(m) if m.is_file()) {
            continue;
        }
        if file.try_lock().is_ok() {
            // Held until `file` drops: no writer can claim it meanwhile.
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Write `graph` and its `constants` to `path` atomically.
pub fn write_file(
    path: &Path,
    graph: &Graph,
    constants: &[ConstantData<'_>],
    options: WriteOptions,
) -> Result<WriteSummary> {
    let shown = path.display().to_string();
    validate(&shown, graph, constants)?;
    let deduped = dedupe(constants);
    let (entries, segments) = layout(constants, &deduped);
    let mut graph = graph.clone();
    for trace in &mut graph.traces {
        for c in &mut trace.constants {
            *c = deduped.map[*c as usize];
        }
    }
    let flatbuffer = codec::encode(&graph, FORMAT_VERSION, env!("CARGO_PKG_VERSION"), &entries, &segments);
    let fb_end = (HEADER_SIZE + flatbuffer.len()) as u64;
    let segments_size = segments.last().map_or(0, |s| s.offset + s.size);
    let segments_offset = if segments_size > 0 { align_up(fb_end, SEGMENT_ALIGNMENT) } else { fb_end };
    let header = Header {
        format_version: FORMAT_VERSION,
        flatbuffer_offset: HEADER_SIZE as u64,
        flatbuffer_size: flatbuffer.len() as u64,
        segments_offset,
        segments_size,
        file_size: segments_offset + segments_size,
        flatbuffer_crc32: crc32fast::hash(&flatbuffer),
    };

    let io = |e: std::io::Error| Error::io(&shown, e);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    remove_stale_temporaries(dir, &name);
    let tmp = locked_temporary(dir, &name).map_err(io)?;
    let file: &File = tmp.as_file();
    file.set_len(header.file_size).map_err(io)?;
    file.write_all_at(&header.encode(), 0).map_err(io)?;
    file.write_all_at(&flatbuffer, HEADER_SIZE as u64).map_err(io)?;
    let jobs: Vec<(usize, u64)> = entries
        .iter()
        .zip(&deduped.unique)
        .map(|(e, &i)| (i, segments_offset + segments[e.segment as usize].offset + e.offset))
        .collect();
    let results = parallel_map(&jobs, |&(i, _)| constants[i].bytes.len() as u64, |&(i, at)| {
        file.write_all_at(constants[i].bytes, at)
    });
    results.into_iter().collect::<std::io::Result<()>>().map_err(io)?;
    if options.durable {
        file.sync_all().map_err(io)?;
    }
    tmp.persist(path).map_err(|e| io(e.error))?;
    if options.durable {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(WriteSummary {
        file_size: header.file_size,
        constant_count: entries.len(),
        constant_bytes: entries.iter().map(|e| e.length).sum(),
        deduplicated_count: constants.len() - entries.len(),
    })
}
