#!/usr/bin/env bash
# Builds and runs the egg-import fuzz target for N seconds (default 60), seeded with the real
# egg corpus. cargo-fuzz needs nightly-only compiler flags; RUSTC_BOOTSTRAP lets the stable
# toolchain accept them, because no nightly toolchain can be installed on our machines.
set -euo pipefail
cd "$(dirname "$0")/../egg-engine"
seconds="${1:-60}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/nexus-target}-fuzz"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

corpus="fuzz/corpus/import_egg"
mkdir -p "$corpus"
cp ../../shared/eggs/*.json ../../shared/eggs/*.yaml "$corpus"/ 2>/dev/null || true

cargo fuzz build import_egg
cargo fuzz run import_egg "$corpus" -- -max_total_time="$seconds" -max_len=1048576 -rss_limit_mb=2048 2>&1 \
  | tee "${TMPDIR:-/tmp}/nexus-fuzz.log" | grep -E '^(#[0-9]+.*(DONE|pulse)|Done|==|SUMMARY|.*crash)' || true
# libFuzzer exits non-zero on a finding; with pipefail and tee we check its final line instead.
if grep -qE 'SUMMARY|crash-|Test unit written' "${TMPDIR:-/tmp}/nexus-fuzz.log"; then
  echo "fuzzer found a failure; see ${TMPDIR:-/tmp}/nexus-fuzz.log and egg-engine/fuzz/artifacts" >&2
  exit 1
fi
grep -E '^Done [0-9]+ runs' "${TMPDIR:-/tmp}/nexus-fuzz.log" || true
