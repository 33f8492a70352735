//! A periodic timerfd: the kernel re-arms it on a fixed grid, so beats never drift however
//! long the watcher runs or however late a wakeup is served.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};

pub struct Timer {
    fd: OwnedFd,
}

pub fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: d.as_secs() as _,
        tv_nsec: d.subsec_nanos() as _,
    }
}

impl Timer {
    /// Fires every `period`, first one `period` from now.
    pub fn periodic(period: Duration) -> io::Result<Timer> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        let spec = Itimerspec {
            it_interval: timespec(period),
            it_value: timespec(period),
        };
        timerfd_settime(&fd, TimerfdTimerFlags::empty(), &spec)?;
        Ok(Timer { fd })
    }

    /// Consumes the expirations (mio is edge-triggered: an undrained timerfd never fires
    /// again). Returns how many periods passed; more than 1 means we were late.
    pub fn drain(&self) -> u64 {
        let mut buf = [0u8; 8];
        match rustix::io::read(&self.fd, &mut buf) {
            Ok(8) => u64::from_ne_bytes(buf),
            _ => 0,
        }
    }
}

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
