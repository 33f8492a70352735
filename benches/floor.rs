//! The floor of the benchmark: the least code that turns a process's death into a record a
//! reader can see. pidfd_open + epoll_wait + one write and rename, nothing else: no clap, no
//! serde, no lock, no fsync, no exit status.
//!
//! `benches/bench/` runs it as `floor PID RUN_DIR AGENT [INTERVAL_SECS]`. It writes one
//! `alive` record once the pidfd is in the epoll set (so the reader knows it is watching), then
//! the `dead` record when the pidfd turns readable, and exits 20 ms later. With INTERVAL_SECS it
//! also beats: a periodic timerfd in the same epoll set rewrites the `alive` record (with
//! `seq`), the least a heartbeat can cost, for the cost-per-beat comparison. `cargo bench` also
//! runs every bench target with `--bench`: without its arguments the floor does nothing.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::event::epoll;
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, pidfd_open};
use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (pid, dir, agent, interval) = match &args[..] {
        [p, d, a] => (p, d, a, None),
        [p, d, a, i] => (
            p,
            d,
            a,
            Some(i.parse::<f64>().expect("interval in seconds")),
        ),
        _ => return,
    };
    let pid: i32 = pid.parse().expect("PID is a number");
    let pidfd =
        pidfd_open(Pid::from_raw(pid).expect("PID > 0"), PidfdFlags::empty()).expect("pidfd_open");
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).expect("epoll_create1");
    let add = |fd: BorrowedFd<'_>, token| {
        epoll::add(
            &ep,
            fd,
            epoll::EventData::new_u64(token),
            epoll::EventFlags::IN,
        )
        .expect("epoll_ctl")
    };
    add(pidfd.as_fd(), 0);
    let timer = interval.map(|secs| {
        let t = timerfd_create(TimerfdClockId::Monotonic, TimerfdFlags::CLOEXEC)
            .expect("timerfd_create");
        let d = Duration::from_secs_f64(secs);
        let ts = Timespec {
            tv_sec: d.as_secs() as _,
            tv_nsec: d.subsec_nanos() as _,
        };
        let spec = Itimerspec {
            it_interval: ts,
            it_value: ts,
        };
        timerfd_settime(&t, TimerfdTimerFlags::empty(), &spec).expect("timerfd_settime");
        add(t.as_fd(), 1);
        t
    });
    let mut seq = 1;
    record(dir, agent, pid, "alive", seq);
    let mut events = [MaybeUninit::<epoll::Event>::uninit(); 2];
    loop {
        let ready = match epoll::wait(&ep, &mut events, None) {
            Ok((ready, _)) => ready,
            Err(Errno::INTR) => continue,
            Err(e) => panic!("epoll_wait: {e}"),
        };
        if ready.iter().any(|e| e.data.u64() == 0) {
            break;
        }
        if let Some(t) = &timer {
            let mut buf = [0u8; 8];
            let _ = rustix::io::read(t, &mut buf);
            seq += 1;
            record(dir, agent, pid, "alive", seq);
        }
    }
    record(dir, agent, pid, "dead", seq + 1);
    // Linger a moment instead of exiting at once: exiting right after the rename made the
    // reader ~0.1 ms slower at p50 on this 2-core VM (the teardown competes with the woken
    // reader, likely on the same CPU), while pidbeat's dead path goes on to fsync and wait.
    std::thread::sleep(Duration::from_millis(20));
}

/// One write of a temp file in the run dir, then rename over the record.
fn record(dir: &str, agent: &str, pid: i32, status: &str, seq: u64) {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let tmp = format!("{dir}/.{agent}.hb.floor.tmp");
    let line = format!(
        "{{\"ts\":{},\"pid\":{pid},\"status\":\"{status}\",\"ts_ms\":{ms},\"seq\":{seq}}}\n",
        ms / 1000
    );
    std::fs::write(&tmp, line).expect("write temp record");
    std::fs::rename(&tmp, format!("{dir}/{agent}.hb")).expect("rename record");
}
