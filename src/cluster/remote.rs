//! The fleet as etcd holds it, for `ps --etcd` and `wait --etcd`.
//!
//! [`View`] is the state of the `/pidbeat/` prefix, with each agent's *effective* state: the
//! state its host's bridge published, except that `alive` and `stale` become `unreachable`
//! while the host's `.bridge` key is gone (its lease expired: the host, its bridge or its
//! network has been away for a TTL). `dead`, `lost` and `unwatched` are proven verdicts and
//! stay as they are. An unreachable agent turns back into whatever its bridge publishes once
//! the bridge is back.
//!
//! [`Follower`] keeps a view current: it reads the prefix at revision R, then watches from
//! R + 1 on one member. If that member fails, hangs or loses its leader, it resumes on another
//! from the last revision seen + 1, so no event is lost or seen twice; if etcd compacted that
//! history away, it reads everything again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use std::borrow::Cow;
use std::io::Write;

use serde_json::Value;

use super::client::{Client, Config, Error, EventKind, KeyValue, Range, WatchResponse};
use super::keys::{self, Key};
use super::{RemoteFormat, RemotePsConfig, RemoteWaitConfig};
use crate::exit::{Error as CliError, ExitCode, Result as CliResult, runtime};
use crate::reader::ps::{self, json, live, prom, table};
use crate::reader::verdict::{AgentVerdict as Entry, State};
use crate::reader::wait::dead_line;
use crate::record::{self, ExitInfo, now_ms};

/// `HOST/AGENT`.
pub type Name = (String, String);

/// What the view knows of one agent.
#[derive(Debug, Clone, PartialEq)]
pub struct Remote {
    /// The object the bridge published (`ps --json`'s plus `host`), as etcd holds it.
    pub bytes: Vec<u8>,
    /// Its `state`, `corrupt` if the value is not a bridge's.
    pub published: String,
}

impl Remote {
    fn new(bytes: Vec<u8>) -> Remote {
        #[derive(serde::Deserialize)]
        struct Head {
            state: String,
        }
        let published = serde_json::from_slice::<Head>(&bytes)
            .map_or_else(|_| "corrupt".to_owned(), |h| h.state);
        Remote { bytes, published }
    }
}

/// The states whose truth rests on the bridge being there to change them.
pub fn needs_bridge(state: &str) -> bool {
    matches!(state, "alive" | "stale")
}

pub const UNREACHABLE: &str = "unreachable";

#[derive(Debug, Default, Clone)]
pub struct View {
    agents: BTreeMap<Name, Remote>,
    /// Hosts whose `.bridge` key exists, with the lease it carries.
    bridges: HashMap<String, i64>,
    /// The highest revision whose events are all in the view: watch from here + 1.
    pub revision: i64,
}

impl View {
    pub fn from_range(r: &Range) -> View {
        let mut v = View {
            revision: r.revision,
            ..View::default()
        };
        for kv in &r.kvs {
            v.put(kv);
        }
        v
    }

    fn put(&mut self, kv: &KeyValue) {
        match keys::parse(&kv.key) {
            Some(Key::Bridge { host }) => {
                self.bridges.insert(host.to_owned(), kv.lease);
            }
            Some(Key::Agent { host, agent }) => {
                self.agents.insert(
                    (host.to_owned(), agent.to_owned()),
                    Remote::new(kv.value.clone()),
                );
            }
            None => {}
        }
    }

    fn delete(&mut self, key: &str) {
        match keys::parse(key) {
            Some(Key::Bridge { host }) => {
                self.bridges.remove(host);
            }
            Some(Key::Agent { host, agent }) => {
                self.agents.remove(&(host.to_owned(), agent.to_owned()));
            }
            None => {}
        }
    }

    /// Applies one watch answer; returns the hosts it touched (a host's `.bridge` changes the
    /// effective state of all its agents).
    pub fn apply(&mut self, resp: &WatchResponse) -> Vec<String> {
        let mut hosts = Vec::new();
        for e in &resp.events {
            match e.kind {
                EventKind::Put => self.put(&e.kv),
                EventKind::Delete => self.delete(&e.kv.key),
            }
            if let Some(Key::Agent { host, .. } | Key::Bridge { host }) = keys::parse(&e.kv.key) {
                if !hosts.iter().any(|h| h == host) {
                    hosts.push(host.to_owned());
                }
            }
            self.revision = self.revision.max(e.kv.mod_revision);
        }
        hosts
    }

    pub fn host_up(&self, host: &str) -> bool {
        self.bridges.contains_key(host)
    }

    pub fn get(&self, name: &Name) -> Option<&Remote> {
        self.agents.get(name)
    }

    /// The effective state (see the module doc).
    pub fn state(&self, name: &Name) -> Option<&str> {
        let published = self.agents.get(name)?.published.as_str();
        Some(if needs_bridge(published) && !self.host_up(&name.0) {
            UNREACHABLE
        } else {
            published
        })
    }

