//! Read an mlxfn file through mmap. `open` checks everything once (header,
//! checksums, FlatBuffers verifier, every offset, length and value id); after
//! that no accessor can fail or read out of bounds.  `from_bytes` and
//! `from_shared` run the same checks on bytes already in memory (the fuzz
//! targets use the first, the C ABI the second for a caller's buffer).

use std::fs::File;
use std::io::Read;
use std::ops::Deref;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use memmap2::Mmap;
use xxhash_rust::xxh3::xxh3_64;

use crate::codec::{self, ConstantEntry, SegmentEntry};
use crate::error::{Error, Result};
use crate::header::{segments_alignment, Header, HeaderProblem, FORMAT_VERSION, HEADER_SIZE, MAGIC};
use crate::layout::{align_up, LENGTH_PREFIX, SEGMENT_ALIGNMENT, SMALL_CONSTANT_ALIGNMENT};
use crate::model::Graph;
use crate::parallel;

/// Bytes read at a time by `copy_constants`, as MLX's own loader does.
const COPY_PIECE: usize = 32 << 20;

/// What kind of file a path holds, judged from its first bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// An mlxfn file.
    Mlxfn,
    /// A file written by MLX's own `export_function`.
    MlxNative {
        /// The MLX version string at the start of the file.
        mlx_version: String,
    },
    /// Neither.
    Unknown,
}

/// Classify a file from its first bytes. MLX's own export files begin with a
/// little-endian u64 length and that many bytes of a version like "0.32.4".
/// A file shorter than the magic number that starts like it is an mlxfn file
/// cut short (opening it says so).
pub fn sniff_bytes(head: &[u8]) -> FileKind {
    if head.starts_with(&MAGIC) || (!head.is_empty() && MAGIC.starts_with(head)) {
        return FileKind::Mlxfn;
    }
    if head.len() >= 8 {
        let mut len = [0u8; 8];
        len.copy_from_slice(&head[..8]);
        let n = u64::from_le_bytes(len);
        if (1..=64).contains(&n) && head.len() >= 8 + n as usize {
            let version = &head[8..8 + n as usize];
            let dotted = version.iter().all(|b| b.is_ascii_alphanumeric() || b".+-".contains(b));
            if dotted && version[0].is_ascii_digit() && version.contains(&b'.') {
                return FileKind::MlxNative { mlx_version: String::from_utf8_lossy(version).into_owned() };
            }
        }
    }
    FileKind::Unknown
}

/// Classify the file at `path` (reads at most 72 bytes).
pub fn sniff(path: &Path) -> Result<FileKind> {
    let shown = path.display().to_string();
    let mut head = Vec::with_capacity(72);
    File::open(path).and_then(|f| f.take(72).read_to_end(&mut head)).map_err(|e| Error::io(&shown, e))?;
    Ok(sniff_bytes(&head))
}

/// What `path` holds, or an error naming it: missing, not a regular file,
/// empty, or neither an mlxfn file nor one written by MLX's exporter.
pub fn recognise(path: &Path) -> Result<FileKind> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| Error::io(&shown, e))?;
    if meta.is_dir() {
        return Err(Error::Io { path: shown, source: std::io::Error::other("is a directory") });
    }
    match sniff(path)? {
        FileKind::Unknown if meta.len() == 0 => {
            Err(Error::NotMlxfn { path: shown, detail: "the file is empty".into() })
        }
        FileKind::Unknown => Err(Error::Unrecognized { path: shown }),
        kind => Ok(kind),
    }
}

/// Bytes in memory that something else owns (a caller's buffer, a Python
/// `bytes`), handed to [`MlxfnFile::from_shared`].  `as_ref` must give the
/// same bytes every time: they are validated once.
pub type SharedBytes = Box<dyn AsRef<[u8]> + Send + Sync>;

/// The bytes of an open file: a read-only mapping of it, or a buffer handed
/// to [`MlxfnFile::from_bytes`] or [`MlxfnFile::from_shared`].
enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
    Shared(SharedBytes),
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Bytes::Mapped(_) => "Mapped",
            Bytes::Owned(_) => "Owned",
            Bytes::Shared(_) => "Shared",
        };
        write!(f, "{kind}({} bytes)", self.len())
    }
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(map) => map,
            Bytes::Owned(bytes) => bytes,
            Bytes::Shared(bytes) => (**bytes).as_ref(),
        }
    }
}

/// The mapped file as it was when opened: its handle (to `fstat` it again)
/// and the length and modification time it had.
#[derive(Debug)]
struct Source {
    handle: File,
    len: u64,
    modified: Option<SystemTime>,
}

