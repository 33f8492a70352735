#!/usr/bin/env bash
# start-agent-session.sh — start an agent runtime in a detached tmux session and attach a
# detached heartbeat watcher to it.
#
#   start-agent-session.sh AGENT [--hb-backend pidfd|poll|shell|none] -- CMD [ARGS...]
#
# * The tmux session is named AGENT. The pane execs CMD (through `bash -c 'exec "$@"'` with the
#   caller's PATH baked in), so `#{pane_pid}` is the runtime's own PID. CMD and ARGS are handed
#   to tmux as an argument vector, never re-parsed by a shell: spaces, quotes, `$`, `;` and
#   newlines reach the runtime unchanged, whatever tmux's default-shell is. Needs tmux >= 3.0.
# * AGENT follows pidbeat's rule (1-128 bytes of [A-Za-z0-9._@+-], not starting with '.') and
#   must not contain '.': tmux silently renames '.' (and ':') to '_' in session names, so the
#   session would not be called AGENT and `tmux ... -t =AGENT` would not find it.
# * Backends (default `pidfd`, else $MOSAIC_HB_BACKEND): `pidfd`/`poll` start
#   `$PIDBEAT watch --pid P --agent=AGENT --backend B --detach` (PIDBEAT defaults to `pidbeat`
#   on PATH); `shell` starts the plain bash sidecar hb-sidecar.sh next to this script; `none`
#   starts nothing. The watcher runs under setsid with stdin from /dev/null and its stderr
#   (the sidecar's stdout too) appended to <run-dir>/AGENT.log; pidbeat's stdout is the PID
#   it prints once detached. Run dir: $MOSAIC_HEARTBEAT_RUN_DIR, else
#   $XDG_CONFIG_HOME/mosaic/fleet/run, else ~/.config/mosaic/fleet/run (created mode 0700);
#   it is passed to the watcher as an absolute $MOSAIC_HEARTBEAT_RUN_DIR, and
#   $MOSAIC_HEARTBEAT_INTERVAL passes through unchanged. With `pidfd`/`poll`, the pane gets
#   NOTIFY_SOCKET=<run-dir>/.AGENT.notify, the watcher's sd_notify socket, so that the runtime
#   and its hooks can report progress (`pidbeat notify`, `systemd-notify`).
# * The heartbeat is best-effort: a missing watcher binary, an unresolvable pane PID or a
#   watcher that fails to start prints one "start-agent-session: warning: ..." line on stderr
#   and the launch still exits 0. Failing to start the tmux session (including an existing
#   session of the same name) is an error: exit 1, and no watcher is started.
# * Honours tmux's own $TMUX_TMPDIR; an inherited $TMUX (launching from inside tmux) is ignored.
#
# Exit status: 0 launched (heartbeat may have been skipped with a warning), 1 tmux failed,
# 2 usage error.
set -euo pipefail

readonly prog=start-agent-session

usage() {
	cat <<'EOF'
usage: start-agent-session.sh AGENT [--hb-backend pidfd|poll|shell|none] -- CMD [ARGS...]
  AGENT  1-128 bytes of [A-Za-z0-9_@+-]: pidbeat's agent-name rule without '.',
         which tmux would turn into '_' in the session name
  env:   PIDBEAT, MOSAIC_HB_BACKEND, MOSAIC_HEARTBEAT_RUN_DIR, MOSAIC_HEARTBEAT_INTERVAL, TMUX_TMPDIR
EOF
}

usage_error() {
	printf '%s: %s\n' "$prog" "$1" >&2
	usage >&2
	exit 2
}

warn() {
	printf '%s: warning: %s\n' "$prog" "$1" >&2
}

# Heartbeat problems never fail the launch: one warning line, exit 0.
skip_heartbeat() {
	warn "$1"
	exit 0
}

# pidbeat's agent-name rule, checked bytewise whatever the caller's locale.
valid_agent() {
	local LC_ALL=C
	[[ $1 =~ ^[A-Za-z0-9_@+-][A-Za-z0-9._@+-]{0,127}$ ]]
}

