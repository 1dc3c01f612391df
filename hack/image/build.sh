#!/usr/bin/env bash
# Build the repository's Dockerfile without Docker: buildah (chroot isolation, no daemon) on the
# private store of hack/image/buildah, FROM the local stand-in base (hack/image/build-base.sh),
# since Docker Hub's python image cannot be pulled here. Layers are cached between builds.
#
# Usage: hack/image/build.sh [TAG]      (default localhost/syt-queue:dev)
# Prints the tag as the LAST line of stdout; the build log goes to stderr. Needs root.
#   SYTQ_IMAGE_CACHE_MAX_GB  prune the layer cache before building when the store is larger (default 8)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BUILDAH="$HERE/buildah"
TAG="${1:-localhost/syt-queue:dev}"
CACHE="${SYTQ_IMAGE_CACHE:-$HOME/.cache/sytq/image}"
MAX_GB="${SYTQ_IMAGE_CACHE_MAX_GB:-8}"

log() { echo "[image-build $(date +%H:%M:%S)] $*" >&2; }

base="$("$HERE/build-base.sh" | tail -n 1)"

# Every build whose sources changed leaves its layers behind as cache; keep the store bounded.
# Builds hold the lock shared; pruning needs it alone, so it never removes a running build's layers.
exec 8>"$CACHE/.build.lock"
used_kb="$(du -sk "$CACHE/storage" 2>/dev/null | cut -f1 || echo 0)"
if (( used_kb > MAX_GB * 1024 * 1024 )) && flock -n -x 8; then
  log "image store above ${MAX_GB} GB: pruning the layer cache"
  "$BUILDAH" rmi --prune >/dev/null 2>&1 || true
fi
flock -s 8

log "building $TAG from $ROOT/Dockerfile (BASE_IMAGE=$base)"
"$BUILDAH" bud --isolation chroot --layers --pull-never \
  --build-arg BASE_IMAGE="$base" --tag "$TAG" --file "$ROOT/Dockerfile" "$ROOT" >&2
echo "$TAG"
