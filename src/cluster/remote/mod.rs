//! The fleet as etcd holds it, for `ps --etcd` and `wait --etcd`.
//!
//! [`View`](view::View) is the state of the `/pidbeat/` prefix, with each agent's *effective*
//! state: the state its host's bridge published, except that `alive` and `stale` become
//! `unreachable` while the host's `.bridge` key is gone (its lease expired: the host, its
//! bridge or its network has been away for a TTL). `dead`, `lost` and `unwatched` are proven
//! verdicts and stay as they are. An unreachable agent turns back into whatever its bridge
//! publishes once the bridge is back.
//!
//! [`Follower`](follow::Follower) keeps a view current: it reads the prefix at revision R,
//! then watches from R + 1 on one member. If that member fails, hangs or loses its leader, it
//! resumes on another from the last revision seen + 1, so no event is lost or seen twice; if
//! etcd compacted that history away, it reads everything again.

mod follow;
mod ps;
mod view;
mod wait;

pub use ps::ps_command;
pub use wait::wait_command;

/// `HOST/AGENT`.
pub type Name = (String, String);
