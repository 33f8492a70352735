//! What `--help` and the man pages say beyond the clap definitions: examples, exit statuses
//! and sections of a command's own (the states of `ps`, the lines `wait` prints). Looked up by
//! command name; a command without an entry gets [`DEFAULT`], so every subcommand has a page
//! and an exit-status line.

/// A term and what it means: one item of a list in `--help` and a `.TP` item in a man page.
pub type Item = (&'static str, &'static str);

pub struct Page {
    /// What the command does, in a paragraph or two (`--help` and DESCRIPTION); empty: the
    /// one-line about of the clap definition is all.
    pub description: &'static str,
    /// The one line `-h` ends with.
    pub exit_line: &'static str,
    /// Short, true examples: the command line, then what it does.
    pub examples: &'static [Item],
    /// Every status the command exits with, and when.
    pub exit: &'static [Item],
    /// Sections of the command's own, in `--help` (long form) and the man page.
    pub sections: &'static [(&'static str, &'static [Item])],
    /// Environment variables and files of the command's own, beyond those of the run dir and
    /// the interval that every command with those flags shares.
    pub env: &'static [Item],
    pub files: &'static [Item],
    /// Other man pages worth reading, as `name(section)`.
    pub see_also: &'static [&'static str],
}

const OK: Item = ("0", "success");
const RUNTIME: Item = (
    "1",
    "runtime error; the message on stderr says what and how to fix it",
);
const USAGE: Item = (
    "2",
    "usage error: a bad flag or environment value, named in the message",
);

/// For a command without an entry of its own.
pub const DEFAULT: Page = Page {
    description: "",
    exit_line: "Exit status: 0 success, 1 runtime error, 2 usage error.",
    examples: &[],
    exit: &[OK, RUNTIME, USAGE],
    sections: &[],
    env: &[],
    files: &[],
    see_also: &[],
};

/// The top-level page: `pidbeat --help` and pidbeat(1).
pub const TOP: Page = Page {
    description: "One small `pidbeat watch` process per agent runtime holds a pidfd on the runtime's PID and sleeps in epoll beside a heartbeat timer. Every interval it rewrites <run-dir>/<agent>.hb; the instant the runtime exits it writes `dead`, with the exit code or signal when the kernel can tell.\n\n`pidbeat ps` shows the fleet, `pidbeat wait` blocks until agents end, and `pidbeat run -- CMD` does the same for its own child as a container entrypoint.",
    exit_line: "Exit status: 0 success, 1 runtime error, 2 usage error, 124 wait timed out; run: CMD's status.",
    examples: &[
        (
            "pidbeat watch --pid 4242 --agent codex --detach",
            "watch PID 4242 in the background as agent `codex`; prints the watcher's PID",
        ),
        (
            "pidbeat ps",
            "show every agent of the run dir and its state",
        ),
        (
            "pidbeat wait --timeout 600 codex",
            "block until `codex` has ended, for at most 10 minutes",
        ),
        (
            "pidbeat run --agent job -- ./job.sh",
            "run ./job.sh under a watcher and exit with its status",
        ),
    ],
    exit: &[
        OK,
        RUNTIME,
        USAGE,
        ("124", "wait: --timeout ran out"),
        (
            "126, 127, N",
            "run: CMD cannot be executed, is not found, or exited with N (128 + n when killed by signal n)",
        ),
    ],
    sections: &[],
    env: &[],
    files: &[],
    see_also: &["flock(1)", "waitpid(1)", "pidfd_open(2)", "inotify(7)"],
};

/// The page of the subcommand `name`.
pub fn page(name: &str) -> &'static Page {
    match name {
        "watch" => &WATCH,
        "run" => &RUN,
        "ps" => &PS,
        "wait" => &WAIT,
        "completions" => &COMPLETIONS,
        "man" => &MAN,
        _ => &DEFAULT,
    }
}

const WATCH: Page = Page {
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

const RUN: Page = Page {
    description: "Spawns CMD as a child, keeps its record like `watch` does, forwards SIGTERM, SIGINT and SIGHUP to it, and exits with its status, which is exact on every kernel. Made for containers where pidbeat is the entrypoint.",
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
            "runtime error before CMD ran (lock held, unsafe run dir), or its status could not be learned",
        ),
        USAGE,
    ],
    sections: &[(
        "SIGNALS",
        &[
            (
                "SIGTERM, SIGINT, SIGHUP",
                "forwarded to CMD; pidbeat keeps running until CMD exits, records `dead` and exits with CMD's status",
            ),
            (
                "As PID 1",
                "(a container, `unshare --pid --fork`) pidbeat also reaps every orphan reparented to it, so none stays a zombie",
            ),
        ],
    )],
    env: &[],
    files: &[],
    see_also: &["pidbeat-watch(1)", "pidbeat-wait(1)"],
};

