//! Round trips, layout and hostile files, through the public API only.

use std::path::{Path, PathBuf};

mod fixtures;

use fixtures::{consts, data, info, node, round_up, sample_graph};
use mlxfn_core::codec::{self, ConstantEntry, SegmentEntry};
use mlxfn_core::dtype::ALL_DTYPES;
use mlxfn_core::header::{Header, HEADER_SIZE};
use mlxfn_core::{
    write_file, Arg, ConstantData, DType, Dim, Error, FileKind, Graph, MlxfnFile, Trace, WriteOptions,
    ALIGNED_CONSTANT_MIN, FORMAT_VERSION, LENGTH_PREFIX, SEGMENT_ALIGNMENT, SMALL_CONSTANT_ALIGNMENT,
};

fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn write_sample(dir: &Path) -> PathBuf {
    let path = dir.join("sample.mlxfn");
    let c = consts();
    write_file(&path, &sample_graph(), &data(&c), WriteOptions::default()).expect("write");
    path
}

#[test]
fn round_trip_keeps_everything() {
    let dir = tmpdir();
    let path = write_sample(dir.path());
    let file = MlxfnFile::open(&path).expect("open");
    assert_eq!(file.graph(), &sample_graph());
    assert_eq!(file.header().format_version, FORMAT_VERSION);
    let c = consts();
    assert_eq!(file.constant_bytes(0), &c.small[..]);
    assert_eq!(file.constant_bytes(1), &c.large[..]);
    assert_eq!(file.constant_bytes(2), &c.empty[..]);
    file.verify_hashes().expect("hashes match");
    assert_eq!(mlxfn_core::sniff(&path).unwrap(), FileKind::Mlxfn);
}

#[test]
fn every_dtype_round_trips() {
    let dir = tmpdir();
    let path = dir.path().join("dtypes.mlxfn");
    let bytes: Vec<Vec<u8>> = ALL_DTYPES.iter().map(|d| vec![d.code(); 3 * d.itemsize() as usize]).collect();
    let shapes = [[3i64]; 14];
    let constants: Vec<_> = ALL_DTYPES
        .iter()
        .zip(&bytes)
        .zip(&shapes)
        .map(|((d, b), s)| ConstantData { shape: s, dtype: *d, bytes: b })
        .collect();
    let graph = Graph {
        traces: vec![Trace {
            inputs: ALL_DTYPES.iter().map(|d| info(&[1, 2], *d)).collect(),
            constants: (0..14).collect(),
            outputs: (0..28).collect(),
            ..Trace::default()
        }],
        ..Graph::default()
    };
    write_file(&path, &graph, &constants, WriteOptions::default()).unwrap();
    let file = MlxfnFile::open(&path).unwrap();
    assert_eq!(file.graph(), &graph);
    for (i, d) in ALL_DTYPES.iter().enumerate() {
        assert_eq!(file.constants()[i].dtype, *d);
        assert_eq!(file.constant_bytes(i), &bytes[i][..]);
    }
}

