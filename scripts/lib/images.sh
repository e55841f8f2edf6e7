# Shared helpers for the test-image scripts in scripts/images/ (sourced, not run).
#
# Every image is built once as a root filesystem tarball, cached, and imported into each
# container engine found on the machine. Nothing is pulled from a registry: the files come
# from Debian's packages. Adding an engine means adding it to NEXUS_IMAGE_ENGINES (or to the
# default below) and, if its CLI differs from `docker import`, a case in `engine_import`.

set -euo pipefail

# Where rootfs tarballs are kept between runs, next to the shared cargo target directory.
NEXUS_IMAGE_CACHE="${NEXUS_IMAGE_CACHE:-${CARGO_TARGET_DIR:-$HOME/.cache/nexus-target}/nexus-images}"
# Engines to import into, when installed and reachable.
NEXUS_IMAGE_ENGINES="${NEXUS_IMAGE_ENGINES:-docker podman}"

log() { printf '[images] %s\n' "$*" >&2; }

# Prints the engines that are installed and answer, one per line.
available_engines() {
  local engine
  for engine in $NEXUS_IMAGE_ENGINES; do
    command -v "$engine" >/dev/null 2>&1 || continue
    if "$engine" info >/dev/null 2>&1; then
      echo "$engine"
    else
      log "$engine is installed but does not answer; skipping it"
    fi
  done
}

# engine_has_image ENGINE IMAGE: whether IMAGE is present in ENGINE.
engine_has_image() {
  "$1" image inspect "$2" >/dev/null 2>&1
}

# engines_missing IMAGE: prints the available engines that lack IMAGE.
engines_missing() {
  local engine
  for engine in $(available_engines); do
    engine_has_image "$engine" "$1" || echo "$engine"
  done
}

# engine_import ENGINE TARBALL IMAGE [CHANGE...]: imports a rootfs tarball as IMAGE.
# Each CHANGE is a Dockerfile instruction (`CMD ["/bin/sh"]`), which `docker import` and
# `podman import` both accept with --change.
engine_import() {
  local engine=$1 tarball=$2 image=$3
  shift 3
  local args=() change
  for change in "$@"; do args+=(--change "$change"); done
  case "$engine" in
    docker | podman) "$engine" import "${args[@]}" "$tarball" "$image" >/dev/null ;;
    *) log "don't know how to import into $engine"; return 1 ;;
  esac
  log "imported $image into $engine"
}

# apt_download PACKAGE DIR: downloads PACKAGE's .deb into DIR (no install on this host),
# refreshing the package lists once if they are missing or stale.
apt_download() {
  local package=$1 dir=$2
  mkdir -p "$dir"
  if ! (cd "$dir" && apt-get download "$package" >/dev/null 2>&1); then
    log "apt-get update (for $package)"
    apt-get update -qq
    (cd "$dir" && apt-get download "$package" >/dev/null)
  fi
}

# ensure_command COMMAND PACKAGE: installs PACKAGE with apt when COMMAND is missing.
ensure_command() {
  command -v "$1" >/dev/null 2>&1 && return 0
  log "installing $2 (for $1)"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  fi
}

# The Debian archive this machine's apt uses (the first `deb` source for the main archive), so
# debootstrap fetches from the same place apt does; no mirror is named in this repository.
apt_mirror() {
  local uri
  uri=$(
    {
      grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
      grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}'
    } | grep -v -- '-security' | head -n1
  )
  if [ -z "$uri" ]; then
    echo "no Debian archive found in the apt sources; set NEXUS_DEBIAN_MIRROR" >&2
    return 1
  fi
  echo "$uri"
}

# debian_game_image IMAGE PACKAGE BINARY [CUSTOMIZE]: imports IMAGE, a minimal Debian bookworm
# root filesystem made by debootstrap with PACKAGE (whose BINARY, a path in the rootfs, must
# exist), into every engine that lacks it. The rootfs tarball is cached under
# $NEXUS_IMAGE_CACHE; CUSTOMIZE, a shell function, is called with the rootfs path before it is
# packed. The image runs in /home/container with /usr/games on the PATH, and has the
# `container` user of the Pterodactyl images. The Debian mirror is the machine's own (its apt
# sources); set NEXUS_DEBIAN_MIRROR to use another.
debian_game_image() {
  local image=$1 package=$2 binary=$3 customize=${4:-}
  local name=${image#nexus-test/}
  name=${name%%:*}
  local tarball="$NEXUS_IMAGE_CACHE/$name-rootfs.tar"
  local mirror="${NEXUS_DEBIAN_MIRROR:-$(apt_mirror)}"
  if [ -z "$(available_engines)" ]; then
    log "no container engine available; nothing to import $image into"
    return 0
  fi
  local missing
  missing=$(engines_missing "$image")
  if [ -z "$missing" ]; then
    log "$image present in every engine"
    return 0
  fi
  if [ ! -s "$tarball" ]; then
    ensure_command debootstrap debootstrap
    mkdir -p "$NEXUS_IMAGE_CACHE"
    local work rootfs started
    work=$(mktemp -d "$NEXUS_IMAGE_CACHE/$name-build.XXXXXX")
    rootfs="$work/rootfs"
    # debootstrap mounts these while it runs; never delete through a live mount.
    # shellcheck disable=SC2064
    trap "for m in proc sys dev/pts dev; do mountpoint -q '$rootfs/\$m' 2>/dev/null && umount -l '$rootfs/\$m'; done; rm -rf --one-file-system '$work'" EXIT
    started=$(date +%s)
    log "debootstrap bookworm + $package from $mirror (first build only)"
    debootstrap --variant=minbase --include="$package" bookworm "$rootfs" "$mirror" > "$work/debootstrap.log" 2>&1 || {
      tail -n 30 "$work/debootstrap.log" >&2
      return 1
    }
    test -x "$rootfs$binary"
    # Nothing in the image needs package caches, indexes or documentation.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
      "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    # The `container` user and home of the Pterodactyl images.
    mkdir -p "$rootfs/home/container"
    grep -q '^container:' "$rootfs/etc/passwd" || echo 'container:x:1000:1000:container:/home/container:/bin/bash' >> "$rootfs/etc/passwd"
    grep -q '^container:' "$rootfs/etc/group" || echo 'container:x:1000:' >> "$rootfs/etc/group"
    if [ -n "$customize" ]; then "$customize" "$rootfs"; fi
    tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    log "built $tarball ($(du -h "$tarball" | cut -f1)) in $(( $(date +%s) - started ))s"
  fi
  local engine
  for engine in $missing; do
    engine_import "$engine" "$tarball" "$image" \
      'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/games' \
      'WORKDIR /home/container' \
      'CMD ["/bin/bash"]'
  done
}
