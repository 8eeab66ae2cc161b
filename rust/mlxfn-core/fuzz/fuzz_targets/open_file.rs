//! Open arbitrary bytes as an mlxfn file (`MlxfnFile::from_bytes`: the same
//! checks as `open`, without the disk) and walk everything the reader
//! exposes: graph, traces, nodes, args, constant and segment tables, every
//! constant's bytes, copies of them, and the hash check.  The header and
//! flatbuffer checksums are recomputed first (when the header's offsets
//! allow), so that mutations reach the FlatBuffers verifier and the semantic
//! checks instead of stopping at a checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlxfn_core::{Arg, MlxfnFile};

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

/// Something from every arg, nested lists included.
fn walk(arg: &Arg) -> usize {
    match arg {
        Arg::None => 1,
        Arg::Bool(b) => usize::from(*b),
        Arg::Int(i) => *i as usize,
        Arg::Float(f) => f.to_bits() as usize,
        Arg::Str(s) => s.len(),
        Arg::Dtype(d) => d.itemsize() as usize,
        Arg::Ints { values, tuple } => values.len() + usize::from(*tuple),
        Arg::List { items, .. } => items.iter().map(walk).fold(0, usize::wrapping_add),
        // The constant is any i64 the file holds: wrapping, as the sum is only for black_box.
        Arg::Expr(e) => e
            .terms
            .len()
            .wrapping_add(e.constant.0 as usize)
            .wrapping_add(usize::from(e.integer))
            .wrapping_add(e.program.iter().map(|s| s.a as usize ^ s.b as usize ^ s.terms.len()).sum::<usize>()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(file) = MlxfnFile::from_bytes("fuzz", with_checksums(data)) else { return };
    let graph = file.graph();
    let mut seen = graph.metadata.len() + graph.mlx_version.len() + file.mlxfn_version().len();
    // Argument values are anything the file holds: summed apart, wrapping.
    let mut args_seen = 0usize;
    seen += file.header().segments_offset as usize + file.segments().iter().map(|s| s.size as usize).sum::<usize>();
    for trace in &graph.traces {
        seen += trace.dims.len() + trace.constant_exprs.len();
        // Every expression of a trace that opened is valid: evaluating it at
        // any sizes must not panic (it says None on overflow).
        let sizes: Vec<i64> = trace.dims.iter().map(|d| d.max).collect();
        for node in &trace.nodes {
            for oe in node.output_exprs.iter().filter_map(|oe| oe.expr.as_ref()) {
                std::hint::black_box(oe.value(&sizes));
            }
            for arg in &node.args {
                if let Arg::Expr(e) = arg {
                    std::hint::black_box(e.value(&sizes)); // a program may divide by a size: None
                }
            }
        }
        seen += trace.value_count() + trace.keyword_names.iter().map(String::len).sum::<usize>();
        seen += trace.inputs.iter().map(|t| t.shape.len() + t.dtype.itemsize() as usize).sum::<usize>();
        for node in &trace.nodes {
            seen += node.op.len() + node.inputs.len() + node.outputs.iter().map(|t| t.shape.len()).sum::<usize>();
            args_seen = node.args.iter().map(walk).fold(args_seen, usize::wrapping_add);
        }
        seen += trace.outputs.len() + trace.constants.len();
    }
    for (index, constant) in file.constants().iter().enumerate() {
        let bytes = file.constant_bytes(index);
        assert_eq!(bytes.len() as u64, constant.length);
        assert_eq!(constant.dtype.nbytes(&constant.shape), Some(constant.length));
        seen += file.constant_offset(index) as usize + bytes.first().map_or(0, |&b| b as usize);
        // A copy of the whole constant, and one into a buffer too short (refused).
        let mut out = vec![0u8; bytes.len()];
        file.copy_constants(vec![(index, &mut out[..])]).expect("a copy of a whole constant");
        assert_eq!(out, bytes);
        out.push(0);
        assert!(file.copy_constants(vec![(index, &mut out[..])]).is_err());
    }
    let _ = file.verify_hashes();
    file.check_unchanged().expect("bytes in memory never change");
    std::hint::black_box((seen, args_seen));
});
