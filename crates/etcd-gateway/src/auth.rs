//! etcd's own auth: a user and password, exchanged for a token the client sends with each
//! call (and exchanges again when etcd says it has expired).

use serde::Deserialize;
use serde_json::json;

use super::wire::parse;
use super::{Client, Error};

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

impl Client {
    pub(super) fn authenticate(&mut self) -> Result<(), Error> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_debug() {
        let c = Credentials {
            user: "h1".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
