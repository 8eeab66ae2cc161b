#!/usr/bin/env bash
# Regenerate native/include/mlxfn/mlxfn_core.h, the C header of the core's C
# ABI (crate rust/mlxfn-capi), with the pinned cbindgen (installed into
# target/tools on first use; settings in rust/mlxfn-capi/cbindgen.toml).
#   scripts/regen-capi-header.sh          rewrite the header
#   scripts/regen-capi-header.sh --check  fail if the committed header is stale
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
version="0.29.4"
cbindgen="${CBINDGEN:-$root/target/tools/bin/cbindgen}"
if [ ! -x "$cbindgen" ] || [ "$("$cbindgen" --version)" != "cbindgen $version" ]; then
  cargo install --quiet --locked --version "=$version" --root "$root/target/tools" cbindgen
  cbindgen="$root/target/tools/bin/cbindgen"
fi
target="$root/native/include/mlxfn/mlxfn_core.h"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
# --quiet: cbindgen reads the core too (for its DType and ExprOp enums) and
# would warn about the FlatBuffers types of its generated code, which the
# header never uses.  Errors are still reported.
(cd "$root" && "$cbindgen" --quiet --config rust/mlxfn-capi/cbindgen.toml --crate mlxfn-capi \
  --output "$out/mlxfn_core.h" rust/mlxfn-capi)
if [ "${1:-}" = "--check" ]; then
  if ! cmp -s "$out/mlxfn_core.h" "$target"; then
    echo "native/include/mlxfn/mlxfn_core.h is stale: run scripts/regen-capi-header.sh" >&2
    exit 1
  fi
  echo "the C ABI header is up to date"
else
  cp "$out/mlxfn_core.h" "$target"
  echo "wrote $target"
fi
