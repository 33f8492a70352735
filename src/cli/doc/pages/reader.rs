//! The pages of the commands that read the fleet: `ps`, `wait`, `status`.

use super::{Item, Page, RUNTIME, USAGE};

/// Every state `ps` and `status` print (`reader::State`), and when.
const STATES: &[Item] = &[
    (
        "alive",
        "the record says alive, was written within 2 x interval + 1 s, the target runs with the same start time, and a live watcher holds the agent's lock",
    ),
    (
        "hung",
        "alive, but the agent announced a watchdog (WATCHDOG_USEC= over sd_notify, or watch/run --watchdog) and sent no WATCHDOG=1 within it",
    ),
    (
        "stale",
        "the record says alive while the target still runs, but it is older than that, or no running writer can be proven",
    ),
    (
        "dead",
        "the record says dead; EXIT shows the code or signal when known, else `unknown (reaped)` or `unknown (hidden)`",
    ),
    (
        "lost",
        "the record says alive but its target or its watcher is gone or replaced: nobody will write `dead`",
    ),
    (
        "unwatched",
        "the watcher was stopped (SIGTERM/SIGINT) while the target still ran",
    ),
    (
        "corrupt",
        "the record cannot be read or parsed, or a value is out of range",
    ),
    (
        "unreachable",
        "only with --etcd: the agent was alive or stale when its host's lease expired (its bridge, host or network is gone)",
    ),
];

/// What a live agent does (`reader::activity`), judged with --idle-after and --stuck-after.
const ACTIVITIES: &[Item] = &[
    (
        "working",
        "CPU progress of its process tree, or a `working` claim (X_PIDBEAT_ACTIVITY=working), within --idle-after (default 60s)",
    ),
    (
        "waiting",
        "it said so (X_PIDBEAT_ACTIVITY=waiting) and no CPU progress came since; IDLE counts from the claim",
    ),
    (
        "stuck",
        "its last claim was `working`, and no CPU progress nor a new claim came for --stuck-after (default 10m); output such as a spinner does not count. Never without a claim",
    ),
    ("idle", "nothing for --idle-after"),
    (
        "-",
        "an ended agent, or a record without evidence (--no-progress, an older watcher)",
    ),
];

pub const PS: Page = Page {
    description: "Judges every record of the run dir (or only the named agents) against /proc, the agents' locks and pidfds, and prints one row per agent: AGENT, STATE, PID, UP, AGE, BACKEND, EXIT. UP is the target's uptime (for a recorded death, negative: how long ago it died), AGE the age of the last beat. `lost` is proven, never guessed from age.\n\n`ps` reports; it exits 0 for a dead agent too. Use `pidbeat status` to branch on states.",
    exit_line: "Exit status: 0 success, 1 a named AGENT has no record, a record or the run dir cannot be read, or a runtime error, 2 usage error.",
    examples: &[
        ("pidbeat ps", "the fleet as a table, sorted by agent"),
        (
            "pidbeat ps -o agent,state,up --no-header",
            "three columns and no header, for awk or cut",
        ),
        (
            "pidbeat ps --json codex pi",
            "two agents as one JSON array (docs/ps-entry.schema.json)",
        ),
        ("pidbeat ps --watch", "redraw whenever a record changes"),
        (
            "pidbeat ps --prom --watch --output /var/lib/prometheus/node-exporter/pidbeat.prom",
            "keep node_exporter's textfile current: replaced atomically on every change and every 5 s, with no loop",
        ),
        ("pidbeat ps --history pi", "the past deaths of `pi`"),
        (
            "pidbeat ps -o agent,state,activity,idle,status --idle-after 2m",
            "what each live agent does (`idle 12m`, `waiting 3m`, `stuck 14m`) and its last STATUS=",
        ),
    ],
    exit: &[
        (
            "0",
            "success, also for an empty or missing run dir and for agents that are not alive",
        ),
        (
            "1",
            "a named AGENT has no record, a record cannot be read (EACCES, EIO), the run dir cannot be listed, or --output FILE cannot be written (the other rows are printed first); --history: the agent has neither a record nor a history",
        ),
        USAGE,
    ],
    sections: &[
        ("STATES", STATES),
        ("ACTIVITY", ACTIVITIES),
        (
            "FORMATS",
            &[
                (
                    "--json",
                    "one array; each object is agent, state, age_ms, started_ms, foreign_pids, activity, idle_ms, status_text, then the record's keys in the file's order; a corrupt record gives agent, state, error",
                ),
                (
                    "--prom",
                    "Prometheus text exposition: Unix timestamps, never ages (alert on time() - pidbeat_heartbeat_timestamp_seconds), and pidbeat_run_dir_readable 0 for a missing or unreadable run dir",
                ),
                (
                    "-o, --fields",
                    "the table's columns, comma-separated: agent,state,pid,up,age,backend,exit,interval,seq,watcher",
                ),
                (
                    "--output FILE",
                    "replace FILE atomically (a temp file in its dir, then rename) instead of writing stdout",
                ),
                (
                    "--watch",
                    "redraw on every change until Ctrl-C; with --json, one array per line per change; with --output, rewrite FILE on every verdict change and at least every 5 s",
                ),
                (
                    "--history AGENT",
                    "the agent's last deaths from <run-dir>/<agent>.deaths, oldest first, then its current record if dead; with --json, as objects",
                ),
            ],
        ),
        (
            "EXCLUSIONS",
            &[
                ("--json, --prom", "exclude each other"),
                (
                    "--fields, --no-header",
                    "are for the table: not with --json or --prom",
                ),
                (
                    "--prom --watch",
                    "needs --output FILE (the exposition is kept in a file)",
                ),
                (
                    "--history AGENT",
                    "takes only --run-dir and --json: not with --prom, --watch, -o, --no-header, --output or other AGENTs",
                ),
            ],
        ),
    ],
    env: &[],
    files: &[(
        "<run-dir>/<agent>.deaths",
        "the agent's last 10 deaths, one JSON record a line, read by --history",
    )],
    see_also: &["pidbeat-status(1)", "pidbeat-wait(1)", "pidbeat-watch(1)"],
};

