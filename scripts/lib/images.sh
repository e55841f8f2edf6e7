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
