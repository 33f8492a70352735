//! `pidbeat wait --etcd`: waits for remote agents to end, as local `wait` does.

use std::io::Write;
use std::time::Instant;

use super::Name;
use super::follow::Follower;
use super::view::{UNREACHABLE, View};
use crate::cluster::RemoteWaitConfig;
use crate::exitcode::{ExitCode, Result as CliResult, runtime};
use crate::reader::wait::dead_line;
use crate::record::{ExitInfo, now_ms};

/// `pidbeat wait --etcd HOST/AGENT…`: `HOST/AGENT dead signal 9`, `… dead code 3`, `… dead`
/// (exit unknown) or `… lost`, one line per agent as each ends; exit 0 once all have, 124
/// after `--timeout`. `unreachable` ends nothing (the host may come back, and its deaths are
/// published then); it is said once on stderr. So is a view that is not current (its member
/// stopped answering or lost quorum): wait says so, with the reason and the time the view
/// dates from, and goes on waiting; and says when it is current again.
pub fn wait_command(cfg: RemoteWaitConfig) -> CliResult<ExitCode> {
    let mut waiting: Vec<Name> = Vec::new();
    for a in cfg.agents {
        if !waiting.contains(&a) {
            waiting.push(a);
        }
    }
    let deadline = cfg.timeout.and_then(|t| Instant::now().checked_add(t));
    let mut follower = Follower::start(&cfg.client)
        .map_err(|e| runtime!("cannot read the fleet from etcd: {e}"))?;
    let mut warned: Vec<Name> = Vec::new();
    let mut said_stale = false;
    loop {
        match (follower.stale(), said_stale) {
            (Some(s), false) => {
                eprintln!(
                    "pidbeat: wait: the fleet view is not current (as of {}, {} s ago): {}; \
                     still waiting",
                    s.as_of(),
                    s.secs_ago(now_ms()),
                    s.reason
                );
                said_stale = true;
            }
            (None, true) => {
                eprintln!("pidbeat: wait: the fleet view is current again");
                said_stale = false;
            }
            _ => {}
        }
        let view = follower.view();
        waiting.retain(|name| {
            let state = view.state(name);
            if let Some(line) = state.and_then(|s| ended(view, name, s)) {
                let _ = writeln!(std::io::stdout(), "{}/{} {line}", name.0, name.1);
                return false;
            }
            if state == Some(UNREACHABLE) && !warned.contains(name) {
                eprintln!(
                    "pidbeat: {}/{}: unreachable (host {}'s lease expired); still waiting",
                    name.0, name.1, name.0
                );
                warned.push(name.clone());
            } else if state != Some(UNREACHABLE) {
                warned.retain(|n| n != name);
            }
            true
        });
        if waiting.is_empty() {
            return Ok(ExitCode::Success);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let names: Vec<String> = waiting.iter().map(|(h, a)| format!("{h}/{a}")).collect();
            eprintln!(
                "pidbeat: wait: timed out; still waiting for: {}",
                names.join(" ")
            );
            return Ok(ExitCode::TimedOut);
        }
        follower.next(deadline);
    }
}

/// The line for an agent that has ended, as local `wait` prints it.
fn ended(view: &View, name: &Name, state: &str) -> Option<String> {
    match state {
        "dead" => {
            #[derive(serde::Deserialize)]
            struct Exit {
                exit: Option<ExitInfo>,
            }
            let exit = serde_json::from_slice::<Exit>(&view.get(name)?.bytes)
                .ok()
                .and_then(|e| e.exit);
            Some(dead_line(exit))
        }
        "lost" => Some("lost".into()),
        _ => None,
    }
}
