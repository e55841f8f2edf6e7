#!/usr/bin/env bash
# Installs py-dactyl, a third-party Pterodactyl API client library from the Python package
# index, into a virtual environment for the panel's compatibility test
# (reference-panel/tests/pydactyl.rs), and writes NEXUS_TEST_PYDACTYL_PYTHON (that
# environment's interpreter) to $NEXUS_TEST_ENV. Uses the machine's own pip configuration.
# Idempotent: quick when the environment already holds the pinned version.
set -euo pipefail
# shellcheck source=../lib/apt.sh
. "$(dirname "$0")/../lib/apt.sh"

VERSION=2.1.3
VENV="${CARGO_TARGET_DIR:-$HOME/.cache/nexus-target}/pydactyl-venv"
PYTHON="$VENV/bin/python"

if ! "$PYTHON" -c "import importlib.metadata as m; assert m.version('py-dactyl') == '$VERSION'" 2>/dev/null; then
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -c "import venv, ensurepip" 2>/dev/null; then
    need python3 python3-venv
  fi
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check "py-dactyl==$VERSION"
  echo "[pydactyl] installed py-dactyl $VERSION"
else
  echo "[pydactyl] present"
fi
if [ -n "${NEXUS_TEST_ENV:-}" ]; then
  echo "export NEXUS_TEST_PYDACTYL_PYTHON='${PYTHON}'" >>"$NEXUS_TEST_ENV"
fi
