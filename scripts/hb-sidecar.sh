#!/usr/bin/env bash
# hb-sidecar.sh — the plain bash heartbeat sidecar: the baseline pidbeat is measured against.
#
#   hb-sidecar.sh --pid PID --agent NAME [--run-dir DIR] [--interval SECS]
#
# Every INTERVAL seconds (default $MOSAIC_HEARTBEAT_INTERVAL, else 15) it checks the PID with
# `kill -0` and rewrites <run-dir>/NAME.hb (temp file in the same dir + mv) with an `alive`
# record. When a check finds the PID gone it writes a final `dead` record and exits 0, so a
# death shows up to one interval late: that lag is what pidbeat's pidfd watcher removes. On
# SIGTERM/SIGINT it writes `unwatched` (or `dead` if the target is gone by then) and exits 0.
# It forks `date`, `mv` and `sleep` on every beat, like the tool it replaces.
#
# Run dir: --run-dir, else $MOSAIC_HEARTBEAT_RUN_DIR, else $XDG_CONFIG_HOME/mosaic/fleet/run,
# else ~/.config/mosaic/fleet/run; created with mode 0700.
# The record carries pidbeat's keys with "backend":"shell"; `seq` counts this sidecar's beats
# and `exit` is always null (a non-child's exit status is out of reach here). There is no lock:
# one sidecar per agent is up to whoever starts it (start-agent-session.sh starts one per
# tmux session).
#
# Exit status: 0 target died or sidecar stopped, 1 runtime error, 2 usage error.
set -euo pipefail

readonly prog=hb-sidecar

usage_error() {
	printf '%s: %s\n' "$prog" "$1" >&2
	printf 'usage: hb-sidecar.sh --pid PID --agent NAME [--run-dir DIR] [--interval SECS]\n' >&2
	exit 2
}

die() {
	printf '%s: error: %s\n' "$prog" "$1" >&2
	exit 1
}

pid='' agent='' run_dir='' interval=${MOSAIC_HEARTBEAT_INTERVAL:-15}
while (($# > 0)); do
	case $1 in
	--pid | --agent | --run-dir | --interval)
		(($# >= 2)) || usage_error "$1 needs a value"
		case $1 in
		--pid) pid=$2 ;;
		--agent) agent=$2 ;;
		--run-dir) run_dir=$2 ;;
		--interval) interval=$2 ;;
		esac
		shift 2
		;;
	--pid=*) pid=${1#*=} && shift ;;
	--agent=*) agent=${1#*=} && shift ;;
	--run-dir=*) run_dir=${1#*=} && shift ;;
	--interval=*) interval=${1#*=} && shift ;;
	-h | --help)
		printf 'usage: hb-sidecar.sh --pid PID --agent NAME [--run-dir DIR] [--interval SECS]\n'
		exit 0
		;;
	*) usage_error "unexpected argument '$1'" ;;
	esac
done

[[ $pid =~ ^[1-9][0-9]{0,9}$ ]] || usage_error "--pid needs a positive integer, got '$pid'"
(
	LC_ALL=C
	[[ $agent =~ ^[A-Za-z0-9_@+-][A-Za-z0-9._@+-]{0,127}$ ]]
) || usage_error "invalid agent name '$agent': 1-128 bytes of [A-Za-z0-9._@+-], not starting with '.'"

# Interval: a positive decimal number of seconds, at most one day. Normalised for JSON.
[[ $interval =~ ^([0-9]*)(\.([0-9]+))?$ && -n ${BASH_REMATCH[1]}${BASH_REMATCH[3]} ]] ||
	usage_error "invalid interval '$interval': a number of seconds such as 15 or 0.5"
int=${BASH_REMATCH[1]} frac=${BASH_REMATCH[3]}
while [[ $int == 0* ]]; do int=${int#0}; done
((${#int} <= 6)) || usage_error "invalid interval '$interval': at most one day (86400)"
int=${int:-0}
[[ $int -gt 0 || ${frac:0:3} =~ [1-9] ]] ||
	usage_error "invalid interval '$interval': at least 0.001 (what pidbeat accepts)"
[[ $int -lt 86400 || ($int -eq 86400 && ! $frac =~ [1-9]) ]] ||
	usage_error "invalid interval '$interval': at most one day (86400)"
interval=$int.${frac:-0} # written as a JSON float, like pidbeat

if [[ -z $run_dir ]]; then
	if [[ -n ${MOSAIC_HEARTBEAT_RUN_DIR:-} ]]; then
		run_dir=$MOSAIC_HEARTBEAT_RUN_DIR
	elif [[ ${XDG_CONFIG_HOME:-} == /* ]]; then
		run_dir=$XDG_CONFIG_HOME/mosaic/fleet/run
	elif [[ -n ${HOME:-} ]]; then
		run_dir=$HOME/.config/mosaic/fleet/run
	else
		die "no run dir: pass --run-dir or set MOSAIC_HEARTBEAT_RUN_DIR or HOME"
	fi
fi
(umask 077 && mkdir -p -- "$run_dir") || die "cannot create run dir $run_dir"

hb=$run_dir/$agent.hb
tmp=$run_dir/.$agent.hb.$$.tmp

# The target's start time (field 22 of /proc/PID/stat), read once: with pid, its identity.
start_time=null
if stat=$(cat -- "/proc/$pid/stat" 2>/dev/null); then
	read -ra fields <<<"${stat##*) }"
	[[ ${fields[19]-} =~ ^[0-9]+$ ]] && start_time=${fields[19]}
fi

# Our own start time: with our PID, the proof that this sidecar (not a later process that
# reused its PID) still writes the record, since a sidecar holds no lock.
self_start_time=null
if stat=$(cat -- "/proc/$$/stat" 2>/dev/null); then
	read -ra fields <<<"${stat##*) }"
	[[ ${fields[19]-} =~ ^[0-9]+$ ]] && self_start_time=${fields[19]}
fi

target_alive() {
	# kill -0 fails with EPERM for a live process of another user: /proc still shows it.
	kill -0 "$pid" 2>/dev/null || [[ -d /proc/$pid ]]
}

seq=0
beat() { # STATUS
	local now died=null
	now=$(date +%s%3N)
	[[ $1 == dead ]] && died=$now
	seq=$((seq + 1))
	printf '{"ts":%d,"pid":%d,"status":"%s","ts_ms":%d,"seq":%d,"interval":%s,"backend":"shell","watcher_pid":%d,"start_time":%s,"exit":null,"died_ms":%s,"watcher_start_time":%s}\n' \
		$((now / 1000)) "$pid" "$1" "$now" "$seq" "$interval" "$$" "$start_time" "$died" "$self_start_time" >"$tmp"
	mv -f -- "$tmp" "$hb"
}

sleep_pid=
stop() {
	trap '' TERM INT
	if [[ -n $sleep_pid ]]; then
		kill "$sleep_pid" 2>/dev/null || true
		wait "$sleep_pid" 2>/dev/null || true
	fi
	if target_alive; then beat unwatched; else beat dead; fi
	exit 0
}
trap 'rm -f -- "$tmp"' EXIT
trap stop TERM INT

while :; do
	if ! target_alive; then
		beat dead
		exit 0
	fi
	beat alive
	# Sleep in the background and wait: a trapped signal interrupts `wait` at once, where a
	# foreground sleep would delay the trap until it finished.
	sleep "$interval" &
	sleep_pid=$!
	wait "$sleep_pid" || true
	sleep_pid=
done
