# Holdfast — build, run, test, benchmark, lint.
# The build cache lives outside the clone so CI runs and fresh clones reuse it.
CARGO_TARGET_DIR ?= $(HOME)/.cache/holdfast/target
export CARGO_TARGET_DIR
CARGO ?= cargo
HOLDFAST := $(CARGO_TARGET_DIR)/debug/holdfast

.PHONY: build run cluster sdk test test-rust test-sdk bench link-order lint fmt clean-data

build:
	$(CARGO) build --workspace --all-targets

## Start a single-node kernel on the embedded default configuration (data in ./holdfast-data)
## with the example services registered, and print how to call them.
## The same build as `make test` (features unify the same way), so one follows the other at once.
run: sdk build
	examples/run.sh

## Start three local nodes from deploy/cluster.toml with the example services registered, and
## print how to call any node and how to kill one.
cluster: sdk build
	examples/cluster.sh

sdk:
	@if [ ! -f sdk-ts/dist/src/index.js ]; then cd sdk-ts && npm ci --no-audit --no-fund && npm run build; fi

## Everything CI runs: the SDK (built first: Rust tests drive real Node endpoints), then Rust unit, storage-suite and end-to-end tests.
test: test-sdk test-rust

test-rust: build
	cd tests/e2e/ui && npm ci --no-audit --no-fund
	cd tests/e2e/restate-cli && npm ci --no-audit --no-fund
	$(CARGO) test --workspace --no-fail-fast

test-sdk:
	@if [ -f sdk-ts/package.json ]; then cd sdk-ts && npm ci --no-audit --no-fund && npm test; fi

## Measure group commit, fsync, start-up and idle memory; writes docs/benchmarks.md.
bench:
	tests/bench/run.sh

## Regenerate kernel/holdfast/link-order.txt, the functions release builds place side by side
## (needs root and perf; see docs/benchmarks.md, "Link order").
link-order:
	tests/bench/link-order.sh

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@if [ -f sdk-ts/package.json ]; then cd sdk-ts && npm ci --no-audit --no-fund && npm run lint; fi
	npx --prefix sdk-ts tsc -p net/admin/ui

fmt:
	$(CARGO) fmt --all

clean-data:
	rm -rf ./holdfast-data
