#!/usr/bin/env bash
# Installs Podman (Debian's packages) with runc, configures it for this machine, starts its
# API service (`podman system service`) on /run/podman/podman.sock for nexus-runtime-podman's
# tests, and writes NEXUS_TEST_PODMAN_SOCKET to $NEXUS_TEST_ENV. Idempotent: quick when the
# service already answers. Run as root (scripts/test.sh does). No systemd: the service is
# started in the background by hand, logging to $PODMAN_LOG.
#
# Runs before scripts/images/*.sh (services come first), so the image scripts find Podman
# answering and import the test images into it too.
set -euo pipefail

SOCKET="${NEXUS_PODMAN_SOCKET:-/run/podman/podman.sock}"
PODMAN_LOG="${NEXUS_PODMAN_LOG:-/var/log/nexus-podman-service.log}"
PIDFILE="$(dirname "$SOCKET")/nexus-service.pid"
CONF_DIR=/etc/containers/containers.conf.d
CONF="$CONF_DIR/50-nexus.conf"
WRAPPER=/usr/local/libexec/nexus/conmon

# shellcheck source=../lib/apt.sh
. "$(dirname "$0")/../lib/apt.sh"

# podman and runc, plus what Podman only recommends but the runtime needs: catatonit (the
# init process of `--init`) and netavark (rootful networking, port publishing).
need podman runc catatonit netavark aardvark-dns iptables

# The conmon wrapper that keeps server containers' stdin open across console detaches (see
# the script's comment); installed only when its content changed.
mkdir -p "$(dirname "$WRAPPER")"
if ! cmp -s "$(dirname "$0")/../../runtime-podman/conmon-wrapper.sh" "$WRAPPER"; then
  install -m 0755 "$(dirname "$0")/../../runtime-podman/conmon-wrapper.sh" "$WRAPPER"
fi

# Engine settings (a drop-in, so Debian's own containers.conf stays untouched):
# - runc: crun fails on this machine's cgroup layout (cgroup v1 with a named systemd hierarchy).
# - cgroupfs and file events: there is no systemd (no D-Bus, no journal) to manage cgroups or
#   receive events.
# - default_ulimits: game servers open many files and threads; same as the Docker defaults here.
# - conmon_path: the wrapper above.
mkdir -p "$CONF_DIR"
cat >"$CONF.tmp" <<'CONF'
# Written by scripts/services/podman.sh (Nexus test setup).
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
conmon_path = ["/usr/local/libexec/nexus/conmon"]
CONF
if ! cmp -s "$CONF.tmp" "$CONF"; then
  mv "$CONF.tmp" "$CONF"
  changed=true
else
  rm -f "$CONF.tmp"
  changed=false
fi

need curl
answers() { curl -sf --max-time 5 --unix-socket "$SOCKET" http://d/_ping >/dev/null 2>&1; }

if answers && [ "$changed" = true ]; then
  # A service this script started read the old settings; restart it so the tests see the
  # new ones. (One started some other way is left alone: it is not ours to stop.)
  if [ -s "$PIDFILE" ] && kill "$(cat "$PIDFILE")" 2>/dev/null; then
    for _ in $(seq 1 20); do answers || break; sleep 0.5; done
  fi
fi

if ! answers; then
  mkdir -p "$(dirname "$SOCKET")"
  rm -f "$SOCKET"
  # --time=0: never exit for lack of clients. setsid: outlives this script's process group.
  setsid podman system service --time=0 "unix://$SOCKET" >>"$PODMAN_LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 60); do
    answers && break
    sleep 0.5
  done
  if ! answers; then
    echo "error: podman system service did not answer on $SOCKET; see $PODMAN_LOG" >&2
    tail -n 20 "$PODMAN_LOG" >&2 || true
    exit 1
  fi
fi

if [ -n "${NEXUS_TEST_ENV:-}" ]; then
  echo "export NEXUS_TEST_PODMAN_SOCKET='${SOCKET}'" >>"$NEXUS_TEST_ENV"
fi
echo "Podman ready: $(podman --remote --url "unix://$SOCKET" version --format '{{.Server.Version}}' 2>/dev/null || echo '?') on $SOCKET"
