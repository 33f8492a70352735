//! Tests that must not share the machine: all tests run in one binary, two at a time on a
//! 2-core machine. The multi-host tests assert latencies of a 3-member etcd cluster that
//! would measure the other tests' load, and the soak's load would disturb the latencies other
//! tests assert. Such a test calls `alone()` first and runs once every other test has let go
//! of its `Share`; every `Sandbox` holds one, so a test that starts processes holds one for
//! as long as it runs.

use std::cell::RefCell;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static MACHINE: RwLock<()> = RwLock::new(());

thread_local! {
    /// This test thread's hold on `MACHINE`: how many `Share`s it has, and the read guard
    /// they took (none while the thread runs `alone`).
    static HELD: RefCell<Held> = const { RefCell::new(Held { shares: 0, guard: None, alone: false }) };
}

struct Held {
    shares: usize,
    guard: Option<RwLockReadGuard<'static, ()>>,
    alone: bool,
}

/// A test's part of the machine, shared with every other test but one that runs `alone`.
pub struct Share(());

/// Takes a `Share` for this thread (its first one waits while a test runs alone).
pub fn share() -> Share {
    HELD.with_borrow_mut(|h| {
        if h.shares == 0 && !h.alone {
            h.guard = Some(MACHINE.read().unwrap_or_else(|e| e.into_inner()));
        }
        h.shares += 1;
    });
    Share(())
}

impl Drop for Share {
    fn drop(&mut self) {
        HELD.with_borrow_mut(|h| {
            h.shares -= 1;
            if h.shares == 0 {
                h.guard = None;
            }
        });
    }
}

/// The machine to this test alone, for as long as the guard lives.
pub struct Alone {
    _machine: RwLockWriteGuard<'static, ()>,
}

/// Waits until no other test holds a `Share`, and keeps others from starting until the guard
/// is dropped. Call it before the test's first `Sandbox`.
pub fn alone() -> Alone {
    HELD.with_borrow(|h| {
        assert!(
            h.shares == 0,
            "alone() after a Sandbox: the test would wait on itself"
        )
    });
    let guard = MACHINE.write().unwrap_or_else(|e| e.into_inner());
    HELD.with_borrow_mut(|h| h.alone = true);
    Alone { _machine: guard }
}

impl Drop for Alone {
    fn drop(&mut self) {
        HELD.with_borrow_mut(|h| h.alone = false);
    }
}
