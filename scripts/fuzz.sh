#!/usr/bin/env bash
# Build and run the libFuzzer targets of the mlxfn reader (rust/mlxfn-core/fuzz).
#
#   scripts/fuzz.sh SECONDS [TARGET...]    (targets: open_file decode_graph; default both)
#
# Stable Rust: the crate is built with the coverage instrumentation that
# cargo-fuzz passes (sancov), with debug assertions and overflow checks on,
# so no nightly toolchain or cargo-fuzz install is needed.  AddressSanitizer
# is added too (through RUSTC_BOOTSTRAP=1, as cargo-fuzz does on nightly): it
# catches out-of-bounds reads in unsafe code (the FlatBuffers accessors) and
# lets libFuzzer enforce -malloc_limit_mb on every single allocation.
# FUZZ_SANITIZER=none builds without it; when FUZZ_SANITIZER is unset and the
# toolchain cannot build with it, the script says so and fuzzes without.
#
# The corpus starts from real mlxfn files written by the core's writer
# (`cargo run --example fuzz_seeds`) and grows under target/fuzz/corpus/.
# Memory is capped (-rss_limit_mb, -malloc_limit_mb): the reader must never
# allocate more than a file's size justifies.  A failing input is saved in
# target/fuzz/artifacts/ and the script exits non-zero; replay it with
#   target/fuzz/build-address/<host>/release/<target> <file>
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(open_file decode_graph)
sanitizer=${FUZZ_SANITIZER:-address}
host=$(rustc -vV | sed -n 's/^host: //p')

# Build the targets into target/fuzz/build-$1 (address or none).
build_targets() {
  local flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
  local bootstrap=()
  case $1 in
    address) flags="$flags -Zsanitizer=address"; bootstrap=(RUSTC_BOOTSTRAP=1) ;;
    none) ;;
    *) echo "FUZZ_SANITIZER must be address or none, not $1" >&2; exit 2 ;;
  esac
  # --target keeps the instrumentation off build scripts and proc macros, as cargo-fuzz does.
  env ${bootstrap[@]+"${bootstrap[@]}"} RUSTFLAGS="$flags" cargo build --quiet --release \
    --manifest-path rust/mlxfn-core/fuzz/Cargo.toml --target "$host" --target-dir "target/fuzz/build-$1"
}
if ! build_targets "$sanitizer"; then
  [ "$sanitizer" = address ] && [ -z "${FUZZ_SANITIZER:-}" ] || exit 1
  echo "fuzz: this toolchain cannot build with AddressSanitizer; fuzzing without it" >&2
  sanitizer=none
  build_targets none
fi
build=target/fuzz/build-$sanitizer

seeds=target/fuzz/seeds
rm -rf "$seeds" && mkdir -p "$seeds"
cargo run --quiet -p mlxfn-core --example fuzz_seeds -- "$seeds"

mkdir -p target/fuzz/artifacts
for target in "${targets[@]}"; do
  corpus=target/fuzz/corpus/$target
  log=target/fuzz/$target.log
  mkdir -p "$corpus"
  echo "fuzz $target for ${seconds}s ($sanitizer sanitizer; corpus $corpus, seeds $seeds)"
  status=0
  "$build/$host/release/$target" "$corpus" "$seeds" \
    -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=256 -timeout=10 \
    -max_len=65536 -print_final_stats=1 -artifact_prefix=target/fuzz/artifacts/ >"$log" 2>&1 || status=$?
  grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb)|^#[0-9]+[[:space:]]+DONE" "$log" || true
  if [ "$status" -ne 0 ]; then
    grep -E -A 30 "^(==[0-9]+==ERROR|thread .* panicked)|deadly signal|out-of-memory|malloc\(|timeout" "$log" | head -60 || tail -40 "$log"
    echo "fuzz $target FAILED (exit $status): the failing input is in target/fuzz/artifacts/, the log in $log" >&2
    exit 1
  fi
  echo "corpus $target: $(find "$corpus" -type f | wc -l) files"
done