const PS: Page = Page {
    description: "Judges every record of the run dir (or only the named agents) against /proc, the agents' locks and pidfds, and prints one row per agent: AGENT, STATE, PID, AGE, BACKEND, EXIT. `lost` is proven, never guessed from age.",
    exit_line: "Exit status: 0 success, 1 a named AGENT has no record or a runtime error, 2 usage error.",
    examples: &[
        ("pidbeat ps", "the fleet as a table, sorted by agent"),
        (
            "pidbeat ps --json codex pi",
            "two agents as one JSON array (docs/ps-entry.schema.json)",
        ),
        ("pidbeat ps --watch", "redraw whenever a record changes"),
        (
            "pidbeat ps --prom > DIR/pidbeat.prom.$$ && mv DIR/pidbeat.prom.$$ DIR/pidbeat.prom",
            "for node_exporter's textfile collector, written atomically",
        ),
    ],
    exit: &[
        ("0", "success, also for an empty or missing run dir"),
        (
            "1",
            "a named AGENT has no record (the other rows are printed first), or the run dir cannot be read",
        ),
        USAGE,
    ],
    sections: &[
        (
            "STATES",
            &[
                (
                    "alive",
                    "the record says alive, was written within 2 x interval + 1 s, and the target runs with the same start time",
                ),
                (
                    "stale",
                    "the record says alive but is older than that, while the target still runs",
                ),
                (
                    "dead",
                    "the record says dead; EXIT shows the code or signal when known",
                ),
                (
                    "lost",
                    "the record says alive but its target or its watcher is gone or replaced: nobody will write `dead`",
                ),
                (
                    "unwatched",
                    "the watcher was stopped (SIGTERM/SIGINT) while the target still ran",
                ),
                ("corrupt", "the record cannot be read or parsed"),
            ],
        ),
        (
            "FORMATS",
            &[
                (
                    "--json",
                    "one array; each object is agent, state, age_ms, then the record's keys in the file's order",
                ),
                (
                    "--prom",
                    "Prometheus text exposition; cannot be combined with --json or --watch",
                ),
                (
                    "--watch",
                    "redraws on every change until Ctrl-C; with --json, one array per line per change",
                ),
            ],
        ),
    ],
    env: &[],
    files: &[],
    see_also: &["pidbeat-wait(1)", "pidbeat-watch(1)"],
};

const WAIT: Page = Page {
    description: "Blocks until every named agent is dead or lost, and prints one line for each as it ends. It sleeps on inotify and pidfds, so a death is seen within about a millisecond. An agent without a record yet is waited for.",
    exit_line: "Exit status: 0 all ended, 124 --timeout ran out, 1 runtime error, 2 usage error.",
    examples: &[
        (
            "pidbeat wait codex pi",
            "block until both agents have ended",
        ),
        (
            "pidbeat wait --timeout 60 codex || echo \"codex still runs\"",
            "give up after a minute (exit 124)",
        ),
    ],
    exit: &[
        ("0", "every named agent has ended (dead or lost)"),
        ("124", "--timeout ran out first"),
        RUNTIME,
        USAGE,
    ],
    sections: &[(
        "OUTPUT",
        &[
            (
                "",
                "One line on stdout per agent, as each ends, in the order they end:",
            ),
            ("AGENT dead code N", "it exited with status N"),
            ("AGENT dead signal N", "it was killed by signal N"),
            ("AGENT dead", "it died and its exit status is unknown"),
            (
                "AGENT lost",
                "it ended but nobody recorded it (the watcher is gone, or it was unwatched)",
            ),
        ],
    )],
    env: &[],
    files: &[],
    see_also: &["pidbeat-ps(1)", "waitpid(1)"],
};

const COMPLETIONS: Page = Page {
    description: "Prints the registration script of the dynamic completion engine for SHELL. Install it once; it needs no update when pidbeat changes.",
    exit_line: "Exit status: 0 success, 2 unknown shell.",
    examples: &[
        (
            "pidbeat completions bash > ~/.local/share/bash-completion/completions/pidbeat",
            "install for bash (new shells pick it up)",
        ),
        (
            "echo 'source <(pidbeat completions zsh)' >> ~/.zshrc",
            "install for zsh (after compinit)",
        ),
        (
            "pidbeat completions fish > ~/.config/fish/completions/pidbeat.fish",
            "install for fish",
        ),
    ],
    exit: &[OK, ("2", "unknown shell")],
    sections: &[(
        "HOW IT COMPLETES",
        &[(
            "",
            "The script asks `pidbeat` on PATH at each TAB, so completions always match the installed version: agent names from the run dir (--run-dir on the line, else the environment), PIDs with their command names for --pid, and commands after `run --`.",
        )],
    )],
    env: &[(
        "PIDBEAT_COMPLETE",
        "set by the completion script when it calls pidbeat for candidates; not for other use",
    )],
    files: &[(
        "<run-dir>/*.hb",
        "read for agent names when completing (never written)",
    )],
    see_also: &[],
};

const MAN: Page = Page {
    description: "Prints pidbeat(1) as roff on stdout; with --dir, writes pidbeat.1 and one pidbeat-SUB.1 per subcommand, from the same definitions as --help.",
    exit_line: "Exit status: 0 success, 1 a page cannot be written, 2 usage error.",
    examples: &[
        (
            "pidbeat man | man -l -",
            "read pidbeat(1) without installing it",
        ),
        (
            "pidbeat man --dir ~/.local/share/man/man1",
            "install pidbeat(1) and a page per subcommand; then `man pidbeat-ps`",
        ),
    ],
    exit: &[OK, ("1", "a page cannot be written"), USAGE],
    sections: &[],
    env: &[],
    files: &[
        ("DIR/pidbeat.1", "the top-level page, written by --dir"),
        (
            "DIR/pidbeat-SUB.1",
            "one page per subcommand, written by --dir",
        ),
    ],
    see_also: &[],
};
