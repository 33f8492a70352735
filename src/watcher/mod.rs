//! The writer side: `watch` and `run`. One watcher per agent, one epoll set (mio) holding the
//! target (pidfd, or a 100 ms check timer for the poll backend), the heartbeat timerfd and the
//! signals. Death is an event: the `dead` record is written the moment the pidfd becomes
//! readable (`death.rs`). How the target is pinned is `target.rs`; how records reach the disk,
//! `store.rs`; the lock that follows the path, `lock.rs`; keeping the replaced record's
//! death, `history.rs`; `--detach`, `detach.rs`; `pidbeat run`,
//! `run/`. This side reads nothing a reader writes and imports nothing of `reader/`: it
//! shares the contract (`rundir.rs`, `record.rs`) and the plumbing (`clock`, `pidns`,
//! `incarnation`, `procfs`, `eventloop`, `timer`, `wholefile`) with the readers.

use std::borrow::Cow;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};

mod death;
mod detach;
mod history;
mod lock;
mod notify;
mod oom;
pub mod run;
mod sample;
mod store;
mod target;

pub use target::BackendPref;

use crate::exitcode::{ExitCode, Result, runtime};
use crate::record::{ExitInfo, Progress, Record, Status, now_ms};
use crate::rundir::Interval;
use crate::timer::Timer;
use detach::Detach;
use lock::AgentLock;
use notify::Listener;
use sample::Sampler;
use store::{RecordWriter, Written};
use target::{Backend, Target};

const SIG: Token = Token(0);
const BEAT: Token = Token(1);
const TARGET: Token = Token(2);
const NOTIFY: Token = Token(3);

/// Writes a change the agent told over sd_notify at once, but at most once per this period:
/// `wait --until waiting` returns promptly, and a flood of claims costs a few writes a second.
pub const NOTIFY_WRITE_PERIOD: Duration = Duration::from_millis(250);

/// How often the poll backend looks at /proc: death shows within 250 ms with margin.
pub const POLL_PERIOD: Duration = Duration::from_millis(100);
/// How long a final `unwatched` record that cannot be written is retried when `watch` must
/// end anyway (SIGTERM/SIGINT, then exit 1). `watch` retries a `dead` record until it lands;
/// `run`, whose exit status is the child's, tries it once more and exits.
pub const FINAL_WRITE_GRACE: Duration = Duration::from_secs(2);

/// Why the event loop stops on a signal.
enum Stop {
    Unwatched,
    /// The target turned out dead: record that instead.
    Died,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Dead(Option<ExitInfo>),
    Unwatched,
}

/// Signals are forwarded to the child (`pidbeat run`) or end the watch (`pidbeat watch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Watch,
    Run,
}

/// What every record-writing command (`watch`, `run`) is told.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    pub agent: String,
    pub run_dir: PathBuf,
    pub interval: Interval,
    /// Sample the evidence of progress and listen for sd_notify (`--no-progress` turns off).
    pub progress: bool,
    /// `--watchdog`: the watchdog the agent is held to from the start.
    pub watchdog: Option<Duration>,
}

#[derive(Debug)]
pub struct WatchConfig {
    pub pid: i32,
    pub writer: WriterConfig,
    pub backend: BackendPref,
    pub detach: bool,
}

