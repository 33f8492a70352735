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