pub const WAIT: Page = Page {
    description: "Blocks until every named agent is dead or lost (with --any, the first; with --count N, N of them; with --until alive, until each is alive), and prints one line for each as it is done. It sleeps on inotify and pidfds, so a death is seen within about a millisecond.\n\nAn agent without a record yet is waited for (a launcher may race); after 3 s one note on stderr names it and the run dir. --exists refuses such an agent at once.",
    exit_line: "Exit status: 0 done, 4 --exists and an agent has no record, 124 --timeout ran out, 1 runtime error, 2 usage error.",
    examples: &[
        (
            "pidbeat wait codex pi",
            "block until both agents have ended",
        ),
        (
            "pidbeat wait --any codex pi",
            "return once the first has ended",
        ),
        (
            "pidbeat wait --until alive --timeout 30 codex",
            "wait until `codex` is up, for at most 30 seconds",
        ),
        (
            "pidbeat wait --until idle --for 5s --idle-after 10s codex && send-next-prompt",
            "return once `codex` has been idle for 5 s (10 s without progress, then 5 s more)",
        ),
        (
            "pidbeat wait --exists -t 60 codex || echo \"codex unknown or still running\"",
            "refuse a typo at once (exit 4); give up after a minute (exit 124)",
        ),
    ],
    exit: &[
        (
            "0",
            "every named agent (or --any: one, --count: N) has ended, or with --until alive is alive",
        ),
        (
            "4",
            "--exists: a named agent has no record (nothing waited for)",
        ),
        (
            "124",
            "--timeout ran out first; the agents still awaited are named on stderr",
        ),
        RUNTIME,
        (
            "2",
            "usage error, also --count above the number of agents named",
        ),
    ],
    sections: &[(
        "OUTPUT",
        &[
            (
                "",
                "One line on stdout per agent, as each is done, in the order they are done:",
            ),
            ("AGENT dead code N", "it exited with status N"),
            ("AGENT dead signal N", "it was killed by signal N"),
            (
                "AGENT dead",
                "it died and its exit status is unknown (`ps` says why: reaped or hidden)",
            ),
            (
                "AGENT lost",
                "it ended but nobody recorded it (the watcher is gone, or it was unwatched)",
            ),
            ("AGENT alive", "with --until alive: it is up"),
            (
                "AGENT working",
                "with --until working (or idle, waiting): it has been so for --for (see pidbeat-ps(1), ACTIVITY)",
            ),
            (
                "",
                "On stderr: `pidbeat: wait: AGENT: still no record in DIR; waiting` once, after 3 s without a record; a warning for a corrupt record (still waited for); the agents still awaited on --timeout.",
            ),
        ],
    )],
    env: &[],
    files: &[],
    see_also: &["pidbeat-ps(1)", "pidbeat-status(1)", "inotify(7)"],
};

pub const STATUS: Page = Page {
    description: "Prints each named agent's state on a line of its own, in the order given (`missing` for one without a record), and exits with a status a script can branch on, as `systemctl is-active` does. Verdicts are settled as in `ps`.",
    exit_line: "Exit status: 0 all alive, 3 any not alive, 4 any without a record, 1 runtime error, 2 usage error.",
    examples: &[
        (
            "pidbeat status codex pi",
            "one state per line: alive, dead …",
        ),
        (
            "pidbeat status -q codex || pidbeat run --agent codex -- codex",
            "start `codex` unless it is alive",
        ),
    ],
    exit: &[
        ("0", "every named agent is alive"),
        (
            "3",
            "some named agent is not alive (stale, dead, lost, unwatched, corrupt)",
        ),
        (
            "4",
            "some named agent has no record (named on stderr); wins over 3",
        ),
        RUNTIME,
        USAGE,
    ],
    sections: &[(
        "OUTPUT",
        &[
            (
                "",
                "One word per named agent, in the order given: a state of pidbeat-ps(1) (alive, stale, dead, lost, unwatched, corrupt), or:",
            ),
            ("missing", "the agent has no record"),
        ],
    )],
    env: &[],
    files: &[],
    see_also: &["pidbeat-ps(1)", "pidbeat-wait(1)", "systemctl(1)"],
};
