//! The streaming watch: one open stream on one member, read a line (one answer) at a time.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use serde_json::{Value, json};

use super::wire::{self, b64, bad, parse};
use super::{Client, Error, KeyValue, from_status};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    /// The key's value before this event (asked for with `prev_kv`).
    pub prev: Option<KeyValue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchResponse {
    pub revision: i64,
    pub events: Vec<Event>,
}

impl Client {
    /// Watches `key`..`range_end` from `start_revision` (with each event's previous value),
    /// on the current member, then each other one while members are unavailable.
    pub fn watch(
        &mut self,
        key: &[u8],
        range_end: &[u8],
        start_revision: i64,
    ) -> Result<Watch, Error> {
        self.watch_with(key, range_end, start_revision, true)
    }

    /// [`Client::watch`], with each event's previous value only if `prev_kv` (a watcher that
    /// does not need them saves their bytes: a prefix deleted at once comes as one answer).
    pub fn watch_with(
        &mut self,
        key: &[u8],
        range_end: &[u8],
        start_revision: i64,
        prev_kv: bool,
    ) -> Result<Watch, Error> {
        let body = json!({"create_request": {
            "key": b64(key),
            "range_end": b64(range_end),
            "start_revision": start_revision.to_string(),
            "prev_kv": prev_kv,
            "progress_notify": true,
        }});
        let mut last = None;
        for _ in 0..self.endpoints.len() {
            match self.watch_here(&body) {
                Err(e @ Error::Unavailable(_)) => {
                    last = Some(e);
                    self.rotate();
                }
                other => return other,
            }
        }
        Err(last.expect("at least one endpoint"))
    }

    fn watch_here(&mut self, body: &Value) -> Result<Watch, Error> {
        if self.credentials.is_some() && self.token.is_none() {
            self.authenticate()?;
        }
        let member = self.member().to_owned();
        let resp = self
            .request(&self.stream, "/v3/watch")
            .config()
            .timeout_per_read(Some(WATCH_SILENCE_MAX))
            .build()
            .send(body.to_string())
            .map_err(|e| Error::Unavailable(format!("{member}: {e}")))?;
        if resp.status().as_u16() != 200 {
            let bytes = resp.into_body().read_to_vec().unwrap_or_default();
            return Err(Error::Unavailable(format!(
                "{member}: watch: HTTP {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            )));
        }
        let mut w = Watch {
            lines: BufReader::new(resp.into_body().into_reader()),
            member,
            buf: Vec::new(),
        };
        // The first answer says whether the watch exists (or why not: no leader, compacted).
        match w.read_line()? {
            wire::Watch {
                created: true,
                canceled: false,
                ..
            } => Ok(w),
            other => Err(w.refusal(other)),
        }
    }
}

/// How long a watch stream may stay silent before it counts as failed. The watch asks for
/// progress notices, which etcd sends an idle watch every 10 minutes (its default
/// `--experimental-watch-progress-notify-interval`); without a bound, a thread blocked on a
/// member that hangs would never return.
const WATCH_SILENCE_MAX: Duration = Duration::from_secs(10 * 60 + 30);

/// The line buffer a stream keeps between answers; a longer answer's is given back.
const LINE_KEPT: usize = 64 * 1024;

/// An open watch stream on one member.
pub struct Watch {
    lines: BufReader<ureq::BodyReader<'static>>,
    pub member: String,
    buf: Vec<u8>,
}

impl Watch {
    fn read_line(&mut self) -> Result<wire::Watch, Error> {
        self.buf.clear();
        match self.lines.read_until(b'\n', &mut self.buf) {
            Ok(0) => {
                return Err(Error::Unavailable(format!(
                    "{}: watch stream ended",
                    self.member
                )));
            }
            Ok(_) => {}
            Err(e) => {
                return Err(Error::Unavailable(format!(
                    "{}: watch stream: {e}",
                    self.member
                )));
            }
        }
        let line: Result<wire::StreamLine<wire::Watch>, Error> = parse(&self.buf);
        if self.buf.capacity() > LINE_KEPT {
            // A big answer (a transaction of a hundred values) is rare: its buffer goes back
            // to the allocator rather than staying the stream's for good.
            self.buf = Vec::new();
        }
        let line = line?;
        match (line.result, line.error) {
            (_, Some(e)) => Err(from_status(
                e.grpc_code,
                format!("{}: {}", self.member, e.message),
            )),
            (Some(w), None) => Ok(w),
            (None, None) => Err(bad("an empty watch answer")),
        }
    }

    fn refusal(&self, w: wire::Watch) -> Error {
        if w.compact_revision != 0 {
            return Error::Compacted(w.compact_revision);
        }
        Error::Unavailable(format!(
            "{}: watch canceled: {}",
            self.member, w.cancel_reason
        ))
    }

    /// Blocks for the next batch of events (one revision's or more). Progress notices
    /// (no events) are returned too: their revision is how far the stream has got.
    pub fn recv(&mut self) -> Result<WatchResponse, Error> {
        let w = self.read_line()?;
        if w.canceled {
            return Err(self.refusal(w));
        }
        let events = w
            .events
            .into_iter()
            .map(|e| {
                Ok(Event {
                    kind: if e.kind == "DELETE" {
                        EventKind::Delete
                    } else {
                        EventKind::Put
                    },
                    kv: e.kv.decode()?,
                    prev: e.prev_kv.map(wire::Kv::decode).transpose()?,
                })
            })
            .collect::<Result<_, Error>>()?;
        Ok(WatchResponse {
            revision: w.header.revision,
            events,
        })
    }
}
