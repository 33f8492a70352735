//! `ps --history AGENT`: the agent's past deaths, oldest first, as `s6-svdt` shows a
//! service's. They come from `<agent>.deaths` (kept by each new watcher, see
//! `watcher/history.rs`) and, last, the current record if it says `dead` (not yet replaced,
//! so not yet in the file). A `lost` entry is an incarnation whose end nobody recorded: its
//! time is its last beat.

use std::path::Path;

use super::{json, quiet_on_broken_pipe, started_ms, table::exit_text, write_stdout};
use crate::duration::short;
use crate::exitcode::{ExitCode, Result, runtime};
use crate::reader::file::read_record_at;
use crate::reader::verdict::{AgentVerdict, State};
use crate::record::{self, MAX_RECORD_BYTES, Status, now_ms};
use crate::rundir::{self, HISTORY_LEN};

pub fn command(dir: &Path, agent: &str, as_json: bool) -> Result<ExitCode> {
    let mut buf = vec![0; MAX_RECORD_BYTES + 1];
    let mut read = |name: String| {
        read_record_at(None, &dir.join(&name), &mut buf)
            .map(|len| len.map(|n| buf[..n].to_vec()))
            .map_err(|e| runtime!("{}: {}", dir.join(&name).display(), e.into_message()))
    };
    let deaths = read(rundir::deaths_name(agent))?;
    let current = read(rundir::record_name(agent))?;
    if deaths.is_none() && current.is_none() {
        eprintln!(
            "pidbeat: {agent}: no record or history in {}",
            dir.display()
        );
        return Ok(ExitCode::Failure);
    }
    let mut entries: Vec<AgentVerdict> = deaths
        .iter()
        .flat_map(|b| b.split(|&c| c == b'\n'))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .filter_map(|l| entry(agent, l))
        .collect();
    if let Some(e) = current
        .as_deref()
        .and_then(|b| entry(agent, b))
        .filter(|e| e.state == State::Dead)
    {
        entries.push(e);
    }
    // The file is bounded by its writer; one planted by hand is not.
    let entries = &entries[entries.len().saturating_sub(HISTORY_LEN + 1)..];
    let text = if as_json {
        json::render(entries, true)
    } else if entries.is_empty() {
        eprintln!("pidbeat: {agent}: no deaths recorded");
        String::new()
    } else {
        render(entries)
    };
    match write_stdout(text.as_bytes()) {
        Ok(()) => Ok(ExitCode::Success),
        Err(e) => quiet_on_broken_pipe(e),
    }
}

fn entry(agent: &str, line: &[u8]) -> Option<AgentVerdict> {
    let (record, fields) = record::parse(line).ok()?;
    let state = match record.status {
        Status::Dead => State::Dead,
        Status::Alive | Status::Unwatched => State::Lost,
    };
    Some(AgentVerdict {
        agent: agent.to_owned(),
        state,
        age_ms: Some(now_ms().saturating_sub(ended_ms(&record))),
        record: Some(record),
        fields,
        error: None,
        unsettled: None,
        unreadable: false,
        // Shown as recorded; no verdict rests on these PIDs.
        foreign_pids: false,
        activity: None,
    })
}

/// When the incarnation ended: its recorded death, else its last beat.
fn ended_ms(r: &record::Record) -> u64 {
    r.died_ms
        .filter(|_| r.status == Status::Dead)
        .unwrap_or(r.written_ms())
}

const HEADER: [&str; 6] = ["ENDED", "AGO", "STATE", "PID", "RAN", "EXIT"];

fn render(entries: &[AgentVerdict]) -> String {
    let rows: Vec<[String; 6]> = entries
        .iter()
        .filter_map(|e| {
            let r = e.record.as_ref()?;
            let ended = ended_ms(r);
            let ran = started_ms(e).map_or("-".into(), |s| short(ended.saturating_sub(s)));
            let exit = r.exit.map_or("-".into(), |x| exit_text(&x));
            Some([
                utc(ended),
                short(e.age_ms.unwrap_or(0)),
                e.state.name().to_owned(),
                r.pid.to_string(),
                ran,
                exit,
            ])
        })
        .collect();
    let mut widths = HEADER.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for cells in std::iter::once(HEADER.map(str::to_owned)).chain(rows) {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `2026-11-26T13:47:32Z` from Unix ms (whole seconds, UTC).
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_795_630_754_902), "2026-11-25T18:19:14Z");
    }
}
