//! Graces for unsettled verdicts (see `fleet::Unsettled`). A reader that judges an agent more
//! than once (`wait`, `ps --watch`, or `ps` waiting out a race) remembers since when each
//! verdict has been unsettled, and settles it once its grace has run out.

use std::collections::HashMap;
use std::time::Instant;

use crate::fleet::{Entry, State, Unsettled};

#[derive(Default)]
pub struct Settler {
    since: HashMap<String, (Unsettled, Instant)>,
}

impl Settler {
    /// Settles `entry` if its grace is over (a dying agent becomes `lost`, a pending exit
    /// stays unknown); otherwise returns when that grace ends.
    pub fn settle(&mut self, entry: &mut Entry, now: Instant) -> Option<Instant> {
        let Some(kind) = entry.unsettled else {
            // Most entries are settled: no need to hash their names into an empty map.
            if !self.since.is_empty() {
                self.since.remove(&entry.agent);
            }
            return None;
        };
        let first = match self.since.get(&entry.agent) {
            Some(&(k, t)) if k == kind => t,
            _ => {
                self.since.insert(entry.agent.clone(), (kind, now));
                now
            }
        };
        let deadline = first + kind.grace();
        if now < deadline {
            return Some(deadline);
        }
        if kind == Unsettled::Dying {
            entry.state = State::Lost;
        }
        entry.unsettled = None;
        None
    }
}
