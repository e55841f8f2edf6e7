#!/usr/bin/env bash
# Installs s3s-fs, an S3-compatible server that keeps objects in a directory and checks every
# request's SigV4 signature, for the template and backup tests (they start and kill their own
# instances on loopback, see nexus_conformance::s3). Writes NEXUS_TEST_S3S_FS (the binary) to
# $NEXUS_TEST_ENV. Uses the machine's own cargo configuration. Idempotent: quick when the
# pinned version is installed.
set -euo pipefail

# 0.14.1 is the newest release that builds with the workspace's Rust (1.95).
VERSION=0.14.1
TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/nexus-target}"
ROOT="$TARGET/s3s-fs"
BIN="$ROOT/bin/s3s-fs"

if [ "$("$BIN" --version 2>/dev/null)" != "s3s-fs $VERSION" ]; then
  # Its own target directory: the workspace's is locked by the build that follows.
  CARGO_TARGET_DIR="$TARGET/s3s-fs-build" cargo install "s3s-fs@$VERSION" --features binary --locked --root "$ROOT" --quiet
  rm -rf "$TARGET/s3s-fs-build"
  echo "[s3] installed s3s-fs $VERSION"
else
  echo "[s3] s3s-fs $VERSION present"
fi
if [ -n "${NEXUS_TEST_ENV:-}" ]; then
  echo "export NEXUS_TEST_S3S_FS='${BIN}'" >>"$NEXUS_TEST_ENV"
fi
