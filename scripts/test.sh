#!/usr/bin/env bash
# Runs every check and test of the workspace on a fresh machine: installs what it needs,
# starts the services the tests use, then formats-checks, lints, tests and smoke-fuzzes.
#
#   scripts/test.sh            everything
#   FUZZ_SECONDS=0 scripts/test.sh   skip the fuzz smoke run
#
# With CI=true a test whose service is missing fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

# A target directory outside the clone keeps rebuilds fast across clones and CI runs.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/nexus-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Two cores: one build at a time, tests in parallel threads within it.
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
# Incremental caches are per clone path and grow by gigabytes a run; a fresh CI clone never
# reuses them, so they only fill the disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
FUZZ_SECONDS="${FUZZ_SECONDS:-20}"

step() { printf '\n=== %s\n' "$*"; }

if [ ! -d ../shared/eggs ]; then
  echo "error: ../shared/eggs (the egg corpus) is missing next to this clone" >&2
  exit 1
fi

# Every service the tests use (databases, container engines) and every test image has an
# idempotent setup script; each is quick when its service already runs. A script that has
# connection settings for the tests appends `export NAME=value` lines to $NEXUS_TEST_ENV.
export NEXUS_TEST_ENV="$CARGO_TARGET_DIR/nexus-test-env.sh"
mkdir -p "$CARGO_TARGET_DIR"
: > "$NEXUS_TEST_ENV"
for setup in scripts/services/*.sh scripts/images/*.sh; do
  [ -e "$setup" ] || continue
  step "setup: $setup"
  "$setup"
done
# shellcheck disable=SC1090
. "$NEXUS_TEST_ENV"

step "rustfmt"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
cargo fmt --all -- --check

step "clippy"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "docs (missing docs and broken links are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --locked

step "tests"
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked

if [ "$FUZZ_SECONDS" != "0" ]; then
  step "fuzz smoke run (${FUZZ_SECONDS}s)"
  scripts/fuzz.sh "$FUZZ_SECONDS"
fi

step "all checks passed"
