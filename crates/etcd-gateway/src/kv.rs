//! Keys and values: range, put, delete, and transactions of those.

use serde_json::{Value, json};

use super::wire::{self, b64, parse};
use super::{Client, Error};

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
    /// Reads `key` (in a transaction: its value, as of the transaction, in [`TxnResponse`]).
    Get {
        key: String,
    },
}

/// A condition of [`Client::txn_if`], on one key. A key that does not exist has every
/// revision and its lease equal to 0 (etcd compares it as an empty key-value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The revision that created the key (0: the key does not exist).
    CreateRevision { key: String, revision: i64 },
    /// The revision of the key's last change (0: the key does not exist).
    ModRevision { key: String, revision: i64 },
    /// The lease the key is attached to (0: none, or no key).
    Lease { key: String, lease: i64 },
}

/// The answer to [`Client::txn_if`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether every comparison held (the success branch ran) or not (the failure branch).
    pub succeeded: bool,
    /// The store's revision after the transaction (unchanged if it wrote nothing).
    pub revision: i64,
    /// For each [`Op::Get`] of the branch that ran, in order: the key-value, if it exists.
    pub gets: Vec<Option<KeyValue>>,
}

/// Most operations per transaction we send (etcd's default limit is 128).
pub const MAX_TXN_OPS: usize = 100;

impl Client {
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
        self.txn_if(&[], ops, &[]).map(|r| r.revision)
    }

    /// A transaction: if every comparison in `compare` holds, `success` is applied, else
    /// `failure`, atomically, at one revision. A transaction that puts the same key it
    /// compares by revision commits at most once however often it is sent: once it has
    /// committed, the comparison no longer holds.
    pub fn txn_if(
        &mut self,
        compare: &[Compare],
        success: &[Op],
        failure: &[Op],
    ) -> Result<TxnResponse, Error> {
        let body = json!({
            "compare": compare.iter().map(compare_json).collect::<Vec<_>>(),
            "success": success.iter().map(op_json).collect::<Vec<_>>(),
            "failure": failure.iter().map(op_json).collect::<Vec<_>>(),
        });
        let r: wire::TxnResponse = parse(&self.call("/v3/kv/txn", &body)?)?;
        let mut gets = Vec::new();
        for resp in r.responses {
            if let Some(range) = resp.response_range {
                let kv = range.kvs.into_iter().next().map(wire::Kv::decode);
                gets.push(kv.transpose()?);
            }
        }
        Ok(TxnResponse {
            succeeded: r.succeeded,
            revision: r.header.revision,
            gets,
        })
    }
}

fn op_json(op: &Op) -> Value {
    match op {
        Op::Put { key, value, lease } => {
            let mut put = json!({"key": b64(key.as_bytes()), "value": b64(value)});
            if *lease != 0 {
                put["lease"] = lease.to_string().into();
            }
            json!({ "request_put": put })
        }
        Op::Delete { key } => json!({"request_delete_range": {"key": b64(key.as_bytes())}}),
        Op::Get { key } => json!({"request_range": {"key": b64(key.as_bytes())}}),
    }
}

fn compare_json(c: &Compare) -> Value {
    let (key, target, field, v) = match c {
        Compare::CreateRevision { key, revision } => (key, "CREATE", "create_revision", revision),
        Compare::ModRevision { key, revision } => (key, "MOD", "mod_revision", revision),
        Compare::Lease { key, lease } => (key, "LEASE", "lease", lease),
    };
    let mut c = json!({"key": b64(key.as_bytes()), "target": target, "result": "EQUAL"});
    c[field] = v.to_string().into();
    c
}

/// etcd's `range_end` for "every key starting with `prefix`": the prefix with its last byte
/// that is not 0xff incremented (what `etcdctl --prefix` sends).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): to the end of the keyspace.
    vec![0]
}

#[cfg(test)]
mod prefix_tests {
    use super::prefix_end;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/pidbeat/"), b"/pidbeat0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
    }
}