pub struct Watcher {
    target: Target,
    writer: RecordWriter,
    interval: Interval,
    mode: Mode,
    seq: u64,
    watcher_pid: i32,
    watcher_start_time: u64,
    /// Read once, at start; without it the record carries no CLOCK_BOOTTIME stamp.
    boot_id: Option<&'static str>,
    /// The line of the record being written, reused: its room is reserved at start, so that
    /// no write (above all the death's) allocates, and running out of memory then cannot
    /// cost the record.
    line: Vec<u8>,
    /// Set while writes fail, so a persistent fault warns once, not once per beat.
    failing: bool,
    /// `run` only: this watcher writes no records but keeps supervising its child, whose
    /// status it must still return: another watcher took the agent's lock at the path, or
    /// the run dir is one nobody may trust (`run::Attach`).
    unrecorded: bool,
    /// `run` only: the run dir could not be prepared or locked yet; every write tries again.
    attach: Option<run::Attach>,
    /// Our child's status when the orphan reaper collected it before the pidfd event.
    child_exit: Option<ExitInfo>,
    /// Set once a dead target's status proved unknowable: the record's `exit_unknown`.
    exit_unknown: Option<&'static str>,
    /// The evidence of progress the records carry (`None`: `--no-progress`), with what
    /// samples it each beat and what hears the agent's sd_notify datagrams.
    progress: Option<Progress>,
    sampler: Option<Sampler>,
    listener: Option<Listener>,
    /// When the last record was written (rate-limits the writes sd_notify asks for), and
    /// whether a change heard is still to be written.
    last_write: Option<Instant>,
    notify_pending: bool,
    /// The watchdog expiry (its `watchdog_ms`) that a record has already shown.
    expiry_written: Option<u64>,
    /// The OOM-kill counter of the target's memory cgroup, where there is one.
    oom: Option<oom::OomCounter>,
}

impl Watcher {
    /// A watcher holding the agent's `lock`, or (`run` only, `None`) one that takes it at its
    /// first write that can (`run::Attach`).
    pub fn new(target: Target, config: &WriterConfig, mode: Mode, lock: Option<AgentLock>) -> Self {
        let mut writer = RecordWriter::new(&config.run_dir, &config.agent);
        let attach = match lock {
            Some(lock) => {
                writer = attached(writer, lock, config);
                None
            }
            None => Some(run::Attach::new(config)),
        };
        Watcher {
            oom: oom::OomCounter::of(target.pid()),
            target,
            writer,
            interval: config.interval,
            mode,
            seq: 0,
            watcher_pid: std::process::id() as i32,
            watcher_start_time: crate::procfs::self_start_time(),
            // Longer is no boot id (readers refuse a record with one), and would not fit `line`.
            boot_id: crate::clock::boot_id().filter(|id| id.len() <= 64),
            line: Vec::with_capacity(crate::record::LINE_CAPACITY),
            failing: false,
            unrecorded: false,
            attach,
            child_exit: None,
            exit_unknown: None,
            progress: None,
            sampler: None,
            listener: None,
            last_write: None,
            notify_pending: false,
            expiry_written: None,
        }
        .with_progress(config)
    }

    fn with_progress(mut self, config: &WriterConfig) -> Self {
        if !config.progress {
            return self;
        }
        let pid = self.target.pid();
        let sampler = Sampler::new(pid);
        let mut p = Progress::default();
        if let Some(w) = config.watchdog {
            p.watchdog_usec = Some(w.as_micros().max(1) as u64);
            p.watchdog_ms = Some(now_ms());
        }
        self.sampler = Some(sampler);
        self.progress = Some(p);
        // `run` binds it once it holds the agent's lock (its first write that can).
        if self.attach.is_none() {
            self.bind_listener(config);
        }
        self
    }

    /// Binds the agent's sd_notify socket; the caller holds the agent's lock, which makes the
    /// name ours (a socket file there is a dead watcher's). The event loop registers it.
    fn bind_listener(&mut self, config: &WriterConfig) {
        let Some(sampler) = &self.sampler else {
            return;
        };
        // Only the target's uid is heard: the owner of its /proc entry is its effective uid.
        match sampler.uid() {
            Some(uid) => match Listener::bind(&config.run_dir, &config.agent, uid) {
                Ok(l) => self.listener = Some(l),
                Err(e) => eprintln!(
                    "pidbeat: warning: no sd_notify socket for {}: {e}",
                    config.agent
                ),
            },
            None => {
                eprintln!("pidbeat: warning: cannot read the target's uid; no sd_notify socket")
            }
        }
    }

