//! A small blocking client for etcd v3's JSON gateway (`/v3/...` on the client URL).
//!
//! Why the gateway and not gRPC: the gRPC crates need `protoc` at build time and a tokio
//! runtime; the gateway is plain HTTP/1.1 + JSON that `ureq` (with rustls for TLS) speaks in
//! a few hundred lines. Its costs, handled here: keys and values are base64, int64s are JSON
//! strings, fields equal to zero are left out, and errors of streaming calls (`watch`,
//! `lease/keepalive`) arrive inside an HTTP 200 body as `{"error":{...}}` lines.
//!
//! Every call carries `Grpc-Metadata-Hasleader: true`. The gateway forwards `Grpc-Metadata-*`
//! headers as gRPC metadata, so etcd sees clientv3's `WithRequireLeader`: a member that has
//! lost its leader answers "no leader" at once (code 14) instead of serving a stale read or
//! holding the call until it times out, and cancels a watch stream it can no longer feed
//! (measured on 3.4.23: both within an election timeout). Such answers, transport errors and
//! timeouts make the client move on to the next member (`--etcd URL,URL,…`); answers that any
//! member would repeat (permission denied, bad request) do not.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

/// TLS files, as PEM. Without `cacert`, https endpoints are checked against the Mozilla roots.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// An etcd user (etcd's own auth, `etcdctl user add`).
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password: configs end up in panics and debug logs.
        write!(f, "Credentials {{ user: {:?} }}", self.user)
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Client URLs; `host:port` without a scheme means http (https with `--cacert`).
    pub endpoints: Vec<String>,
    pub tls: Tls,
    pub credentials: Option<Credentials>,
    /// The bound on each request (connect + send + answer). A watch stream's body is exempt.
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// This member could not serve the call (down, hung, partitioned, no leader, timed out);
    /// another member may.
    Unavailable(String),
    /// The cluster refused the call; every member would (permission denied, bad request).
    Refused { code: i64, message: String },
    /// A watch asked for history that compaction removed: re-read everything.
    Compacted(i64),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Unavailable(m) => write!(f, "etcd unavailable: {m}"),
            Error::Refused { code, message } => write!(f, "etcd refused (code {code}): {message}"),
            Error::Compacted(r) => write!(f, "etcd history compacted up to revision {r}"),
        }
    }
}

/// gRPC status codes that mean "this member, now" rather than "this request".
const UNAVAILABLE: i64 = 14;
const DEADLINE_EXCEEDED: i64 = 4;
const UNAUTHENTICATED: i64 = 16;

fn from_status(code: i64, message: String) -> Error {
    match code {
        UNAVAILABLE | DEADLINE_EXCEEDED => Error::Unavailable(message),
        _ => Error::Refused { code, message },
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// 0: no lease.
    pub lease: i64,
    pub mod_revision: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The store's revision the range was read at: watch from `revision + 1`.
    pub revision: i64,
    pub kvs: Vec<KeyValue>,
}

/// One operation of a [`Client::txn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        lease: i64,
    },
    Delete {
        key: String,
    },
}

/// Most operations per transaction we send (etcd's default limit is 128).
pub const MAX_TXN_OPS: usize = 100;

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

/// The gateway's JSON for the types above.
mod wire {
    use super::*;

