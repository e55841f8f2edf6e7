#!/usr/bin/env bash
# Builds the `nexus-test/minetest:latest` test image without a registry: a minimal Debian
# bookworm root filesystem made by debootstrap with Debian's minetest-server package (a real
# game server: the Minetest 5.6 dedicated server, binary /usr/games/minetestserver, built with
# its curses console, games in /usr/share/games/minetest/games), imported into every available
# container engine. `minetest` on the PATH runs the server binary (the egg's startup runs the
# community image's `minetest --server`).
#
# Idempotent and quick when every engine already has the image (see `debian_game_image` in
# scripts/lib/images.sh: about a minute to build the first time, seconds after). Needs root.
set -euo pipefail
# shellcheck source=../lib/images.sh
. "$(dirname "$0")/../lib/images.sh"

# `minetest --server ...` (the community image's binary, client and server in one) is Debian's
# `minetestserver ...`, which takes the same options but not `--server`.
add_minetest_wrapper() {
  cat > "$1/usr/local/bin/minetest" <<'WRAPPER'
#!/bin/sh
for arg; do shift; [ "$arg" = --server ] || set -- "$@" "$arg"; done
exec /usr/games/minetestserver "$@"
WRAPPER
  chmod 0755 "$1/usr/local/bin/minetest"
}

debian_game_image nexus-test/minetest:latest minetest-server /usr/games/minetestserver add_minetest_wrapper
