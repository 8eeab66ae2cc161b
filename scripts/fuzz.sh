#!/usr/bin/env bash
# Build and run the libFuzzer targets of the mlxfn reader (rust/mlxfn-core/fuzz).
#
#   scripts/fuzz.sh SECONDS [TARGET...]    (targets: open_file decode_graph; default both)
#
# Stable Rust: the crate is built with the coverage instrumentation that
# cargo-fuzz passes (sancov), with debug assertions and overflow checks on,
# so no nightly toolchain or cargo-fuzz install is needed.  The corpus starts
# from real mlxfn files written by the core's own test writer
# (`cargo run --example fuzz_seeds`) and grows under target/fuzz/corpus/.
# Memory is capped (-rss_limit_mb, -malloc_limit_mb): the reader must never
# allocate more than a file's size justifies.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift
targets=("${@:-open_file decode_graph}")
read -r -a targets <<<"${targets[*]}"

export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# --target keeps the instrumentation off build scripts, as cargo-fuzz does.
host=$(rustc -vV | sed -n 's/^host: //p')
cargo build --quiet --release --manifest-path rust/mlxfn-core/fuzz/Cargo.toml --target "$host" --target-dir target/fuzz/build
unset RUSTFLAGS

seeds=target/fuzz/seeds
rm -rf "$seeds" && mkdir -p "$seeds"
cargo run --quiet --release -p mlxfn-core --example fuzz_seeds -- "$seeds"

for target in "${targets[@]}"; do
  corpus=target/fuzz/corpus/$target
  mkdir -p "$corpus" target/fuzz/artifacts
  echo "fuzz $target for ${seconds}s (corpus $corpus, seeds $seeds)"
  target/fuzz/build/"$host"/release/"$target" "$corpus" "$seeds" \
    -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=512 -timeout=10 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix=target/fuzz/artifacts/ 2>&1 | grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE)|ERROR|panicked|SUMMARY|crash-|Test unit written" || true
  test "${PIPESTATUS[0]}" -eq 0 || { echo "fuzz $target FAILED (the failing input is in target/fuzz/artifacts/)"; exit 1; }
  echo "corpus $target: $(ls "$corpus" | wc -l) files"
done
