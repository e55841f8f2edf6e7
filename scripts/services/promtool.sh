#!/usr/bin/env bash
# Installs `promtool` (Debian's prometheus package), which the daemon's tests run on its
# `/metrics` output. Only the tool is used: the Prometheus server the package ships is not
# started (policy-rc.d refuses service starts during the install) and is stopped if running.
set -euo pipefail
# shellcheck source=../lib/apt.sh
. "$(dirname "$0")/../lib/apt.sh"

if command -v promtool >/dev/null 2>&1; then
  echo "[promtool] present"
  exit 0
fi
policy=/usr/sbin/policy-rc.d
created_policy=false
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  created_policy=true
fi
need prometheus || { [ "$created_policy" = true ] && rm -f "$policy"; exit 1; }
[ "$created_policy" = true ] && rm -f "$policy"
command -v promtool >/dev/null
echo "[promtool] installed"
