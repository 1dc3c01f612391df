#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine. Idempotent and quick
# when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server)
command -v php >/dev/null || need_apt+=(php-cli)
php -m 2>/dev/null | grep -qi '^curl$' || need_apt+=(php-curl)
command -v wrk >/dev/null || need_apt+=(wrk)
command -v tinyproxy >/dev/null || need_apt+=(tinyproxy)  # the forward proxy of the outbound-proxy tests
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# Debian starts mariadb/redis services on install; the tests start their own servers.
service mariadb stop >/dev/null 2>&1 || true
service redis-server stop >/dev/null 2>&1 || true
service tinyproxy stop >/dev/null 2>&1 || true

python3 -m pip install -q --disable-pip-version-check -e '.[test,bench]'

command -v go >/dev/null || { echo "Go is required (for kube-apiserver, etcd, helm and the asynq interop program)" >&2; exit 1; }
# Kubernetes control plane binaries, built from Go modules and cached under ~/.cache/sytq/k8s.
bash hack/k8s/build.sh
# Modules of the asynq interop program and of the gin peer (built by their pytest fixtures, cached
# under ~/.cache/sytq/interop).
go -C tests/interop mod download
go -C tests/interop/ginpeer mod download

# --- container image (tests/image): buildah + debootstrap build the Dockerfile without Docker ---
# The stand-in base image (hack/image/build-base.sh) is cached under ~/.cache/sytq/image.
need_image=()
command -v buildah >/dev/null || need_image+=(buildah)
command -v debootstrap >/dev/null || need_image+=(debootstrap)
if [ ${#need_image[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_image[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_image[@]}" >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_image[@]}" >/dev/null; }
fi
bash hack/image/build-base.sh >/dev/null

# --- single-node cluster (tests/cluster, tests/harness/cluster.py) ---
# containerd (CRI) + runc + CNI plugins + iptables from Debian; kubelet, kube-controller-manager,
# kube-scheduler, kube-proxy, coredns and the pause image built by hack/k8s/build.sh --node.
need_cluster=()
command -v containerd >/dev/null || need_cluster+=(containerd)
command -v runc >/dev/null || need_cluster+=(runc)
[ -x /usr/lib/cni/bridge ] || need_cluster+=(containernetworking-plugins)
command -v iptables >/dev/null || [ -x /usr/sbin/iptables ] || need_cluster+=(iptables)
command -v conntrack >/dev/null || [ -x /usr/sbin/conntrack ] || need_cluster+=(conntrack)
[ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 || need_cluster+=(busybox-static)
if [ ${#need_cluster[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_cluster[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_cluster[@]}" >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_cluster[@]}" >/dev/null; }
fi
# Debian starts containerd as a service on install (where there is an init); the cluster runs its own.
service containerd stop >/dev/null 2>&1 || true
bash hack/k8s/build.sh --node >/dev/null
