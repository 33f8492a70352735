#!/usr/bin/env bash
# The newcomer's tour: start a real agent-like runtime in a detached tmux session through the
# launcher, let pidbeat watch its pane PID, show the fleet, kill the pane, show the death.
# Everything lives in a private temp dir (own tmux socket, own run dir) and is removed after.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
export PIDBEAT=${PIDBEAT:-$root/target/release/pidbeat}
[[ -x $PIDBEAT ]] || { echo "demo: build first: cargo build --release" >&2; exit 1; }

tmp=$(mktemp -d)
export TMUX_TMPDIR=$tmp/tmux MOSAIC_HEARTBEAT_RUN_DIR=$tmp/run MOSAIC_HEARTBEAT_INTERVAL=2
mkdir -m 700 "$TMUX_TMPDIR"
cleanup() {
    tmux kill-server 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
unset TMUX

run() { printf '\n$ %s\n' "$*"; "$@"; }

run "$here/start-agent-session.sh" demo-agent -- sleep 600
run "$PIDBEAT" ps --run-dir "$MOSAIC_HEARTBEAT_RUN_DIR"
run cat "$MOSAIC_HEARTBEAT_RUN_DIR/demo-agent.hb"
run tmux kill-session -t demo-agent
# wait returns as soon as the watcher has written the death (inotify, no polling).
run "$PIDBEAT" wait --timeout 5 --run-dir "$MOSAIC_HEARTBEAT_RUN_DIR" demo-agent
run "$PIDBEAT" ps --run-dir "$MOSAIC_HEARTBEAT_RUN_DIR"
run cat "$MOSAIC_HEARTBEAT_RUN_DIR/demo-agent.hb"
