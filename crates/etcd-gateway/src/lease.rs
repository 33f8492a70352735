//! Leases: grant, keepalive, revoke.

use serde_json::json;

use super::wire::{self, bad, parse};
use super::{Client, Error, from_status};

impl Client {
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

    /// The seconds `lease` has left, -1 when etcd no longer has it. etcd rounds down to
    /// whole seconds.
    pub fn time_to_live(&mut self, lease: i64) -> Result<i64, Error> {
        let l: wire::Lease =
            parse(&self.call("/v3/lease/timetolive", &json!({"ID": lease.to_string()}))?)?;
        Ok(l.ttl)
    }

    pub fn revoke(&mut self, lease: i64) -> Result<(), Error> {
        self.call("/v3/lease/revoke", &json!({"ID": lease.to_string()}))
            .map(drop)
    }
}