    fn record(&self, status: Status, exit: Option<ExitInfo>, died_ms: Option<u64>) -> Record {
        let ms = now_ms();
        let boottime_ms = crate::clock::boottime_ms();
        Record {
            ts: ms / 1000,
            pid: self.target.pid(),
            status,
            ts_ms: Some(ms),
            seq: Some(self.seq),
            interval: Some(self.interval.secs),
            backend: Some(Cow::Borrowed(self.target.backend.name())),
            watcher_pid: Some(self.watcher_pid),
            start_time: self.target.incarnation.start_time(),
            exit: exit.map(|e| ExitInfo {
                oom: e.signal == Some(libc::SIGKILL) && self.oom.as_ref().is_some_and(|o| o.rose()),
                ..e
            }),
            died_ms,
            watcher_start_time: Some(self.watcher_start_time),
            boot_id: self.boot_id.map(Cow::Borrowed),
            boottime_ms: self.boot_id.map(|_| boottime_ms),
            pidns: crate::pidns::own(),
            exit_unknown: self.exit_unknown.map(Cow::Borrowed),
            progress: None,
        }
    }

    /// Writes one record; final records (`durable`) are fsynced. A failure warns once per
    /// outage and is returned (inner `Err`) for the caller to retry; the watcher never dies
    /// of it. The outer `Err` is the one fatal case: another watcher holds the agent's lock
    /// at the path now (`lock.rs`), so this one must stop without writing. Allocates nothing
    /// unless it has something to say on stderr.
    fn write(
        &mut self,
        status: Status,
        exit: Option<ExitInfo>,
        died_ms: Option<u64>,
        durable: bool,
    ) -> Result<io::Result<()>> {
        // Every attempt counts for the rate limit, written or not: a change heard is never
        // retried faster than a beat would (no busy loop while the run dir cannot be written).
        self.last_write = Some(Instant::now());
        self.notify_pending = false;
        if self.unrecorded {
            return Ok(Ok(()));
        }
        if let Some(attach) = &mut self.attach {
            match attach.try_lock() {
                run::Attached::Locked(lock, config) => {
                    let writer = RecordWriter::new(&config.run_dir, &config.agent);
                    self.writer = attached(writer, lock, &config);
                    self.attach = None;
                    self.bind_listener(&config);
                }
                run::Attached::Never => {
                    self.unrecorded = true;
                    return Ok(Ok(()));
                }
                run::Attached::Later(e) => return Ok(Err(self.warn_failing(e))),
            }
        }
        self.seq += 1;
        // `run` hands CMD's status to its parent by exiting, and a disk flush (milliseconds,
        // up to a hundred on a busy disk) must not hold that back: its records are visible at
        // the rename and reach the disk with the filesystem's next commit. A crash before
        // that leaves the `alive` record of a watcher that is gone, which readers judge
        // `lost`, never alive.
        let durable = durable && self.mode == Mode::Watch;
        if self.mode == Mode::Run && status == Status::Dead {
            self.writer.last_write();
        }
        // The evidence is moved into the record and back, not copied: no allocation.
        let mut record = self.record(status, exit, died_ms);
        record.progress = self.progress.take();
        record.write_line(&mut self.line);
        self.progress = record.progress.take();
        Ok(match self.writer.write(&self.line, durable) {
            Ok(Written::Done) => {
                if self.failing {
                    self.failing = false;
                    eprintln!(
                        "pidbeat: {} is writable again",
                        self.writer.record_path().display()
                    );
                }
                Ok(())
            }
            Ok(Written::Superseded(s)) => {
                self.seq -= 1;
                if self.mode == Mode::Run {
                    eprintln!("pidbeat: {s}; CMD keeps running under this pidbeat, unrecorded");
                    self.unrecorded = true;
                    return Ok(Ok(()));
                }
                return Err(runtime!("{s}"));
            }
            Err(e) => {
                self.seq -= 1;
                Err(self.warn_failing(e))
            }
        })
    }