    /// int64 as the gateway writes it (a string), or as a number; absent means 0.
    pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => s.parse().map_err(serde::de::Error::custom),
            Value::Number(n) => n
                .as_i64()
                .ok_or_else(|| serde::de::Error::custom("not an int64")),
            Value::Null => Ok(0),
            other => Err(serde::de::Error::custom(format!("not an int64: {other}"))),
        }
    }

    #[derive(Deserialize, Default)]
    pub struct Header {
        #[serde(default, deserialize_with = "int")]
        pub revision: i64,
    }

    #[derive(Deserialize)]
    pub struct Kv {
        #[serde(default)]
        pub key: String,
        #[serde(default)]
        pub value: String,
        #[serde(default, deserialize_with = "int")]
        pub lease: i64,
        #[serde(default, deserialize_with = "int")]
        pub mod_revision: i64,
    }

    impl Kv {
        pub fn decode(self) -> Result<KeyValue, Error> {
            let key =
                String::from_utf8(unb64(&self.key)?).map_err(|_| bad("a key that is not UTF-8"))?;
            Ok(KeyValue {
                key,
                value: unb64(&self.value)?,
                lease: self.lease,
                mod_revision: self.mod_revision,
            })
        }
    }

    #[derive(Deserialize)]
    pub struct RangeResponse {
        #[serde(default)]
        pub header: Header,
        #[serde(default)]
        pub kvs: Vec<Kv>,
    }

    #[derive(Deserialize)]
    pub struct Revisioned {
        #[serde(default)]
        pub header: Header,
    }

    #[derive(Deserialize)]
    pub struct Lease {
        #[serde(rename = "ID", default, deserialize_with = "int")]
        pub id: i64,
        #[serde(rename = "TTL", default, deserialize_with = "int")]
        pub ttl: i64,
        #[serde(default)]
        pub error: String,
    }

    #[derive(Deserialize)]
    pub struct WatchEvent {
        #[serde(rename = "type", default)]
        pub kind: String,
        pub kv: Kv,
        #[serde(default)]
        pub prev_kv: Option<Kv>,
    }

    #[derive(Deserialize)]
    pub struct Watch {
        #[serde(default)]
        pub header: Header,
        #[serde(default)]
        pub created: bool,
        #[serde(default)]
        pub canceled: bool,
        #[serde(default, deserialize_with = "int")]
        pub compact_revision: i64,
        #[serde(default)]
        pub cancel_reason: String,
        #[serde(default)]
        pub events: Vec<WatchEvent>,
    }

    /// One line of a streaming call: `{"result":{...}}` or `{"error":{...}}`.
    #[derive(Deserialize)]
    pub struct StreamLine<T> {
        pub result: Option<T>,
        pub error: Option<StreamError>,
    }

    #[derive(Deserialize)]
    pub struct StreamError {
        #[serde(default)]
        pub grpc_code: i64,
        #[serde(default)]
        pub message: String,
    }

    /// A unary call's error body.
    #[derive(Deserialize)]
    pub struct UnaryError {
        #[serde(default)]
        pub code: i64,
        #[serde(default)]
        pub message: String,
        #[serde(default)]
        pub error: String,
    }
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn unb64(s: &str) -> Result<Vec<u8>, Error> {
    B64.decode(s).map_err(|e| bad(&format!("bad base64 ({e})")))
}

fn bad(what: &str) -> Error {
    Error::Refused {
        code: -1,
        message: format!("the gateway answered {what}"),
    }
}

fn parse<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
        bad(&format!("unexpected JSON ({e}): {shown}"))
    })
}

/// Reads `--cacert`/`--cert`/`--key` into ureq's TLS config.
fn tls_config(tls: &Tls) -> Result<ureq::tls::TlsConfig, String> {
    use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};
    let read =
        |p: &PathBuf| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let certs = |p: &PathBuf| -> Result<Vec<Certificate<'static>>, String> {
        let pem = read(p)?;
        let mut v = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            // Keys and other items in the file are not certificates: skipped.
            if let PemItem::Certificate(c) = item.map_err(|e| format!("{}: {e}", p.display()))? {
                v.push(c);
            }
        }
        if v.is_empty() {
            return Err(format!("{}: no PEM certificate in it", p.display()));
        }
        Ok(v)
    };
    let mut b = TlsConfig::builder();
    if let Some(ca) = &tls.cacert {
        b = b.root_certs(RootCerts::new_with_certs(&certs(ca)?));
    }
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let k = PrivateKey::from_pem(&read(key)?)
                .map_err(|e| format!("{}: no usable PEM private key ({e})", key.display()))?;
            b = b.client_cert(Some(ClientCert::new_with_certs(&certs(cert)?, k)));
        }
        (None, None) => {}
        _ => return Err("--cert and --key go together".into()),
    }
    Ok(b.build())
}

