//! What a thread waits on while a worker acts for it: an event sequence on a futex that the
//! worker bumps (`Signal`), issuing the wake system call only when somebody waits.

use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // Safety: FUTEX_WAIT on a live, aligned u32; the kernel only reads it and `ts`.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            ts_ptr,
        )
    };
}

pub(crate) fn futex_wake_all(word: &AtomicU32) {
    // Safety: FUTEX_WAKE on an address; the kernel does not dereference it beyond lookup.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        )
    };
}

/// An event sequence threads wait on and the worker bumps.
#[derive(Default)]
pub struct Signal {
    seq: AtomicU32,
    waiters: AtomicU32,
}

impl Signal {
    pub fn current(&self) -> u32 {
        self.seq.load(Ordering::Acquire)
    }

    /// Something happened: bump the sequence; wake only if somebody waits.
    pub fn notify(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            futex_wake_all(&self.seq);
        }
    }

    /// Waits until the sequence moved from `seen` or `deadline` passed.
    pub fn wait(&self, seen: u32, deadline: Instant) {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        while self.seq.load(Ordering::SeqCst) == seen {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            futex_wait(&self.seq, seen, Some(deadline - now));
        }
        self.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}
