//! Graces for unsettled verdicts (see `verdict::Unsettled`). A reader that judges an agent more
//! than once (`wait`, `ps --watch`, or `ps` waiting out a race) remembers since when each
//! verdict has been unsettled, and settles it once its grace has run out.

use std::collections::HashMap;
use std::time::Instant;

use super::verdict::{AgentVerdict, State, Unsettled};

#[derive(Default)]
pub struct Settler {
    since: HashMap<String, (Unsettled, Instant)>,
}

impl Settler {
    /// Settles `verdict` if its grace is over (a dying agent becomes `lost`, a pending exit
    /// stays unknown); otherwise returns when that grace ends.
    pub fn settle(&mut self, verdict: &mut AgentVerdict, now: Instant) -> Option<Instant> {
        let Some(kind) = verdict.unsettled else {
            // Most verdicts are settled: no need to hash their names into an empty map.
            if !self.since.is_empty() {
                self.since.remove(&verdict.agent);
            }
            return None;
        };
        let first = match self.since.get(&verdict.agent) {
            Some(&(k, t)) if k == kind => t,
            _ => {
                self.since.insert(verdict.agent.clone(), (kind, now));
                now
            }
        };
        let deadline = first + kind.grace();
        if now < deadline {
            return Some(deadline);
        }
        if kind == Unsettled::Dying {
            verdict.state = State::Lost;
        }
        verdict.unsettled = None;
        None
    }
}