/// `host:port` → `http://host:port` (https when a CA is given); trailing `/` dropped.
fn normalize(url: &str, tls: bool) -> String {
    let url = url.trim().trim_end_matches('/');
    if url.contains("://") {
        url.to_owned()
    } else if tls {
        format!("https://{url}")
    } else {
        format!("http://{url}")
    }
}

pub struct Client {
    /// Every request bounded by `timeout` as a whole.
    unary: ureq::Agent,
    /// Watch streams: connect and the first answer bounded, the endless body not.
    stream: ureq::Agent,
    endpoints: Vec<String>,
    current: usize,
    credentials: Option<Credentials>,
    token: Option<String>,
}

/// A ureq agent that speaks to etcd members with `tls` and answers non-2xx statuses as
/// responses (the gateway's error bodies say more than the status). `whole` bounds a request
/// from start to end; `first` bounds connecting and the wait for the response head.
pub fn http_agent(
    tls: &Tls,
    whole: Option<Duration>,
    first: Duration,
) -> Result<ureq::Agent, String> {
    Ok(ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls_config(tls)?)
        .timeout_global(whole)
        .timeout_connect(Some(first))
        .timeout_recv_response(Some(first))
        // ureq's default is 128 KiB each way per connection; etcd's headers are small and
        // bodies stream through. The bridge's memory limit (8 MiB at 1000 agents) notices.
        .input_buffer_size(16 * 1024)
        .output_buffer_size(16 * 1024)
        .max_idle_connections_per_host(2)
        .build()
        .into())
}

impl Client {
    pub fn new(cfg: &Config) -> Result<Client, String> {
        if cfg.endpoints.is_empty() {
            return Err("no etcd endpoint given".into());
        }
        let with_tls = cfg.tls.cacert.is_some();
        Ok(Client {
            unary: http_agent(&cfg.tls, Some(cfg.timeout), cfg.timeout)?,
            stream: http_agent(&cfg.tls, None, cfg.timeout)?,
            endpoints: cfg
                .endpoints
                .iter()
                .map(|e| normalize(e, with_tls))
                .collect(),
            current: 0,
            credentials: cfg.credentials.clone(),
            token: None,
        })
    }

    /// The member calls go to now.
    pub fn member(&self) -> &str {
        &self.endpoints[self.current]
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Moves on to the next member (the current one failed, or a caller saw it hang).
    pub fn rotate(&mut self) {
        self.current = (self.current + 1) % self.endpoints.len();
    }

    fn request(
        &self,
        agent: &ureq::Agent,
        path: &str,
    ) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        let mut req = agent
            .post(format!("{}{path}", self.member()))
            .header("Content-Type", "application/json")
            .header("Grpc-Metadata-Hasleader", "true");
        if let Some(t) = &self.token {
            // The gateway passes `Authorization` on as the metadata etcd takes its token from.
            req = req.header("Authorization", t);
        }
        req
    }

    /// One unary call to the current member.
    fn post_once(&self, path: &str, body: &Value) -> Result<Vec<u8>, Error> {
        let resp = self
            .request(&self.unary, path)
            .send(body.to_string())
            .map_err(|e| Error::Unavailable(format!("{}: {e}", self.member())))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .with_config()
            .limit(256 << 20)
            .read_to_vec()
            .map_err(|e| Error::Unavailable(format!("{}: {e}", self.member())))?;
        if status == 200 {
            return Ok(bytes);
        }
        let e: wire::UnaryError = serde_json::from_slice(&bytes).map_err(|_| {
            Error::Unavailable(format!(
                "{}: HTTP {status}: {}",
                self.member(),
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ))
        })?;
        let message = if e.message.is_empty() {
            e.error
        } else {
            e.message
        };
        Err(from_status(e.code, message))
    }

