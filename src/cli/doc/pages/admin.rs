//! The pages of the commands that end records: `forget` and `prune`.

use super::{Item, Page, USAGE};

/// What both remove, beyond the run dir's files every page lists.
const FILES: &[Item] = &[
    (
        "<run-dir>/<agent>.deaths",
        "the agent's death history (pidbeat-ps(1) --history), removed with the record",
    ),
    (
        "<run-dir>/<agent>.log",
        "the launcher's log, removed only with --logs",
    ),
];

pub const FORGET: Page = Page {
    description: "Removes each named agent's record, lock file and death history (and its launcher log with --logs), printing `forgot AGENT (STATE)`. Only ended agents (dead, lost, unwatched, corrupt) are removed: an alive or stale one, or one whose watcher holds the lock, is refused. Each agent is removed under its lock, so a watcher starting at the same moment is never undone.",
    exit_line: "Exit status: 0 all forgotten, 1 refused or runtime error, 4 nothing of an agent there, 2 usage error.",
    examples: &[
        (
            "pidbeat forget pi",
            "remove the record of the ended agent `pi`",
        ),
        (
            "pidbeat forget --logs pi codex",
            "remove two agents' records and their launcher logs",
        ),
    ],
    exit: &[
        ("0", "every named agent was forgotten"),
        (
            "1",
            "some agent was refused (alive, stale, or its watcher holds the lock; the reason on stderr), or a runtime error; wins over 4",
        ),
        ("4", "nothing of some named agent was there"),
        USAGE,
    ],
    sections: &[],
    env: &[],
    files: FILES,
    see_also: &["pidbeat-prune(1)", "pidbeat-ps(1)"],
};

pub const PRUNE: Page = Page {
    description: "Forgets every agent of the run dir that has ended in one of the --state states (default: dead, lost, unwatched, corrupt) and, with --older-than, whose record was last written at least that long ago (for a corrupt record, the file's mtime). Prints `forgot AGENT (STATE)` per agent; agents that do not match are left alone silently. DURATION is seconds or humane: 90s, 2h, 7d, 1h30m.",
    exit_line: "Exit status: 0 success, 1 a matching agent's watcher holds its lock or a runtime error, 2 usage error.",
    examples: &[
        (
            "pidbeat prune --dry-run",
            "list what would be forgotten (`would forget AGENT (STATE)`), remove nothing",
        ),
        (
            "pidbeat prune --older-than 7d",
            "forget agents that ended over a week ago",
        ),
        (
            "pidbeat prune --state dead,lost --logs",
            "forget dead and lost agents, and their launcher logs",
        ),
    ],
    exit: &[
        (
            "0",
            "success, also when nothing matched or there is no run dir",
        ),
        (
            "1",
            "a matching agent was left because its watcher still holds its lock (named on stderr), or a runtime error",
        ),
        (
            "2",
            "usage error, also --state alive or stale (running agents cannot be pruned)",
        ),
    ],
    sections: &[],
    env: &[],
    files: FILES,
    see_also: &["pidbeat-forget(1)", "pidbeat-ps(1)"],
};
