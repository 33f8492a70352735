//! The etcd side of the command line: `publish`, and `--etcd` on `ps` and `wait`, which then
//! read the fleet in etcd instead of the run dir (README, "Multi-host").

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::RunDirArg;
use super::values::ValueError;
use crate::cluster::PublishConfig;
use crate::cluster::remote::Name;
use crate::exitcode::{Error, Result, runtime};
use etcd_gateway::{Config as EtcdConfig, Credentials, Tls};

/// Where a reader reads: the run dir, or etcd (`--etcd`).
#[derive(Debug)]
pub enum Source<L, R> {
    Local(L),
    Etcd(R),
}

const READER_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// `ps`/`wait` agents: HOST/AGENT exactly when reading from etcd.
fn check_names(agents: Vec<String>, etcd: bool) -> Result<Vec<String>> {
    if let Some(a) = agents.iter().find(|a| a.contains('/') != etcd) {
        return Err(Error::Usage(if etcd {
            format!("`{a}`: with --etcd, name agents as HOST/AGENT")
        } else {
            format!("`{a}`: HOST/AGENT names an agent in etcd; add --etcd URLS")
        }));
    }
    Ok(agents)
}

fn host_agents(agents: Vec<String>) -> Vec<Name> {
    agents
        .iter()
        .filter_map(|a| crate::cluster::keys::parse_host_agent(a).ok())
        .collect()
}

/// Where etcd is and how to log in: `publish`, `ps --etcd`, `wait --etcd`.
#[derive(Args, Debug, Clone, Default)]
pub struct EtcdArgs {
    /// etcd client URLs, comma-separated (http://10.0.0.1:2379,…), tried in turn: `publish` writes there; `ps` and `wait` read the fleet from there instead of the run dir
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// CA certificate (PEM) that signed the etcd members' certificates
    #[arg(long, value_name = "FILE", requires = "etcd")]
    pub cacert: Option<PathBuf>,
    /// Client certificate (PEM), with --key
    #[arg(long, value_name = "FILE", requires_all = ["etcd", "key"])]
    pub cert: Option<PathBuf>,
    /// Client private key (PEM), with --cert
    #[arg(long, value_name = "FILE", requires_all = ["etcd", "cert"])]
    pub key: Option<PathBuf>,
    /// etcd user; the password comes from --password-file or $PIDBEAT_ETCD_PASSWORD, never from the command line
    #[arg(long, value_name = "NAME", requires = "etcd")]
    pub user: Option<String>,
    /// File holding the etcd user's password (one line)
    #[arg(long, value_name = "FILE", requires = "user")]
    pub password_file: Option<PathBuf>,
}

const PASSWORD_ENV: &str = "PIDBEAT_ETCD_PASSWORD";

/// What an etcd reader needs from the command line: the client and the HOST/AGENT names.
pub(super) type EtcdReader = (EtcdConfig, Vec<Name>);

impl EtcdArgs {
    /// A reader's source: without `--etcd` its AGENT names (checked: no HOST/AGENT); with
    /// it the client config and the HOST/AGENT names (and no `--run-dir`).
    pub(super) fn split(
        etcd: &mut EtcdArgs,
        run_dir: &RunDirArg,
        agents: Vec<String>,
    ) -> Result<Source<Vec<String>, EtcdReader>> {
        let Some(client) = std::mem::take(etcd).into_config(READER_REQUEST_TIMEOUT)? else {
            return check_names(agents, false).map(Source::Local);
        };
        if run_dir.run_dir.is_some() {
            return Err(Error::Usage(
                "--run-dir and --etcd: read one or the other".into(),
            ));
        }
        Ok(Source::Etcd((
            client,
            host_agents(check_names(agents, true)?),
        )))
    }

    /// The client configuration, or `None` without `--etcd`. Each request is bounded by
    /// `timeout`. The password is read here: from the file, else the environment (a
    /// set-but-empty variable counts as unset, as everywhere in pidbeat).
    fn into_config(self, timeout: Duration) -> Result<Option<EtcdConfig>> {
        if self.etcd.is_empty() {
            return Ok(None);
        }
        if self.etcd.iter().any(|u| u.trim().is_empty()) {
            return Err(Error::Usage("--etcd: an empty URL in the list".into()));
        }
        let credentials = match self.user {
            None => None,
            Some(user) => {
                let password = match (&self.password_file, std::env::var(PASSWORD_ENV)) {
                    (Some(f), _) => std::fs::read_to_string(f)
                        .map_err(|e| runtime!("cannot read --password-file {}: {e}", f.display()))?
                        .trim_end_matches(['\n', '\r'])
                        .to_owned(),
                    (None, Ok(p)) if !p.is_empty() => p,
                    (None, _) => {
                        return Err(Error::Usage(format!(
                            "--user {user} needs a password: --password-file FILE or \
                             ${PASSWORD_ENV} (never on the command line)"
                        )));
                    }
                };
                Some(Credentials { user, password })
            }
        };
        Ok(Some(EtcdConfig {
            endpoints: self.etcd,
            tls: Tls {
                cacert: self.cacert,
                cert: self.cert,
                key: self.key,
            },
            credentials,
            timeout,
        }))
    }
}

#[derive(Args, Debug)]
pub struct PublishArgs {
    #[command(flatten)]
    pub run_dir: RunDirArg,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// This host's name in etcd (/pidbeat/HOST/…) [default: the kernel's host name]
    #[arg(long, value_name = "HOST", value_parser = parse_host)]
    pub host: Option<String>,
    /// The host's lease: readers call its live agents unreachable this long after the bridge, the host or its network is gone
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_ttl)]
    pub ttl: Duration,
}

impl PublishArgs {
    pub fn into_config(self) -> Result<PublishConfig> {
        let ttl = self.ttl;
        let client = self
            .etcd
            .into_config(crate::cluster::publish::request_timeout(ttl))?
            .ok_or_else(|| Error::Usage("publish needs --etcd URLS".into()))?;
        let host = match self.host {
            Some(h) => h,
            None => {
                let h = rustix::system::uname()
                    .nodename()
                    .to_string_lossy()
                    .into_owned();
                crate::cluster::keys::validate_host(&h).map_err(|e| {
                    Error::Usage(format!(
                        "the kernel's host name cannot name this host in etcd ({e}); give --host"
                    ))
                })?;
                h
            }
        };
        Ok(PublishConfig {
            run_dir: self.run_dir.resolve()?,
            host,
            ttl,
            client,
        })
    }
}

fn parse_host(s: &str) -> std::result::Result<String, ValueError> {
    crate::cluster::keys::validate_host(s)
        .map(|()| s.to_owned())
        .map_err(ValueError::KeyName)
}

/// Whole seconds (etcd leases are), at least 2 (etcd's shortest with default timing).
fn parse_ttl(s: &str) -> std::result::Result<Duration, ValueError> {
    let v: u64 = s
        .trim()
        .parse()
        .map_err(|_| ValueError::TtlNotWhole(s.to_owned()))?;
    if !(2..=86_400).contains(&v) {
        return Err(ValueError::TtlRange(v));
    }
    Ok(Duration::from_secs(v))
}