    /// `run` gave up on the `dead` record. Said unless no record was ever written: then the
    /// one warning `run` gave about its run dir already said it.
    fn warn_unrecorded_death(&self) {
        if self.attach.is_none() {
            eprintln!(
                "pidbeat: warning: the death of PID {} is not recorded",
                self.target.pid()
            );
        }
    }

    /// The once-per-outage warning of a failed write.
    fn warn_failing(&mut self, e: io::Error) -> io::Error {
        if !self.failing {
            self.failing = true;
            eprintln!(
                "pidbeat: warning: cannot write {}: {e}; retrying",
                self.writer.record_path().display()
            );
        }
        e
    }

    /// Runs until the target dies or a signal ends the watch. `ready` runs once the first
    /// `alive` record is on disk (it is where `--detach` lets its parent go); its error ends
    /// the watch before it has begun.
    pub fn run(
        mut self,
        mut signals: Signals,
        ready: impl FnOnce() -> Result<()>,
    ) -> Result<Outcome> {
        let mut poll = Poll::new().map_err(|e| runtime!("epoll: {e}"))?;
        let beat =
            Timer::periodic(self.interval.duration()).map_err(|e| runtime!("timerfd: {e}"))?;
        let check = match self.target.backend {
            Backend::Poll => {
                Some(Timer::periodic(POLL_PERIOD).map_err(|e| runtime!("timerfd: {e}"))?)
            }
            Backend::Pidfd => None,
        };
        let reg = poll.registry();
        let r = (|| {
            signals.register(reg, SIG)?;
            reg.register(&mut SourceFd(&beat.as_raw_fd()), BEAT, Interest::READABLE)?;
            let target_fd = match (self.target.incarnation.pidfd(), &check) {
                (Some(fd), _) => fd.as_raw_fd(),
                (None, Some(t)) => t.as_raw_fd(),
                (None, None) => unreachable!("a poll target always has a check timer"),
            };
            reg.register(&mut SourceFd(&target_fd), TARGET, Interest::READABLE)
        })();
        r.map_err(|e| runtime!("epoll register: {e}"))?;

        self.sample();
        let first = self.write(Status::Alive, None, None, false)?;
        // `run` never keeps its CMD from running for want of a record (it warned, and retries
        // at every beat); `watch` exists for the record.
        if self.mode == Mode::Watch {
            first.map_err(|e| {
                runtime!(
                    "cannot write the first record {}: {e}",
                    self.writer.record_path().display()
                )
            })?;
        }
        if let Err(e) = ready() {
            // Whoever started us was told we did not start: say that nobody watches (unless
            // the target is already gone; then the `alive` record reads `lost`, which is true).
            if !self.target.is_dead_now() {
                let _ = self.write(Status::Unwatched, None, None, true)?;
            }
            return Err(e);
        }

        let mut events = Events::with_capacity(8);
        let mut listening = false;
        loop {
            // Bound at start, or (`run`) once the lock is taken at a later write.
            if let (false, Some(l)) = (listening, &self.listener) {
                let fd = l.as_raw_fd();
                poll.registry()
                    .register(&mut SourceFd(&fd), NOTIFY, Interest::READABLE)
                    .map_err(|e| runtime!("epoll register: {e}"))?;
                listening = true;
            }
            let timeout = self.progress_timeout();
            if !crate::eventloop::wait(&mut poll, &mut events, timeout)? {
                continue;
            }
            let (mut sig, mut beat_due, mut target_ev, mut notify_ev) =
                (false, false, false, false);
            for ev in events.iter() {
                match ev.token() {
                    SIG => sig = true,
                    BEAT => beat_due = true,
                    TARGET => target_ev = true,
                    NOTIFY => notify_ev = true,
                    _ => {}
                }
            }
            // Death first: a beat or a SIGTERM in the same batch must neither delay the
            // `dead` record nor replace it with `alive` or `unwatched`.
            if target_ev {
                let died = match &check {
                    Some(t) => {
                        t.drain();
                        self.target.poll_dead()
                    }
                    None => true,
                };
                if died {
                    return self.on_death(&mut poll, &mut events, &mut signals);
                }
            }
            if sig {
                match self.on_signals(&mut signals)? {
                    Some(Stop::Unwatched) => return Ok(Outcome::Unwatched),
                    Some(Stop::Died) => {
                        return self.on_death(&mut poll, &mut events, &mut signals);
                    }
                    None => {}
                }
            }
            if notify_ev {
                self.hear();
            }
            if beat_due {
                beat.drain();
                if let Some(o) = &mut self.oom {
                    o.beat();
                }
                self.sample();
                let _ = self.write(Status::Alive, None, None, false)?;
            } else if self.progress_write_due() {
                let _ = self.write(Status::Alive, None, None, false)?;
            }
        }
    }

