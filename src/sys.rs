//! Every `unsafe` block of pidbeat lives here, each with the reason it is sound. The crate
//! denies `unsafe_code`; this module alone allows it. Two functions have preconditions only
//! their caller can know to hold ([`fork`], [`close_inherited_fds`]): they are `unsafe fn`,
//! and their one caller (`watcher/detach.rs`) allows `unsafe_code` on exactly those calls,
//! each with the reason it upholds them.
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
/// # Safety
///
/// The process must be single-threaded. fork copies only the calling thread: a lock that
/// another thread held (the allocator's, stdio's) would stay locked for good in the child,
/// which goes on running Rust code.
pub unsafe fn fork() -> Result<Fork, Errno> {
    // SAFETY: the caller guarantees a single-threaded process (see `# Safety`), so the child
    // gets a consistent copy of every lock and of the allocator's state.
    match unsafe { libc::fork() } {
        -1 => Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        )),
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent(pid)),
    }
}

/// Closes every descriptor from 3 up except `keep`: a daemon must not pin the caller's pipes,
/// sockets or ttys for its whole life. On kernels before 5.9 close_range fails with ENOSYS,
/// and the descriptors simply stay open.
///
/// # Safety
///
/// No live object may own a descriptor >= 3 other than `keep`. Each would be left holding a
/// closed number that a later open reuses, and would then read, write or close someone
/// else's file (an `OwnedFd` closes its number when dropped).
pub unsafe fn close_inherited_fds(keep: BorrowedFd<'_>) {
    let keep = keep.as_raw_fd() as libc::c_uint;
    // SAFETY: close_range only closes descriptors, and the caller guarantees that no object
    // owns one of those it closes (see `# Safety`).
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

/// The unit tests' global allocator: the system's, counting each thread's allocations, so
/// that a test can prove a path allocates nothing ([`counting::allocations_in`]).
#[cfg(test)]
pub mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        // Const-initialised and without a destructor: reading it allocates nothing, so the
        // allocator may use it.
        static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    }

    struct Counting;

    fn count() {
        // A thread being torn down has no counter left: its allocations are not counted.
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    }

    // SAFETY: every call is passed to `System` unchanged, which upholds GlobalAlloc's
    // contract; counting touches only a thread-local `Cell`, and never allocates.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count();
            // SAFETY: the caller upholds `alloc`'s contract, which is System's.
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            count();
            // SAFETY: as for `alloc`.
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count();
            // SAFETY: `ptr` and `layout` come from this allocator, that is from System.
            unsafe { System.realloc(ptr, layout, new_size) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: as for `realloc`.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    /// Runs `f` and counts the allocations (and reallocations) this thread made meanwhile.
    pub fn allocations_in<T>(f: impl FnOnce() -> T) -> (T, u64) {
        let before = ALLOCATIONS.with(Cell::get);
        let out = f();
        (out, ALLOCATIONS.with(Cell::get) - before)
    }

    #[test]
    fn counts_this_threads_allocations() {
        let (v, n) = allocations_in(|| vec![1u8; 10]);
        assert_eq!((v.len(), n), (10, 1));
        let (_, n) = allocations_in(|| std::thread::spawn(|| vec![0u8; 4]).join());
        assert!(n >= 1, "spawning allocates here");
        let (_, n) = allocations_in(|| 1 + 1);
        assert_eq!(n, 0);
    }
}

// ---- Signals and the child's start, for `pidbeat run` (rustix has no signalfd, no
// sigprocmask or sigaction outside its unstable runtime module, and forbids sending libc's
// real-time signals through its `Signal` type).

/// A set of signals 1..=64 as bits: bit `n - 1` is signal `n` (the layout of
/// /proc/PID/status's SigBlk and SigIgn).
pub type SigBits = u64;

/// The highest signal number Linux has on the architectures pidbeat builds for.
pub const SIG_MAX: i32 = 64;

pub const fn sig_bit(sig: i32) -> SigBits {
    1 << (sig - 1)
}

