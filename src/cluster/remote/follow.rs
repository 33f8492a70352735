//! Keeping a [`View`] current: range at R, then watch from R + 1 on one member; another
//! member when that one fails or hangs, from the last revision seen + 1; everything read
//! again when etcd compacted that history away.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use super::view::{View, prefix, snapshot};
use crate::cluster::keys;
use crate::record::now_ms;
use etcd_gateway::{Client, Config, Error, WatchResponse};

/// What woke a [`Follower`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// These hosts' keys changed.
    Hosts(Vec<String>),
    /// Everything was read again (after a compaction): anything may have changed.
    All,
    /// The view stopped or started being current (see [`Follower::stale`]).
    Currency,
    /// Nothing changed before the deadline.
    Timeout,
}

/// Why the view is not current, and since when it is out of date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale {
    pub reason: String,
    /// Unix ms of the last proof that the view was current: states and ages are as of then.
    pub as_of_ms: u64,
}

impl Stale {
    /// `13:47:32Z`: the time of day (UTC) the view dates from.
    pub fn as_of(&self) -> String {
        let s = self.as_of_ms / 1000 % 86_400;
        format!("{:02}:{:02}:{:02}Z", s / 3600, s % 3600 / 60, s % 60)
    }

    /// Whole seconds from the view's time to `now_ms`.
    pub fn secs_ago(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.as_of_ms) / 1000
    }
}

/// How often the watched member is asked a linearizable read, and how long it has to answer.
/// A SIGSTOPped or partitioned member keeps its TCP connections open and just says nothing,
/// which a watch stream cannot tell from a quiet fleet. Every half second plus the timeout
/// keeps "the view is not current" on the screen within 1.5 s of the member going quiet.
const PROBE_EVERY: Duration = Duration::from_millis(500);

const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

pub struct Follower {
    client: Client,
    /// A client bound to the watched member alone, for the probe.
    probe: Option<Client>,
    config: Config,
    view: View,
    /// Watch answers, tagged with the generation of the watch that read them.
    rx: Receiver<(u64, Result<WatchResponse, Error>)>,
    tx: Sender<(u64, Result<WatchResponse, Error>)>,
    /// The current watch's generation; a superseded watch thread sees it move and stops.
    generation: Arc<AtomicU64>,
    /// The watched member; `None` while no member answers.
    watching: Option<String>,
    /// The member last given up on, for the messages.
    gave_up: String,
    next_probe: Instant,
    /// Unix ms of the last proof that the view is current: the start's read, or a probe
    /// answered by the watched member.
    current_ms: u64,
    /// Why the view is not current; `None` while it is.
    stale: Option<String>,
    /// The watched member failed: the view was marked stale and the caller told; the
    /// move to another member, which may block for a timeout per member, comes next.
    switch_due: Option<String>,
}

impl Follower {
    /// Reads the prefix and starts watching after it.
    pub fn start(config: &Config) -> Result<Follower, String> {
        let mut client = Client::new(config)?;
        let view = snapshot(&mut client).map_err(|e| e.to_string())?;
        let (tx, rx) = mpsc::channel();
        let mut f = Follower {
            client,
            probe: None,
            config: config.clone(),
            view,
            rx,
            tx,
            generation: Arc::new(AtomicU64::new(0)),
            watching: None,
            gave_up: String::new(),
            next_probe: Instant::now() + PROBE_EVERY,
            current_ms: now_ms(),
            stale: None,
            switch_due: None,
        };
        f.rewatch().map_err(|e| e.to_string())?;
        Ok(f)
    }

    pub fn view(&self) -> &View {
        &self.view
    }

    /// `Some` while the view may be out of date: the watched member stopped answering, lost
    /// its leader, or no member answers. Readers must not present the view as current then.
    pub fn stale(&self) -> Option<Stale> {
        self.stale.as_ref().map(|reason| Stale {
            reason: reason.clone(),
            as_of_ms: self.current_ms,
        })
    }

    /// Marks the view out of date; true if it was current until now.
    fn mark_stale(&mut self, reason: String) -> bool {
        let was_current = self.stale.is_none();
        self.stale = Some(reason);
        was_current
    }

    /// Starts a watch from `view.revision + 1` on the client's member (or the next that
    /// answers), in its own thread, superseding the previous one. History compacted away:
    /// reads everything first, and returns true.
    fn rewatch(&mut self) -> Result<bool, Error> {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.watching = None;
        let (p, end) = prefix();
        let mut reread = false;
        let watch = match self.client.watch(&p, &end, self.view.revision + 1) {
            Err(Error::Compacted(_)) => {
                self.view = snapshot(&mut self.client)?;
                reread = true;
                self.client.watch(&p, &end, self.view.revision + 1)?
            }
            other => other?,
        };
        let member = watch.member.clone();
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let current = Arc::clone(&self.generation);
        let tx = self.tx.clone();
        std::thread::Builder::new()
            .name("etcd-watch".into())
            .spawn(move || {
                let mut watch = watch;
                loop {
                    let r = watch.recv();
                    let failed = r.is_err();
                    // A superseded watch (its member was given up on) stops at its next answer,
                    // which a hung member gives too: client/watch.rs bounds the stream's silence.
                    if current.load(Ordering::SeqCst) != generation
                        || tx.send((generation, r)).is_err()
                        || failed
                    {
                        return;
                    }
                }
            })
            .map_err(|e| Error::Unavailable(format!("cannot start a watch thread: {e}")))?;
        self.probe = Client::new(&Config {
            endpoints: vec![member.clone()],
            timeout: PROBE_TIMEOUT,
            ..self.config.clone()
        })
        .ok();
        self.watching = Some(member);
        Ok(reread)
    }

