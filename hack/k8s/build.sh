#!/usr/bin/env bash
# Build the binaries of the Kubernetes test control plane from Go modules:
#   kube-apiserver (k8s.io/kubernetes), etcd (go.etcd.io/etcd), helm (helm.sh/helm/v3)
# and pick up kubectl (the machine's, if its minor version is within one of ours;
# otherwise built from k8s.io/kubernetes too).
# With --node, also what a single-node cluster needs (tests/harness/cluster.py):
#   kubelet, kube-controller-manager, kube-scheduler, kube-proxy (the same k8s.io/kubernetes
#   module as kube-apiserver), coredns (github.com/coredns/coredns, plugins chosen in
#   hack/k8s/coredns/main.go) and the CRI sandbox image (hack/k8s/pause.sh, images/pause.tar).
#
# Output: ${SYTQ_K8S_CACHE:-$HOME/.cache/sytq/k8s}/<k8s>-<etcd>-<helm>/bin/
# The bin dir is printed as the LAST line of stdout (progress goes to stderr).
# When every binary is already there, the script exits at once.
#
# Usage: hack/k8s/build.sh [--node]            build (or reuse) the binaries
#        hack/k8s/build.sh --regen [--node]    rewrite hack/k8s/*/go.mod + go.sum from the
#                                              versions pinned below, then build
#
# SYTQ_K8S_BUILD_KUBECTL=1 builds kubectl even when the machine has a fitting one.
# Nothing is downloaded but Go modules (GOTOOLCHAIN=local: no toolchain downloads).
set -euo pipefail

# v1.33: every staging module of the release is on the Go module proxy at v0.33.13
# (k8s.io/endpointslice v0.32.13, which kube-apiserver imports, is not); kubectl 1.32
# and 1.33 both talk to it (one minor version of skew).
K8S_VERSION=v1.33.13   # kube-apiserver (and kubectl if the machine's does not fit)
ETCD_VERSION=v3.5.35   # >= 3.5.11: Kubernetes >= 1.31 needs etcd's newer health endpoints
HELM_VERSION=v3.22.0
COREDNS_VERSION=v1.12.4   # --node only

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE_ROOT="${SYTQ_K8S_CACHE:-$HOME/.cache/sytq/k8s}"
OUT="$CACHE_ROOT/${K8S_VERSION}-${ETCD_VERSION}-${HELM_VERSION}"
BIN="$OUT/bin"
# named after its recipe: a changed pause.sh builds a new one
PAUSE_TAR="$OUT/images/pause-$(sha256sum "$HERE/pause.sh" | cut -c1-12).tar"
REGEN=0
NODE=0
for arg in "$@"; do
  case "$arg" in
    --regen) REGEN=1 ;;
    --node) NODE=1 ;;
    *) echo "usage: $0 [--regen] [--node]" >&2; exit 2 ;;
  esac
done

CONTROL_PLANE_BINARIES=(kube-apiserver etcd helm kubectl)
NODE_BINARIES=(kubelet kube-controller-manager kube-scheduler kube-proxy coredns)
have_all() {
  local b
  for b in "${CONTROL_PLANE_BINARIES[@]}"; do
    [[ -x "$BIN/$b" ]] || return 1
  done
  if [[ $NODE == 1 ]]; then
    for b in "${NODE_BINARIES[@]}"; do
      [[ -x "$BIN/$b" ]] || return 1
    done
    [[ -f "$PAUSE_TAR" && "$(readlink "$OUT/images/pause.tar")" == "${PAUSE_TAR##*/}" ]] || return 1
  fi
}

if [[ $REGEN == 0 ]] && have_all; then
  echo "$BIN"
  exit 0
fi

log() { echo "[k8s-build $(date +%H:%M:%S)] $*" >&2; }

command -v go >/dev/null || { log "go is not installed"; exit 1; }
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
mkdir -p "$BIN"
START=$SECONDS

# one build at a time per cache dir (parallel test runs, several clones)
exec 9>"$OUT/.lock"
if ! flock -n 9; then
  log "another build.sh is building into $OUT; waiting for it"
  flock 9
fi
if [[ $REGEN == 0 ]] && have_all; then
  echo "$BIN"
  exit 0
fi

