//! The fleet as read from etcd: what each host's bridge published, and each agent's
//! effective state (see the `remote` module doc).

use std::collections::{BTreeMap, HashMap};

use super::Name;
use crate::cluster::keys::{self, Key};
use etcd_gateway::{Client, Error, EventKind, KeyValue, Range, WatchResponse};

/// What the view knows of one agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Remote {
    /// The object the bridge published (`ps --json`'s plus `host`), as etcd holds it.
    pub bytes: Vec<u8>,
    /// Its `state`, `corrupt` if the value is not a bridge's.
    pub published: String,
}

impl Remote {
    fn new(bytes: Vec<u8>) -> Remote {
        #[derive(serde::Deserialize)]
        struct Head {
            state: String,
        }
        let published = serde_json::from_slice::<Head>(&bytes)
            .map_or_else(|_| "corrupt".to_owned(), |h| h.state);
        Remote { bytes, published }
    }
}

/// The states whose truth rests on the bridge being there to change them.
pub fn needs_bridge(state: &str) -> bool {
    matches!(state, "alive" | "stale")
}

pub const UNREACHABLE: &str = "unreachable";

#[derive(Debug, Default, Clone)]
pub struct View {
    agents: BTreeMap<Name, Remote>,
    /// Hosts whose `.bridge` key exists, with the lease it carries.
    bridges: HashMap<String, i64>,
    /// The highest revision whose events are all in the view: watch from here + 1.
    pub revision: i64,
}

impl View {
    pub fn from_range(r: &Range) -> View {
        let mut v = View {
            revision: r.revision,
            ..View::default()
        };
        for kv in &r.kvs {
            v.put(kv);
        }
        v
    }

    fn put(&mut self, kv: &KeyValue) {
        match keys::parse(&kv.key) {
            Some(Key::Bridge { host }) => {
                self.bridges.insert(host.to_owned(), kv.lease);
            }
            Some(Key::Agent { host, agent }) => {
                self.agents.insert(
                    (host.to_owned(), agent.to_owned()),
                    Remote::new(kv.value.clone()),
                );
            }
            None => {}
        }
    }

    fn delete(&mut self, key: &str) {
        match keys::parse(key) {
            Some(Key::Bridge { host }) => {
                self.bridges.remove(host);
            }
            Some(Key::Agent { host, agent }) => {
                self.agents.remove(&(host.to_owned(), agent.to_owned()));
            }
            None => {}
        }
    }

    /// Applies one watch answer; returns the hosts it touched (a host's `.bridge` changes the
    /// effective state of all its agents).
    pub fn apply(&mut self, resp: &WatchResponse) -> Vec<String> {
        let mut hosts = Vec::new();
        for e in &resp.events {
            match e.kind {
                EventKind::Put => self.put(&e.kv),
                EventKind::Delete => self.delete(&e.kv.key),
            }
            if let Some(Key::Agent { host, .. } | Key::Bridge { host }) = keys::parse(&e.kv.key) {
                if !hosts.iter().any(|h| h == host) {
                    hosts.push(host.to_owned());
                }
            }
            self.revision = self.revision.max(e.kv.mod_revision);
        }
        hosts
    }

    pub fn host_up(&self, host: &str) -> bool {
        self.bridges.contains_key(host)
    }

    pub fn get(&self, name: &Name) -> Option<&Remote> {
        self.agents.get(name)
    }

    /// The effective state (see the module doc).
    pub fn state(&self, name: &Name) -> Option<&str> {
        let published = self.agents.get(name)?.published.as_str();
        Some(if needs_bridge(published) && !self.host_up(&name.0) {
            UNREACHABLE
        } else {
            published
        })
    }

    /// Agents in name order, all or only `named`.
    pub fn agents<'a>(
        &'a self,
        named: &'a [Name],
    ) -> impl Iterator<Item = (&'a Name, &'a Remote)> + 'a {
        self.agents
            .iter()
            .filter(move |(n, _)| named.is_empty() || named.contains(n))
    }
}

/// The range of every key of ours.
pub fn prefix() -> (Vec<u8>, Vec<u8>) {
    let p = keys::ROOT.as_bytes().to_vec();
    let end = etcd_gateway::prefix_end(&p);
    (p, end)
}

/// The fleet as etcd has it now (one linearizable read, through any member).
pub fn snapshot(client: &mut Client) -> Result<View, Error> {
    let (p, end) = prefix();
    Ok(View::from_range(&client.range(&p, Some(&end), 0)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_gateway::Event;

    fn kv(key: &str, value: &str, lease: i64, rev: i64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            lease,
            mod_revision: rev,
        }
    }

    fn name(h: &str, a: &str) -> Name {
        (h.into(), a.into())
    }

    #[test]
    fn unreachable_needs_a_bridge_verdict_and_a_missing_bridge() {
        let mut v = View::from_range(&Range {
            revision: 5,
            kvs: vec![
                kv("/pidbeat/h1/.bridge", "{}", 7, 2),
                kv(
                    "/pidbeat/h1/a",
                    r#"{"host":"h1","agent":"a","state":"alive","ts_ms":1000}"#,
                    0,
                    3,
                ),
                kv(
                    "/pidbeat/h1/d",
                    r#"{"host":"h1","agent":"d","state":"dead"}"#,
                    0,
                    4,
                ),
                kv("/pidbeat/h2/x", "not json", 0, 5),
            ],
        });
        assert_eq!(v.state(&name("h1", "a")), Some("alive"));
        assert_eq!(v.state(&name("h2", "x")), Some("corrupt"));
        // The lease expires: etcd deletes the bridge key.
        let hosts = v.apply(&WatchResponse {
            revision: 9,
            events: vec![Event {
                kind: EventKind::Delete,
                kv: kv("/pidbeat/h1/.bridge", "", 0, 9),
                prev: None,
            }],
        });
        assert_eq!(hosts, ["h1"]);
        assert_eq!(v.revision, 9);
        assert_eq!(v.state(&name("h1", "a")), Some(UNREACHABLE));
        assert_eq!(v.state(&name("h1", "d")), Some("dead"));
        // The bridge is back.
        v.apply(&WatchResponse {
            revision: 10,
            events: vec![Event {
                kind: EventKind::Put,
                kv: kv("/pidbeat/h1/.bridge", "{}", 8, 10),
                prev: None,
            }],
        });
        assert_eq!(v.state(&name("h1", "a")), Some("alive"));
        assert_eq!(v.agents(&[]).count(), 3);
        assert_eq!(v.agents(&[name("h1", "d")]).count(), 1);
    }
}
