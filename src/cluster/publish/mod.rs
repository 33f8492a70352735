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
//!
//! One owner per host name ([`claim`]): `.bridge` names its holder, and a bridge writes only
//! in transactions that compare `.bridge`'s mod revision with the one it last wrote (or, while
//! claiming, saw), so it never deletes or overwrites a key while another bridge holds the
//! host. Each of its transactions rewrites `.bridge` too, which makes them commit at most once
//! however often a lost answer makes the writer send one again. After a new lease the verdicts
//! go first and `.bridge` last, so no reader sees a fresh `.bridge` beside old verdicts. A
//! watch on the host's prefix ([`ownwatch`]) notices keys changed by someone else, and the
//! writer puts them back. The lease is kept alive by its own thread ([`lease`]), and every
//! connection bounds its requests by its measured round trips ([`timing`]).

mod claim;
mod lease;
mod local;
mod outbox;
mod ownwatch;
mod timing;

use std::time::{Duration, Instant};

use super::keys;
use claim::{Claiming, Holder};
use etcd_gateway::{Client, Compare, Error, MAX_TXN_OPS, Op, TxnResponse};
use timing::{RoundTrips, keepalive_every};

pub use outbox::{Outbox, Verdict};

/// The bound on each of the bridge's requests before it has measured the link (and on
/// opening the prefix watch).
pub fn request_timeout(ttl: Duration) -> Duration {
    RoundTrips::default().keepalive_timeout(ttl)
}

#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub host: String,
    /// The lease's TTL.
    pub ttl: Duration,
}

/// Why a round did not go through.
#[derive(Debug)]
pub enum Fault {
    Etcd(Error),
    /// Another bridge holds this host: the bridge stops (exit 1) with this message.
    Held(String),
}

impl From<Error> for Fault {
    fn from(e: Error) -> Fault {
        Fault::Etcd(e)
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Etcd(e) => e.fmt(f),
            Fault::Held(m) => f.write_str(m),
        }
    }
}

/// A transaction sent whose outcome is not known yet.
#[derive(Debug, Clone)]
struct Attempt {
    compare: Vec<Compare>,
    ops: Vec<Op>,
    /// The agents it writes, and whether it deletes their key.
    names: Vec<(String, bool)>,
    /// The `.bridge` value it puts, if it puts one: seen in etcd, it proves the commit.
    bridge: Option<Vec<u8>>,
    /// Without a `.bridge` put (a claim's transaction before its last): its first operation,
    /// whose key it compares, and that proves the commit instead.
    witness: Option<Op>,
}

/// Puts verdicts under the host's claim; see the module doc.
pub struct Writer<'a> {
    outbox: &'a Outbox,
    client: Client,
    opts: WriterOptions,
    /// This bridge as `.bridge` names it.
    me: Holder,
    /// 0: none yet, or etcd said it expired.
    lease: i64,
    /// `.bridge`'s mod revision as this bridge last wrote it; `None` while it does not hold
    /// the host.
    held: Option<i64>,
    /// A claim under way.
    claiming: Option<Claiming>,
    /// Sent, unanswered: sent again, unchanged, before anything else.
    pending: Option<Attempt>,
    claimed_once: bool,
    /// The claim under way follows an expired lease (said as such already).
    lease_expired: bool,
    rt: RoundTrips,
    /// Since when etcd has been failing us (said once when it starts and when it ends).
    outage: Option<Instant>,
    backoff: Duration,
}

const BACKOFF_MIN: Duration = Duration::from_millis(50);

