//! The gateway's JSON for the client's types, and its base64.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::{Error, KeyValue};

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
pub struct TxnResponse {
    #[serde(default)]
    pub header: Header,
    #[serde(default)]
    pub succeeded: bool,
    #[serde(default)]
    pub responses: Vec<TxnOpResponse>,
}

/// One operation's answer in a transaction; only reads are looked at.
#[derive(Deserialize)]
pub struct TxnOpResponse {
    #[serde(default)]
    pub response_range: Option<RangeResponse>,
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

pub(super) fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

pub(super) fn unb64(s: &str) -> Result<Vec<u8>, Error> {
    B64.decode(s).map_err(|e| bad(&format!("bad base64 ({e})")))
}

pub(super) fn bad(what: &str) -> Error {
    Error::Refused {
        code: -1,
        message: format!("the gateway answered {what}"),
    }
}

pub(super) fn parse<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| {
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
        bad(&format!("unexpected JSON ({e}): {shown}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{from_status, wire};

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
}
