//! Every `unsafe` block of pidbeat lives here, each with the reason it is sound. The crate
//! denies `unsafe_code`; this module alone allows it.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

use rustix::io::Errno;

/// What PIDFD_GET_INFO can say about a process's exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PidfdExit {
    /// The raw wait status.
    Status(i32),
    /// The ioctl answered without the EXIT bit: on 6.15+ the process is not reaped yet; on
    /// 6.13–6.14 the kernel never sets it (the caller tells them apart by version).
    NotYet,
    /// No answer: before 6.13 there is no such ioctl (ENOTTY/EINVAL); on 6.13–6.14 a reaped
    /// process has no info left (ESRCH).
    Unsupported,
}

/// Asks the kernel for the exit status behind a pidfd (PIDFD_GET_INFO, PIDFD_INFO_EXIT;
/// Linux 6.15+). rustix has no wrapper for this ioctl.
pub fn pidfd_exit(fd: BorrowedFd<'_>) -> PidfdExit {
    // SAFETY: `pidfd_info` is plain old data, so an all-zero value is valid; it is
    // `#[non_exhaustive]`, hence zeroed() rather than a struct literal.
    let mut info: libc::pidfd_info = unsafe { std::mem::zeroed() };
    info.mask = libc::PIDFD_INFO_EXIT as u64;
    // SAFETY: PIDFD_GET_INFO reads and writes exactly one `pidfd_info` (its size is encoded
    // in the request number), and `info` is a live, exclusively borrowed one. A non-pidfd or
    // an old kernel fails with an errno; nothing else is touched.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::PIDFD_GET_INFO, &mut info) };
    if rc != 0 {
        return PidfdExit::Unsupported;
    }
    if info.mask & libc::PIDFD_INFO_EXIT as u64 != 0 {
        PidfdExit::Status(info.exit_code)
    } else {
        PidfdExit::NotYet
    }
}

pub enum Fork {
    Parent(i32),
    Child,
}

/// fork(2). rustix exposes no safe fork.
///
/// Callers must be single-threaded: pidbeat forks only in `--detach`, before it has started
/// any thread (signal-hook-mio and mio start none).
pub fn fork() -> Result<Fork, Errno> {
    // SAFETY: the process is single-threaded at this point (see above), so the child gets a
    // consistent copy of every lock and allocator state and may keep running Rust code.
    match unsafe { libc::fork() } {
        -1 => Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        )),
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent(pid)),
    }
}

/// Closes every descriptor from 3 up except `keep`: a daemon must not pin the caller's pipes,
/// sockets or ttys for its whole life. Only for the `--detach` child right after fork, when
/// nothing but `keep` has been opened by pidbeat itself.
pub fn close_inherited_fds(keep: BorrowedFd<'_>) {
    let keep = keep.as_raw_fd() as libc::c_uint;
    // SAFETY: close_range only closes descriptors. Right after fork no Rust object of ours
    // owns any descriptor >= 3 but `keep`, which is spared, so no OwnedFd is left dangling.
    // On kernels before 5.9 it fails with ENOSYS and the fds simply stay open.
    unsafe {
        if keep > 3 {
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                keep - 1,
                0 as libc::c_uint,
            );
        }
        libc::syscall(
            libc::SYS_close_range,
            keep + 1,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        );
    }
}

/// Gives the heap's free pages back to the kernel (glibc's `malloc_trim`; elsewhere nothing).
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only walks glibc's own free lists; it is
    // thread-safe (it takes the arenas' locks).
    unsafe {
        libc::malloc_trim(0);
    }
}
