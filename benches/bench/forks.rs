//! Fork counting: the kernel's process-events connector (exact: every fork whose parent is the
//! watcher or one of its descendants), else the system-wide `processes` counter (an upper bound
//! that includes whatever else runs on the machine).

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::procs::{Proc, proc_value};
use crate::results::Results;

const PROC_EVENT_FORK: u32 = 1;

#[derive(Default)]
pub struct ForkState {
    tracked: HashSet<u32>,
    count: u64,
    lost: bool,
}

pub enum ForkCounter {
    Connector(Arc<Mutex<ForkState>>),
    System,
}

pub struct ForkWindow {
    system_start: Option<u64>,
}

fn rd32(b: &[u8], o: usize) -> u32 {
    u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}

fn connector_socket() -> io::Result<OwnedFd> {
    #[repr(C)]
    struct SockaddrNl {
        family: u16,
        pad: u16,
        pid: u32,
        groups: u32,
    }
    const NETLINK_CONNECTOR: i32 = 11;
    const CN_IDX_PROC: u32 = 1;
    const CN_VAL_PROC: u32 = 1;
    const SO_RCVBUFFORCE: i32 = 33;
    const NLMSG_DONE: u16 = 3;
    const PROC_CN_MCAST_LISTEN: u32 = 1;
    // SAFETY: plain socket calls on an fd we own; every pointer passed points at a live local
    // of the size passed with it.
    unsafe {
        let raw = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_CONNECTOR,
        );
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(raw);
        let size: libc::c_int = 16 << 20;
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            SO_RCVBUFFORCE,
            (&raw const size).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
        let addr = SockaddrNl {
            family: libc::AF_NETLINK as u16,
            pad: 0,
            pid: 0,
            groups: CN_IDX_PROC,
        };
        if libc::bind(
            raw,
            (&raw const addr).cast(),
            size_of::<SockaddrNl>() as libc::socklen_t,
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
        let mut msg = [0u8; 40];
        msg[0..4].copy_from_slice(&40u32.to_ne_bytes());
        msg[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        msg[12..16].copy_from_slice(&std::process::id().to_ne_bytes());
        msg[16..20].copy_from_slice(&CN_IDX_PROC.to_ne_bytes());
        msg[20..24].copy_from_slice(&CN_VAL_PROC.to_ne_bytes());
        msg[32..34].copy_from_slice(&4u16.to_ne_bytes());
        msg[36..40].copy_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
        if libc::send(raw, msg.as_ptr().cast(), msg.len(), 0) != 40 {
            return Err(io::Error::last_os_error());
        }
        Ok(fd)
    }
}

fn connector_loop(fd: OwnedFd, state: Arc<Mutex<ForkState>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: recv writes at most buf.len() bytes into buf.
        let n = unsafe {
            libc::recv(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ENOBUFS) => {
                    state.lock().unwrap().lost = true;
                    continue;
                }
                _ => return,
            }
        }
        let n = n as usize;
        let mut off = 0;
        while off + 16 <= n {
            let len = rd32(&buf, off) as usize;
            if len < 16 || off + len > n {
                break;
            }
            // nlmsghdr (16) + cn_msg (20) + proc_event {what, cpu, timestamp_ns, fork data}.
            if len >= 36 + 32 && rd32(&buf, off + 36) == PROC_EVENT_FORK {
                let parent_tgid = rd32(&buf, off + 56);
                let child_pid = rd32(&buf, off + 60);
                let child_tgid = rd32(&buf, off + 64);
                // Threads (child_pid != child_tgid) are not forks.
                if child_pid == child_tgid {
                    let mut st = state.lock().unwrap();
                    if st.tracked.contains(&parent_tgid) {
                        st.count += 1;
                        st.tracked.insert(child_tgid);
                    }
                }
            }
            off += (len + 3) & !3;
        }
    }
}

impl ForkCounter {
    pub fn new(log: &fs::File, results: &mut Results) -> ForkCounter {
        let fd = match connector_socket() {
            Ok(fd) => fd,
            Err(e) => {
                results.note(format!(
                    "forks: the proc connector is unavailable ({e}); counting system-wide forks \
                     instead (an upper bound: other work on the machine counts too)"
                ));
                return ForkCounter::System;
            }
        };
        let state = Arc::new(Mutex::new(ForkState::default()));
        let s2 = Arc::clone(&state);
        std::thread::spawn(move || connector_loop(fd, s2));
        // Self-test: our own spawn must be seen.
        let c = ForkCounter::Connector(state);
        let w = c.start(std::process::id());
        let ok = Proc::spawn(&mut Command::new("true"), log)
            .map(|mut p| p.wait_exit(Duration::from_secs(5)))
            .is_ok();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut seen = 0;
        while ok && Instant::now() < deadline {
            seen = c.stop(&w).0;
            if seen > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if seen == 0 {
            results.note(
                "forks: the proc connector delivered no fork event in its self-test; counting \
                 system-wide forks instead (an upper bound)"
                    .into(),
            );
            return ForkCounter::System;
        }
        c
    }

    pub fn exact(&self) -> bool {
        matches!(self, ForkCounter::Connector(_))
    }

    pub fn start(&self, pid: u32) -> ForkWindow {
        match self {
            ForkCounter::Connector(st) => {
                let mut st = st.lock().unwrap();
                st.tracked.clear();
                st.tracked.insert(pid);
                st.count = 0;
                st.lost = false;
                ForkWindow { system_start: None }
            }
            ForkCounter::System => ForkWindow {
                system_start: system_forks(),
            },
        }
    }

    /// Forks since `start`, and whether events were lost (the count is then a lower bound).
    pub fn stop(&self, w: &ForkWindow) -> (u64, bool) {
        match self {
            ForkCounter::Connector(st) => {
                let st = st.lock().unwrap();
                (st.count, st.lost)
            }
            ForkCounter::System => {
                let now = system_forks().unwrap_or(0);
                (now.saturating_sub(w.system_start.unwrap_or(now)), false)
            }
        }
    }
}

fn system_forks() -> Option<u64> {
    proc_value("/proc/stat", "processes ")
}
