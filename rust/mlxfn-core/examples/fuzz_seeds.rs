//! Write a few small, valid mlxfn files into a directory: the seed corpus of
//! the fuzz targets (`scripts/fuzz.sh`), built from the format tests'
//! fixtures: every argument kind, several traces, keyword inputs, shared and
//! packed constants, a dynamic trace.
//!
//!     cargo run -p mlxfn-core --example fuzz_seeds -- DIR

use std::path::PathBuf;

use mlxfn_core::{write_file, Graph, Trace, WriteOptions};

#[path = "../tests/fixtures/mod.rs"]
mod fixtures;

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("usage: fuzz_seeds DIR"));
    std::fs::create_dir_all(&dir).expect("create the seed directory");
    let c = fixtures::consts();
    let data = fixtures::data(&c);
    let sample = fixtures::sample_graph();
    let (dynamic, plain) = (sample.traces[0].clone(), sample.traces[1].clone());
    let mut keywords = dynamic.clone();
    keywords.dims.clear();
    keywords.constant_exprs.clear();
    keywords.nodes.iter_mut().for_each(|n| n.output_exprs.clear());
    keywords.nodes[0].args.truncate(12); // no expressions outside a dynamic trace
    let graph = |traces: Vec<Trace>, shapeless: bool| Graph { traces, shapeless, ..sample.clone() };
    let files = [
        ("empty.mlxfn", graph(vec![], false), &data[..0]),
        ("static.mlxfn", graph(vec![keywords.clone()], false), &data[..2]),
        ("dynamic.mlxfn", graph(vec![dynamic], true), &data[..2]),
        ("two_traces.mlxfn", sample.clone(), &data[..]),
        ("shared.mlxfn", graph(vec![keywords, plain], false), &data[..]),
    ];
    for (name, graph, constants) in files {
        write_file(&dir.join(name), &graph, constants, WriteOptions::default()).expect("write a seed");
    }
}
