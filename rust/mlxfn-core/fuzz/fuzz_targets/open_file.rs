//! Open arbitrary bytes as an mlxfn file and walk everything the reader
//! exposes.  The header and flatbuffer checksums are recomputed first (when
//! the header's offsets allow), so that mutations reach the FlatBuffers
//! verifier and the semantic checks instead of stopping at a checksum.
#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mlxfn_core::MlxfnFile;

fn scratch() -> &'static std::path::PathBuf {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm".into() } else { std::env::temp_dir() };
        dir.join(format!("mlxfn-fuzz-{}.mlxfn", std::process::id()))
    })
}

fn with_checksums(data: &[u8]) -> Vec<u8> {
    let mut bytes = data.to_vec();
    if bytes.len() >= 64 {
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        let (offset, size) = (word(16), word(24));
        if let Some(end) = offset.checked_add(size).filter(|&end| end <= bytes.len() as u64) {
            let crc = crc32fast::hash(&bytes[offset as usize..end as usize]);
            bytes[56..60].copy_from_slice(&crc.to_le_bytes());
        }
        let crc = crc32fast::hash(&bytes[..60]);
        bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    }
    bytes
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    let mut file = std::fs::File::create(path).unwrap();
    file.write_all(&with_checksums(data)).unwrap();
    drop(file);
    let Ok(opened) = MlxfnFile::open(path) else { return };
    let graph = opened.graph();
    let mut seen = graph.metadata.len() + opened.mlxfn_version().len();
    for trace in &graph.traces {
        seen += trace.nodes.iter().map(|n| n.inputs.len() + n.outputs.len() + n.args.len()).sum::<usize>();
    }
    for index in 0..opened.constants().len() {
        let bytes = opened.constant_bytes(index);
        seen += bytes.first().copied().unwrap_or(0) as usize;
        let mut out = vec![0u8; bytes.len().min(1 << 16)];
        let _ = opened.copy_constant_into(index, 0, &mut out);
    }
    let _ = opened.verify_hashes();
    std::hint::black_box(seen);
});
