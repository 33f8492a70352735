//! The key layout in etcd (DESIGN.md, "Multi-host").
//!
//! - `/pidbeat/<host>/<agent>`: the agent's verdict, as `ps --json` shows it plus `host`.
//!   Written by that host's bridge only when the verdict changes; carries no lease.
//! - `/pidbeat/<host>/.bridge`: the host's presence and owner. Names the bridge that holds the
//!   host (see `publish::claim`) and carries its lease, so it vanishes when the bridge, the
//!   host or its network has been gone for a TTL. Agent names never start with `.`, so this
//!   key cannot collide with an agent's.
//!
//! Host names follow the agent-name rule (no `/`), so a key splits back unambiguously.

pub const ROOT: &str = "/pidbeat/";
pub const BRIDGE: &str = ".bridge";

/// `/pidbeat/<host>/`: everything one host's bridge writes (and its etcd role may write).
pub fn host_prefix(host: &str) -> String {
    format!("{ROOT}{host}/")
}

pub fn agent_key(host: &str, agent: &str) -> String {
    format!("{ROOT}{host}/{agent}")
}

pub fn bridge_key(host: &str) -> String {
    format!("{ROOT}{host}/{BRIDGE}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key<'a> {
    Agent { host: &'a str, agent: &'a str },
    Bridge { host: &'a str },
}

/// Splits a key of ours; anything else under the prefix (written by someone else) is `None`
/// and ignored by readers.
pub fn parse(key: &str) -> Option<Key<'_>> {
    let rest = key.strip_prefix(ROOT)?;
    let (host, name) = rest.split_once('/')?;
    validate_host(host).ok()?;
    if name == BRIDGE {
        return Some(Key::Bridge { host });
    }
    crate::rundir::validate_agent(name).ok()?;
    Some(Key::Agent { host, agent: name })
}

/// A host name is a path component of the key: the agent-name rule keeps it one.
pub fn validate_host(s: &str) -> Result<(), String> {
    crate::rundir::validate_agent(s).map_err(|e| e.replacen("agent name", "host name", 1))
}

/// `HOST/AGENT` as readers take it on the command line.
pub fn parse_host_agent(s: &str) -> Result<(String, String), String> {
    let (host, agent) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}` is not HOST/AGENT"))?;
    validate_host(host)?;
    crate::rundir::validate_agent(agent)?;
    Ok((host.to_owned(), agent.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        assert_eq!(agent_key("h1", "pi"), "/pidbeat/h1/pi");
        assert_eq!(
            parse("/pidbeat/h1/pi"),
            Some(Key::Agent {
                host: "h1",
                agent: "pi"
            })
        );
        assert_eq!(parse(&bridge_key("h1")), Some(Key::Bridge { host: "h1" }));
        for junk in [
            "/pidbeat/h1",
            "/pidbeat/h1/a/b",
            "/pidbeat//a",
            "/other/h/a",
            "/pidbeat/h/.x",
        ] {
            assert_eq!(parse(junk), None, "{junk}");
        }
    }

    #[test]
    fn host_agent_args() {
        assert_eq!(
            parse_host_agent("h1/pi").unwrap(),
            ("h1".to_owned(), "pi".to_owned())
        );
        assert!(parse_host_agent("h1").is_err());
        assert!(parse_host_agent("h/a/b").is_err());
        assert!(parse_host_agent(".h/a").unwrap_err().contains("host name"));
    }
}
