//! `pidbeat publish`: the bridge that puts one host's verdicts into etcd.
//!
//! Two threads meet at an [`Outbox`]. The follower (the reader's follow loop over the run
//! dir) judges agents as their records and processes change and offers each verdict; the
//! writer (this module's [`Writer`]) puts what changed into etcd and keeps the host's lease
//! alive. The outbox holds only the *latest* verdict per agent, so however long etcd is away,
//! memory is bounded by the number of agents, and a death during an outage is put on
//! reconnect (as the latest verdict) rather than lost.
//!
//! Writes happen only on change. A beat rewrites the record (`ts`, `ts_ms`, `seq`) and moves
//! the age, which are [`VOLATILE`](outbox::VOLATILE): verdicts are compared without them, so
//! an idle fleet does not move etcd's revision at all.
//!
//! One lease per host (`--ttl`), carried by `/pidbeat/<host>/.bridge` only; agent keys carry
//! none. Readers call an agent whose published state is `alive`/`stale` `unreachable` while
//! the bridge key is missing. That way a reader that starts after the lease expired still
//! knows which agents the host had (they were leased, they would simply be gone), and
//! `dead`/`lost`/`unwatched` survive the bridge as the proven verdicts they are.

mod lease;
mod local;
mod outbox;

use std::time::{Duration, Instant};

use super::keys;
use etcd_gateway::{Client, Error, MAX_TXN_OPS, Op};
use lease::keepalive_every;

pub use lease::request_timeout;
pub use outbox::{Outbox, Verdict};

#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub host: String,
    /// The lease's TTL.
    pub ttl: Duration,
}

/// Puts verdicts and keeps the lease; see the module doc.
pub struct Writer<'a> {
    outbox: &'a Outbox,
    client: Client,
    opts: WriterOptions,
    /// 0: none yet, or etcd said it expired.
    lease: i64,
    next_keepalive: Instant,
    /// Since when etcd has been failing us (said once when it starts and when it ends).
    outage: Option<Instant>,
    backoff: Duration,
    /// Put the bridge key and clean up keys without records once, at start.
    cleaned: bool,
}

const BACKOFF_MIN: Duration = Duration::from_millis(50);

