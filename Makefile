# mlxfn developer commands.  `make help` lists them.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(abspath $(VENV))/bin:$(PATH)

.DEFAULT_GOAL := help
.PHONY: help setup build demo test test-wheel lint lint-python lint-rust test-rust test-python bench-smoke fuzz-smoke fuzz bench regen check-regen regen-capi check-capi clean

help: ## Show this help
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# The build requirements of pyproject.toml (maturin; mlx and nanobind for the bridge).
$(VENV)/.ready: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires'], sep='\n')" > $(VENV)/build-requires.txt
	$(PY) -m pip install --quiet -r $(VENV)/build-requires.txt
	touch $@

setup: $(VENV)/.ready ## Create .venv with the build tool

build: setup ## Build the Rust core and the C++ bridge (rust/mlxfn-py/build.rs), install mlxfn editable into .venv
	$(VENV)/bin/maturin develop --release --extras test --quiet
	$(PY) -c "import sys, mlxfn._native as native; sys.exit(native.main())"

demo: build ## Export and import a ~1 GB Llama-style model with mlxfn and with MLX, print load times
	$(PY) examples/demo.py

test: build lint test-rust test-python test-wheel bench-smoke fuzz-smoke ## Build, lint, run the Rust and Python suites, the installed wheel's check, the benchmarks once and a short fuzz run

PY_SOURCES := python tests benches examples
lint: lint-python lint-rust check-regen check-capi ## Style, types and the binding's stub (Python); rustfmt and clippy (Rust); generated code up to date

lint-python: ## ruff check, ruff format --check, mypy --strict on python/mlxfn, stubtest of _mlxfn.pyi
	$(VENV)/bin/ruff check $(PY_SOURCES)
	$(VENV)/bin/ruff format --check $(PY_SOURCES)
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest mlxfn._mlxfn --allowlist python/mlxfn/stubtest-allowlist.txt

lint-rust: ## cargo fmt --check and cargo clippy -D warnings
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings

test-rust: ## Rust unit and integration tests (no Python needed)
	cargo test --workspace --quiet

test-python: ## pytest against MLX itself
	$(PY) -m pytest -q

WHEEL_CHECK := target/wheel-check
# The one-file LLM for the C++ check is exported by .venv (mlx-lm is a test extra); cmake
# goes into the fresh venv unless the machine has one.
test-wheel: build ## pip wheel ., install it into a fresh venv outside the checkout, check that it maps after MLX use and that C++ built with CMake against it equals Python
	rm -rf $(WHEEL_CHECK) && mkdir -p $(WHEEL_CHECK)
	$(PY) -m pip wheel --quiet --no-deps -w $(WHEEL_CHECK) .
	set -e; away=$$(mktemp -d); trap 'rm -rf "$$away"' EXIT; \
	$(PY) tests/wheel/prepare_llm.py "$$away/llm"; \
	$(PYTHON) -m venv "$$away/venv"; \
	"$$away/venv/bin/python" -m pip install --quiet $(WHEEL_CHECK)/mlxfn-*.whl; \
	env PATH=/usr/bin:/bin sh -c 'command -v cmake' >/dev/null || "$$away/venv/bin/python" -m pip install --quiet cmake; \
	cd "$$away" && env -u VIRTUAL_ENV PATH="$$away/venv/bin:/usr/bin:/bin" \
		"$$away/venv/bin/python" $(abspath tests/wheel/check_installed.py) $(abspath .) "$$away/llm"

FUZZ_SECONDS ?= 600
fuzz-smoke: ## Fuzz the Rust reader for 10 s per target (libFuzzer, stable Rust)
	scripts/fuzz.sh 10

fuzz: ## Fuzz the Rust reader for FUZZ_SECONDS per target (default 600); the corpus persists in target/fuzz
	scripts/fuzz.sh $(FUZZ_SECONDS)

bench: build ## Benchmarks (pytest-benchmark) and the whole-model comparison with ratios (benches/compare.py)
	$(PY) -m pytest benches -q --benchmark-only
	$(PY) benches/compare.py --model small --model llama-1g --pss --cold

bench-smoke: ## Run every benchmark once, untimed, on the small model
	MLXFN_BENCH_MODEL=small $(PY) -m pytest benches -q --benchmark-disable

regen: setup ## Regenerate the FlatBuffers Rust code from the schema
	scripts/regen-flatbuffers.sh

check-regen: setup ## Fail if the generated FlatBuffers code is stale
	scripts/regen-flatbuffers.sh --check

regen-capi: ## Regenerate the C ABI header native/include/mlxfn/mlxfn_core.h (pinned cbindgen)
	scripts/regen-capi-header.sh

check-capi: ## Fail if the C ABI header is stale
	scripts/regen-capi-header.sh --check

clean: ## Remove build outputs and the virtual environment
	rm -rf target $(VENV) .pytest_cache .benchmarks demo-out