# ---- arguments -----------------------------------------------------------------------------

case ${1-} in
-h | --help)
	usage
	exit 0
	;;
'' | -- | --hb-backend | --hb-backend=*)
	usage_error "missing AGENT (it comes first)"
	;;
esac
agent=$1
shift

backend=${MOSAIC_HB_BACKEND:-pidfd}
have_cmd=0
while (($# > 0)); do
	case $1 in
	--)
		shift
		have_cmd=1
		break
		;;
	--hb-backend)
		(($# >= 2)) || usage_error "--hb-backend needs a value"
		backend=$2
		shift 2
		;;
	--hb-backend=*)
		backend=${1#*=}
		shift
		;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage_error "unexpected argument '$1' (put the command after --)"
		;;
	esac
done

valid_agent "$agent" ||
	usage_error "invalid agent name '$agent': 1-128 bytes of [A-Za-z0-9._@+-], not starting with '.'"
[[ $agent != *.* ]] ||
	usage_error "invalid agent name '$agent': tmux would rename '.' to '_' in the session name; use a name without '.'"
case $backend in
pidfd | poll | shell | none) ;;
*) usage_error "invalid heartbeat backend '$backend' (pidfd, poll, shell or none)" ;;
esac
((have_cmd)) || usage_error "missing '--' before CMD"
(($# > 0)) || usage_error "missing CMD after '--'"

# ---- the tmux session ----------------------------------------------------------------------

# An inherited TMUX would point tmux at the enclosing server's socket; TMUX_TMPDIR stays.
unset TMUX

command -v tmux >/dev/null 2>&1 || {
	printf '%s: error: tmux not found on PATH\n' "$prog" >&2
	exit 1
}

# The pane runs bash (absolute path: the tmux server's PATH may differ), which sets the
# caller's PATH and execs CMD: no shell stays between tmux and the runtime. Arguments travel
# as positional parameters, so no shell parses them. tmux itself reads one thing in an
# argument vector: a trailing ';' separates tmux commands, and a trailing '\;' stands for a
# literal ';'. So every argument that ends in ';' gets that ';' escaped.
# shellcheck disable=SC2016 # $1 and $@ are for the pane's bash, not for this one
pane_script='PATH=$1; export PATH; shift; exec "$@"'
# The run dir, resolved as pidbeat resolves it (empty: none). Known before the session starts,
# so that the pane gets NOTIFY_SOCKET, the watcher's sd_notify socket for the agent.
run_dir=
if [[ -n ${MOSAIC_HEARTBEAT_RUN_DIR:-} ]]; then
	run_dir=$MOSAIC_HEARTBEAT_RUN_DIR
elif [[ ${XDG_CONFIG_HOME:-} == /* ]]; then # a relative XDG_CONFIG_HOME is invalid: ignore it
	run_dir=$XDG_CONFIG_HOME/mosaic/fleet/run
elif [[ -n ${HOME:-} ]]; then
	run_dir=$HOME/.config/mosaic/fleet/run
fi
[[ -z $run_dir || $run_dir == /* ]] || run_dir=$PWD/$run_dir
session_env=()
if [[ -n $run_dir && ($backend == pidfd || $backend == poll) ]]; then
	session_env=(-e "NOTIFY_SOCKET=$run_dir/.$agent.notify")
fi
pane_argv=()
for arg in "$BASH" -c "$pane_script" "$prog" "$PATH" "$@"; do
	[[ $arg == *';' ]] && arg=${arg%;}'\;'
	pane_argv+=("$arg")
done
if ! tmux new-session -d -s "$agent" "${session_env[@]}" -- "${pane_argv[@]}"; then
	printf '%s: error: could not start tmux session %s (tmux says why above); no watcher started\n' \
		"$prog" "$agent" >&2
	exit 1
fi

[[ $backend != none ]] || exit 0

# ---- the heartbeat watcher (best-effort from here on) --------------------------------------

script_dir=$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")
case $backend in
pidfd | poll)
	watcher=${PIDBEAT:-pidbeat}
	watcher_path=$(command -v -- "$watcher" 2>/dev/null) ||
		skip_heartbeat "watcher binary '$watcher' not found or not executable (set PIDBEAT); session $agent runs without a heartbeat"
	;;
shell)
	watcher_path=$script_dir/hb-sidecar.sh
	[[ -x $watcher_path ]] ||
		skip_heartbeat "$watcher_path is missing or not executable; session $agent runs without a heartbeat"
	;;
esac
command -v setsid >/dev/null 2>&1 ||
	skip_heartbeat "setsid not found on PATH; session $agent runs without a heartbeat"

[[ -n $run_dir ]] ||
	skip_heartbeat "no run dir: set MOSAIC_HEARTBEAT_RUN_DIR or HOME; session $agent runs without a heartbeat"
(umask 077 && mkdir -p -- "$run_dir") 2>/dev/null ||
	skip_heartbeat "cannot create run dir $run_dir; session $agent runs without a heartbeat"
log=$run_dir/$agent.log
{ : >>"$log"; } 2>/dev/null ||
	skip_heartbeat "cannot write $log; session $agent runs without a heartbeat"
export MOSAIC_HEARTBEAT_RUN_DIR=$run_dir

# The pane exists as soon as new-session returns; the retry covers a busy server. An empty
# answer means the runtime already exited (and took its session with it).
pane_pid=
for _ in {1..20}; do
	pane_pid=$(tmux list-panes -t "=$agent:" -F '#{pane_pid}' 2>/dev/null | head -n 1) || pane_pid=
	[[ $pane_pid =~ ^[1-9][0-9]*$ ]] && break
	pane_pid=
	sleep 0.05
done
[[ -n $pane_pid ]] ||
	skip_heartbeat "could not resolve the pane PID of tmux session $agent (did CMD exit at once?); no watcher started"

case $backend in
pidfd | poll)
	# --detach returns only once the first alive record is on disk, so its status is the
	# verdict, and then prints the watcher's PID on stdout. setsid -w passes that status back
	# even when setsid has to fork. pidbeat bounds the wait itself (5 s), stopping a watcher
	# that misses it, and a detached watcher whose parent is gone (killed by this timeout,
	# the guard against a wedged parent) stops itself instead of starting: so on failure no
	# watcher is left to stop. `--agent=NAME` because a valid name may start with '-', which
	# an option parser would take for a flag after a bare `--agent`.
	rc=0
	wpid=$(timeout 10 setsid -w "$watcher_path" watch --pid "$pane_pid" --agent="$agent" \
		--backend "$backend" --detach </dev/null 2>>"$log") || rc=$?
	if ((rc != 0)) && [[ $wpid =~ ^[1-9][0-9]*$ ]]; then
		# It had started and said so, but the launch failed after all (timeout struck
		# between the PID and the exit): stop it, so that "no heartbeat" is true.
		kill -TERM "$wpid" 2>/dev/null || true
	fi
	((rc == 0)) ||
		skip_heartbeat "pidbeat watcher for $agent (pid $pane_pid) failed to start (exit $rc); see $log"
	;;
shell)
	setsid nohup "$watcher_path" --pid "$pane_pid" --agent="$agent" </dev/null >>"$log" 2>&1 &
	sidecar=$!
	# The sidecar writes its first record at once: wait for it, briefly.
	hb=$run_dir/$agent.hb
	for _ in {1..40}; do
		if [[ -f $hb ]] && rec=$(<"$hb") &&
			[[ $rec == *'"pid":'"$pane_pid"','* && $rec == *'"backend":"shell"'* ]]; then
			exit 0
		fi
		kill -0 "$sidecar" 2>/dev/null || [[ -f $hb ]] || break
		sleep 0.05
	done
	skip_heartbeat "shell sidecar for $agent (pid $pane_pid) wrote no record; see $log"
	;;
esac
