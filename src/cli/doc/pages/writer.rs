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
