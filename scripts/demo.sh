#!/usr/bin/env bash
# The newcomer's tour: start a real agent-like runtime in a detached tmux session through the
# launcher, let pidbeat watch its pane PID, show the fleet, kill the pane, show the death.
# Everything lives in a private temp dir (own tmux socket, own run dir) and is removed after.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
# The binary `cargo build --release` made, wherever cargo puts it (CARGO_TARGET_DIR,
# build.target-dir in a config …): cargo itself says where. PIDBEAT=/path/to/pidbeat picks
# another build.
target_dir() {
    cargo metadata --format-version 1 --no-deps --manifest-path "$root/Cargo.toml" 2>/dev/null |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'
}
if [[ -z ${PIDBEAT:-} ]]; then
    target=$(target_dir || true)
    PIDBEAT=${target:-$root/target}/release/pidbeat
fi
export PIDBEAT
[[ -x $PIDBEAT ]] || {
    echo "demo: no pidbeat at $PIDBEAT: build it first (cargo build --release), or set PIDBEAT=/path/to/pidbeat" >&2
    exit 1
}

tmp=$(mktemp -d)
export TMUX_TMPDIR=$tmp/tmux MOSAIC_HEARTBEAT_RUN_DIR=$tmp/run MOSAIC_HEARTBEAT_INTERVAL=2
mkdir -m 700 "$TMUX_TMPDIR"
cleanup() {
    tmux kill-server 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
unset TMUX

run() {
    printf '\n$'
    printf ' %q' "$@"
    printf '\n'
    "$@"
}

# Two "agents": one runs until we kill its pane, one exits by itself with code 3.
run "$here/start-agent-session.sh" demo-pi -- sleep 600
run "$here/start-agent-session.sh" demo-codex -- sh -c 'sleep 1.5; exit 3'
run "$PIDBEAT" ps
run cat "$MOSAIC_HEARTBEAT_RUN_DIR/demo-pi.hb"
run tmux kill-session -t demo-pi
# wait returns as each watcher writes its death (inotify, no polling).
run "$PIDBEAT" wait --timeout 10 demo-pi demo-codex
run "$PIDBEAT" ps
run cat "$MOSAIC_HEARTBEAT_RUN_DIR/demo-pi.hb"
