#!/usr/bin/env bash
# Installs the Debian packages the demo and the tests run for real (tmux, util-linux,
# libfaketime, etcd, node_exporter, man-db …), only those missing. Does nothing when all are
# there. Needs root or sudo; elsewhere it names what to install and exits 1.
set -euo pipefail

need=()
want() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }
want tmux tmux
want unshare util-linux
want setsid util-linux
want setpriv util-linux
want nsenter util-linux
want faketime faketime
want etcd etcd-server
want etcdctl etcd-client
want prometheus-node-exporter prometheus-node-exporter
want groff groff-base
want man man-db
want shellcheck shellcheck
want openssl openssl
want docker docker.io
want dockerd docker.io
want busybox busybox-static
want tini tini
want dumb-init dumb-init
want script util-linux
((${#need[@]})) || exit 0

mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
if ((EUID == 0)); then
    sudo=()
elif command -v sudo >/dev/null; then
    sudo=(sudo)
else
    echo "deps: please install: ${need[*]}" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null; then
    echo "deps: no apt-get here; please install the equivalents of: ${need[*]}" >&2
    exit 1
fi
echo "deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
