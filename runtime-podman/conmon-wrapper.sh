#!/bin/sh
# conmon wrapper for Nexus (installed by scripts/services/podman.sh; set as Podman's
# `conmon_path` in containers.conf).
#
# Podman starts conmon without `--leave-stdin-open`, so conmon closes a container's stdin as
# soon as any attached client disconnects: a game server would see end-of-input when a
# console is closed or the node daemon restarts. Docker keeps stdin open; so does this
# wrapper, for Nexus server containers only (named nexus-server-<uuid>), and never for
# `podman exec` sessions, whose callers rely on stdin closing. Everything else is passed to
# conmon unchanged.
set -eu
CONMON="${NEXUS_CONMON:-/usr/bin/conmon}"
leave_open=
prev=
for arg in "$@"; do
  case "$prev/$arg" in
    -n/nexus-server-* | --name/nexus-server-*) leave_open=--leave-stdin-open ;;
  esac
  if [ "$arg" = --exec ]; then
    leave_open=
    break
  fi
  prev=$arg
done
# shellcheck disable=SC2086 # empty or one word
exec "$CONMON" $leave_open "$@"