    fn authenticate(&mut self) -> Result<(), Error> {
        let Some(c) = &self.credentials else {
            return Ok(());
        };
        #[derive(Deserialize)]
        struct Token {
            token: String,
        }
        let body = json!({"name": c.user, "password": c.password});
        self.token = None;
        let t: Token = parse(&self.post_once("/v3/auth/authenticate", &body)?)?;
        self.token = Some(t.token);
        Ok(())
    }

    /// A unary call on the current member, then on each other one while members are
    /// unavailable. Logs in first (and again when etcd says the token has expired).
    pub fn call(&mut self, path: &str, body: &Value) -> Result<Vec<u8>, Error> {
        let mut last = None;
        for _ in 0..self.endpoints.len() {
            match self.call_here(path, body) {
                Err(e @ Error::Unavailable(_)) => {
                    last = Some(e);
                    self.rotate();
                }
                other => return other,
            }
        }
        Err(last.expect("at least one endpoint"))
    }

    fn call_here(&mut self, path: &str, body: &Value) -> Result<Vec<u8>, Error> {
        if self.credentials.is_some() && self.token.is_none() {
            self.authenticate()?;
        }
        match self.post_once(path, body) {
            Err(Error::Refused {
                code: UNAUTHENTICATED,
                ..
            }) if self.credentials.is_some() => {
                self.authenticate()?;
                self.post_once(path, body)
            }
            other => other,
        }
    }

    /// Keys from `key` to `range_end` (just `key` without one), at `revision` (0: latest).
    pub fn range(
        &mut self,
        key: &[u8],
        range_end: Option<&[u8]>,
        revision: i64,
    ) -> Result<Range, Error> {
        self.range_with(key, range_end, revision, false)
    }

    /// [`Client::range`], with `keys_only` leaving the values out (empty).
    pub fn range_with(
        &mut self,
        key: &[u8],
        range_end: Option<&[u8]>,
        revision: i64,
        keys_only: bool,
    ) -> Result<Range, Error> {
        let mut body = json!({
            "key": b64(key),
            "revision": revision.to_string(),
            "keys_only": keys_only,
        });
        if let Some(end) = range_end {
            body["range_end"] = b64(end).into();
        }
        let r: wire::RangeResponse = parse(&self.call("/v3/kv/range", &body)?)?;
        Ok(Range {
            revision: r.header.revision,
            kvs: r
                .kvs
                .into_iter()
                .map(wire::Kv::decode)
                .collect::<Result<_, _>>()?,
        })
    }

    /// Puts `value` (attached to `lease` unless 0); returns the new revision.
    pub fn put(&mut self, key: &[u8], value: &[u8], lease: i64) -> Result<i64, Error> {
        let mut body = json!({"key": b64(key), "value": b64(value)});
        if lease != 0 {
            body["lease"] = lease.to_string().into();
        }
        let r: wire::Revisioned = parse(&self.call("/v3/kv/put", &body)?)?;
        Ok(r.header.revision)
    }

    /// Deletes `key` (to `range_end` when given); returns the revision after it.
    pub fn delete(&mut self, key: &[u8], range_end: Option<&[u8]>) -> Result<i64, Error> {
        let mut body = json!({"key": b64(key)});
        if let Some(end) = range_end {
            body["range_end"] = b64(end).into();
        }
        let r: wire::Revisioned = parse(&self.call("/v3/kv/deleterange", &body)?)?;
        Ok(r.header.revision)
    }

