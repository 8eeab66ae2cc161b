//! Decode arbitrary bytes as the FlatBuffers graph: the verifier and the
//! decoder must refuse or accept, never panic, loop or over-allocate.  An
//! input that is a whole mlxfn file (the seeds) is cut to its flatbuffer, so
//! mutations land in the graph rather than in the header.
#![no_main]

use libfuzzer_sys::fuzz_target;

fn flatbuffer(data: &[u8]) -> &[u8] {
    if data.len() >= 64 && data.starts_with(b"\x89MLXFN\r\n") {
        let word = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().unwrap()) as usize;
        if let Some(fb) = word(16).checked_add(word(24)).and_then(|end| data.get(word(16)..end)) {
            return fb;
        }
    }
    data
}

fuzz_target!(|data: &[u8]| {
    let _ = std::hint::black_box(mlxfn_core::codec::decode(flatbuffer(data)));
});