    /// Agents in name order, all or only `named`.
    pub fn agents<'a>(
        &'a self,
        named: &'a [Name],
    ) -> impl Iterator<Item = (&'a Name, &'a Remote)> + 'a {
        self.agents
            .iter()
            .filter(move |(n, _)| named.is_empty() || named.contains(n))
    }
}

/// The range of every key of ours.
pub fn prefix() -> (Vec<u8>, Vec<u8>) {
    let p = keys::ROOT.as_bytes().to_vec();
    let end = keys::prefix_end(&p);
    (p, end)
}

/// The fleet as etcd has it now (one linearizable read, through any member).
pub fn snapshot(client: &mut Client) -> Result<View, Error> {
    let (p, end) = prefix();
    Ok(View::from_range(&client.range(&p, Some(&end), 0)?))
}

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
                    // which a hung member gives too: the stream's silence is bounded (client.rs).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::client::Event;

    fn kv(key: &str, value: &str, lease: i64, rev: i64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            lease,
            mod_revision: rev,
        }
    }

    fn name(h: &str, a: &str) -> Name {
        (h.into(), a.into())
    }

    #[test]
    fn unreachable_needs_a_bridge_verdict_and_a_missing_bridge() {
        let mut v = View::from_range(&Range {
            revision: 5,
            kvs: vec![
                kv("/pidbeat/h1/.bridge", "{}", 7, 2),
                kv(
                    "/pidbeat/h1/a",
                    r#"{"host":"h1","agent":"a","state":"alive","ts_ms":1000}"#,
                    0,
                    3,
                ),
                kv(
                    "/pidbeat/h1/d",
                    r#"{"host":"h1","agent":"d","state":"dead"}"#,
                    0,
                    4,
                ),
                kv("/pidbeat/h2/x", "not json", 0, 5),
            ],
        });
        assert_eq!(v.state(&name("h1", "a")), Some("alive"));
        assert_eq!(v.state(&name("h2", "x")), Some("corrupt"));
        // The lease expires: etcd deletes the bridge key.
        let hosts = v.apply(&WatchResponse {
            revision: 9,
            events: vec![Event {
                kind: EventKind::Delete,
                kv: kv("/pidbeat/h1/.bridge", "", 0, 9),
                prev: None,
            }],
        });
        assert_eq!(hosts, ["h1"]);
        assert_eq!(v.revision, 9);
        assert_eq!(v.state(&name("h1", "a")), Some(UNREACHABLE));
        assert_eq!(v.state(&name("h1", "d")), Some("dead"));
        // The bridge is back.
        v.apply(&WatchResponse {
            revision: 10,
            events: vec![Event {
                kind: EventKind::Put,
                kv: kv("/pidbeat/h1/.bridge", "{}", 8, 10),
                prev: None,
            }],
        });
        assert_eq!(v.state(&name("h1", "a")), Some("alive"));
        assert_eq!(v.agents(&[]).count(), 3);
        assert_eq!(v.agents(&[name("h1", "d")]).count(), 1);
    }
}

/// How a remote agent is named in an [`Entry`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    /// `HOST/AGENT` as the agent (table, Prometheus).
    Qualified,
    /// The agent's own name, `host` as the first field (`--json`: `ps --json`'s object plus
    /// `host`, as published).
    Plain,
}

/// One remote agent as the local renderers take it: the published record and fields, the
/// effective state, the age now.
fn entry(view: &View, name: &Name, label: Label) -> Option<Entry> {
    let remote = view.get(name)?;
    let state = view.state(name)?;
    let agent = match label {
        Label::Qualified => format!("{}/{}", name.0, name.1),
        Label::Plain => name.1.clone(),
    };
    let host_field = || (Cow::Borrowed("host"), Value::from(name.0.as_str()));
    let (record, fields) = match record::parse(&remote.bytes) {
        Ok(p) => p,
        Err(e) => {
            let error = serde_json::from_slice::<Value>(&remote.bytes)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or(e);
            let mut corrupt = Entry::corrupt(&agent, error);
            corrupt.fields = (label == Label::Plain)
                .then(host_field)
                .into_iter()
                .collect();
            return Some(corrupt);
        }
    };
    // The renderer writes these from the verdict itself: the state and age as this reader
    // sees them now, `foreign_pids` as the bridge judged it (PID namespaces are the host's).
    let ours = ["host", "agent", "state", "age_ms", "foreign_pids"];
    let foreign_pids = fields
        .iter()
        .any(|(k, v)| k == "foreign_pids" && *v == Value::Bool(true));
    let fields = (label == Label::Plain)
        .then(host_field)
        .into_iter()
        .chain(fields.into_iter().filter(|(k, _)| !ours.contains(&&**k)))
        .collect();
    Some(Entry {
        agent,
        state: State::from_name(state).unwrap_or(State::Corrupt),
        age_ms: Some(now_ms().saturating_sub(record.written_ms())),
        record: Some(record),
        fields,
        error: None,
        unreadable: false,
        foreign_pids,
        unsettled: None,
    })
}