    /// Applies `ops` atomically in one request (a transaction without conditions); returns
    /// the revision after it. etcd allows 128 operations per transaction by default
    /// (`--max-txn-ops`): callers batch below that.
    pub fn txn(&mut self, ops: &[Op]) -> Result<i64, Error> {
        let ops: Vec<Value> = ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, lease } => {
                    let mut put = json!({"key": b64(key.as_bytes()), "value": b64(value)});
                    if *lease != 0 {
                        put["lease"] = lease.to_string().into();
                    }
                    json!({ "request_put": put })
                }
                Op::Delete { key } => {
                    json!({"request_delete_range": {"key": b64(key.as_bytes())}})
                }
            })
            .collect();
        let r: wire::Revisioned = parse(&self.call("/v3/kv/txn", &json!({ "success": ops }))?)?;
        Ok(r.header.revision)
    }

    /// A new lease of `ttl` seconds; returns its ID.
    pub fn grant(&mut self, ttl: i64) -> Result<i64, Error> {
        let l: wire::Lease =
            parse(&self.call("/v3/lease/grant", &json!({"TTL": ttl.to_string()}))?)?;
        if !l.error.is_empty() || l.id == 0 {
            return Err(Error::Refused {
                code: -1,
                message: format!("lease grant: {}", l.error),
            });
        }
        Ok(l.id)
    }

    /// Renews `lease`; returns its TTL, 0 when etcd no longer has it (it expired).
    /// `lease/keepalive` is a stream on the gateway: one request in, one answer out, then the
    /// server ends it.
    pub fn keepalive(&mut self, lease: i64) -> Result<i64, Error> {
        let bytes = self.call("/v3/lease/keepalive", &json!({"ID": lease.to_string()}))?;
        let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
        let line: wire::StreamLine<wire::Lease> = parse(first)?;
        match (line.result, line.error) {
            (_, Some(e)) => Err(from_status(e.grpc_code, e.message)),
            (Some(l), None) => Ok(l.ttl),
            (None, None) => Err(bad("an empty keepalive answer")),
        }
    }

    pub fn revoke(&mut self, lease: i64) -> Result<(), Error> {
        self.call("/v3/lease/revoke", &json!({"ID": lease.to_string()}))
            .map(drop)
    }

    /// Watches `key`..`range_end` from `start_revision` (with each event's previous value),
    /// on the current member, then each other one while members are unavailable.
    pub fn watch(
        &mut self,
        key: &[u8],
        range_end: &[u8],
        start_revision: i64,
    ) -> Result<Watch, Error> {
        let body = json!({"create_request": {
            "key": b64(key),
            "range_end": b64(range_end),
            "start_revision": start_revision.to_string(),
            "prev_kv": true,
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
        let line: wire::StreamLine<wire::Watch> = parse(&self.buf)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_json_decodes() {
        let line = br#"{"result":{"header":{"revision":"4"},"events":[{"type":"DELETE","kv":{"key":"Zm9v","mod_revision":"4"},"prev_kv":{"key":"Zm9v","value":"YmF6","lease":"7"}}]}}"#;
        let l: wire::StreamLine<wire::Watch> = parse(line).unwrap();
        let w = l.result.unwrap();
        assert_eq!(w.header.revision, 4);
        let e = w.events.into_iter().next().unwrap();
        assert_eq!(e.kind, "DELETE");
        let prev = e.prev_kv.unwrap().decode().unwrap();
        assert_eq!(
            (prev.key.as_str(), prev.value.as_slice(), prev.lease),
            ("foo", &b"baz"[..], 7)
        );
        let err = br#"{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}"#;
        let l: wire::StreamLine<wire::Watch> = parse(err).unwrap();
        let e = l.error.unwrap();
        assert!(matches!(
            from_status(e.grpc_code, e.message),
            Error::Unavailable(_)
        ));
        // A keepalive for a lease etcd no longer has: no TTL at all.
        let gone = br#"{"result":{"header":{"revision":"2"},"ID":"12345"}}"#;
        let l: wire::StreamLine<wire::Lease> = parse(gone).unwrap();
        assert_eq!(l.result.unwrap().ttl, 0);
    }

    #[test]
    fn endpoints_normalize() {
        assert_eq!(normalize("127.0.0.1:2379", false), "http://127.0.0.1:2379");
        assert_eq!(normalize("10.0.0.1:2379/", true), "https://10.0.0.1:2379");
        assert_eq!(normalize("https://e:1", false), "https://e:1");
    }

    #[test]
    fn passwords_stay_out_of_debug() {
        let c = Credentials {
            user: "h1".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