    /// One beat's sample of the evidence.
    fn sample(&mut self) {
        if let (Some(s), Some(p)) = (&mut self.sampler, &mut self.progress) {
            s.sample(self.target.pid(), p, now_ms());
        }
    }

    /// Takes what the agent said over sd_notify.
    fn hear(&mut self) {
        if let (Some(l), Some(p)) = (&mut self.listener, &mut self.progress) {
            let heard = l.drain(p, now_ms());
            self.notify_pending |= heard.changed;
        }
    }

    /// When the event loop must wake up with no event: to write a change heard once the
    /// rate limit allows, or to write that the agent's watchdog expired.
    fn progress_timeout(&self) -> Option<Duration> {
        let mut wake: Option<Duration> = None;
        if self.notify_pending {
            let since = self.last_write.map_or(NOTIFY_WRITE_PERIOD, |t| t.elapsed());
            wake = Some(NOTIFY_WRITE_PERIOD.saturating_sub(since));
        }
        if let Some(expiry) = self.unwritten_expiry() {
            let until = Duration::from_millis(expiry.saturating_sub(now_ms()));
            wake = Some(wake.map_or(until, |w| w.min(until)));
        }
        wake
    }

    /// The wall-clock ms just past the agent's watchdog period, if no record has shown that
    /// expiry yet.
    fn unwritten_expiry(&self) -> Option<u64> {
        let p = self.progress.as_ref()?;
        let (usec, at) = (p.watchdog_usec?, p.watchdog_ms?);
        // The agent's WATCHDOG_USEC= may be any number: saturate, never overflow.
        (self.expiry_written != Some(at))
            .then_some(at.saturating_add(usec / 1000).saturating_add(1))
    }

    /// Is a write for the evidence due now (outside the beats)?
    fn progress_write_due(&mut self) -> bool {
        if let Some(expiry) = self.unwritten_expiry()
            && now_ms() >= expiry
        {
            self.expiry_written = self.progress.as_ref().and_then(|p| p.watchdog_ms);
            return true;
        }
        self.notify_pending
            && self
                .last_write
                .is_none_or(|t| t.elapsed() >= NOTIFY_WRITE_PERIOD)
    }

    /// Returns `Some` when a signal ends the watch.
    fn on_signals(&mut self, signals: &mut Signals) -> Result<Option<Stop>> {
        let group = signals.kill_group();
        for sig in signals.pending() {
            match (self.mode, sig) {
                (Mode::Watch, SIGTERM | SIGINT) => {
                    // `unwatched` says the target still lives: check that it does.
                    if self.target.is_dead_now() {
                        return Ok(Some(Stop::Died));
                    }
                    // Durably. A run dir that stays unwritable must not make us deaf to
                    // SIGTERM: give up after a bound; the `alive` record left behind reads as
                    // `lost`.
                    let deadline = Instant::now() + FINAL_WRITE_GRACE;
                    while let Err(e) = self.write(Status::Unwatched, None, None, true)? {
                        if self.target.is_dead_now() {
                            return Ok(Some(Stop::Died));
                        }
                        if Instant::now() >= deadline {
                            return Err(runtime!(
                                "stopped without recording `unwatched`: cannot write {}: {e}",
                                self.writer.record_path().display()
                            ));
                        }
                        std::thread::sleep(retry_period(self.interval));
                    }
                    return Ok(Some(Stop::Unwatched));
                }
                (Mode::Watch, _) => {} // SIGHUP: a detached watcher outlives its terminal.
                (Mode::Run, SIGCHLD) => self.reap_orphans(),
                (Mode::Run, s) => run::forward(&self.target, s, group),
            }
        }
        Ok(None)
    }
}