/// # Safety
///
/// Builds a `sigset_t` by value with libc's own initialiser and setter; no pointer escapes.
fn to_sigset(bits: SigBits) -> libc::sigset_t {
    // SAFETY: sigset_t is plain old data; sigemptyset then fully initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, exclusively borrowed sigset_t; sigaddset only writes into it
    // and refuses (EINVAL) numbers it does not accept, such as glibc's reserved 32 and 33.
    unsafe {
        libc::sigemptyset(&mut set);
        for sig in 1..=SIG_MAX {
            if bits & sig_bit(sig) != 0 {
                libc::sigaddset(&mut set, sig);
            }
        }
    }
    set
}

/// # Safety
///
/// Only reads the borrowed, initialised `sigset_t` through `sigismember`.
fn from_sigset(set: &libc::sigset_t) -> SigBits {
    let mut bits = 0;
    for sig in 1..=SIG_MAX {
        // SAFETY: `set` is a valid sigset_t; sigismember only reads it.
        if unsafe { libc::sigismember(set, sig) } == 1 {
            bits |= sig_bit(sig);
        }
    }
    bits
}

/// The signal state pidbeat was started with, taken before Rust's runtime set SIGPIPE to
/// ignored: what `pidbeat run` hands on to its child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inherited {
    pub blocked: SigBits,
    pub ignored: SigBits,
}

static INHERITED_BLOCKED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static INHERITED_IGNORED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// # Safety
///
/// Queries dispositions only (a null new action); nothing is installed.
fn ignored_now() -> SigBits {
    let mut bits = 0;
    for sig in 1..=SIG_MAX {
        // SAFETY: sigaction with a null new action only reads the disposition into `old`, a
        // valid, exclusively borrowed struct; numbers it refuses (9, 19, 32, 33) leave `old`
        // zeroed (SIG_DFL).
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
        if old.sa_sigaction == libc::SIG_IGN {
            bits |= sig_bit(sig);
        }
    }
    bits
}

/// # Safety
///
/// Reads the thread's mask and the dispositions, and stores two atomics: nothing that needs
/// Rust's runtime, so it may run as a constructor before `main`.
extern "C" fn capture_inherited() {
    // SAFETY: sigset_t is plain old data; pthread_sigmask with a null new set only reads the
    // calling thread's mask into `old`.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut old) };
    let order = std::sync::atomic::Ordering::Relaxed;
    INHERITED_BLOCKED.store(from_sigset(&old), order);
    INHERITED_IGNORED.store(ignored_now(), order);
}

/// Runs `capture_inherited` as an ELF constructor: the loader calls it before `main`, hence
/// before std's start-up code ignores SIGPIPE.
///
/// # Safety
///
/// `.init_array` entries are called once, single-threaded, with no arguments, before any Rust
/// code of the program has run; `capture_inherited` only reads the process's signal state and
/// stores into two atomics, which needs no runtime initialisation.
#[used]
#[unsafe(link_section = ".init_array")]
static CAPTURE_INHERITED: extern "C" fn() = capture_inherited;

/// The signal mask and ignored signals pidbeat inherited (see [`Inherited`]).
pub fn inherited_signals() -> Inherited {
    // Referenced here so that the linker keeps the constructor with the code that reads it.
    std::hint::black_box(&CAPTURE_INHERITED);
    let order = std::sync::atomic::Ordering::Relaxed;
    Inherited {
        blocked: INHERITED_BLOCKED.load(order),
        ignored: INHERITED_IGNORED.load(order),
    }
}

