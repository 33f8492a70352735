//! The key layout as DESIGN.md states it ("Multi-host"), written out by the tests themselves so
//! they check the contract rather than reuse the code under test.

pub use etcd_gateway::prefix_end;

pub fn host_prefix(host: &str) -> String {
    format!("/pidbeat/{host}/")
}

pub fn agent_key(host: &str, agent: &str) -> String {
    format!("/pidbeat/{host}/{agent}")
}

pub fn bridge_key(host: &str) -> String {
    format!("/pidbeat/{host}/.bridge")
}