impl<'a> Writer<'a> {
    pub fn new(outbox: &'a Outbox, client: Client, opts: WriterOptions) -> Writer<'a> {
        Writer {
            outbox,
            client,
            me: Holder::me(&opts.host, opts.ttl),
            opts,
            lease: 0,
            held: None,
            claiming: None,
            pending: None,
            claimed_once: false,
            lease_expired: false,
            rt: RoundTrips::default(),
            outage: None,
            backoff: BACKOFF_MIN,
        }
    }

    /// The longest pause between retries: a recovered etcd is in use within it.
    fn backoff_max(&self) -> Duration {
        keepalive_every(self.opts.ttl).min(Duration::from_secs(1))
    }

    fn set_write_timeout(&mut self) {
        self.client
            .set_timeout(self.rt.write_timeout(self.opts.ttl));
    }

    /// A call on the writer's client, its round trip measured.
    fn measured<T>(&mut self, f: impl FnOnce(&mut Client) -> Result<T, Error>) -> Result<T, Fault> {
        let r = f(&mut self.client);
        if let Some(d) = self.client.take_round_trip() {
            self.rt.add(d);
        } else if matches!(r, Err(Error::Unavailable(_))) {
            self.rt.timed_out();
        }
        r.map_err(Fault::Etcd)
    }

    fn grant(&mut self) -> Result<(), Fault> {
        self.set_write_timeout();
        let ttl = self.me.ttl;
        let lease = self.measured(|c| c.grant(ttl))?;
        self.lease = lease;
        self.outbox.lock().lease = lease;
        self.outbox.wake_keepalive.notify_all();
        Ok(())
    }

    /// Runs until the outbox is closed. Revokes the lease on the way out (a clean stop
    /// makes the host unreachable at once, rather than after a TTL). Another bridge holding
    /// the host stops it: the reason goes to `Board::fatal`, and SIGTERM to this process, so
    /// that the follower ends too.
    pub fn run(&mut self) {
        loop {
            let outcome = self.step();
            if let Err(Fault::Held(m)) = &outcome {
                self.outbox.lock().fatal = Some(m.clone());
                let _ = rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::TERM,
                );
            }
            if self.outbox.lock().quit || matches!(outcome, Err(Fault::Held(_))) {
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
    pub fn first_round(&mut self) -> Result<(), Fault> {
        let outcome = self.step();
        // A refusal, or another bridge's claim, is the caller's to report.
        if !matches!(
            outcome,
            Err(Fault::Etcd(Error::Refused { .. }) | Fault::Held(_))
        ) {
            self.account(&outcome);
        }
        outcome
    }

    /// Says when an outage starts and ends (once each) and paces retries; returns until when
    /// to back off (`None`: the round went through).
    fn account(&mut self, outcome: &Result<(), Fault>) -> Option<Instant> {
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

    /// Sleeps until there is something to do, or `until`.
    fn sleep_until_work(&self, until: Option<Instant>) {
        let mut b = self.outbox.lock();
        loop {
            let now = Instant::now();
            // While backing off, new work waits for the pause to end.
            let work = until.is_none()
                && (!b.dirty.is_empty()
                    || !b.gone.is_empty()
                    || !b.suspects.is_empty()
                    || b.bridge_suspect
                    || b.lease_lost
                    || self.held.is_none()
                    || self.pending.is_some());
            if b.quit || work || until.is_some_and(|u| now >= u) {
                return;
            }
            let wait = until.map_or(Duration::from_secs(3600), |u| u - now);
            b = self
                .outbox
                .wake
                .wait_timeout(b, wait)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// One round: a lease if there is none, the claim if this bridge does not hold the host,
    /// what was sent unanswered, the keys someone else changed, then what changed here.
    fn step(&mut self) -> Result<(), Fault> {
        let lost = std::mem::take(&mut self.outbox.lock().lease_lost);
        if lost {
            self.lease_expired = true;
            eprintln!(
                "pidbeat publish: etcd let lease {:x} expire; granting a new one and \
                 publishing every verdict again, .bridge last",
                self.lease
            );
            self.lease = 0;
            self.drop_claim();
        }
        if self.lease == 0 {
            self.grant()?;
        }
        if let Some(a) = self.pending.take() {
            self.send(a)?;
        }
        if self.held.is_none() && self.claiming.is_none() {
            self.begin_claim()?;
        }
        if self.held.is_some() {
            self.verify()?;
        }
        self.flush()
    }

    /// Forgets the claim (the lease expired, or `.bridge` was taken): what was in flight goes
    /// back to be written again.
    fn drop_claim(&mut self) {
        self.held = None;
        self.claiming = None;
        if let Some(a) = self.pending.take() {
            self.requeue(&a);
        }
    }

    fn requeue(&self, a: &Attempt) {
        let mut b = self.outbox.lock();
        for (agent, gone) in &a.names {
            b.inflight.remove(agent);
            if *gone {
                // Unless it came back meanwhile.
                if !b.latest.contains_key(agent) {
                    b.gone.insert(agent.clone());
                }
            } else if b.latest.contains_key(agent) {
                b.dirty.insert(agent.clone());
            }
        }
    }

    /// The next `.bridge` value.
    fn bridge_value(&mut self) -> Vec<u8> {
        let now = crate::record::now_ms();
        if self.me.since_ms == 0 {
            self.me.since_ms = now;
        }
        self.me.ts_ms = now;
        self.me.seq += 1;
        serde_json::to_vec(&self.me).expect("a holder serializes")
    }

    /// Writes the dirty verdicts and deletes the gone keys, a transaction per batch, each
    /// comparing `.bridge`'s mod revision. Holding the host, each batch puts `.bridge` too;
    /// claiming it, only the last does, so the verdicts are in etcd before `.bridge` is.
    fn flush(&mut self) -> Result<(), Fault> {
        loop {
            if self.held.is_none() && self.claiming.is_none() {
                // A comparison failed: the next round claims again.
                return Ok(());
            }
            let (ops, names, last) = {
                let mut b = self.outbox.lock();
                let mut ops = Vec::new();
                let mut names = Vec::new();
                // One operation is kept for `.bridge`.
                while ops.len() < MAX_TXN_OPS - 1 {
                    if let Some(agent) = b.gone.pop_first() {
                        ops.push(Op::Delete {
                            key: keys::agent_key(&self.opts.host, &agent),
                        });
                        b.inflight.insert(agent.clone());
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
                        b.inflight.insert(agent.clone());
                        names.push((agent, false));
                    } else {
                        break;
                    }
                }
                let last = b.gone.is_empty() && b.dirty.is_empty();
                (ops, names, last)
            };
            let bridge_key = keys::bridge_key(&self.opts.host);
            let attempt = match (&self.held, &self.claiming) {
                (Some(base), _) => {
                    if ops.is_empty() {
                        return Ok(());
                    }
                    self.with_bridge(ops, names, *base)
                }
                (None, Some(c)) if last => {
                    let rev = c.bridge_rev;
                    self.with_bridge(ops, names, rev)
                }
                (None, Some(c)) => {
                    let witness = ops[0].clone();
                    let (Op::Put { key, .. } | Op::Delete { key } | Op::Get { key }) = &witness;
                    let agent = &key[keys::host_prefix(&self.opts.host).len()..];
                    let seen = c.revs.get(agent).copied().unwrap_or(0);
                    Attempt {
                        compare: vec![
                            Compare::ModRevision {
                                key: bridge_key,
                                revision: c.bridge_rev,
                            },
                            Compare::ModRevision {
                                key: key.clone(),
                                revision: seen,
                            },
                        ],
                        ops,
                        names,
                        bridge: None,
                        witness: Some(witness),
                    }
                }
                (None, None) => unreachable!("checked above"),
            };
            self.send(attempt)?;
        }
    }

    /// A transaction of `ops` that puts `.bridge` too, if `.bridge` is still at `base`.
    fn with_bridge(&mut self, mut ops: Vec<Op>, names: Vec<(String, bool)>, base: i64) -> Attempt {
        let key = keys::bridge_key(&self.opts.host);
        let value = self.bridge_value();
        ops.push(Op::Put {
            key: key.clone(),
            value: value.clone(),
            lease: self.lease,
        });
        Attempt {
            compare: vec![Compare::ModRevision {
                key,
                revision: base,
            }],
            ops,
            names,
            bridge: Some(value),
            witness: None,
        }
    }

    /// Sends `a` and settles its outcome. Without an answer it stays pending, to be sent
    /// again as it is. If its comparison failed and etcd does not show it committed (its
    /// answer lost before), someone else changed `.bridge` (or the claim's key): its writes
    /// go back to be done again, and the next round claims the host again.
    fn send(&mut self, a: Attempt) -> Result<(), Fault> {
        if let Some(v) = &a.bridge {
            self.outbox.lock().sent_bridge(v);
        }
        let bridge_key = keys::bridge_key(&self.opts.host);
        let mut failure = vec![Op::Get {
            key: bridge_key.clone(),
        }];
        if let Some(w) = &a.witness {
            let (Op::Put { key, .. } | Op::Delete { key } | Op::Get { key }) = w;
            failure.push(Op::Get { key: key.clone() });
        }
        self.set_write_timeout();
        let answer = self.measured(|c| c.txn_if(&a.compare, &a.ops, &failure));
        let r = match answer {
            Ok(r) => r,
            Err(e) => {
                self.pending = Some(a);
                return Err(e);
            }
        };
        match self.committed_at(&a, &r) {
            Some(rev) => {
                let mut b = self.outbox.lock();
                for (agent, _) in &a.names {
                    b.inflight.remove(agent);
                }
                drop(b);
                if let Some(c) = &mut self.claiming {
                    for (agent, gone) in &a.names {
                        c.revs.insert(agent.clone(), if *gone { 0 } else { rev });
                    }
                }
                if a.bridge.is_some() {
                    if self.held.is_none() {
                        self.claimed_once = true;
                        self.lease_expired = false;
                    }
                    self.held = Some(rev);
                    self.claiming = None;
                }
            }
            None => {
                self.requeue(&a);
                self.held = None;
                self.claiming = None;
            }
        }
        Ok(())
    }

    /// The revision `a` committed at, if it did: now, or (its comparison failing) before,
    /// as etcd's `.bridge` (or its witness key) shows.
    fn committed_at(&self, a: &Attempt, r: &TxnResponse) -> Option<i64> {
        if r.succeeded {
            return Some(r.revision);
        }
        let bridge = r.gets.first().cloned().flatten();
        if let Some(v) = &a.bridge {
            return bridge.filter(|kv| kv.value == *v).map(|kv| kv.mod_revision);
        }
        // A claim's transaction: `.bridge` as it was, and the witness as it wrote it.
        let unchanged = a.compare.first().is_some_and(|c| {
            matches!(c, Compare::ModRevision { revision, .. }
                if *revision == bridge.as_ref().map_or(0, |kv| kv.mod_revision))
        });
        let witness = r.gets.get(1).cloned().flatten();
        match (&a.witness, witness) {
            (Some(Op::Put { value, .. }), Some(kv)) if unchanged && kv.value == *value => {
                Some(kv.mod_revision)
            }
            // Deleted: its revision is not shown; the claim's later comparisons do not need
            // it (a deleted key compares as revision 0).
            (Some(Op::Delete { .. }), None) if unchanged => Some(0),
            _ => None,
        }
    }

    /// Checks the keys the prefix watch saw changed by someone else against etcd, and
    /// marks those that differ from this bridge's verdicts to be written again (and says so).
    /// A changed `.bridge` drops the claim: the next round claims again, or stops if another
    /// bridge holds the host now.
    fn verify(&mut self) -> Result<(), Fault> {
        let (suspects, bridge_suspect) = {
            let mut b = self.outbox.lock();
            let s: Vec<String> = std::mem::take(&mut b.suspects)
                .into_iter()
                .filter(|a| !b.pending(a))
                .collect();
            (s, std::mem::take(&mut b.bridge_suspect))
        };
        if bridge_suspect {
            let key = keys::bridge_key(&self.opts.host);
            self.set_write_timeout();
            let r = match self.measured(|c| c.range(key.as_bytes(), None, 0)) {
                Ok(r) => r,
                Err(e) => {
                    self.outbox.lock().bridge_suspect = true;
                    return Err(e);
                }
            };
            let now = r.kvs.first().map(|kv| kv.mod_revision);
            if now != self.held {
                self.held = None;
                self.outbox.lock().suspects.extend(suspects);
                return Ok(());
            }
        }
        let mut restored = Vec::new();
        for chunk in suspects.chunks(MAX_TXN_OPS) {
            let gets: Vec<Op> = chunk
                .iter()
                .map(|a| Op::Get {
                    key: keys::agent_key(&self.opts.host, a),
                })
                .collect();
            self.set_write_timeout();
            let r = match self.measured(|c| c.txn_if(&[], &gets, &[])) {
                Ok(r) => r,
                Err(e) => {
                    self.outbox.lock().suspects.extend(chunk.iter().cloned());
                    return Err(e);
                }
            };
            let mut b = self.outbox.lock();
            for (agent, kv) in chunk.iter().zip(r.gets) {
                if b.pending(agent) {
                    continue;
                }
                let differs = match (b.latest.get(agent), kv) {
                    (Some(v), Some(kv)) => *v.value != *kv.value,
                    (Some(_), None) => true,
                    (None, Some(_)) => {
                        b.gone.insert(agent.clone());
                        restored.push(agent.clone());
                        continue;
                    }
                    (None, None) => false,
                };
                if differs {
                    b.dirty.insert(agent.clone());
                    restored.push(agent.clone());
                }
            }
        }
        if !restored.is_empty() {
            let shown: Vec<&str> = restored.iter().take(5).map(String::as_str).collect();
            eprintln!(
                "pidbeat publish: {} of this host's keys were deleted or changed by someone \
                 else ({}{}); putting them back",
                restored.len(),
                shown.join(", "),
                if restored.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            );
        }
        Ok(())
    }
}

/// `pidbeat publish`: follows the run dir and keeps etcd's `/pidbeat/<host>/` equal to it
/// until SIGINT/SIGTERM; then revokes the lease (the host shows unreachable at once) and
/// exits 0. Exits 1 if another bridge holds the host (at start, or taking it later).
pub fn command(cfg: super::PublishConfig) -> crate::exitcode::Result<crate::exitcode::ExitCode> {
    let client = || Client::new(&cfg.client).map_err(|e| crate::exitcode::runtime!("{e}"));
    // Shared with the prefix watch, which is never joined (it blocks on its stream): it lives
    // as long as the process.
    let outbox: &'static Outbox = Box::leak(Box::default());
    let mut local = local::Local::new(&cfg.run_dir, &cfg.host)?;
    // The first look completes before the writer starts, so that its claim knows every
    // agent that has a record.
    local.look_all(outbox);
    let opts = WriterOptions {
        host: cfg.host.clone(),
        ttl: cfg.ttl,
    };
    let mut writer = Writer::new(outbox, client()?, opts);
    let keepalive_client = client()?;
    let watch_client = client()?;
    std::thread::scope(|s| {
        // Keep-alives from the start: a first claim of many verdicts over a slow link may
        // take longer than the TTL.
        let keepalive = std::thread::Builder::new()
            .name("etcd-keepalive".into())
            .spawn_scoped(s, || lease::keep_alive(outbox, keepalive_client, cfg.ttl))
            .map_err(|e| crate::exitcode::runtime!("cannot start the keep-alive thread: {e}"))?;
        // What etcd refuses at the first try (no permission on this prefix, a wrong
        // password) is a mistake in the invocation: said at once, not retried forever; so is
        // a host another bridge holds. An etcd that does not answer is not: the writer keeps
        // trying, and local records do not care.
        let refused = match writer.first_round() {
            Err(e @ Fault::Etcd(Error::Refused { .. })) => Some(format!(
                "{e}; check --user and --password-file, and that this host's etcd role may \
                 write {}",
                super::keys::host_prefix(&cfg.host)
            )),
            Err(Fault::Held(m)) => Some(m),
            _ => None,
        };
        if let Some(m) = refused {
            outbox.close();
            let _ = keepalive.join();
            return Err(crate::exitcode::runtime!("{m}"));
        }
        ownwatch::spawn(outbox, watch_client, &cfg.host)
            .map_err(|e| crate::exitcode::runtime!("cannot start the prefix watch: {e}"))?;
        let writer = std::thread::Builder::new()
            .name("etcd-writer".into())
            .spawn_scoped(s, move || writer.run())
            .map_err(|e| crate::exitcode::runtime!("cannot start the etcd writer thread: {e}"))?;
        let followed = local.run(outbox);
        outbox.close();
        let _ = writer.join();
        let _ = keepalive.join();
        if let Some(m) = outbox.fatal() {
            return Err(crate::exitcode::runtime!("{m}"));
        }
        followed.map(|()| crate::exitcode::ExitCode::Success)
    })
}