    /// Gives up on the watched member (saying why on stderr) and resumes on another, from
    /// where the view is. If none answers, says so once and marks the view stale; `next`
    /// tries again every probe interval. True if everything was read again.
    fn switch(&mut self, why: &str) -> bool {
        let from = match self.watching.take() {
            Some(m) => {
                self.gave_up = m.clone();
                m
            }
            None => self.gave_up.clone(),
        };
        let first = self.stale.is_none() || self.switch_due.is_some();
        self.switch_due = None;
        self.client.rotate();
        let was = self.view.revision;
        match self.rewatch() {
            Ok(reread) => {
                eprintln!(
                    "pidbeat: etcd member {from} {why}; watching through {} from revision {}",
                    self.watching.as_deref().unwrap_or_default(),
                    was + 1
                );
                reread
            }
            Err(e) => {
                self.mark_stale(format!(
                    "etcd member {from} {why}, and no member answers ({e})"
                ));
                if first {
                    eprintln!(
                        "pidbeat: etcd member {from} {why}, and no other member answers ({e}); \
                         retrying every {PROBE_EVERY:?}"
                    );
                }
                false
            }
        }
    }

    /// Is the watched member still serving? A linearizable read needs its leader.
    fn probe(&mut self) -> Result<(), Error> {
        let Some(c) = &mut self.probe else {
            return Err(Error::Unavailable("no client for the probe".into()));
        };
        c.range(keys::ROOT.as_bytes(), None, 0).map(drop)
    }

    /// Probes the watched member: the view is current when it answers; when it does not,
    /// the view is marked stale and a move to another member is due. True if the view's
    /// currency changed.
    fn check(&mut self) -> bool {
        let member = self.watching.clone().unwrap_or_default();
        match self.probe() {
            Ok(()) => {
                self.current_ms = now_ms();
                self.stale.take().is_some()
            }
            Err(e) => {
                let why = format!("did not answer a read within {PROBE_TIMEOUT:?} ({e})");
                let changed = self.mark_stale(format!("etcd member {member} {why}"));
                self.switch_due = Some(why);
                changed
            }
        }
    }

    /// Blocks until keys change, the view's currency changes, or `until` passes.
    pub fn next(&mut self, until: Option<Instant>) -> Change {
        loop {
            if let Some(why) = self.switch_due.clone() {
                let reread = self.switch(&why);
                // On another member: it proves the view current at once, or not. If not,
                // the next move waits for the next probe, so a member that accepts watches
                // but has no leader is not asked in a tight loop.
                let changed = self.watching.is_some() && self.check();
                self.switch_due = None;
                self.next_probe = Instant::now() + PROBE_EVERY;
                if reread {
                    return Change::All;
                }
                if changed {
                    return Change::Currency;
                }
                continue;
            }
            let now = Instant::now();
            if until.is_some_and(|u| now >= u) {
                return Change::Timeout;
            }
            if now >= self.next_probe {
                self.next_probe = now + PROBE_EVERY;
                let before = self.stale.is_some();
                let reread = if self.watching.is_none() {
                    let reread = self.switch("was unreachable");
                    if self.watching.is_some() {
                        self.check();
                    }
                    reread
                } else {
                    // A failed probe marks the view stale and returns at once, so that the
                    // caller shows it before the move to another member (which may block).
                    self.check();
                    false
                };
                if reread {
                    return Change::All;
                }
                if before != self.stale.is_some() {
                    return Change::Currency;
                }
                continue;
            }
            let wake = until.map_or(self.next_probe, |u| u.min(self.next_probe));
            let current = self.generation.load(Ordering::SeqCst);
            match self.rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok((g, _)) if g != current => {}
                Ok((_, Ok(resp))) => {
                    let hosts = self.view.apply(&resp);
                    if !hosts.is_empty() {
                        return Change::Hosts(hosts);
                    }
                }
                Ok((_, Err(Error::Compacted(_)))) => {
                    // etcd creates the watch, then cancels it: the history we need is gone.
                    // Read everything again, then watch after that.
                    match snapshot(&mut self.client) {
                        Ok(view) => {
                            self.view = view;
                            if self.rewatch().is_err() {
                                self.switch("failed after a compaction");
                            }
                        }
                        Err(_) => {
                            self.switch("failed after a compaction");
                        }
                    }
                    return Change::All;
                }
                Ok((_, Err(e))) => {
                    let member = self.watching.clone().unwrap_or_default();
                    let why = format!("failed ({e})");
                    let changed = self.mark_stale(format!("etcd member {member} {why}"));
                    self.switch_due = Some(why);
                    if changed {
                        return Change::Currency;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => unreachable!("the follower holds a sender"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Stale;

    #[test]
    fn a_stale_view_dates_itself() {
        let s = Stale {
            reason: "etcd member m did not answer".into(),
            as_of_ms: 1_795_630_754_902,
        };
        assert_eq!(s.as_of(), "18:19:14Z");
        assert_eq!(s.secs_ago(1_795_630_754_902 + 12_345), 12);
        assert_eq!(s.secs_ago(0), 0);
    }
}
