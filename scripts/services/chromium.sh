#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver, which the panel's browser tests drive over
# WebDriver (headless; nothing is started here: each test starts its own chromedriver).
set -euo pipefail
# shellcheck source=../lib/apt.sh
. "$(dirname "$0")/../lib/apt.sh"

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  echo "[chromium] present: $(chromium --version 2>/dev/null | head -1)"
else
  need chromium chromium-driver
  command -v chromium >/dev/null && command -v chromedriver >/dev/null
  echo "[chromium] installed: $(chromium --version 2>/dev/null | head -1)"
fi
if [ -n "${NEXUS_TEST_ENV:-}" ]; then
  echo "export NEXUS_CHROMEDRIVER=$(command -v chromedriver)" >> "$NEXUS_TEST_ENV"
fi
