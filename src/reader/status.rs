//! `pidbeat status AGENT…`, after `systemctl is-active`: each agent's state on a line of its
//! own, in the order given (`missing` for one without a record), and an exit status a script
//! can branch on: 0 if all are alive, 3 if any is not, 4 if any has no record (4 wins: a
//! typo is worth telling from a dead agent). Verdicts are settled as in `ps`: a target that
//! died a moment ago under a running watcher is `dead`, not `lost`.

use std::io::{self, Write};
use std::path::PathBuf;

use super::ps::settled_snapshot;
use super::verdict::State;
use crate::exitcode::{ExitCode, Result};

#[derive(Debug)]
pub struct StatusConfig {
    pub run_dir: PathBuf,
    pub untrusted: super::trust::Untrusted,
    pub agents: Vec<String>,
    /// Print nothing; the exit status says it all.
    pub quiet: bool,
}

pub fn command(config: StatusConfig) -> Result<ExitCode> {
    let dir = &config.run_dir;
    super::trust::vet(dir, config.untrusted)?;
    let mut named = config.agents.clone();
    named.sort();
    named.dedup();
    let snap = settled_snapshot(dir, &named)?;
    let mut code = ExitCode::Success;
    let mut out = String::new();
    for agent in &config.agents {
        let entry = snap.entries.iter().find(|e| &e.agent == agent);
        let (word, c) = match entry.map(|e| e.state) {
            Some(State::Alive) => ("alive", ExitCode::Success),
            Some(s) => (s.name(), ExitCode::NotAlive),
            None => ("missing", ExitCode::NoRecord),
        };
        if c == ExitCode::NoRecord && !config.quiet {
            eprintln!("pidbeat: {agent}: no record in {}", dir.display());
        }
        code = worst(code, c);
        out.push_str(word);
        out.push('\n');
    }
    if !config.quiet {
        // The reader of our stdout may be gone; the exit status is what matters.
        let _ = io::stdout().lock().write_all(out.as_bytes());
    }
    Ok(code)
}

fn worst(a: ExitCode, b: ExitCode) -> ExitCode {
    let rank = |c: ExitCode| match c {
        ExitCode::NoRecord => 2,
        ExitCode::NotAlive => 1,
        _ => 0,
    };
    if rank(b) > rank(a) { b } else { a }
}