k8s_minor() { local v=${1#v}; v=${v#*.}; echo "${v%%.*}"; }

# --- go.mod generation (only with --regen, or when a go.mod is missing) ---------
regen_apiserver() {
  local dir="$HERE/apiserver" mod staging minor patch
  log "regenerating $dir/go.mod for k8s.io/kubernetes $K8S_VERSION"
  rm -f "$dir/go.mod" "$dir/go.sum"
  # go 1.24: the lowest that knows `tool` lines; tidy raises it to what the deps need
  (cd "$dir" && go mod init sytq.local/hack/k8s/apiserver >/dev/null 2>&1 && go mod edit -go=1.24.0)
  mod="$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')"
  minor=$(k8s_minor "$K8S_VERSION"); patch=${K8S_VERSION##*.}
  # every staging module (replace block of kubernetes' own go.mod) -> v0.<minor>.<patch>
  staging=$(awk '/^replace \(/{f=1;next} f&&/^\)/{f=0} f&&$1~/^k8s.io\//{print $1}' "$mod")
  [[ -n "$staging" ]] || { log "no staging modules found in $mod"; exit 1; }
  local args=(-require="k8s.io/kubernetes@$K8S_VERSION")
  for m in $staging; do
    args+=(-replace="$m=$m@v0.$minor.$patch")
  done
  local tools=() cmd
  for cmd in kube-apiserver kubectl kubelet kube-controller-manager kube-scheduler kube-proxy; do
    tools+=(-tool="k8s.io/kubernetes/cmd/$cmd")
  done
  (cd "$dir" && go mod edit "${args[@]}" && go mod edit "${tools[@]}" && go mod tidy >&2)
}

regen_simple() { # dir module-path version tool-package...
  local name=$1 dir="$HERE/$1" modpath=$2 version=$3; shift 3
  log "regenerating $dir/go.mod for $modpath $version"
  rm -f "$dir/go.mod" "$dir/go.sum"
  (cd "$dir" && go mod init "sytq.local/hack/k8s/$name" >/dev/null 2>&1 &&
    go mod edit -go=1.24.0 -require="$modpath@$version" "${@/#/-tool=}" && go mod tidy >&2)
}

regen_etcd() { regen_simple etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3; }
regen_helm() { regen_simple helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm; }
# coredns: our own main.go (the plugin subset) in a module that requires CoreDNS
regen_coredns() {
  local dir="$HERE/coredns"
  log "regenerating $dir/go.mod for github.com/coredns/coredns $COREDNS_VERSION"
  rm -f "$dir/go.mod" "$dir/go.sum"
  (cd "$dir" && go mod init sytq.local/hack/k8s/coredns >/dev/null 2>&1 &&
    go mod edit -go=1.24.0 -require="github.com/coredns/coredns@$COREDNS_VERSION" && go mod tidy >&2)
}

# regenerate a module when asked, when its go.mod is missing, or when it does not
# pin the version above (so changing a version at the top is all it takes)
pinned() { grep -Eq "^[[:space:]]*(require )?$2 $3( |$)" "$HERE/$1/go.mod" 2>/dev/null; }
if [[ $REGEN == 1 ]] || ! pinned apiserver k8s.io/kubernetes "$K8S_VERSION"; then regen_apiserver; fi
if [[ $REGEN == 1 ]] || ! pinned etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"; then regen_etcd; fi
if [[ $REGEN == 1 ]] || ! pinned helm helm.sh/helm/v3 "$HELM_VERSION"; then regen_helm; fi
if [[ $NODE == 1 ]] && { [[ $REGEN == 1 ]] || ! pinned coredns github.com/coredns/coredns "$COREDNS_VERSION"; }; then
  regen_coredns
fi

# --- builds ---------------------------------------------------------------------
# build into a temp name, then rename: an interrupted build never leaves a
# half-written binary that have_all() would accept.
gobuild() { # dir output package [ldflags]
  local dir="$HERE/$1" out="$BIN/$2" pkg=$3 ld="-s -w ${4:-}"
  [[ -x "$out" && $REGEN == 0 ]] && return 0
  log "building $2 ($pkg) ..."
  local t0=$SECONDS
  (cd "$dir" && go build -trimpath -ldflags="$ld" -o "$out.tmp" "$pkg")
  mv -f "$out.tmp" "$out"
  log "built $2 in $((SECONDS - t0))s"
}

K8S_LDFLAGS="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
K8S_LDFLAGS+=" -X k8s.io/component-base/version.gitMajor=1"
K8S_LDFLAGS+=" -X k8s.io/component-base/version.gitMinor=$(k8s_minor "$K8S_VERSION")"
K8S_LDFLAGS+=" -X k8s.io/component-base/version.gitTreeState=clean"
K8S_LDFLAGS+=" -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"

gobuild etcd etcd go.etcd.io/etcd/server/v3
gobuild helm helm helm.sh/helm/v3/cmd/helm \
  "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
gobuild apiserver kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$K8S_LDFLAGS"

# kubectl: the machine's if it is within one minor version of the apiserver
if [[ ! -x "$BIN/kubectl" || $REGEN == 1 ]]; then
  sys_kubectl="$(command -v kubectl || true)"
  fits=0
  if [[ -n "$sys_kubectl" && "${SYTQ_K8S_BUILD_KUBECTL:-0}" != 1 ]]; then
    sys_ver="$("$sys_kubectl" version --client -o json 2>/dev/null |
      sed -n 's/.*"minor": *"\([0-9]*\).*/\1/p' | head -1)"
    want=$(k8s_minor "$K8S_VERSION")
    if [[ -n "$sys_ver" ]] && (( sys_ver >= want - 1 && sys_ver <= want + 1 )); then fits=1; fi
  fi
  if [[ $fits == 1 ]]; then
    real="$(readlink -f "$sys_kubectl")"
    # the Google Cloud CLI kubectl is a dispatcher with versioned siblings: pin ours
    if [[ -x "$real.1.$want" ]]; then real="$real.1.$want"; fi
    log "using the machine's kubectl: $real ($("$real" version --client 2>/dev/null | head -1))"
    ln -sfn "$real" "$BIN/kubectl"
  else
    rm -f "$BIN/kubectl"
    gobuild apiserver kubectl k8s.io/kubernetes/cmd/kubectl "$K8S_LDFLAGS"
  fi
fi

if [[ $NODE == 1 ]]; then
  for cmd in kubelet kube-controller-manager kube-scheduler kube-proxy; do
    gobuild apiserver "$cmd" "k8s.io/kubernetes/cmd/$cmd" "$K8S_LDFLAGS"
  done
  gobuild coredns coredns sytq.local/hack/k8s/coredns \
    "-X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION"
  if [[ ! -f "$PAUSE_TAR" || $REGEN == 1 ]]; then
    mkdir -p "$OUT/images"
    bash "$HERE/pause.sh" "$PAUSE_TAR" >&2
  fi
  ln -sfn "${PAUSE_TAR##*/}" "$OUT/images/pause.tar"
fi

have_all || { log "some binaries are missing in $BIN"; exit 1; }
log "done in $((SECONDS - START))s"
echo "$BIN"
