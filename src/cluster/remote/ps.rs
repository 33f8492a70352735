//! `pidbeat ps --etcd` and `ps --etcd --watch`: the view's agents through the local
//! renderers.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Name;
use super::follow::{Change, Follower, Stale};
use super::view::{View, snapshot};
use crate::cluster::keys;
use crate::cluster::{RemoteFormat, RemotePsConfig};
use crate::exitcode::{Error as CliError, ExitCode, Result as CliResult, runtime};
use crate::reader::ps::{self, json, live, prom, table};
use crate::reader::verdict::{AgentVerdict as Entry, State};
use crate::record::{self, now_ms};
use etcd_gateway::Client;

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
/// effective state, the age at `at_ms` (now, or the time a stale view dates from). A stale
/// view's `--json` objects carry `stale_view`.
fn entry(
    view: &View,
    name: &Name,
    label: Label,
    at_ms: u64,
    stale: Option<&Stale>,
) -> Option<Entry> {
    let remote = view.get(name)?;
    let state = view.state(name)?;
    let agent = match label {
        Label::Qualified => format!("{}/{}", name.0, name.1),
        Label::Plain => name.1.clone(),
    };
    let host_field = || (Cow::Borrowed("host"), Value::from(name.0.as_str()));
    let stale_field = || {
        stale.filter(|_| label == Label::Plain).map(|s| {
            (
                Cow::Borrowed("stale_view"),
                serde_json::json!({"reason": s.reason, "as_of_ms": s.as_of_ms}),
            )
        })
    };
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
                .chain(stale_field())
                .collect();
            return Some(corrupt);
        }
    };
    // The renderer writes these from the verdict itself: the state and age as this reader
    // sees them now, `foreign_pids` as the bridge judged it (PID namespaces are the host's).
    let ours = [
        "host",
        "agent",
        "state",
        "age_ms",
        "foreign_pids",
        "activity",
        "idle_ms",
        "status_text",
        "stale_view",
    ];
    let foreign_pids = fields
        .iter()
        .any(|(k, v)| k == "foreign_pids" && *v == Value::Bool(true));
    let fields = (label == Label::Plain)
        .then(host_field)
        .into_iter()
        .chain(stale_field())
        .chain(fields.into_iter().filter(|(k, _)| !ours.contains(&&**k)))
        .collect();
    let mut entry = Entry {
        agent,
        state: State::from_name(state).unwrap_or(State::Corrupt),
        age_ms: Some(at_ms.saturating_sub(record.written_ms())),
        record: Some(record),
        fields,
        error: None,
        unreadable: false,
        foreign_pids,
        unsettled: None,
        activity: None,
    };
    // The activity as this reader judges the published record's evidence now.
    entry.rejudge_activity(&crate::reader::activity::Thresholds::DEFAULT);
    Some(entry)
}

/// The rows for `format`, in name order; ages as of `stale`'s time if the view is stale.
fn entries(view: &View, named: &[Name], format: RemoteFormat, stale: Option<&Stale>) -> Vec<Entry> {
    let label = match format {
        RemoteFormat::Json => Label::Plain,
        _ => Label::Qualified,
    };
    let at_ms = stale.map_or_else(now_ms, |s| s.as_of_ms);
    view.agents(named)
        .filter_map(|(n, _)| entry(view, n, label, at_ms, stale))
        .collect()
}

/// The line a table frame of a stale view starts with: what is wrong, and the time the
/// states and ages shown date from.
fn stale_line(s: &Stale, now_ms: u64) -> String {
    format!(
        "!! VIEW NOT CURRENT: states and ages as of {} ({} s ago): {}\n",
        s.as_of(),
        s.secs_ago(now_ms),
        s.reason
    )
}