/// The signals a watcher reacts to: `watch`'s three, by handlers (signal-hook); every
/// forwardable one under `run`, by a signalfd (`run::Forwarded`).
pub enum Signals {
    Watch(signal_hook_mio::v1_0::Signals),
    Run(run::Forwarded),
}

impl Signals {
    fn register(&mut self, reg: &Registry, token: Token) -> io::Result<()> {
        match self {
            Signals::Watch(s) => reg.register(s, token, Interest::READABLE),
            Signals::Run(f) => f.register(reg, token),
        }
    }

    /// Every signal that has arrived since the last call, in order.
    pub(super) fn pending(&mut self) -> std::vec::IntoIter<i32> {
        match self {
            Signals::Watch(s) => s.pending().collect::<Vec<_>>().into_iter(),
            Signals::Run(f) => f.pending().into_iter(),
        }
    }

    fn kill_group(&self) -> bool {
        matches!(self, Signals::Run(f) if f.kill_group)
    }
}

/// Takes over `watch`'s signals. Call it before announcing anything, so no SIGTERM can arrive
/// while the default action (die silently) is still in place. They are unblocked too: a
/// parent that blocked SIGTERM must not leave the watcher deaf to it.
pub fn signals() -> Result<Signals> {
    let sigs = [SIGTERM, SIGINT, SIGHUP];
    let s = signal_hook_mio::v1_0::Signals::new(sigs)
        .map_err(|e| runtime!("cannot install signal handlers: {e}"))?;
    let bits = sigs.iter().fold(0, |b, &s| b | crate::sys::sig_bit(s));
    crate::sys::mask_signals(bits, false)
        .map_err(|e| runtime!("cannot unblock SIGTERM, SIGINT, SIGHUP: {e}"))?;
    Ok(Signals::Watch(s))
}

/// Gives a watcher the agent's `lock`: it is the only watcher of the agent now, so any temp
/// file of an earlier one was left by a crash (SIGKILL between create and rename), and the
/// record it replaces may tell of the last death.
fn attached(writer: RecordWriter, lock: AgentLock, config: &WriterConfig) -> RecordWriter {
    let writer = writer.with_lock(lock);
    writer.sweep_stale_tmps();
    history::archive_previous(&config.run_dir, &config.agent);
    writer
}

/// `pidbeat watch`.
pub fn command(config: WatchConfig) -> Result<ExitCode> {
    let detached = if config.detach {
        match detach::detach()? {
            Detach::Parent(code) => return Ok(code),
            Detach::Child(d) => Some(d),
        }
    } else {
        None
    };
    let w = &config.writer;
    crate::rundir::prepare(&w.run_dir)?;
    let lock = AgentLock::acquire(&w.run_dir, &w.agent)?;
    let target = Target::open(config.pid, config.backend, false)?;
    let signals = signals()?;
    let watcher = Watcher::new(target, w, Mode::Watch, Some(lock));
    watcher.run(signals, || match detached {
        Some(d) => d.ready(),
        None => Ok(()),
    })?;
    Ok(ExitCode::Success)
}

/// While writes fail, retry often enough that a death lands soon after the dir recovers.
fn retry_period(interval: Interval) -> Duration {
    interval.duration().min(Duration::from_millis(250))
}
