//! The pages of the commands that write a record: `watch` and `run`.

use super::{Page, USAGE};

pub const WATCH: Page = Page {
    description: "Opens a pidfd on PID and rewrites <run-dir>/<agent>.hb every interval (`alive`). When the process exits, writes `dead` at once (then the exit status, if the kernel learns it within about a second) and exits. SIGTERM or SIGINT write `unwatched` and exit.\n\nOne watcher per agent: it holds an exclusive lock on <run-dir>/.<agent>.lock for its whole life, and a second watcher of the same agent is refused.",
    exit_line: "Exit status: 0 target died or watcher stopped (or detached), 1 runtime error, 2 usage error.",
    examples: &[
        (
            "pidbeat watch --pid 4242 --agent codex",
            "watch PID 4242 in the foreground until it dies",
        ),
        (
            "wpid=$(pidbeat watch --pid 4242 --agent codex --detach)",
            "go to the background once the first record is on disk; keep the watcher's PID",
        ),
        (
            "MOSAIC_HEARTBEAT_INTERVAL=5 pidbeat watch --pid 4242 --agent codex",
            "beat every 5 seconds instead of 15",
        ),
    ],
    exit: &[
        (
            "0",
            "the target died (`dead` recorded), or SIGTERM/SIGINT stopped the watcher (`unwatched` recorded); with --detach, the watcher is running",
        ),
        (
            "1",
            "runtime error: no such PID, a zombie or thread ID, another watcher holds the agent's lock, an unsafe run dir, or a --detach watcher not ready within 5 s",
        ),
        USAGE,
    ],
    sections: &[],
    env: &[],
    files: &[],
    see_also: &["pidbeat-ps(1)", "pidbeat-wait(1)", "pidfd_open(2)"],
};

pub const RUN: Page = Page {
    description: "Spawns CMD as a child, keeps its record like `watch` does, forwards every signal it can catch to it, and exits with its status, which is exact on every kernel. Made for containers where pidbeat is the entrypoint (PID 1), and behaves there as tini does.\n\nMonitoring never stops CMD: CMD starts first, and a run dir that cannot be made or written is warned about once and retried at every beat; one that must not be trusted (group- or world-writable, another user's) is said once and never written. Either way pidbeat exits with CMD's status.",
    exit_line: "Exit status: CMD's status (128+n if killed by signal n), 126/127 CMD not executable/not found, 1 runtime error, 2 usage error.",
    examples: &[
        (
            "pidbeat run --agent job -- ./job.sh --fast",
            "run ./job.sh under a watcher; exit with its status",
        ),
        (
            "unshare --pid --fork pidbeat run --agent app -- ./app",
            "as PID 1 of a new PID namespace, as in a container: orphans are reaped too",
        ),
    ],
    exit: &[
        ("N", "CMD exited with status N"),
        ("128 + n", "CMD was killed by signal n (137 for SIGKILL)"),
        ("126", "CMD was found but cannot be executed"),
        ("127", "CMD was not found"),
        (
            "1",
            "runtime error before CMD ran (another watcher holds the agent's lock), or its status could not be learned",
        ),
        USAGE,
    ],
    sections: &[(
        "SIGNALS",
        &[
            (
                "Every catchable signal",
                "forwarded to CMD (to its process group with --kill-group); none kills or stops pidbeat, whatever its parent blocked or ignored. Not forwarded: SIGCHLD (pidbeat reaps), SIGTTIN and SIGTTOU (ignored, as by tini), glibc's reserved 32 and 33",
            ),
            (
                "The terminal",
                "CMD runs in its own process group, in the terminal's foreground when pidbeat holds it, so one Ctrl-C is one SIGINT for CMD; CMD inherits exactly the signal mask and ignored signals pidbeat inherited",
            ),
            (
                "As PID 1",
                "(a container, `unshare --pid --fork`) or with --subreaper, pidbeat also reaps every orphan reparented to it, so none stays a zombie",
            ),
        ],
    )],
    env: &[],
    files: &[],
    see_also: &["pidbeat-watch(1)", "pidbeat-wait(1)"],
};

pub const NOTIFY: Page = Page {
    description: "Sends one sd_notify datagram of KEY=VALUE lines to the agent's watcher, which listens on <run-dir>/.<agent>.notify (or to $NOTIFY_SOCKET without --agent; `pidbeat run` sets it for CMD). It never blocks: nothing is awaited, and BARRIER=1 is not sent. The watcher hears only the uid of the process it watches, and closes any fd passed to it at once, so Debian's systemd-notify (with or without --no-block) works as well.\n\nKeys the watcher keeps in the record's `progress`: READY=1, STATUS=TEXT (shown by `ps -o status`), WATCHDOG=1, WATCHDOG_USEC=N (past N µs without WATCHDOG=1 the agent is `hung`), STOPPING=1, and X_PIDBEAT_ACTIVITY=working|waiting|idle, the agent's claim (`ps`'s ACTIVITY). Other keys are ignored. A changed claim or STATUS= is written at once, at most 4 times a second.",
    exit_line: "Exit status: 0 sent, 1 nobody listens (no watcher, or no such socket), 2 usage error.",
    examples: &[
        (
            "pidbeat notify --agent pi X_PIDBEAT_ACTIVITY=waiting 'STATUS=needs approval'",
            "say that agent `pi` waits for its user, and why",
        ),
        (
            "pidbeat notify X_PIDBEAT_ACTIVITY=working",
            "from inside `pidbeat run` (or a launcher pane), through $NOTIFY_SOCKET",
        ),
    ],
    exit: &[
        ("0", "the datagram was sent"),
        (
            "1",
            "nobody listens at the socket (no watcher runs for the agent), or it cannot be reached",
        ),
        USAGE,
    ],
    sections: &[],
    env: &[(
        "NOTIFY_SOCKET",
        "the socket to send to when --agent is not given (a leading @ is an abstract name)",
    )],
    files: &[(
        "<run-dir>/.<agent>.notify",
        "the agent's sd_notify socket, bound by its watcher while it runs",
    )],
    see_also: &["pidbeat-watch(1)", "pidbeat-run(1)", "systemd-notify(1)"],
};
