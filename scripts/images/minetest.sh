#!/usr/bin/env bash
# Builds the `nexus-test/minetest:latest` test image without a registry: a minimal Debian
# bookworm root filesystem made by debootstrap with Debian's minetest-server package (a real
# game server: the Minetest 5.6 dedicated server, binary /usr/games/minetestserver, built with
# its curses console, games in /usr/share/games/minetest/games), imported into every available
# container engine. `minetest` on the PATH runs the server binary (the egg's startup runs the
# community image's `minetest --server`).
#
# Idempotent and quick when every engine already has the image; the rootfs tarball is cached
# under $NEXUS_IMAGE_CACHE (about a minute or two to build the first time, seconds after).
# Needs root (debootstrap). The Debian mirror is the machine's own (its apt sources); set
# NEXUS_DEBIAN_MIRROR to use another.
set -euo pipefail
# shellcheck source=../lib/images.sh
. "$(dirname "$0")/../lib/images.sh"

IMAGE=nexus-test/minetest:latest
TARBALL="$NEXUS_IMAGE_CACHE/minetest-rootfs.tar"
MIRROR="${NEXUS_DEBIAN_MIRROR:-$(apt_mirror)}"

if [ -z "$(available_engines)" ]; then
  log "no container engine available; nothing to import $IMAGE into"
  exit 0
fi
missing=$(engines_missing "$IMAGE")
if [ -z "$missing" ]; then
  log "$IMAGE present in every engine"
  exit 0
fi

if [ ! -s "$TARBALL" ]; then
  ensure_command debootstrap debootstrap
  mkdir -p "$NEXUS_IMAGE_CACHE"
  work=$(mktemp -d "$NEXUS_IMAGE_CACHE/minetest-build.XXXXXX")
  rootfs="$work/rootfs"
  cleanup() {
    # debootstrap mounts these while it runs; never delete through a live mount.
    local m
    for m in proc sys dev/pts dev; do
      if mountpoint -q "$rootfs/$m" 2>/dev/null; then umount -l "$rootfs/$m" || true; fi
    done
    rm -rf --one-file-system "$work"
  }
  trap cleanup EXIT
  started=$(date +%s)
  log "debootstrap bookworm + minetest-server from $MIRROR (first build only)"
  debootstrap --variant=minbase --include=minetest-server bookworm "$rootfs" "$MIRROR" > "$work/debootstrap.log" 2>&1 || {
    tail -n 30 "$work/debootstrap.log" >&2
    exit 1
  }
  test -x "$rootfs/usr/games/minetestserver"
  # `minetest --server ...` (the community image's binary, client and server in one) is
  # Debian's `minetestserver ...`, which takes the same options but not `--server`.
  cat > "$rootfs/usr/local/bin/minetest" <<'WRAPPER'
#!/bin/sh
for arg; do shift; [ "$arg" = --server ] || set -- "$@" "$arg"; done
exec /usr/games/minetestserver "$@"
WRAPPER
  chmod 0755 "$rootfs/usr/local/bin/minetest"
  # Nothing in the image needs package caches, indexes or documentation.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
  # The `container` user and home of the Pterodactyl images.
  mkdir -p "$rootfs/home/container"
  grep -q '^container:' "$rootfs/etc/passwd" || echo 'container:x:1000:1000:container:/home/container:/bin/bash' >> "$rootfs/etc/passwd"
  grep -q '^container:' "$rootfs/etc/group" || echo 'container:x:1000:' >> "$rootfs/etc/group"
  tar --numeric-owner -C "$rootfs" -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  log "built $TARBALL ($(du -h "$TARBALL" | cut -f1)) in $(( $(date +%s) - started ))s"
fi

for engine in $missing; do
  engine_import "$engine" "$TARBALL" "$IMAGE" \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/games' \
    'WORKDIR /home/container' \
    'CMD ["/bin/bash"]'
done
