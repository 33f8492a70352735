#!/usr/bin/env bash
# Installs the Debian packages a task runs for real, only those missing; does nothing when all
# are there. Needs root or sudo; elsewhere it names what to install and exits 1.
#
#   scripts/deps.sh demo   what scripts/demo.sh needs: tmux, util-linux
#   scripts/deps.sh test   what `cargo test` runs for real (the default): the demo's, and
#                          libfaketime, etcd, node_exporter, man-db, promtool, systemd-analyze,
#                          zsh …
#   scripts/deps.sh deb    what scripts/package-deb.sh and scripts/check-deb.sh need: dpkg-dev,
#                          lintian, man-db
#   scripts/deps.sh ci     all of the above, and shellcheck (what .ci/run needs)
#
# Another apt (an unattended upgrade, a second helper) may hold the package lock: this waits
# for it, up to 5 minutes, instead of giving up at once.
set -euo pipefail

need=()
want() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }

demo() {
    want tmux tmux
    want setsid util-linux
}
test_tools() {
    demo
    want unshare util-linux
    want setpriv util-linux
    want nsenter util-linux
    want faketime faketime
    want etcd etcd-server
    want etcdctl etcd-client
    want prometheus-node-exporter prometheus-node-exporter
    want groff groff-base
    want man man-db
    want openssl openssl
    want promtool prometheus
    want systemd-analyze systemd
    want zsh zsh
    want ip iproute2
    want iptables iptables
    want script util-linux
    want docker docker.io
    want dockerd docker.io
    want busybox busybox-static
    want tini tini
    want dumb-init dumb-init
}
deb() {
    want dpkg-shlibdeps dpkg-dev
    want lintian lintian
    want man man-db
}

(($#)) || set -- test
for task in "$@"; do
    case $task in
        demo) demo ;;
        test) test_tools ;;
        deb) deb ;;
        ci)
            test_tools
            deb
            want shellcheck shellcheck
            ;;
        *)
            echo "deps: unknown task '$task'; tasks: demo, test (the default), deb, ci" >&2
            exit 2
            ;;
    esac
done
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
wait_s=300
# `apt-get install` waits for dpkg's lock itself (DPkg::Lock::Timeout); `apt-get update` does
# not (apt 2.6 gives up at once on /var/lib/apt/lists/lock), so it is retried while that lock
# is what stops it.
err=$(mktemp)
trap 'rm -f "$err"' EXIT
deadline=$((SECONDS + wait_s)) said=0
until "${sudo[@]}" apt-get update -qq -o DPkg::Lock::Timeout="$wait_s" 2>"$err"; do
    if ! grep -q 'Could not get lock' "$err" || ((SECONDS >= deadline)); then
        cat "$err" >&2
        exit 1
    fi
    ((said++)) || echo "deps: another apt holds the package lists' lock; waiting for it" >&2
    sleep 3
done
# No service starts while packages install (invoke-rc.d asks policy-rc.d): on a host that
# runs systemd, docker.io would start dockerd with its default bridge, a private address
# range these machines must not use. The tests start their own engine without a bridge.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    made_policy=1
fi
cleanup() {
    rm -f "$err"
    if ((made_policy)); then "${sudo[@]}" rm -f "$policy"; fi
}
trap cleanup EXIT
"${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout="$wait_s" "${need[@]}" >/dev/null