/// Adds `bits` to the calling thread's signal mask (`block`) or removes them.
///
/// # Safety
///
/// A valid, initialised set is passed and no old set is asked for; changing the mask moves
/// no memory.
pub fn mask_signals(bits: SigBits, block: bool) -> std::io::Result<()> {
    let set = to_sigset(bits);
    let how = if block {
        libc::SIG_BLOCK
    } else {
        libc::SIG_UNBLOCK
    };
    // SAFETY: `set` is a valid sigset_t; a null old set asks for nothing back. Changing the
    // mask affects only which signals are delivered to this thread now.
    match unsafe { libc::pthread_sigmask(how, &set, std::ptr::null_mut()) } {
        0 => Ok(()),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

/// Sets `sig`'s disposition to ignored or to the default action.
///
/// # Safety
///
/// Only SIG_IGN or SIG_DFL is installed, never a handler, so no code of ours can ever run in
/// a signal's context.
pub fn set_ignored(sig: i32, ignore: bool) -> std::io::Result<()> {
    // SAFETY: plain `signal(2)` with SIG_IGN or SIG_DFL installs no handler, so no Rust code
    // ever runs in signal context.
    let h = if ignore { libc::SIG_IGN } else { libc::SIG_DFL };
    match unsafe { libc::signal(sig, h) } {
        libc::SIG_ERR => Err(std::io::Error::last_os_error()),
        _ => Ok(()),
    }
}

/// A non-blocking, close-on-exec signalfd for `bits` (which the caller blocks).
///
/// # Safety
///
/// The new descriptor is owned by the returned `OwnedFd` alone.
pub fn signalfd(bits: SigBits) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let set = to_sigset(bits);
    // SAFETY: `set` is a valid sigset_t; -1 asks for a new descriptor, which we own alone.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by signalfd and nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Sends `sig` through a pidfd, or to the process group `-pgid` (`group`, by number: the
/// group of an unreaped child cannot be reused). Any signal number, real-time ones included.
///
/// # Safety
///
/// Plain integers in, a status out; the borrowed pidfd outlives the call.
pub fn send_signal(pidfd: Option<BorrowedFd<'_>>, pid: i32, sig: i32, group: bool) -> bool {
    // SAFETY: pidfd_send_signal and kill take plain integers (a null siginfo means "as
    // kill(2) would"); they touch no memory of ours.
    let rc = unsafe {
        match (pidfd, group) {
            (Some(fd), false) => libc::syscall(
                libc::SYS_pidfd_send_signal,
                fd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            ) as i32,
            (_, true) => libc::kill(-pid, sig),
            (None, false) => libc::kill(pid, sig),
        }
    };
    rc == 0
}

/// Is `fd` a terminal whose foreground process group is ours? Only then may the child take
/// the terminal's foreground: a `run` started in the background must not steal it.
///
/// # Safety
///
/// Two queries on integers; nothing is changed.
pub fn owns_foreground(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: tcgetpgrp and getpgrp take and return plain integers.
    unsafe {
        let fg = libc::tcgetpgrp(fd.as_raw_fd());
        fg > 0 && fg == libc::getpgrp()
    }
}

/// How the child of `pidbeat run` starts.
#[derive(Debug, Clone, Copy)]
pub struct ChildStart {
    /// Its own process group (tini's behaviour), so that a terminal's signals reach it and
    /// not pidbeat, and `--kill-group` can signal it all.
    pub own_group: bool,
    /// Make that group the foreground of the terminal on stdin.
    pub take_terminal: bool,
    /// The mask and ignored signals to hand on.
    pub signals: Inherited,
    /// The signals whose disposition pidbeat changed (or std did): set back to `signals`.
    pub changed: SigBits,
}

/// Arranges for `cmd`'s child to start as `start` says, between fork and exec.
///
/// # Safety
///
/// The hook runs between fork and exec, where only async-signal-safe calls are allowed: it
/// makes only such calls, on values copied in before the fork.
pub fn prepare_child(cmd: &mut std::process::Command, start: ChildStart) {
    use std::os::unix::process::CommandExt;
    let mask = to_sigset(start.signals.blocked);
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe calls (setpgid, getpid, tcsetpgrp, signal, pthread_sigmask on a
    // sigset_t built before the fork); it allocates nothing and takes no lock. std runs it
    // after its own reset of the mask and of SIGPIPE, so what it sets is what exec keeps.
    unsafe {
        cmd.pre_exec(move || {
            if start.own_group && libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // SIGTTOU is still ignored here (inherited from pidbeat), so a background group
            // may take the foreground. A failure leaves the terminal as it was.
            if start.take_terminal {
                libc::tcsetpgrp(0, libc::getpid());
            }
            for sig in 1..=SIG_MAX {
                if start.changed & sig_bit(sig) != 0 {
                    let h = if start.signals.ignored & sig_bit(sig) != 0 {
                        libc::SIG_IGN
                    } else {
                        libc::SIG_DFL
                    };
                    libc::signal(sig, h);
                }
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &mask, std::ptr::null_mut());
            Ok(())
        });
    }
}
