//! Keeping a [`View`] current: range at R, then watch from R + 1 on one member; another
//! member when that one fails or hangs, from the last revision seen + 1; everything read
//! again when etcd compacted that history away.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use super::view::{View, prefix, snapshot};
use crate::cluster::keys;
use etcd_gateway::{Client, Config, Error, WatchResponse};

/// What woke a [`Follower`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// These hosts' keys changed.
    Hosts(Vec<String>),
    /// Everything was read again (after a compaction): anything may have changed.
    All,
    /// Nothing changed before the deadline.
    Timeout,
}

/// How often the watched member is asked a linearizable read, and how long it has to answer.
/// A SIGSTOPped or partitioned member keeps its TCP connections open and just says nothing,
/// which a watch stream cannot tell from a quiet fleet.
const PROBE_EVERY: Duration = Duration::from_secs(1);

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
    next_probe: Instant,
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
            next_probe: Instant::now() + PROBE_EVERY,
        };
        f.rewatch().map_err(|e| e.to_string())?;
        Ok(f)
    }

    pub fn view(&self) -> &View {
        &self.view
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
    /// where the view is. If none answers, says so once; `next` tries again every second.
    /// True if everything was read again.
    fn switch(&mut self, why: &str) -> bool {
        let from = self.watching.take().unwrap_or_default();
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
                if !from.is_empty() {
                    eprintln!(
                        "pidbeat: etcd member {from} {why}, and no other member answers ({e}); \
                         retrying every second"
                    );
                }
                false
            }
        }
    }

    /// Is the watched member still serving? A linearizable read needs its leader.
    fn probe_ok(&mut self) -> bool {
        let Some(c) = &mut self.probe else {
            return false;
        };
        c.range(keys::ROOT.as_bytes(), None, 0).is_ok()
    }

    /// Blocks until keys change or `until` passes.
    pub fn next(&mut self, until: Option<Instant>) -> Change {
        loop {
            let now = Instant::now();
            if until.is_some_and(|u| now >= u) {
                return Change::Timeout;
            }
            if now >= self.next_probe {
                self.next_probe = now + PROBE_EVERY;
                let reread = if self.watching.is_none() {
                    self.switch("was unreachable")
                } else if !self.probe_ok() {
                    self.switch("did not answer a read within 1 s")
                } else {
                    false
                };
                if reread {
                    return Change::All;
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
                    if self.switch(&format!("failed ({e})")) {
                        return Change::All;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => unreachable!("the follower holds a sender"),
            }
        }
    }
}
