//! Host-local socket numbers, handed out like file descriptors: the smallest free number
//! (1, 2, 3 …) across all workers, never on the wire. Each number carries a generation,
//! bumped when its socket closes, so a stale number can never reach the socket that later
//! reuses it (the bug of bare indices, smoltcp #501).
//!
//! Lock-free: a bitmap of `AtomicU64` words, claimed with compare-and-swap from the lowest
//! word up. Release bumps the generation *before* clearing the bit (Release), and claiming
//! reads it *after* setting the bit (Acquire), so a new owner always sees the new generation.
//! Model-checked with loom (`RUSTFLAGS="--cfg loom" cargo test -p fastpath --release --lib loom`).

#[cfg(loom)]
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// A socket's number on this host, with the generation that makes stale copies detectable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct SocketNumber {
    number: u32,
    generation: u32,
}

impl SocketNumber {
    /// The number users see (1-based, like a descriptor).
    pub fn get(self) -> u32 {
        self.number
    }

    pub fn generation(self) -> u32 {
        self.generation
    }

    /// For callers that keep numbers outside the process (the control channel, tests).
    pub fn from_parts(number: u32, generation: u32) -> Self {
        Self { number, generation }
    }
}

impl std::fmt::Display for SocketNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.number)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error(
        "socket {number} is closed (it was generation {generation}; the number is free or now names another socket)"
    )]
    Stale { number: u32, generation: u32 },
    #[error("all {0} socket numbers are in use")]
    Exhausted(u32),
}

pub struct NumberAllocator {
    words: Box<[AtomicU64]>,
    generations: Box<[AtomicU32]>,
    capacity: u32,
}

impl NumberAllocator {
    pub fn new(capacity: u32) -> Self {
        let words = capacity.div_ceil(64) as usize;
        Self {
            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
            generations: (0..capacity).map(|_| AtomicU32::new(0)).collect(),
            capacity,
        }
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Claims the smallest free number.
    pub fn allocate(&self) -> Result<SocketNumber, NumberError> {
        for (w, word) in self.words.iter().enumerate() {
            let mut current = word.load(Ordering::Relaxed);
            loop {
                let bit = current.trailing_ones();
                let index = w as u32 * 64 + bit;
                if bit == 64 || index >= self.capacity {
                    break;
                }
                match word.compare_exchange_weak(
                    current,
                    current | (1 << bit),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        let generation = self.generations[index as usize].load(Ordering::Acquire);
                        return Ok(SocketNumber {
                            number: index + 1,
                            generation,
                        });
                    }
                    Err(seen) => current = seen,
                }
            }
        }
        Err(NumberError::Exhausted(self.capacity))
    }

    /// Frees `n`; fails if it was already freed (its generation moved on).
    pub fn release(&self, n: SocketNumber) -> Result<(), NumberError> {
        let stale = NumberError::Stale {
            number: n.number,
            generation: n.generation,
        };
        let index = n
            .number
            .checked_sub(1)
            .filter(|&i| i < self.capacity)
            .ok_or(stale)? as usize;
        // Only one releaser can move the generation on from n.generation.
        self.generations[index]
            .compare_exchange(
                n.generation,
                n.generation.wrapping_add(1),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .map_err(|_| stale)?;
        self.words[index / 64].fetch_and(!(1u64 << (index % 64)), Ordering::Release);
        Ok(())
    }

    /// Whether `n` names a live socket (allocated, and not since released).
    pub fn is_live(&self, n: SocketNumber) -> bool {
        let Some(index) = n.number.checked_sub(1).filter(|&i| i < self.capacity) else {
            return false;
        };
        let index = index as usize;
        let set = self.words[index / 64].load(Ordering::Acquire) & (1 << (index % 64)) != 0;
        set && self.generations[index].load(Ordering::Acquire) == n.generation
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn hands_out_the_smallest_free_number_like_a_descriptor() {
        let a = NumberAllocator::new(200);
        let n: Vec<_> = (0..5).map(|_| a.allocate().unwrap()).collect();
        assert_eq!(
            n.iter().map(|n| n.get()).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        a.release(n[1]).unwrap();
        a.release(n[3]).unwrap();
        let again = a.allocate().unwrap();
        assert_eq!(again.get(), 2, "the smallest free number comes back first");
        assert_ne!(again, n[1], "with a new generation");
        assert_eq!(a.allocate().unwrap().get(), 4);
        assert_eq!(a.allocate().unwrap().get(), 6);
    }

    #[test]
    fn a_stale_number_is_refused_even_after_reuse() {
        let a = NumberAllocator::new(8);
        let old = a.allocate().unwrap();
        a.release(old).unwrap();
        assert!(!a.is_live(old));
        let new = a.allocate().unwrap();
        assert_eq!(new.get(), old.get());
        assert!(a.is_live(new) && !a.is_live(old));
        assert!(matches!(a.release(old), Err(NumberError::Stale { .. })));
        assert!(
            a.is_live(new),
            "releasing the stale number must not free the new socket"
        );
    }

    #[test]
    fn crosses_word_boundaries_and_reports_exhaustion() {
        let a = NumberAllocator::new(130);
        for i in 1..=130 {
            assert_eq!(a.allocate().unwrap().get(), i);
        }
        assert_eq!(a.allocate(), Err(NumberError::Exhausted(130)));
        assert!(matches!(
            a.release(SocketNumber::from_parts(0, 0)),
            Err(NumberError::Stale { .. })
        ));
        assert!(matches!(
            a.release(SocketNumber::from_parts(999, 0)),
            Err(NumberError::Stale { .. })
        ));
    }

    #[test]
    fn threads_never_get_the_same_live_number() {
        let a = std::sync::Arc::new(NumberAllocator::new(256));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let a = a.clone();
                std::thread::spawn(move || {
                    let mut mine = Vec::new();
                    for _ in 0..2000 {
                        let n = a.allocate().unwrap();
                        assert!(a.is_live(n));
                        mine.push(n);
                        // Hold at most 16 at a time: 4 × 17 stays below the 256 numbers.
                        if mine.len() > 16 {
                            let n = mine.swap_remove(0);
                            a.release(n).unwrap();
                        }
                    }
                    mine
                })
            })
            .collect();
        let mut live: Vec<u32> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .map(|n| n.get())
            .collect();
        let count = live.len();
        live.sort();
        live.dedup();
        assert_eq!(live.len(), count, "a number was live twice");
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use loom::sync::Arc;

    use super::*;

    #[test]
    fn loom_concurrent_allocations_are_distinct() {
        loom::model(|| {
            let a = Arc::new(NumberAllocator::new(4));
            let b = a.clone();
            let t = loom::thread::spawn(move || b.allocate().unwrap());
            let mine = a.allocate().unwrap();
            let theirs = t.join().unwrap();
            assert_ne!(mine.get(), theirs.get());
            let mut got = [mine.get(), theirs.get()];
            got.sort();
            assert_eq!(got, [1, 2], "the two smallest numbers");
        });
    }

    #[test]
    fn loom_reuse_always_sees_the_new_generation() {
        loom::model(|| {
            let a = Arc::new(NumberAllocator::new(2));
            let first = a.allocate().unwrap();
            let b = a.clone();
            let t = loom::thread::spawn(move || b.release(first).unwrap());
            let second = a.allocate().unwrap();
            t.join().unwrap();
            if second.get() == first.get() {
                assert_ne!(
                    second.generation(),
                    first.generation(),
                    "reuse must carry a new generation"
                );
                assert!(a.is_live(second));
            }
            assert!(!a.is_live(first));
        });
    }
}