/// An open, validated mlxfn file. Cheap to share: the mapping is behind an Arc.
#[derive(Debug)]
pub struct MlxfnFile {
    path: String,
    map: Bytes,
    source: Option<Source>,
    header: Header,
    format_version: u32,
    mlxfn_version: String,
    graph: Graph,
    constants: Vec<ConstantEntry>,
    segments: Vec<SegmentEntry>,
}

impl MlxfnFile {
    /// Map and validate the file at `path`.
    pub fn open(path: &Path) -> Result<Arc<MlxfnFile>> {
        let shown = path.display().to_string();
        let io = |e: std::io::Error| Error::io(&shown, e);
        let handle = File::open(path).map_err(io)?;
        let meta = handle.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(Error::Io { path: shown.clone(), source: std::io::Error::other("not a regular file") });
        }
        let actual = meta.len();
        if actual < HEADER_SIZE as u64 {
            let mut head = Vec::new();
            (&handle).take(HEADER_SIZE as u64).read_to_end(&mut head).map_err(io)?;
            return Err(Self::header_error(&shown, &head, actual));
        }
        // SAFETY: the map is read-only and private to this object.  A file
        // rewritten in place underneath it (same inode) would change or,
        // truncated, fault; `check_unchanged` lets callers refuse such a file
        // before reading constants (FORMAT.md, "What a reader checks").
        let map = unsafe { Mmap::map(&handle) }.map_err(io)?;
        let source = Source { len: actual, modified: meta.modified().ok(), handle };
        Self::parse(shown, Bytes::Mapped(map), Some(source))
    }

    /// Validate an mlxfn file already in memory, exactly as `open` validates
    /// a mapped one; `name` stands for the path in error messages.  Nothing
    /// is read from disk.
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<Arc<MlxfnFile>> {
        if bytes.len() < HEADER_SIZE {
            return Err(Self::header_error(name, &bytes, bytes.len() as u64));
        }
        Self::parse(name.to_owned(), Bytes::Owned(bytes), None)
    }

    /// Validate an mlxfn file in memory that something else owns, exactly
    /// as `open` validates a mapped one, without copying it: the constants
    /// are views of those bytes.  `name` stands for the path in messages.
    pub fn from_shared(name: &str, bytes: SharedBytes) -> Result<Arc<MlxfnFile>> {
        let len = (*bytes).as_ref().len();
        if len < HEADER_SIZE {
            return Err(Self::header_error(name, (*bytes).as_ref(), len as u64));
        }
        Self::parse(name.to_owned(), Bytes::Shared(bytes), None)
    }

    /// Check the header, graph and tables of a whole file's bytes.
    fn parse(shown: String, map: Bytes, source: Option<Source>) -> Result<Arc<MlxfnFile>> {
        let actual = map.len() as u64;
        let header = Header::decode(&map[..HEADER_SIZE]).map_err(|p| Self::problem(&shown, p))?;
        if header.file_size != actual {
            return Err(Error::Truncated { path: shown, expected: header.file_size, actual });
        }
        let fb_range = header.flatbuffer_offset as usize..(header.flatbuffer_offset + header.flatbuffer_size) as usize;
        let flatbuffer = &map[fb_range];
        if crc32fast::hash(flatbuffer) != header.flatbuffer_crc32 {
            return Err(Error::Flatbuffer { path: shown, detail: "checksum mismatch".into() });
        }
        let decoded = codec::decode(flatbuffer).map_err(|detail| Error::Flatbuffer { path: shown.clone(), detail })?;
        let file = MlxfnFile {
            path: shown,
            header,
            format_version: decoded.format_version,
            mlxfn_version: decoded.mlxfn_version,
            graph: decoded.graph,
            constants: decoded.constants,
            segments: decoded.segments,
            map,
            source,
        };
        file.validate()?;
        Ok(Arc::new(file))
    }

    /// Fail if the file was truncated or written to since `open` mapped it.
    ///
    /// Replacing the file by rename, or deleting it, changes nothing for this
    /// object (the mapping holds the old inode) and passes.  Rewriting it in
    /// place (same inode) makes the mapping show the new bytes, or fault past
    /// a shortened end: reading constants after that would give wrong values
    /// or kill the process with SIGBUS.  Call this before reading constant
    /// bytes; a rewrite that starts after the check is not caught.
    pub fn check_unchanged(&self) -> Result<()> {
        let Some(source) = &self.source else { return Ok(()) };
        let meta = source.handle.metadata().map_err(|e| Error::io(&self.path, e))?;
        let what = if meta.len() != source.len {
            format!("its size went from {} to {} bytes", source.len, meta.len())
        } else if meta.modified().ok() != source.modified {
            "it was written to".to_owned()
        } else {
            return Ok(());
        };
        Err(Error::Changed { path: self.path.clone(), what })
    }

    fn problem(path: &str, p: HeaderProblem) -> Error {
        let path = path.to_owned();
        match p {
            HeaderProblem::Short => Error::Truncated { path, expected: HEADER_SIZE as u64, actual: 0 },
            HeaderProblem::Magic => Error::NotMlxfn { path, detail: "no mlxfn magic number".into() },
            HeaderProblem::Checksum => {
                Error::BadHeader { path, field: "header_crc32", detail: "checksum mismatch".into() }
            }
            HeaderProblem::Newer(found) => Error::NewerVersion { path, found, supported: FORMAT_VERSION },
            HeaderProblem::Field(field, detail) => Error::BadHeader { path, field, detail },
        }
    }

    fn header_error(path: &str, head: &[u8], actual: u64) -> Error {
        let magic_prefix = !head.is_empty() && MAGIC.starts_with(&head[..head.len().min(8)]);
        if magic_prefix && !head.is_empty() {
            Error::Truncated { path: path.to_owned(), expected: HEADER_SIZE as u64, actual }
        } else {
            let detail = if head.is_empty() { "the file is empty".into() } else { "no mlxfn magic number".into() };
            Error::NotMlxfn { path: path.to_owned(), detail }
        }
    }

    /// Check every table against the header and against each other.
    fn validate(&self) -> Result<()> {
        let invalid = |what: String| Error::Invalid { path: self.path.clone(), what };
        if self.format_version != self.header.format_version {
            return Err(invalid(format!(
                "the graph says format version {}, the header {}",
                self.format_version, self.header.format_version
            )));
        }
        let alignment = segments_alignment(self.format_version);
        for (i, s) in self.segments.iter().enumerate() {
            let end = s.offset.checked_add(s.size);
            if s.offset % alignment != 0 || end.is_none_or(|e| e > self.header.segments_size) {
                return Err(invalid(format!(
                    "segment {i} (offset {}, size {}) is unaligned or outside the segment area of {} bytes",
                    s.offset, s.size, self.header.segments_size
                )));
            }
        }
        for (i, c) in self.constants.iter().enumerate() {
            let Some(segment) = self.segments.get(c.segment as usize) else {
                return Err(invalid(format!("constant {i} is in segment {} of {}", c.segment, self.segments.len())));
            };
            if c.offset.checked_add(c.length).is_none_or(|e| e > segment.size) {
                return Err(invalid(format!(
                    "constant {i} (offset {}, length {}) runs past the end of segment {} ({} bytes)",
                    c.offset, c.length, c.segment, segment.size
                )));
            }
            if !self.constant_offset(i).is_multiple_of(SMALL_CONSTANT_ALIGNMENT) {
                return Err(invalid(format!("constant {i} at {} is not aligned to 64 bytes", self.constant_offset(i))));
            }
            c.dtype.check_length(&c.shape, c.length).map_err(|problem| invalid(format!("constant {i} {problem}")))?;
        }
        if self.format_version >= 2 {
            self.check_length_prefixes()?;
        }
        for (t, trace) in self.graph.traces.iter().enumerate() {
            trace.check_ids(self.constants.len()).map_err(|what| invalid(format!("trace {t}: {what}")))?;
            if self.format_version < 3 && trace.has_programs() {
                return Err(invalid(format!(
                    "trace {t}: an expression program in a file of format version {} (programs need version 3)",
                    self.format_version
                )));
            }
            for ce in &trace.constant_exprs {
                let c = &self.constants[trace.constants[ce.position as usize] as usize];
                if c.length != c.dtype.itemsize() {
                    return Err(invalid(format!(
                        "trace {t}: constant {} has a value that follows the sizes but shape {:?}, not one element",
                        ce.position, c.shape
                    )));
                }
            }
        }
        Ok(())
    }

    /// Format 2: the 8 bytes before every non-empty constant hold its length
    /// and belong to no other constant nor to the graph (see `layout`).
    fn check_length_prefixes(&self) -> Result<()> {
        let mut spans: Vec<(u64, u64, usize)> = (0..self.constants.len())
            .filter(|&i| self.constants[i].length > 0)
            .map(|i| (self.constant_offset(i), self.constants[i].length, i))
            .collect();
        spans.sort_unstable();
        let mut end = self.header.flatbuffer_offset + self.header.flatbuffer_size;
        for (at, length, i) in spans {
            let invalid =
                |what: String| Error::Invalid { path: self.path.clone(), what: format!("constant {i} {what}") };
            if at < end + LENGTH_PREFIX {
                return Err(invalid(format!("at {at} overlaps the bytes before it, which end at {end}")));
            }
            let prefix = &self.map[(at - LENGTH_PREFIX) as usize..at as usize];
            let stored = u64::from_le_bytes(prefix.try_into().expect("8 bytes"));
            if stored != length {
                return Err(invalid(format!("has {length} bytes but its length prefix says {stored}")));
            }
            end = at + length;
        }
        Ok(())
    }

    /// The path as given to `open`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The decoded header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The mlxfn version that wrote the file.
    pub fn mlxfn_version(&self) -> &str {
        &self.mlxfn_version
    }

    /// The graph: versions, metadata, shapeless flag, traces.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The constant table.
    pub fn constants(&self) -> &[ConstantEntry] {
        &self.constants
    }

    /// The segment table.
    pub fn segments(&self) -> &[SegmentEntry] {
        &self.segments
    }

    /// Absolute file offset of constant `index`'s bytes (validated at open).
    pub fn constant_offset(&self, index: usize) -> u64 {
        let c = &self.constants[index];
        self.header.segments_offset + self.segments[c.segment as usize].offset + c.offset
    }

    /// The bytes of constant `index`, borrowed from the mapping (no copy).
    pub fn constant_bytes(&self, index: usize) -> &[u8] {
        let start = self.constant_offset(index) as usize;
        &self.map[start..start + self.constants[index].length as usize]
    }

    /// Constant `index` with the padding after it, up to the next multiple of
    /// [`SEGMENT_ALIGNMENT`]: a whole-page region, as Metal's no-copy buffers
    /// want (page-aligned start, whole pages).  None for a constant that does
    /// not start on a page or whose padded end lies outside the file (files
    /// written before format 2 padded the last constant).
    pub fn constant_pages(&self, index: usize) -> Option<&[u8]> {
        let start = self.constant_offset(index);
        let end = align_up(start + self.constants[index].length, SEGMENT_ALIGNMENT);
        if !start.is_multiple_of(SEGMENT_ALIGNMENT) || end > self.map.len() as u64 {
            return None;
        }
        Some(&self.map[start as usize..end as usize])
    }

    /// The open file descriptor of the mapped file (None for bytes in memory):
    /// to map the same, validated inode again (the C++ bridge does).
    pub fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.source.as_ref().map(|s| s.handle.as_raw_fd())
    }

    /// Copy each `(constant index, destination)` pair out of the file,
    /// several threads sharing the work, after checking that the file was
    /// not rewritten in place since it was opened.
    ///
    /// A file opened from disk is read with `pread` (as MLX's own loader
    /// does): the kernel copies from the page cache straight into the
    /// destination, and the file's pages never count in this process's
    /// resident memory.  Bytes in memory are copied from memory.
    pub fn copy_constants(&self, jobs: Vec<(usize, &mut [u8])>) -> Result<()> {
        self.check_unchanged()?;
        let mut pieces = Vec::with_capacity(jobs.len());
        let mut total = 0u64;
        for (index, dst) in jobs {
            let Some(c) = self.constants.get(index) else {
                return Err(Error::Usage {
                    path: self.path.clone(),
                    what: format!("constant {index} out of range: the file has {}", self.constants.len()),
                });
            };
            if dst.len() as u64 != c.length {
                return Err(Error::Usage {
                    path: self.path.clone(),
                    what: format!("constant {index} has {} bytes, the destination {}", c.length, dst.len()),
                });
            }
            total += c.length;
            let at = self.constant_offset(index);
            pieces.extend(dst.chunks_mut(COPY_PIECE).enumerate().map(|(k, d)| (at + (k * COPY_PIECE) as u64, d)));
        }
        let threads = parallel::threads_for(total, parallel::copy_worker_count());
        let results = parallel::map(pieces, threads, |(at, dst)| match &self.source {
            Some(source) => source.handle.read_exact_at(dst, at),
            None => {
                dst.copy_from_slice(&self.map[at as usize..at as usize + dst.len()]);
                Ok(())
            }
        });
        results.into_iter().collect::<std::io::Result<()>>().map_err(|e| Error::io(&self.path, e))
    }

    /// Check every constant against its stored hash (after
    /// [`check_unchanged`](Self::check_unchanged)).
    pub fn verify_hashes(&self) -> Result<()> {
        self.check_unchanged()?;
        for (i, c) in self.constants.iter().enumerate() {
            let actual = xxh3_64(self.constant_bytes(i));
            if actual != c.hash {
                return Err(Error::Integrity { path: self.path.clone(), constant: i, expected: c.hash, actual });
            }
        }
        Ok(())
    }
}
