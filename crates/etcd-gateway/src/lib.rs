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

mod auth;
mod kv;
mod lease;
mod tls;
mod watch;
mod wire;

use std::time::Duration;

use serde_json::Value;

use tls::tls_config;

pub use auth::Credentials;
pub use kv::{Compare, KeyValue, MAX_TXN_OPS, Op, Range, TxnResponse, prefix_end};
pub use tls::Tls;
pub use watch::{Event, EventKind, WatchResponse};

#[derive(Debug, Clone)]
pub struct Config {
    /// Client URLs; `host:port` without a scheme means http (https with `--cacert`).
    pub endpoints: Vec<String>,
    pub tls: Tls,
    pub credentials: Option<Credentials>,
    /// The bound on each request (connect + send + answer) until [`Client::set_timeout`]
    /// changes it. A watch stream's body is exempt.
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
    /// The bound on each unary request.
    timeout: Duration,
    /// How long the last unary call that etcd answered took, from send to the whole answer.
    last_round_trip: std::cell::Cell<Option<Duration>>,
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
            timeout: cfg.timeout,
            last_round_trip: std::cell::Cell::new(None),
        })
    }

    /// The member calls go to now.
    pub fn member(&self) -> &str {
        &self.endpoints[self.current]
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Bounds each unary request from now on (a caller that measures the link sets it from
    /// the round trips it sees).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How long the last unary call that a member answered took (an error answer counts: it
    /// crossed the link too); `None` before the first. Taken, so that each answer is counted
    /// once.
    pub fn take_round_trip(&self) -> Option<Duration> {
        self.last_round_trip.take()
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
        let t = self.timeout;
        let sent = std::time::Instant::now();
        let resp = self
            .request(&self.unary, path)
            .config()
            .timeout_global(Some(t))
            .timeout_connect(Some(t))
            .timeout_recv_response(Some(t))
            .build()
            .send(body.to_string())
            .map_err(|e| Error::Unavailable(format!("{}: {e}", self.member())))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .with_config()
            .limit(256 << 20)
            .read_to_vec()
            .map_err(|e| Error::Unavailable(format!("{}: {e}", self.member())))?;
        self.last_round_trip.set(Some(sent.elapsed()));
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_normalize() {
        assert_eq!(normalize("127.0.0.1:2379", false), "http://127.0.0.1:2379");
        assert_eq!(normalize("10.0.0.1:2379/", true), "https://10.0.0.1:2379");
        assert_eq!(normalize("https://e:1", false), "https://e:1");
    }
}
