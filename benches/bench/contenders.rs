//! The contenders: pidbeat's two backends and the baselines it is measured against, each
//! started the same way on the same work.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::procs::Proc;
use crate::rundir::{ALIVE_TIMEOUT, DirWatch};
use crate::{Ctx, PIDBEAT};

#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    Pidfd,
    /// The pidfd watcher with `--no-progress`: no evidence sampled, no sd_notify socket. The
    /// cost of progress sampling is pidfd's CPU per beat over this one's, same run.
    PidfdBare,
    Poll,
    Floor,
    Shell {
        interval_s: u32,
    },
}

pub struct Contender {
    pub name: &'static str,
    pub kind: Kind,
}

impl Contender {
    /// pidbeat itself, judged; the others are baselines, reported.
    pub fn is_pidbeat(&self) -> bool {
        matches!(self.kind, Kind::Pidfd | Kind::PidfdBare | Kind::Poll)
    }

    /// A `sleep` target and this contender watching it, as two children of the bench (the
    /// target is not the watcher's child).
    pub fn spawn(
        &self,
        ctx: &Ctx,
        dir: &Path,
        agent: &str,
        interval: Option<&str>,
    ) -> Result<(Proc, Proc), String> {
        let target = Proc::target(&ctx.log).map_err(|e| format!("spawn sleep: {e}"))?;
        let mut cmd = self.command(ctx, target.pid, dir, agent, interval);
        let watcher = Proc::spawn(&mut cmd, &ctx.log).map_err(|e| format!("spawn watcher: {e}"))?;
        Ok((target, watcher))
    }

    /// `spawn`, then waits until `watch` reads the watcher's `alive` record.
    pub fn start(
        &self,
        ctx: &Ctx,
        watch: &mut DirWatch,
        dir: &Path,
        agent: &str,
        interval: Option<&str>,
    ) -> Result<(Proc, Proc), String> {
        let (target, mut watcher) = self.spawn(ctx, dir, agent, interval)?;
        if watch
            .wait_for(&format!("{agent}.hb"), "alive", ALIVE_TIMEOUT, true)?
            .is_none()
        {
            return Err(format!(
                "no alive record within {ALIVE_TIMEOUT:?} (watcher exit: {:?}; log: {})",
                watcher.wait_exit(Duration::ZERO),
                ctx.log_tail()
            ));
        }
        Ok((target, watcher))
    }

    /// How late a poller can notice a death: the kill delay is drawn up to this so that the
    /// death lands at a uniformly random phase of its check cycle.
    pub fn period(&self) -> Duration {
        match self.kind {
            Kind::Pidfd | Kind::PidfdBare | Kind::Floor => Duration::ZERO,
            Kind::Poll => Duration::from_millis(100),
            Kind::Shell { interval_s } => Duration::from_secs(interval_s.into()),
        }
    }

    pub fn dead_timeout(&self) -> Duration {
        self.period() * 2 + Duration::from_secs(5)
    }

    pub fn kill_delay(&self) -> (Duration, Duration) {
        (
            Duration::from_millis(5),
            self.period().max(Duration::from_millis(50)),
        )
    }

    /// The watcher command; `interval` `None` leaves the contender's default (15 s pidbeat).
    fn command(
        &self,
        ctx: &Ctx,
        pid: i32,
        dir: &Path,
        agent: &str,
        interval: Option<&str>,
    ) -> Command {
        let pid = pid.to_string();
        match self.kind {
            Kind::Pidfd | Kind::PidfdBare | Kind::Poll => {
                let mut c = Command::new(PIDBEAT);
                c.args(["watch", "--pid", &pid, "--agent", agent, "--run-dir"])
                    .arg(dir)
                    .args([
                        "--backend",
                        if self.kind == Kind::Poll {
                            "poll"
                        } else {
                            "pidfd"
                        },
                    ]);
                if self.kind == Kind::PidfdBare {
                    c.arg("--no-progress");
                }
                if let Some(i) = interval {
                    c.args(["--interval", i]);
                }
                c
            }
            Kind::Floor => {
                let mut c = Command::new(ctx.floor.as_ref().expect("floor located"));
                c.arg(&pid).arg(dir).arg(agent);
                c.args(interval);
                c
            }
            Kind::Shell { interval_s } => {
                let mut c = Command::new("bash");
                let i = interval.map_or(interval_s.to_string(), str::to_owned);
                c.arg(&ctx.shell)
                    .args(["--pid", &pid, "--agent", agent, "--run-dir"])
                    .arg(dir)
                    .args(["--interval", &i]);
                c
            }
        }
    }
}

pub const PIDFD: Contender = Contender {
    name: "pidfd",
    kind: Kind::Pidfd,
};
pub const PIDFD_BARE: Contender = Contender {
    name: "pidfd-bare",
    kind: Kind::PidfdBare,
};
pub const POLL: Contender = Contender {
    name: "poll",
    kind: Kind::Poll,
};
pub const FLOOR: Contender = Contender {
    name: "floor",
    kind: Kind::Floor,
};
pub const SHELL1: Contender = Contender {
    name: "shell-1s",
    kind: Kind::Shell { interval_s: 1 },
};
pub const SHELL15: Contender = Contender {
    name: "shell-15s",
    kind: Kind::Shell { interval_s: 15 },
};
