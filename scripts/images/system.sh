#!/usr/bin/env bash
# Builds the `nexus-test/system:latest` base image of the whole-system tests (`tests/`)
# without a registry: a minimal Debian bookworm root filesystem made by debootstrap with
# PostgreSQL 15 (the database container) and the shared libraries our binaries link
# (libpq, libmariadb, CA certificates). The tests put the built `nexus-panel` and
# `nexus-wings` binaries on it (`nexus_system_tests::images`) and run PostgreSQL, the panel
# and the daemons from it as containers; only Docker is needed.
#
# Idempotent and quick when Docker already has the image (see `debian_game_image` in
# scripts/lib/images.sh: about a minute to build the first time, seconds after). Needs root.
set -euo pipefail
export NEXUS_IMAGE_ENGINES=docker
# shellcheck source=../lib/images.sh
. "$(dirname "$0")/../lib/images.sh"

debian_game_image nexus-test/system:latest postgresql-15,libpq5,libmariadb3,ca-certificates /usr/lib/postgresql/15/bin/postgres