impl<'a> Writer<'a> {
    pub fn new(outbox: &'a Outbox, client: Client, opts: WriterOptions) -> Writer<'a> {
        Writer {
            outbox,
            client,
            opts,
            lease: 0,
            next_keepalive: Instant::now(),
            outage: None,
            backoff: BACKOFF_MIN,
            cleaned: false,
        }
    }

    /// The longest pause between retries: a recovered etcd is in use within it.
    fn backoff_max(&self) -> Duration {
        keepalive_every(self.opts.ttl).min(Duration::from_secs(1))
    }

    /// Runs until the outbox is closed. Revokes the lease on the way out (a clean stop
    /// makes the host unreachable at once, rather than after a TTL).
    pub fn run(&mut self) {
        loop {
            let outcome = self.step();
            if self.outbox.lock().quit {
                if self.lease != 0 {
                    let _ = self.client.revoke(self.lease);
                }
                return;
            }
            let until = self.account(&outcome);
            self.sleep_until_work(until);
        }
    }

    /// The first round, in the caller's thread: its outcome, said as [`Writer::run`] would.
    pub fn first_round(&mut self) -> Result<(), Error> {
        let outcome = self.step();
        // A refusal is the caller's to report.
        if !matches!(outcome, Err(Error::Refused { .. })) {
            self.account(&outcome);
        }
        outcome
    }

    /// Says when an outage starts and ends (once each) and paces retries; returns until when
    /// to back off (`None`: the round went through).
    fn account(&mut self, outcome: &Result<(), Error>) -> Option<Instant> {
        match outcome {
            Ok(()) => {
                if let Some(since) = self.outage.take() {
                    eprintln!(
                        "pidbeat publish: etcd answers again (via {}) after {:.1}s; \
                         everything held meanwhile is published",
                        self.client.member(),
                        since.elapsed().as_secs_f64()
                    );
                }
                self.backoff = BACKOFF_MIN;
                None
            }
            Err(e) => {
                if self.outage.is_none() {
                    self.outage = Some(Instant::now());
                    eprintln!(
                        "pidbeat publish: {e}; local records are unaffected, the latest \
                         verdict of each agent is held and retried"
                    );
                }
                let pause = self.backoff;
                self.backoff = (self.backoff * 2).min(self.backoff_max());
                Some(Instant::now() + pause)
            }
        }
    }

    /// Sleeps until there is something to write, the keep-alive is due, or `until`.
    fn sleep_until_work(&self, until: Option<Instant>) {
        let mut b = self.outbox.lock();
        loop {
            let now = Instant::now();
            let deadline = until
                .unwrap_or(self.next_keepalive)
                .min(self.next_keepalive);
            // While backing off, new verdicts wait for the pause to end.
            let work = until.is_none() && (!b.dirty.is_empty() || !b.gone.is_empty());
            if b.quit || work || now >= deadline {
                return;
            }
            b = self
                .outbox
                .wake
                .wait_timeout(b, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// One round: a lease (and everything again) if there is none, the keep-alive if due,
    /// then what changed.
    fn step(&mut self) -> Result<(), Error> {
        if self.lease == 0 {
            self.new_lease()?;
        }
        if Instant::now() >= self.next_keepalive {
            let ttl = self.client.keepalive(self.lease)?;
            if ttl <= 0 {
                eprintln!(
                    "pidbeat publish: etcd let lease {:x} expire; granting a new one and \
                     publishing every verdict again",
                    self.lease
                );
                self.lease = 0;
                self.new_lease()?;
            }
            self.next_keepalive = Instant::now() + keepalive_every(self.opts.ttl);
        }
        self.flush()
    }

    /// Puts the dirty verdicts and deletes the gone keys, a transaction per batch. What
    /// fails stays dirty (unless a newer verdict replaced it meanwhile, which is then put).
    fn flush(&mut self) -> Result<(), Error> {
        loop {
            let (ops, names) = {
                let mut b = self.outbox.lock();
                let mut ops = Vec::new();
                let mut names = Vec::new();
                while ops.len() < MAX_TXN_OPS {
                    if let Some(agent) = b.gone.pop_first() {
                        ops.push(Op::Delete {
                            key: keys::agent_key(&self.opts.host, &agent),
                        });
                        names.push((agent, true));
                    } else if let Some(agent) = b.dirty.pop_first() {
                        let Some(v) = b.latest.get(&agent) else {
                            continue;
                        };
                        ops.push(Op::Put {
                            key: keys::agent_key(&self.opts.host, &agent),
                            value: v.value.to_vec(),
                            lease: 0,
                        });
                        names.push((agent, false));
                    } else {
                        break;
                    }
                }
                (ops, names)
            };
            if ops.is_empty() {
                return Ok(());
            }
            if let Err(e) = self.client.txn(&ops) {
                let mut b = self.outbox.lock();
                for (agent, gone) in names {
                    if gone {
                        // Unless it came back meanwhile.
                        if !b.latest.contains_key(&agent) {
                            b.gone.insert(agent);
                        }
                    } else if b.latest.contains_key(&agent) {
                        b.dirty.insert(agent);
                    }
                }
                return Err(e);
            }
        }
    }
}

/// `pidbeat publish`: follows the run dir and keeps etcd's `/pidbeat/<host>/` equal to it
/// until SIGINT/SIGTERM; then revokes the lease (the host shows unreachable at once) and
/// exits 0.
pub fn command(cfg: super::PublishConfig) -> crate::exitcode::Result<crate::exitcode::ExitCode> {
    let client = Client::new(&cfg.client).map_err(|e| crate::exitcode::runtime!("{e}"))?;
    let outbox = Outbox::default();
    let mut local = local::Local::new(&cfg.run_dir, &cfg.host)?;
    // The first look completes before the writer starts, so that the writer's clean-up at
    // start knows every agent that has a record.
    local.look_all(&outbox);
    let opts = WriterOptions {
        host: cfg.host.clone(),
        ttl: cfg.ttl,
    };
    let mut writer = Writer::new(&outbox, client, opts);
    // What etcd refuses at the first try (no permission on this prefix, a wrong password) is
    // a mistake in the invocation: said at once, not retried forever. An etcd that does not
    // answer is not: the writer keeps trying, and local records do not care.
    if let Err(e @ Error::Refused { .. }) = writer.first_round() {
        return Err(crate::exitcode::runtime!(
            "{e}; check --user and --password-file, and that this host's etcd role may write \
             {}",
            super::keys::host_prefix(&cfg.host)
        ));
    }
    std::thread::scope(|s| {
        let writer = std::thread::Builder::new()
            .name("etcd-writer".into())
            .spawn_scoped(s, move || writer.run())
            .map_err(|e| crate::exitcode::runtime!("cannot start the etcd writer thread: {e}"))?;
        let followed = local.run(&outbox);
        outbox.close();
        let _ = writer.join();
        followed.map(|()| crate::exitcode::ExitCode::Success)
    })
}
