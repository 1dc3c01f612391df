#!/usr/bin/env bash
# Build the CRI sandbox ("pause") image of the test cluster, localhost/sytq-pause:1, from scratch
# with Debian's static busybox (no registry is reachable to pull registry.k8s.io/pause), and write
# it as a docker-archive that `ctr images import` takes.
#
# Usage: hack/k8s/pause.sh OUTPUT.tar      (needs root, buildah and busybox-static)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILDAH="$HERE/../image/buildah"
IMAGE=localhost/sytq-pause:1
OUTPUT="${1:?usage: $0 OUTPUT.tar}"
BUSYBOX=/bin/busybox

log() { echo "[pause $(date +%H:%M:%S)] $*" >&2; }
[[ -x $BUSYBOX ]] || { log "no $BUSYBOX (apt-get install busybox-static)"; exit 1; }
ldd "$BUSYBOX" >/dev/null 2>&1 && { log "$BUSYBOX is not static (apt-get install busybox-static)"; exit 1; }

container="$("$BUILDAH" from scratch)"
trap '"$BUILDAH" rm "$container" >/dev/null 2>&1 || true' EXIT
"$BUILDAH" copy "$container" "$BUSYBOX" /bin/busybox >/dev/null
# busybox's applets as /bin/sh, /bin/sleep, ...: tests also use the image as a tiny toolbox
# (nslookup, wget) in pods.
"$BUILDAH" run --isolation chroot "$container" /bin/busybox --install -s /bin
# PID 1 of the pod: sleeps, and exits at once on SIGTERM/SIGINT as the real pause does.
"$BUILDAH" config --entrypoint '["/bin/sh", "-c", "trap \"exit 0\" TERM INT; while :; do sleep 3600 & wait $!; done"]' \
  --cmd '' --user 65535:65535 "$container"
"$BUILDAH" commit --quiet "$container" "$IMAGE" >/dev/null
rm -f "$OUTPUT.tmp"
"$BUILDAH" push --quiet "$IMAGE" "docker-archive:$OUTPUT.tmp:$IMAGE"
mv -f "$OUTPUT.tmp" "$OUTPUT"
log "built $IMAGE into $OUTPUT"