/// `at_ms`: the time UP is shown as of (now, or a stale view's time).
fn render(
    entries: &[Entry],
    cfg: &RemotePsConfig,
    pretty: bool,
    color: bool,
    at_ms: u64,
) -> String {
    match cfg.format {
        RemoteFormat::Table if entries.is_empty() => String::new(),
        RemoteFormat::Table => table::render_at(entries, &[], &cfg.layout, color, at_ms),
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
    let rows = entries(&view, &named, cfg.format, None);
    let text = render(&rows, &cfg, true, ps::color_wanted(), now_ms());
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
/// the ages; else a frame per change), fed from etcd, until SIGINT/SIGTERM (exit 0). While
/// the follower cannot prove its view current, every frame says so: a table frame starts
/// with [`stale_line`], `--json` objects carry `stale_view`, and ages stay at the view's
/// time instead of ticking on.
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
        let stale = follower.stale();
        let rows = entries(follower.view(), named, cfg.format, stale.as_ref());
        let at_ms = stale.as_ref().map_or_else(now_ms, |s| s.as_of_ms);
        let mut frame = match render(&rows, cfg, false, screen.color, at_ms) {
            empty if empty.is_empty() => format!("no agents in etcd under {}\n", keys::ROOT),
            frame => frame,
        };
        let mut sig = live::entries_signature(&rows);
        if let Some(s) = &stale {
            if cfg.format == RemoteFormat::Table {
                frame.insert_str(0, &stale_line(s, now_ms()));
            }
            sig += &format!("stale {} {}", s.as_of_ms, s.reason);
        }
        if let Err(e) = screen.show_frame(&header, frame, sig) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::ps::Layout;
    use etcd_gateway::{KeyValue, Range};

    fn view() -> View {
        let kv = |key: &str, value: &str| KeyValue {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            lease: 0,
            mod_revision: 2,
        };
        View::from_range(&Range {
            revision: 3,
            kvs: vec![
                kv("/pidbeat/h1/.bridge", "{}"),
                kv(
                    "/pidbeat/h1/a",
                    r#"{"host":"h1","agent":"a","state":"alive","ts":1000,"pid":7,"status":"alive","ts_ms":1000000,"seq":1,"interval":15.0}"#,
                ),
            ],
        })
    }

    fn cfg(format: RemoteFormat) -> RemotePsConfig {
        RemotePsConfig {
            client: etcd_gateway::Config {
                endpoints: vec!["http://127.0.0.1:1".into()],
                tls: Default::default(),
                credentials: None,
                timeout: Duration::from_secs(1),
            },
            format,
            watch: true,
            layout: Layout::default(),
            agents: Vec::new(),
        }
    }

    #[test]
    fn a_stale_views_objects_say_so_and_age_as_of_its_time() {
        let v = view();
        let stale = Stale {
            reason: "etcd member m did not answer".into(),
            as_of_ms: 1_004_000,
        };
        let rows = entries(&v, &[], RemoteFormat::Json, Some(&stale));
        let text = render(
            &rows,
            &cfg(RemoteFormat::Json),
            false,
            false,
            stale.as_of_ms,
        );
        let objs: Value = serde_json::from_str(&text).unwrap();
        let o = &objs[0];
        assert_eq!(o["age_ms"], 4000, "{o}");
        assert_eq!(o["stale_view"]["as_of_ms"], 1_004_000, "{o}");
        assert_eq!(o["stale_view"]["reason"], "etcd member m did not answer");
        // A current view carries no such key.
        let rows = entries(&v, &[], RemoteFormat::Json, None);
        let text = render(&rows, &cfg(RemoteFormat::Json), false, false, now_ms());
        assert!(!text.contains("stale_view"), "{text}");
    }

    #[test]
    fn a_stale_table_line_names_the_reason_and_the_time() {
        let stale = Stale {
            reason: "etcd member m did not answer".into(),
            as_of_ms: 1_795_630_754_902,
        };
        let line = stale_line(&stale, 1_795_630_754_902 + 7_500);
        assert_eq!(
            line,
            "!! VIEW NOT CURRENT: states and ages as of 18:19:14Z (7 s ago): etcd member m \
             did not answer\n"
        );
    }
}
