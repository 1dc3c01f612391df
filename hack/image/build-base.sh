#!/usr/bin/env bash
# Build (or reuse) localhost/sytq-base:py311, a local stand-in for python:3.11-slim-bookworm,
# for machines that cannot pull from Docker Hub. Made from Debian packages only:
#   debootstrap (minbase) + python3.11 + pip, `python` on PATH, pip allowed to install system-wide
#   (no EXTERNALLY-MANAGED marker, as in the python images), and the host's extra CA certificates
#   (/usr/local/share/ca-certificates) so pip and apt inside builds reach the registries through
#   the same TLS-inspecting egress the host uses.
# The image is stored with hack/image/buildah and labelled with a hash of its recipe: a changed
# recipe (this file, the host's CAs) rebuilds it, otherwise the script returns at once.
# Prints the image name as the LAST line of stdout (progress goes to stderr). Needs root.
#   SYTQ_DEBIAN_MIRROR  default http://deb.debian.org/debian
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILDAH="$HERE/buildah"
IMAGE=localhost/sytq-base:py311
SUITE=bookworm
MIRROR="${SYTQ_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES=python3,python3-pip,python3-venv,python-is-python3,ca-certificates
CACHE="${SYTQ_IMAGE_CACHE:-$HOME/.cache/sytq/image}"
LABEL=io.syt-queue.base-recipe

log() { echo "[image-base $(date +%H:%M:%S)] $*" >&2; }

shopt -s nullglob
host_cas=(/usr/local/share/ca-certificates/*.crt)
recipe="$( { cat "${BASH_SOURCE[0]}"; echo "$SUITE $MIRROR"; cat "${host_cas[@]}" /dev/null; } \
  | sha256sum | cut -c1-16)"

current() {
  "$BUILDAH" inspect --type image --format "{{index .ImageAnnotations \"$LABEL\"}}{{index .Docker.Config.Labels \"$LABEL\"}}" \
    "$IMAGE" 2>/dev/null || true
}

mkdir -p "$CACHE"
if [[ "$(current)" == "$recipe" ]]; then echo "$IMAGE"; exit 0; fi

exec 9>"$CACHE/.base.lock"
flock 9
if [[ "$(current)" == "$recipe" ]]; then echo "$IMAGE"; exit 0; fi

for tool in buildah debootstrap; do
  command -v "$tool" >/dev/null || { log "missing $tool (apt-get install buildah debootstrap)"; exit 1; }
done
[[ $EUID == 0 ]] || { log "needs root (debootstrap, and buildah without user namespaces)"; exit 1; }

ROOTFS="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
container=""
cleanup() {
  [[ -n "$container" ]] && "$BUILDAH" rm "$container" >/dev/null 2>&1
  rm -rf "$ROOTFS"
}
trap cleanup EXIT

log "debootstrap $SUITE ($PACKAGES) from $MIRROR"
if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" \
  >"$CACHE/debootstrap.log" 2>&1; then
  tail -n 20 "$CACHE/debootstrap.log" >&2
  log "debootstrap failed (whole log: $CACHE/debootstrap.log)"
  exit 1
fi

log "making it behave like python:3.11-slim"
rm -f "$ROOTFS"/usr/lib/python3*/EXTERNALLY-MANAGED
for ca in "${host_cas[@]}"; do cp "$ca" "$ROOTFS/usr/local/share/ca-certificates/"; done
chroot "$ROOTFS" update-ca-certificates >/dev/null 2>&1
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/tmp/*

log "importing the root filesystem as $IMAGE"
previous="$("$BUILDAH" inspect --type image --format '{{.FromImageID}}' "$IMAGE" 2>/dev/null || true)"
container="$("$BUILDAH" from scratch)"
mountpoint="$("$BUILDAH" mount "$container")"
tar -C "$ROOTFS" -cf - . | tar -C "$mountpoint" -xf -
"$BUILDAH" umount "$container" >/dev/null
"$BUILDAH" config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 --cmd python3 --label "$LABEL=$recipe" "$container"
"$BUILDAH" commit --quiet --rm "$container" "$IMAGE" >/dev/null
container=""
# the old recipe's image, now untagged; still in use by a build's layers => left alone
[[ -n "$previous" ]] && "$BUILDAH" rmi "$previous" >/dev/null 2>&1 || true
log "done"
echo "$IMAGE"
