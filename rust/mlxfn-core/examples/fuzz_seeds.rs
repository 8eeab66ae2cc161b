//! Write a few small, valid mlxfn files into a directory: the seed corpus of
//! the fuzz targets (`scripts/fuzz.sh`).  Every argument kind, several
//! traces, shared and packed constants, a large segment-aligned constant.
//!
//!     cargo run -p mlxfn-core --example fuzz_seeds -- DIR

use std::path::PathBuf;

use mlxfn_core::{write_file, Arg, ConstantData, DType, Graph, Node, TensorInfo, Trace, WriteOptions};

fn info(shape: &[i64], dtype: DType) -> TensorInfo {
    TensorInfo { shape: shape.to_vec(), dtype }
}

fn every_arg() -> Vec<Arg> {
    vec![
        Arg::None,
        Arg::Bool(true),
        Arg::Int(-3),
        Arg::Float(0.25),
        Arg::Str("silu".into()),
        Arg::Dtype(DType::BFloat16),
        Arg::Ints { values: vec![1, -1], tuple: true },
        Arg::List { items: vec![Arg::Int(2), Arg::List { items: vec![Arg::Bool(false)], tuple: true }], tuple: false },
    ]
}

fn trace(constants: Vec<u32>, keyword: bool) -> Trace {
    let node = |op: &str, args: Vec<Arg>, inputs: Vec<u32>| Node {
        op: op.into(),
        args,
        inputs,
        outputs: vec![info(&[2, 3], DType::Float32)],
    };
    let first_constant = if keyword { 2 } else { 1 };
    Trace {
        keyword_names: if keyword { vec!["scale".into()] } else { vec![] },
        inputs: if keyword {
            vec![info(&[2, 3], DType::Float32), info(&[], DType::Float32)]
        } else {
            vec![info(&[2, 3], DType::Float32)]
        },
        constants,
        nodes: vec![
            node("Add", vec![], vec![0, first_constant]),
            node("Multiply", every_arg(), vec![first_constant + 1, 0]),
        ],
        outputs: vec![first_constant + 2],
    }
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("usage: fuzz_seeds DIR"));
    std::fs::create_dir_all(&dir).expect("create the seed directory");
    let small: Vec<u8> = (0..24u8).collect();
    let large: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    let c = [
        ConstantData { shape: &[2, 3], dtype: DType::Float32, bytes: &small },
        ConstantData { shape: &[20_000], dtype: DType::UInt8, bytes: &large },
        ConstantData { shape: &[0, 4], dtype: DType::Complex64, bytes: &[] },
    ];
    let graph = |traces: Vec<Trace>, shapeless: bool| Graph {
        mlx_version: "0.32.4".into(),
        metadata: "seed".into(),
        shapeless,
        traces,
    };
    let files = [
        ("empty.mlxfn", graph(vec![], false), &c[..0]),
        ("one_trace.mlxfn", graph(vec![trace(vec![0], false)], false), &c[..1]),
        ("keywords.mlxfn", graph(vec![trace(vec![0], true)], true), &c[..1]),
        ("two_traces.mlxfn", graph(vec![trace(vec![0], false), trace(vec![0], true)], false), &c[..1]),
        ("large.mlxfn", graph(vec![trace(vec![0], false)], false), &c[..]),
    ];
    for (name, graph, constants) in files {
        write_file(&dir.join(name), &graph, constants, WriteOptions::default()).expect("write a seed");
    }
}