#[test]
fn large_constants_are_page_aligned_and_small_ones_packed_each_after_its_length() {
    let dir = tmpdir();
    let path = dir.path().join("layout.mlxfn");
    let huge: Vec<u8> = (0..ALIGNED_CONSTANT_MIN as usize + 100).map(|i| (i % 249) as u8).collect();
    let c = consts();
    let mut constants = data(&c);
    let huge_shape = [huge.len() as i64];
    constants.push(ConstantData { shape: &huge_shape, dtype: DType::UInt8, bytes: &huge });
    let mut graph = sample_graph();
    graph.traces[1].constants = vec![3, 2];
    write_file(&path, &graph, &constants, WriteOptions::default()).unwrap();
    let file = MlxfnFile::open(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let fb_end = HEADER_SIZE as u64 + file.header().flatbuffer_size;
    assert_eq!(file.constant_offset(3) % SEGMENT_ALIGNMENT, 0, "a constant of 1 MiB or more is page-aligned");
    assert_eq!(file.segments().len(), 2, "one packed segment and one per large constant");
    let segments_offset = file.header().segments_offset;
    assert!(segments_offset >= fb_end && segments_offset - fb_end < 256, "packed right after the graph");
    let small_end = file.constant_offset(1) + c.large.len() as u64;
    assert!(file.constant_offset(3) - small_end < SEGMENT_ALIGNMENT + LENGTH_PREFIX, "no page of padding wasted");
    for i in [0, 1, 3] {
        let at = file.constant_offset(i);
        assert_eq!(at % SMALL_CONSTANT_ALIGNMENT, 0);
        let prefix = u64::from_le_bytes(bytes[(at - LENGTH_PREFIX) as usize..at as usize].try_into().unwrap());
        assert_eq!(prefix, file.constants()[i].length, "constant {i}'s length prefix");
    }
    assert_eq!(file.constant_bytes(3), &huge[..]);
    // A small file stays small: the graph, then the packed constants.
    let sample = std::fs::metadata(write_sample(dir.path())).unwrap().len();
    assert!(sample < (c.small.len() + c.large.len()) as u64 + 4096, "{sample} bytes");
}

#[test]
fn equal_constants_are_stored_once_across_traces() {
    let dir = tmpdir();
    let c = consts();
    let twin = c.large.clone();
    let mut constants = data(&c);
    constants.push(ConstantData { shape: constants[1].shape, dtype: DType::UInt8, bytes: &twin });
    let mut graph = sample_graph();
    graph.traces[1].constants = vec![3, 2]; // the twin of constant 1
    let once = dir.path().join("once.mlxfn");
    let summary = write_file(&once, &graph, &constants, WriteOptions::default()).unwrap();
    assert_eq!(summary.deduplicated_count, 1);
    assert_eq!(summary.constant_count, 3);
    let file = MlxfnFile::open(&once).unwrap();
    assert_eq!(file.graph().traces[1].constants, vec![1, 2]);
    let plain = write_sample(dir.path());
    assert_eq!(std::fs::metadata(&once).unwrap().len(), std::fs::metadata(&plain).unwrap().len());
    // Same bytes with another dtype are a different constant.
    constants[3].dtype = DType::Int8;
    let summary = write_file(&once, &graph, &constants, WriteOptions::default()).unwrap();
    assert_eq!(summary.deduplicated_count, 0);
}

#[test]
fn writer_rejects_bad_graphs_and_leaves_nothing() {
    let dir = tmpdir();
    let c = consts();
    let path = dir.path().join("bad.mlxfn");
    let mut graph = sample_graph();
    graph.traces[0].nodes[0].inputs = vec![0, 99];
    let err = write_file(&path, &graph, &data(&c), WriteOptions::default()).unwrap_err();
    assert!(matches!(err, Error::InvalidGraph { .. }), "{err}");
    assert!(err.to_string().contains("node 0 (Add) uses value 99"), "{err}");
    let mut constants = data(&c);
    constants[0].shape = &[5];
    let err = write_file(&path, &sample_graph(), &constants, WriteOptions::default()).unwrap_err();
    assert!(err.to_string().contains("constant 0 has 24 bytes"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no file and no temp file");
}

#[test]
fn durable_write_replaces_the_old_file() {
    let dir = tmpdir();
    let path = write_sample(dir.path());
    let graph = Graph { metadata: "second".into(), ..Graph::default() };
    write_file(&path, &graph, &[], WriteOptions { durable: true }).unwrap();
    assert_eq!(MlxfnFile::open(&path).unwrap().graph().metadata, "second");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn dead_writers_temporaries_are_removed_but_not_live_ones() {
    let dir = tmpdir();
    let stale = dir.path().join(".sample.mlxfn.dead01.tmp");
    std::fs::write(&stale, b"half a file").unwrap();
    // A live writer holds its lock (flock conflicts across open files, even in one process).
    let live = dir.path().join(".sample.mlxfn.live01.tmp");
    let held = std::fs::File::create(&live).unwrap();
    held.lock().unwrap();
    let unrelated = dir.path().join(".other.mlxfn.dead02.tmp");
    std::fs::write(&unrelated, b"another target's").unwrap();

    let path = write_sample(dir.path());
    assert!(!stale.exists(), "a dead writer's temporary file survived the next export");
    assert!(live.exists(), "a live writer's temporary file was removed");
    assert!(unrelated.exists(), "another target's temporary file was touched");
    MlxfnFile::open(&path).unwrap();
    drop(held);
    write_sample(dir.path());
    assert!(!live.exists());
}

fn open_bytes(dir: &Path, bytes: &[u8]) -> Error {
    let path = dir.join("hostile.mlxfn");
    std::fs::write(&path, bytes).unwrap();
    MlxfnFile::open(&path).expect_err("hostile file opened")
}

#[test]
fn every_truncation_is_an_error() {
    let dir = tmpdir();
    let bytes = std::fs::read(write_sample(dir.path())).unwrap();
    for n in (0..bytes.len()).step_by(97).chain(0..HEADER_SIZE + 200) {
        let err = open_bytes(dir.path(), &bytes[..n]);
        assert!(
            matches!(err, Error::Truncated { .. } | Error::NotMlxfn { .. } | Error::BadHeader { .. }),
            "cut at {n}: {err}"
        );
    }
}

#[test]
fn size_errors_say_what_is_wrong() {
    let dir = tmpdir();
    let bytes = std::fs::read(write_sample(dir.path())).unwrap();
    let n = bytes.len();
    let short = open_bytes(dir.path(), &bytes[..n - 1]).to_string();
    assert!(short.ends_with(&format!("truncated: the header says {n} bytes, the file has {}", n - 1)), "{short}");
    let cut = open_bytes(dir.path(), &bytes[..5]).to_string();
    assert!(cut.ends_with("truncated: 5 bytes, shorter than the 64-byte header"), "{cut}");
    let mut long = bytes.clone();
    long.extend_from_slice(&[0; 3]);
    let long = open_bytes(dir.path(), &long).to_string();
    assert!(
        long.ends_with(&format!("the header says {n} bytes, the file has {}: bytes were appended", n + 3)),
        "{long}"
    );
    let empty = open_bytes(dir.path(), &[]).to_string();
    assert!(empty.ends_with("not an mlxfn file (the file is empty)"), "{empty}");
}

#[test]
fn every_bit_flip_in_header_and_graph_is_an_error() {
    let dir = tmpdir();
    let bytes = std::fs::read(write_sample(dir.path())).unwrap();
    let fb_end = HEADER_SIZE + Header::decode(&bytes).unwrap().flatbuffer_size as usize;
    for bit in 0..fb_end * 8 {
        let mut b = bytes.clone();
        b[bit / 8] ^= 1 << (bit % 8);
        open_bytes(dir.path(), &b);
    }
}

#[test]
fn newer_version_is_named() {
    let dir = tmpdir();
    let bytes = std::fs::read(write_sample(dir.path())).unwrap();
    let mut header = Header::decode(&bytes).unwrap();
    header.format_version = FORMAT_VERSION + 1;
    let mut b = bytes.clone();
    b[..HEADER_SIZE].copy_from_slice(&header.encode());
    let err = open_bytes(dir.path(), &b);
    assert!(matches!(err, Error::NewerVersion { found, .. } if found == FORMAT_VERSION + 1), "{err}");
}

/// Build a file around a hand-made graph and tables, checksums correct, so
/// that only the reader's table validation can catch the problem.  The
/// segment area starts on a page; `prefixes` are (offset in the area, u64)
/// values written into it.
fn crafted(
    version: u32,
    graph: &Graph,
    constants: &[ConstantEntry],
    segments: &[SegmentEntry],
    segment_bytes: u64,
    prefixes: &[(u64, u64)],
) -> Vec<u8> {
    let fb = codec::encode(graph, version, "test", constants, segments);
    let fb_end = (HEADER_SIZE + fb.len()) as u64;
    let seg_off = fb_end.div_ceil(SEGMENT_ALIGNMENT) * SEGMENT_ALIGNMENT;
    let header = Header {
        format_version: version,
        flatbuffer_offset: HEADER_SIZE as u64,
        flatbuffer_size: fb.len() as u64,
        segments_offset: seg_off,
        segments_size: segment_bytes,
        file_size: seg_off + segment_bytes,
        flatbuffer_crc32: crc32fast::hash(&fb),
    };
    let mut out = header.encode().to_vec();
    out.extend_from_slice(&fb);
    out.resize((seg_off + segment_bytes) as usize, 0);
    for &(at, value) in prefixes {
        let at = (seg_off + at) as usize;
        out[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }
    out
}

fn entry(segment: u32, offset: u64, length: u64, shape: &[i64]) -> ConstantEntry {
    ConstantEntry { shape: shape.to_vec(), dtype: DType::UInt8, segment, offset, length, hash: 0 }
}

#[test]
fn tables_pointing_outside_the_file_are_refused() {
    let dir = tmpdir();
    let graph = Graph::default();
    let seg = [SegmentEntry { offset: 0, size: 128 }];
    let cases: Vec<(Vec<ConstantEntry>, Vec<SegmentEntry>, &str)> = vec![
        (vec![entry(0, 124, 8, &[8])], seg.to_vec(), "runs past the end of segment"),
        (vec![entry(0, u64::MAX, 8, &[8])], seg.to_vec(), "runs past the end of segment"),
        (vec![entry(3, 0, 8, &[8])], seg.to_vec(), "in segment 3 of 1"),
        (vec![entry(0, 64, 8, &[9])], seg.to_vec(), "has 8 bytes but shape"),
        (vec![entry(0, 64, 8, &[i64::MAX, 4])], seg.to_vec(), "impossible size"),
        (vec![entry(0, 72, 8, &[8])], seg.to_vec(), "constant 0 at 16456 is not aligned to 64 bytes"),
        (vec![], vec![SegmentEntry { offset: 0, size: 1 << 40 }], "outside the segment area"),
        (vec![], vec![SegmentEntry { offset: 100, size: 1 }], "unaligned"),
        (vec![entry(0, 64, 8, &[8])], seg.to_vec(), "constant 0 has 8 bytes but its length prefix says 0"),
    ];
    for (constants, segments, expected) in cases {
        let err = open_bytes(dir.path(), &crafted(FORMAT_VERSION, &graph, &constants, &segments, 128, &[]));
        assert!(matches!(err, Error::Invalid { .. }), "{err}");
        assert!(err.to_string().contains(expected), "{err} lacks {expected:?}");
    }
    let mut bad_ids = sample_graph();
    bad_ids.traces[0].outputs = vec![1000];
    let entries: Vec<_> = (0..3).map(|_| entry(0, 0, 0, &[0])).collect();
    let err = open_bytes(dir.path(), &crafted(FORMAT_VERSION, &bad_ids, &entries, &seg, 128, &[]));
    assert!(err.to_string().contains("output refers to value 1000"), "{err}");
}

#[test]
fn length_prefixes_must_not_overlap_other_bytes() {
    let dir = tmpdir();
    let seg = [SegmentEntry { offset: 0, size: 256 }];
    // Two constants whose bytes overlap, and one whose prefix lies in another's bytes.
    let overlap = [entry(0, 64, 64, &[64]), entry(0, 64, 64, &[64])];
    let err = open_bytes(dir.path(), &crafted(FORMAT_VERSION, &Graph::default(), &overlap, &seg, 256, &[(56, 64)]));
    assert!(err.to_string().contains("at 16448 overlaps the bytes before it, which end at 16512"), "{err}");
    let tight = [entry(0, 64, 64, &[64]), entry(0, 128, 8, &[8])];
    let err =
        open_bytes(dir.path(), &crafted(FORMAT_VERSION, &Graph::default(), &tight, &seg, 256, &[(56, 64), (120, 8)]));
    assert!(err.to_string().contains("constant 1 at 16512 overlaps the bytes before it, which end at 16512"), "{err}");
    let good = [entry(0, 64, 56, &[56]), entry(0, 128, 8, &[8])];
    let bytes = crafted(FORMAT_VERSION, &Graph::default(), &good, &seg, 256, &[(56, 56), (120, 8)]);
    MlxfnFile::from_bytes("good", bytes).expect("prefixes in the gaps");
}

#[test]
fn version_1_files_are_still_read() {
    // Version 1: the segment area and every segment on a page, no length prefixes.
    let dir = tmpdir();
    let constants = [entry(0, 0, 8, &[8]), entry(1, 0, 16, &[16])];
    let segments = [SegmentEntry { offset: 0, size: 8 }, SegmentEntry { offset: SEGMENT_ALIGNMENT, size: 16 }];
    let graph = Graph { metadata: "old".into(), ..Graph::default() };
    let path = dir.path().join("v1.mlxfn");
    std::fs::write(&path, crafted(1, &graph, &constants, &segments, SEGMENT_ALIGNMENT + 16, &[])).unwrap();
    let file = MlxfnFile::open(&path).expect("a version 1 file opens");
    assert_eq!((file.header().format_version, file.graph().metadata.as_str()), (1, "old"));
    assert_eq!(file.constant_offset(1) % SEGMENT_ALIGNMENT, 0);
    let unaligned = [SegmentEntry { offset: 0, size: 8 }, SegmentEntry { offset: 64, size: 16 }];
    let err = open_bytes(dir.path(), &crafted(1, &graph, &constants, &unaligned, 128, &[]));
    assert!(err.to_string().contains("segment 1 (offset 64, size 16) is unaligned"), "{err}");
}

#[test]
fn constant_corruption_is_found_by_verify() {
    let dir = tmpdir();
    let path = write_sample(dir.path());
    let file = MlxfnFile::open(&path).unwrap();
    let at = file.constant_offset(1) as usize + 10;
    drop(file);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[at] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let file = MlxfnFile::open(&path).expect("opens without verification");
    let err = file.verify_hashes().unwrap_err();
    assert!(matches!(err, Error::Integrity { constant: 1, .. }), "{err}");
}

#[test]
fn sniff_recognises_mlx_files() {
    let mut mlx = 6u64.to_le_bytes().to_vec();
    mlx.extend_from_slice(b"0.32.4");
    mlx.extend_from_slice(&[1, 0, 0, 0]);
    assert_eq!(mlxfn_core::sniff_bytes(&mlx), FileKind::MlxNative { mlx_version: "0.32.4".into() });
    assert_eq!(mlxfn_core::sniff_bytes(b"hello there, world"), FileKind::Unknown);
    assert_eq!(mlxfn_core::sniff_bytes(&[]), FileKind::Unknown);
    assert_eq!(mlxfn_core::sniff_bytes(b"\x89MLX"), FileKind::Mlxfn, "the start of the magic: cut short");
    assert_eq!(mlxfn_core::sniff_bytes(b"\x89MLY"), FileKind::Unknown);
    let missing = mlxfn_core::sniff(Path::new("/nonexistent/file")).unwrap_err();
    assert!(matches!(missing, Error::NotFound { .. }));
}

#[test]
fn copy_out_of_the_mapping() {
    let dir = tmpdir();
    let file = MlxfnFile::open(&write_sample(dir.path())).unwrap();
    let c = consts();
    let (mut large, mut small) = (vec![0u8; c.large.len()], vec![0u8; c.small.len()]);
    file.copy_constants(vec![(1, &mut large[..]), (0, &mut small[..])]).unwrap();
    assert_eq!((large.as_slice(), small.as_slice()), (&c.large[..], &c.small[..]));
    assert_eq!(file.constant_bytes(1), &c.large[..], "pages dropped from the map fault back in");
    let err = file.copy_constants(vec![(0, &mut [0u8; 8][..])]).unwrap_err();
    assert!(err.to_string().contains("constant 0 has 24 bytes, the destination 8"), "{err}");
    let err = file.copy_constants(vec![(7, &mut [0u8; 8][..])]).unwrap_err();
    assert!(err.to_string().contains("constant 7 out of range: the file has 3"), "{err}");
}

#[test]
fn from_bytes_checks_what_open_checks() {
    let dir = tmpdir();
    let path = write_sample(dir.path());
    let bytes = std::fs::read(&path).unwrap();
    let file = MlxfnFile::from_bytes("in memory", bytes.clone()).expect("valid bytes");
    assert_eq!(file.graph(), &sample_graph());
    let c = consts();
    assert_eq!(file.constant_bytes(1), &c.large[..]);
    let mut out = vec![0u8; 24];
    file.copy_constants(vec![(0, &mut out[..])]).unwrap();
    assert_eq!(out, c.small);
    file.verify_hashes().unwrap();
    file.check_unchanged().unwrap();
    for n in [0, 5, 63, 64, 100, bytes.len() - 1] {
        let err = MlxfnFile::from_bytes("in memory", bytes[..n].to_vec()).unwrap_err();
        let from_disk = open_bytes(dir.path(), &bytes[..n]);
        assert_eq!(std::mem::discriminant(&err), std::mem::discriminant(&from_disk), "cut at {n}");
        assert!(err.to_string().starts_with("in memory: "), "{err}");
    }
}

#[test]
fn from_shared_checks_what_open_checks_without_a_copy() {
    let dir = tmpdir();
    let bytes: std::sync::Arc<[u8]> = std::fs::read(write_sample(dir.path())).unwrap().into();
    let file = MlxfnFile::from_shared("shared", Box::new(bytes.clone())).expect("valid bytes");
    assert_eq!(file.graph(), &sample_graph());
    let c = consts();
    assert_eq!(file.constant_bytes(1), &c.large[..]);
    let at = file.constant_bytes(1).as_ptr() as usize - bytes.as_ptr() as usize;
    assert_eq!(at as u64, file.constant_offset(1), "a view of the caller's bytes, not a copy");
    file.verify_hashes().unwrap();
    assert_eq!(file.raw_fd(), None);
    for n in [0, 5, 64, 100, bytes.len() - 1] {
        let cut: std::sync::Arc<[u8]> = bytes[..n].into();
        let err = MlxfnFile::from_shared("shared", Box::new(cut)).unwrap_err();
        let from_disk = open_bytes(dir.path(), &bytes[..n]);
        assert_eq!(std::mem::discriminant(&err), std::mem::discriminant(&from_disk), "cut at {n}");
        assert!(err.to_string().starts_with("shared: "), "{err}");
    }
}

/// Set a file's modification time well into the past, so that a rewrite in
/// the same clock tick as the export still shows up as a new time.
fn age(path: &Path) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000)).unwrap();
}

#[test]
fn a_file_rewritten_in_place_is_refused_one_replaced_or_deleted_is_not() {
    let dir = tmpdir();
    let path = write_sample(dir.path());
    age(&path);
    let file = MlxfnFile::open(&path).unwrap();
    // Replaced by rename (what the writer does), then deleted: the mapping
    // still holds the old inode, unchanged.
    let other = Graph { metadata: "replacement".into(), ..Graph::default() };
    write_file(&path, &other, &[], WriteOptions::default()).unwrap();
    file.check_unchanged().expect("a rename leaves the old inode alone");
    std::fs::remove_file(&path).unwrap();
    file.check_unchanged().expect("deleting leaves the old inode alone");
    assert_eq!(file.constant_bytes(1), &consts().large[..]);
    file.verify_hashes().unwrap();

    // Rewritten in place with the same length, then truncated.
    let path = write_sample(dir.path());
    age(&path);
    let file = MlxfnFile::open(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes).unwrap(); // same inode, same bytes, new time
    let err = file.check_unchanged().unwrap_err();
    assert!(matches!(err, Error::Changed { .. }), "{err}");
    assert!(err.to_string().contains("written to") && err.to_string().contains("sample.mlxfn"), "{err}");
    assert!(matches!(file.verify_hashes(), Err(Error::Changed { .. })));
    std::fs::File::options().write(true).open(&path).unwrap().set_len(100).unwrap();
    let err = file.check_unchanged().unwrap_err();
    assert!(err.to_string().contains(&format!("its size went from {} to 100 bytes", bytes.len())), "{err}");
}

#[test]
fn concurrent_writers_of_one_target_never_remove_each_others_temporaries() {
    // Each writer's cleanup sees the other's temporary; it must skip it while
    // it is locked, and a temporary removed in the instant between its
    // creation and its lock must be detected and made again.
    let dir = tmpdir();
    let path = dir.path().join("shared.mlxfn");
    let bytes: Vec<u8> = (0..SEGMENT_ALIGNMENT as usize * 8).map(|i| (i % 7) as u8).collect();
    std::thread::scope(|s| {
        for t in 0..3 {
            let (path, bytes) = (&path, &bytes);
            s.spawn(move || {
                for round in 0..30 {
                    let graph = Graph { metadata: format!("{t}/{round}"), ..Graph::default() };
                    let c = [ConstantData { shape: &[bytes.len() as i64], dtype: DType::UInt8, bytes }];
                    write_file(path, &graph, &c, WriteOptions::default()).expect("every write succeeds");
                }
            });
        }
    });
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["shared.mlxfn"], "temporaries left behind");
    let file = MlxfnFile::open(&path).unwrap();
    assert!(file.graph().metadata.ends_with("/29"), "{}", file.graph().metadata);
    file.verify_hashes().unwrap();
}

#[test]
fn dynamic_traces_round_trip_and_inconsistent_ones_are_refused() {
    use mlxfn_core::{ConstantExpr, Dim, OutputExpr};
    let dir = tmpdir();
    let scalar = 7i32.to_le_bytes();
    let c = consts();
    let mut constants = data(&c);
    constants.push(ConstantData { shape: &[], dtype: DType::Int32, bytes: &scalar });
    let mut graph = sample_graph();
    graph.traces[0].constants = vec![0, 3];
    graph.traces[0].constant_exprs = vec![ConstantExpr { position: 1, expr: fixtures::affine(5, 1) }];
    let path = dir.path().join("dynamic.mlxfn");
    write_file(&path, &graph, &constants, WriteOptions::default()).unwrap();
    let file = MlxfnFile::open(&path).unwrap();
    assert_eq!(file.graph(), &graph);
    assert_eq!(file.graph().traces[0].base_sizes(), vec![2]);

    let broken = |edit: &dyn Fn(&mut Trace), expected: &str| {
        let mut g = graph.clone();
        edit(&mut g.traces[0]);
        let err = write_file(&dir.path().join("bad.mlxfn"), &g, &constants, WriteOptions::default()).unwrap_err();
        assert!(err.to_string().contains(expected), "{err} lacks {expected:?}");
    };
    broken(&|t| t.dims[0].axes = vec![(0, 5)], "dim 0 names axis 5 of input 0, which does not exist");
    broken(&|t| t.dims[0].axes = vec![(0, 0), (0, 1)], "dim 0 joins input axes of different sizes");
    broken(&|t| t.dims[0].min = 3, "dim 0 serves 3..64 but was traced at 2");
    broken(&|t| t.dims[0].axes.clear(), "dim 0 names no input axis");
    broken(
        &|t| t.nodes[0].output_exprs[0].expr = Some(fixtures::affine(1, 1)),
        "node 0 (Add) output 0 axis 0: its expression does not give the traced size 2",
    );
    broken(&|t| t.nodes[0].output_exprs[0].axis = 9, "node 0 (Add) output 0 axis 9: no such output axis");
    broken(
        &|t| t.constant_exprs[0].expr.terms[0].dims = vec![4],
        "constant 1: an expression uses dim 4 but the trace has 1",
    );
    broken(
        &|t| t.constant_exprs[0].expr.constant = (1, 0),
        "constant 1: an expression has a denominator that is not positive",
    );
    broken(&|t| t.constant_exprs[0].position = 2, "a constant expression names constant 2 of 2");
    broken(&|t| t.dims.clear(), "an expression in a trace without dynamic sizes");
    let huge = OutputExpr { output: 0, axis: 0, expr: Some(fixtures::affine(i64::MAX, i64::MAX)) };
    broken(&|t| t.nodes[0].output_exprs = vec![huge.clone()], "its expression does not give the traced size 2");
    // Only the reader knows the constant table: a value-following constant
    // must be a scalar there.
    let mut g = graph.clone();
    g.traces[0].constant_exprs[0].position = 0;
    g.traces[0].dims = vec![Dim { axes: vec![(0, 0)], min: 0, max: 9 }];
    let path = dir.path().join("nonscalar.mlxfn");
    write_file(&path, &g, &constants, WriteOptions::default()).unwrap();
    let err = MlxfnFile::open(&path).unwrap_err();
    assert!(
        err.to_string().contains("trace 0: constant 0 has a value that follows the sizes but shape [2, 3]"),
        "{err}"
    );
}

/// A dynamic trace of one (4,) input whose one node takes `arg`.
fn one_node_graph(arg: Arg) -> Graph {
    let trace = Trace {
        inputs: vec![info(&[4], DType::Float32)],
        nodes: vec![node("Reshape", vec![arg], vec![0])],
        outputs: vec![1],
        dims: vec![Dim { axes: vec![(0, 0)], min: 1, max: 64 }],
        ..Trace::default()
    };
    Graph { traces: vec![trace], ..Graph::default() }
}

#[test]
fn expression_programs_need_format_3_and_files_without_them_stay_format_2() {
    let dir = tmpdir();
    let program = one_node_graph(Arg::Expr(round_up(256)));
    let polynomial = one_node_graph(Arg::Expr(fixtures::affine(1, 2)));
    let c = consts();
    let (sample, sample_constants) = (sample_graph(), data(&c));
    for (graph, constants, version) in [(&program, &[][..], 3), (&polynomial, &[], 2), (&sample, &sample_constants, 3)]
    {
        let path = dir.path().join(format!("v{version}.mlxfn"));
        write_file(&path, graph, constants, WriteOptions::default()).unwrap();
        let file = MlxfnFile::open(&path).unwrap();
        assert_eq!((file.header().format_version, file.graph()), (version, graph));
    }
    let Arg::Expr(e) = &program.traces[0].nodes[0].args[0] else { unreachable!() };
    assert_eq!([1, 256, 257].map(|n| e.value(&[n]).unwrap()), [(256, 1), (256, 1), (512, 1)]);
}

#[test]
fn bad_expression_programs_are_refused() {
    let dir = tmpdir();
    // A version-2 reader would take a program for its empty polynomial: a
    // version-2 file holding one is refused.
    let path = dir.path().join("v3.mlxfn");
    std::fs::write(&path, crafted(3, &one_node_graph(Arg::Expr(round_up(256))), &[], &[], 0, &[])).unwrap();
    MlxfnFile::open(&path).expect("the same graph as version 3 opens");
    let err = open_bytes(dir.path(), &crafted(2, &one_node_graph(Arg::Expr(round_up(256))), &[], &[], 0, &[]));
    assert!(
        err.to_string().contains("an expression program in a file of format version 2 (programs need version 3)"),
        "{err}"
    );
    type Edit<'a> = &'a dyn Fn(&mut mlxfn_core::Expr);
    let cases: Vec<(Edit<'_>, &str)> = vec![
        (&|e| e.program[1].constant = (0, 1), "step 2 divides by zero"),
        (&|e| e.program[3].a = 3, "step 3 uses steps 3 and 1, not both before it"),
        (&|e| e.program[0].constant = (1, -1), "step 0: an expression has a denominator that is not positive"),
        (&|e| e.terms = e.program[0].terms.clone(), "both a program and a polynomial"),
        (&|e| e.program = vec![e.program[0].clone(); 65], "65 steps (at most 64)"),
    ];
    for (edit, expected) in cases {
        let mut e = round_up(256);
        edit(&mut e);
        let bytes = crafted(3, &one_node_graph(Arg::Expr(e)), &[], &[], 0, &[]);
        let err = open_bytes(dir.path(), &bytes);
        assert!(err.to_string().contains(expected), "{err} lacks {expected:?}");
    }
}
