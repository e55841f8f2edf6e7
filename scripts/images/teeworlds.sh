#!/usr/bin/env bash
# Builds the `nexus-test/teeworlds:latest` test image without a registry: a minimal Debian
# bookworm root filesystem made by debootstrap with Debian's teeworlds-server package (a real
# game server: the Teeworlds 0.7 dedicated server, binary /usr/games/teeworlds-server, data in
# /usr/share/games/teeworlds/data), imported into every available container engine.
#
# Idempotent and quick when every engine already has the image (see `debian_game_image` in
# scripts/lib/images.sh: about a minute to build the first time, seconds after). Needs root.
set -euo pipefail
# shellcheck source=../lib/images.sh
. "$(dirname "$0")/../lib/images.sh"

debian_game_image nexus-test/teeworlds:latest teeworlds-server /usr/games/teeworlds-server