/// The rows for `format`, in name order.
fn entries(view: &View, named: &[Name], format: RemoteFormat) -> Vec<Entry> {
    let label = match format {
        RemoteFormat::Json => Label::Plain,
        _ => Label::Qualified,
    };
    view.agents(named)
        .filter_map(|(n, _)| entry(view, n, label))
        .collect()
}

fn render(entries: &[Entry], cfg: &RemotePsConfig, pretty: bool, color: bool) -> String {
    match cfg.format {
        RemoteFormat::Table if entries.is_empty() => String::new(),
        RemoteFormat::Table => table::render(entries, &[], &cfg.layout, color),
        RemoteFormat::Json => json::render(entries, pretty),
        RemoteFormat::Prom => prom::render(entries, true),
    }
}

/// Named agents etcd has no key for.
fn missing<'a>(view: &View, named: &'a [Name]) -> Vec<&'a Name> {
    named.iter().filter(|n| view.get(n).is_none()).collect()
}

/// `pidbeat ps --etcd`: one linearizable read of the prefix (through the first member that
/// answers), or with `--watch` a frame per change.
pub fn ps_command(cfg: RemotePsConfig) -> CliResult<ExitCode> {
    let mut named = cfg.agents.clone();
    named.sort();
    named.dedup();
    if cfg.watch {
        if cfg.format == RemoteFormat::Prom {
            return Err(CliError::Usage(
                "--watch cannot be combined with --prom: the textfile collector wants one \
                 snapshot per file; run `pidbeat ps --etcd … --prom` from a timer instead"
                    .into(),
            ));
        }
        return ps_watch(&cfg, &named);
    }
    let mut client = Client::new(&cfg.client).map_err(|e| runtime!("{e}"))?;
    let view =
        snapshot(&mut client).map_err(|e| runtime!("cannot read the fleet from etcd: {e}"))?;
    let rows = entries(&view, &named, cfg.format);
    let text = render(&rows, &cfg, true, ps::color_wanted());
    if let Err(e) = ps::write_stdout(text.as_bytes()) {
        return ps::quiet_on_broken_pipe(e);
    }
    if cfg.format == RemoteFormat::Table && named.is_empty() && view.agents(&[]).next().is_none() {
        eprintln!(
            "pidbeat: no agents in etcd under {} (start `pidbeat publish` on a host)",
            keys::ROOT
        );
    }
    let missing = missing(&view, &named);
    for (h, a) in &missing {
        eprintln!("pidbeat: {h}/{a}: no key in etcd");
    }
    Ok(if missing.is_empty() {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}

/// `ps --etcd --watch`: `ps --watch`'s screen (redrawn in place on a TTY, every second for
/// the ages; else a frame per change), fed from etcd, until SIGINT/SIGTERM (exit 0).
fn ps_watch(cfg: &RemotePsConfig, named: &[Name]) -> CliResult<ExitCode> {
    let quit = quit_flag()?;
    let mut follower = Follower::start(&cfg.client)
        .map_err(|e| runtime!("cannot read the fleet from etcd: {e}"))?;
    let mut screen = live::Screen::new(cfg.format == RemoteFormat::Json, &cfg.layout);
    let header = format!(
        "pidbeat ps --etcd --watch: {} (every 1s and on change; Ctrl-C quits)",
        keys::ROOT
    );
    loop {
        let rows = entries(follower.view(), named, cfg.format);
        let frame = match render(&rows, cfg, false, screen.color) {
            empty if empty.is_empty() => format!("no agents in etcd under {}\n", keys::ROOT),
            frame => frame,
        };
        if let Err(e) = screen.show_frame(&header, frame, live::entries_signature(&rows)) {
            return ps::quiet_on_broken_pipe(e);
        }
        // Short waits, so that SIGINT/SIGTERM end us promptly and cleanly.
        let redraw = Instant::now() + Duration::from_secs(1);
        while follower.next(Some(Instant::now() + QUIT_CHECK)) == Change::Timeout {
            if quit.load(Ordering::SeqCst) {
                return Ok(ExitCode::Success);
            }
            if Instant::now() >= redraw {
                break;
            }
        }
    }
}

const QUIT_CHECK: Duration = Duration::from_millis(250);

/// SIGINT/SIGTERM set the flag instead of killing us, so the readers exit 0 as `ps --watch`
/// does.
fn quit_flag() -> CliResult<Arc<std::sync::atomic::AtomicBool>> {
    let quit = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&quit))
            .map_err(|e| runtime!("cannot handle signals: {e}"))?;
    }
    Ok(quit)
}

/// `pidbeat wait --etcd HOST/AGENT…`: `HOST/AGENT dead signal 9`, `… dead code 3`, `… dead`
/// (exit unknown) or `… lost`, one line per agent as each ends; exit 0 once all have, 124
/// after `--timeout`. `unreachable` ends nothing (the host may come back, and its deaths are
/// published then); it is said once on stderr.
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
    loop {
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
