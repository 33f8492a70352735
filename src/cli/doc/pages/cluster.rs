//! The page of the multi-host bridge: `publish` (run by the `pidbeat-etcd` executable).

use super::{Page, USAGE};

pub const PUBLISH: Page = Page {
    description: "Follows this host's run dir as `ps --watch` does (inotify, locks, pidfds) and puts each agent's verdict, the `ps --json` object plus `host`, to etcd at /pidbeat/HOST/AGENT, only when it changes (never per beat). One bridge per host name: /pidbeat/HOST/.bridge names its holder (PID, machine, boot id, since when) and carries its lease, kept alive every TTL/5; a second bridge for the same HOST writes nothing and exits 1, and one that finds its keys deleted or changed by someone else puts them back. Once the bridge, the host or its network is gone for TTL, readers (`ps --etcd`, `wait --etcd`) call its alive and stale agents `unreachable`. While etcd cannot be reached, the latest verdict per agent is kept and put on reconnect, deaths included. Run one per host; per-agent watchers never talk to etcd.",
    exit_line: "Exit status: 0 stopped by SIGTERM/SIGINT, 1 etcd refused it (permission, password), another bridge holds HOST, or a runtime error, 2 usage error.",
    examples: &[
        (
            "pidbeat publish --etcd http://10.0.0.1:2379,http://10.0.0.2:2379,http://10.0.0.3:2379",
            "publish this host's verdicts under its host name",
        ),
        (
            "PIDBEAT_ETCD_PASSWORD=… pidbeat publish --etcd https://etcd:2379 --cacert ca.pem --user h1 --host h1",
            "over TLS as the etcd user `h1`, whose role may write only /pidbeat/h1/",
        ),
        (
            "pidbeat ps --etcd http://10.0.0.1:2379",
            "the fleet of every host, read from etcd",
        ),
    ],
    exit: &[
        ("0", "stopped by SIGTERM or SIGINT"),
        (
            "1",
            "etcd refused the bridge at its first round (no permission for its prefix, a wrong password); another live bridge holds HOST (at start, or it took the host later: the message names it); or another runtime error",
        ),
        USAGE,
    ],
    sections: &[(
        "STATES",
        &[(
            "unreachable",
            "seen only through etcd: the agent was alive or stale when its host's lease expired (bridge, host or network gone); it turns back into what the bridge publishes once it is back. dead, lost and unwatched verdicts outlive the bridge",
        )],
    )],
    env: &[(
        "PIDBEAT_ETCD_PASSWORD",
        "the etcd user's password, when --password-file is not given (never on the command line)",
    )],
    files: &[],
    see_also: &["pidbeat-ps(1)", "pidbeat-wait(1)", "etcd(1)"],
};
