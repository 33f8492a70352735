//! What `--help` and the man pages say beyond the clap definitions: examples, exit statuses
//! and sections of a command's own (the states of `ps`, the lines `wait` prints). Looked up by
//! command name; a command without an entry gets [`DEFAULT`], so every subcommand has a page
//! and an exit-status line. The pages themselves live by the side of pidbeat they document.

mod admin;
mod cluster;
mod misc;
mod reader;
mod writer;

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
    /// Other man pages worth reading, as `name(section)`: pidbeat's own, or one that
    /// `man::SOURCES` names the Debian package of (checked by its tests).
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
    description: "One small `pidbeat watch` process per agent runtime holds a pidfd on the runtime's PID and sleeps in epoll beside a heartbeat timer. Every interval it rewrites <run-dir>/<agent>.hb; the instant the runtime exits it writes `dead`, with the exit code or signal when the kernel can tell.\n\n`pidbeat ps` shows the fleet, `pidbeat status` gives each agent's state as an exit status to branch on, `pidbeat wait` blocks until agents end (or are up), `pidbeat forget` and `pidbeat prune` remove ended agents' records, and `pidbeat run -- CMD` watches its own child as a container entrypoint.",
    exit_line: "Exit status: 0 success, 1 runtime error, 2 usage error, 3 not alive, 4 no record, 124 wait timed out; run: CMD's status.",
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
            "pidbeat status -q codex || echo \"codex is not up\"",
            "branch on whether `codex` is alive (exit 0), not alive (3) or unknown (4)",
        ),
        (
            "pidbeat prune --older-than 7d",
            "remove the records of agents that ended over a week ago",
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
        ("3", "status: a named agent is not alive"),
        (
            "4",
            "status, wait --exists, forget: a named agent has no record",
        ),
        ("124", "wait: --timeout ran out"),
        (
            "126, 127, N",
            "run: CMD cannot be executed, is not found, or exited with N (128 + n when killed by signal n)",
        ),
    ],
    sections: &[],
    env: &[],
    files: &[],
    see_also: &["flock(1)", "pidfd_open(2)", "inotify(7)"],
};

/// The page of the subcommand `name`.
pub fn page(name: &str) -> &'static Page {
    match name {
        "watch" => &writer::WATCH,
        "run" => &writer::RUN,
        "notify" => &writer::NOTIFY,
        "ps" => &reader::PS,
        "wait" => &reader::WAIT,
        "status" => &reader::STATUS,
        "forget" => &admin::FORGET,
        "prune" => &admin::PRUNE,
        "completions" => &misc::COMPLETIONS,
        "man" => &misc::MAN,
        "publish" => &cluster::PUBLISH,
        _ => &DEFAULT,
    }
}
