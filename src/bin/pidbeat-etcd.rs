//! The etcd commands of pidbeat (`publish`, `ps --etcd`, `wait --etcd`), which `pidbeat`
//! execs; see `pidbeat::etcd_main`.
fn main() {
    std::process::exit(pidbeat::etcd_main());
}
