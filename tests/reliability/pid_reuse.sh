#!/bin/bash
# PID 1 of a private PID namespace (`unshare --pid --fork --mount-proc`), driven by
# tests/reliability/pid_reuse.rs (pid_reuse_*). Each round: start a target, put one pidfd and
# one poll watcher on it, SIGKILL and reap the target, then make an impostor take the very
# same PID (ns_last_pid = PID - 1, then fork). Prints `@…` lines; the Rust side does the judging.
#
# Args: BIN RUN_DIR ROUNDS WITH_PS(0|1) INTERVAL
# With WITH_PS=1 the poll watcher is SIGSTOPped before the kill, so its record still says
# `alive` while the impostor holds the PID: `ps` must call that `lost`, never `alive`.
#
# As PID 1 this script must reap: every child is collected with `wait PID`.
set -u
BIN=$1 RUN=$2 ROUNDS=$3 WITH_PS=$4 IV=$5

echo "@ns $(readlink /proc/self/ns/pid) $$"

has_status() { [[ -f $1 ]] && grep -q "\"status\":\"$2\"" "$1"; }
# Up to 5 s, 10 ms steps.
wait_status() {
  local n=500
  until has_status "$1" "$2"; do
    ((n-- > 0)) || return 1
    sleep 0.01
  done
}
ps_line() {
  local tag=$1
  shift
  echo "@ps $tag $("$BIN" ps --run-dir "$RUN" --json "$@" 2>&1 | tr -d '\n')"
}

for ((r = 1; r <= ROUNDS; r++)); do
  sleep 1000 &
  T=$!
  # Each watcher's status is taken by a subshell at once: in a namespace this small, PIDs
  # are reused within the round, and bash forgets a reaped child's status once its PID is
  # handed to a new child (then `wait PID` says 127).
  { "$BIN" watch --pid "$T" --agent "pidfd-$r" --run-dir "$RUN" --interval "$IV" --backend pidfd; echo "@exit $r pidfd $?"; } &
  WF=$!
  { "$BIN" watch --pid "$T" --agent "poll-$r" --run-dir "$RUN" --interval "$IV" --backend poll; echo "@exit $r poll $?"; } &
  WPS=$!
  wait_status "$RUN/pidfd-$r.hb" alive || echo "@error $r pidfd watcher never wrote alive"
  wait_status "$RUN/poll-$r.hb" alive || echo "@error $r poll watcher never wrote alive"
  WP=$(grep -o '"watcher_pid":[0-9]*' "$RUN/poll-$r.hb" | cut -d: -f2)
  if [[ $WITH_PS == 1 ]]; then
    ps_line "before $r" "pidfd-$r" "poll-$r"
    kill -STOP "$WP"
  fi

  kill -KILL "$T"
  wait "$T" 2>/dev/null
  # No fork may happen between these two lines: the next PID handed out must be $T.
  echo $((T - 1)) >/proc/sys/kernel/ns_last_pid
  sleep 1000 &
  I=$!
  echo "@round $r $T $I $(cut -d' ' -f22 /proc/$I/stat)"

  if [[ $WITH_PS == 1 ]]; then
    echo "@poll-record-in-window $r $(cat "$RUN/poll-$r.hb")"
    for _ in 1 2 3; do ps_line "window $r" "pidfd-$r" "poll-$r"; done
    kill -CONT "$WP"
  fi

  wait_status "$RUN/pidfd-$r.hb" dead || echo "@error $r pidfd record never said dead"
  wait_status "$RUN/poll-$r.hb" dead || echo "@error $r poll record never said dead"
  wait "$WF" "$WPS"
  [[ $WITH_PS == 1 ]] && ps_line "after $r" "pidfd-$r" "poll-$r"
  # The impostor must still be there (it is what a wrong `alive` would be about).
  [[ -d /proc/$I ]] || echo "@error $r impostor vanished"
  kill -KILL "$I"
  wait "$I" 2>/dev/null
done
echo "@done"
