#!/usr/bin/env bash
# Builds the `nexus-test/busybox:latest` test image without a registry: a root filesystem
# holding Debian's statically linked busybox (package busybox-static) and its applet
# symlinks, imported into every available container engine (Docker, Podman).
#
# Idempotent and quick when every engine already has the image. The rootfs tarball is cached
# under $NEXUS_IMAGE_CACHE; delete it (or the image) to rebuild.
set -euo pipefail
# shellcheck source=../lib/images.sh
. "$(dirname "$0")/../lib/images.sh"

IMAGE=nexus-test/busybox:latest
# The same root filesystem set up like the community's images (Pterodactyl's yolks): it runs
# as `USER container` in `/home/container`.
USER_IMAGE=nexus-test/busybox-user:latest
TARBALL="$NEXUS_IMAGE_CACHE/busybox-rootfs.tar"

missing=$(engines_missing "$IMAGE")
missing_user=$(engines_missing "$USER_IMAGE")
if [ -z "$(available_engines)" ]; then
  log "no container engine available; nothing to import $IMAGE into"
  exit 0
fi
if [ -z "$missing" ] && [ -z "$missing_user" ]; then
  log "$IMAGE and $USER_IMAGE present in every engine"
  exit 0
fi

if [ ! -s "$TARBALL" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  apt_download busybox-static "$work/deb"
  dpkg-deb -x "$work"/deb/busybox-static_*.deb "$work/pkg"
  rootfs="$work/rootfs"
  mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,proc,sys,dev,home/container,mnt/server,mnt/install}
  chmod 1777 "$rootfs/tmp"
  install -m 0755 "$work/pkg/bin/busybox" "$rootfs/bin/busybox"
  # What `busybox --install -s` does, done from outside so no chroot (and no root) is needed:
  # one symlink per applet at the path busybox lists for it.
  while read -r applet; do
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$rootfs/$(dirname "$applet")"
    ln -sf /bin/busybox "$rootfs/$applet"
  done < <("$rootfs/bin/busybox" --list-full)
  # A `container` user like the Pterodactyl images have, for tests that drop privileges.
  cat > "$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
container:x:1000:1000:container:/home/container:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
PASSWD
  cat > "$rootfs/etc/group" <<'GROUP'
root:x:0:
container:x:1000:
nogroup:x:65534:
GROUP
  mkdir -p "$NEXUS_IMAGE_CACHE"
  tar --numeric-owner --owner=0 --group=0 -C "$rootfs" -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  log "built $TARBALL ($(du -h "$TARBALL" | cut -f1))"
fi

for engine in $missing; do
  engine_import "$engine" "$TARBALL" "$IMAGE" 'CMD ["/bin/sh"]'
done
for engine in $missing_user; do
  engine_import "$engine" "$TARBALL" "$USER_IMAGE" 'CMD ["/bin/sh"]' 'USER container' \
    'ENV USER=container HOME=/home/container' 'WORKDIR /home/container'
done
