//! A worker's timers: a hierarchical timing wheel (Varghese and Lauck's scheme, as Linux and
//! tokio lay it out) of 6 levels × 64 slots, so arming and cancelling cost O(1) and a poll
//! costs the slots it passes, not the timers it holds. Timers live in a slab with a free
//! list, so once the slab has grown to the worker's peak no arm allocates; a `TimerId`
//! carries a generation, so a fired or cancelled id never reaches the timer that reuses its
//! slot. Sans-IO like the protocols: time comes in as `Instant`s (virtual in tests).

use std::time::Duration;

use crate::time::Instant;

const LEVELS: usize = 6;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
const SLOT_MASK: u64 = SLOTS as u64 - 1;
/// Ticks the wheel spans (2^36: 795 days at 1 ms, 19 hours at 1 µs). A deadline further out
/// waits in the top level and is re-filed each time the wheel reaches its slot.
const SPAN: u64 = 1 << (SLOT_BITS as usize * LEVELS);
/// The end of a list.
const NIL: u32 = u32::MAX;
/// A node's list: `0 .. LEVELS * SLOTS` are the wheel's slots (level × 64 + slot), then the
/// due list (fired by a poll, not yet handed out), then the free list.
const DUE: u16 = (LEVELS * SLOTS) as u16;
const FREE: u16 = DUE + 1;

/// Names an armed timer. Cancelling or re-arming with an id whose timer has fired or been
/// cancelled does nothing, even after its slot was reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    generation: u32,
}

struct Node<T> {
    deadline: Instant,
    /// Neighbours in the node's list (doubly linked, so unlinking is O(1)); `next` chains the
    /// free list too.
    prev: u32,
    next: u32,
    /// Bumped when the node is freed.
    generation: u32,
    list: u16,
    value: Option<T>,
}

/// Timers carrying a `T` each, owned by one worker: no locks, no atomics.
///
/// A timer never fires before its deadline: `poll(now)` fires exactly those with
/// `deadline <= now`, in deadline order. A worker that sleeps until `next_deadline()` is at
/// most one tick late.
pub struct TimerWheel<T> {
    nodes: Vec<Node<T>>,
    free: u32,
    /// First node of each list (the wheel's slots, then the due list).
    heads: Box<[u32; LEVELS * SLOTS + 1]>,
    due_tail: u32,
    /// Per level, a bit per non-empty slot, so finding the next slot is a bit scan.
    occupied: [u64; LEVELS],
    /// The tick the wheel stands at; every timer in the wheel is filed relative to it.
    elapsed: u64,
    tick_nanos: u64,
    len: usize,
    /// One slot's due timers while they are sorted; kept to avoid an allocation per poll.
    scratch: Vec<u32>,
}

impl<T> TimerWheel<T> {
    /// An empty wheel at `now`, with deadlines kept to `tick` (at least a nanosecond).
    pub fn new(now: Instant, tick: Duration) -> Self {
        Self::with_capacity(now, tick, 0)
    }

    /// Like `new`, with room for `timers` before the slab grows.
    pub fn with_capacity(now: Instant, tick: Duration, timers: usize) -> Self {
        let tick_nanos = u64::try_from(tick.as_nanos()).unwrap_or(u64::MAX).max(1);
        Self {
            nodes: Vec::with_capacity(timers),
            free: NIL,
            heads: Box::new([NIL; LEVELS * SLOTS + 1]),
            due_tail: NIL,
            occupied: [0; LEVELS],
            elapsed: now.as_nanos() / tick_nanos,
            tick_nanos,
            len: 0,
            scratch: Vec::new(),
        }
    }

    /// Armed timers (including those due but not yet handed out by `poll`).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Arms a timer for `deadline`; one in the past fires on the next poll.
    pub fn insert(&mut self, deadline: Instant, value: T) -> TimerId {
        let node = Node {
            deadline,
            prev: NIL,
            next: NIL,
            generation: 0,
            list: FREE,
            value: Some(value),
        };
        let index = if self.free != NIL {
            let index = self.free;
            let slot = &mut self.nodes[index as usize];
            self.free = slot.next;
            *slot = Node {
                generation: slot.generation,
                ..node
            };
            index
        } else {
            let index = u32::try_from(self.nodes.len())
                .ok()
                .filter(|&i| i != NIL)
                .expect("more than 2^32 - 1 timers");
            self.nodes.push(node);
            index
        };
        self.len += 1;
        self.file(index);
        TimerId {
            index,
            generation: self.nodes[index as usize].generation,
        }
    }

    /// Disarms the timer `id` and returns its value; `None` if it already fired or was
    /// cancelled.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let index = self.live(id)?;
        self.unlink(index);
        Some(self.release(index))
    }

    /// Moves the timer `id` to `deadline`; false if it already fired or was cancelled.
    pub fn reset(&mut self, id: TimerId, deadline: Instant) -> bool {
        let Some(index) = self.live(id) else {
            return false;
        };
        self.unlink(index);
        self.nodes[index as usize].deadline = deadline;
        self.file(index);
        true
    }

    /// When the worker must poll next, for its idle wait: no later than the earliest
    /// deadline rounded up to the tick. It may be earlier than that deadline when the timer
    /// still sits in a coarse slot: the poll at that time moves it to a finer one (at most
    /// one such wake per level). O(levels).
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.heads[DUE as usize] != NIL {
            return Some(self.nodes[self.heads[DUE as usize] as usize].deadline);
        }
        let (level, _, start) = self.next_slot()?;
        let at = if level == 0 {
            start.saturating_add(1)
        } else {
            start
        };
        Some(Instant::from_nanos(at.saturating_mul(self.tick_nanos)))
    }

    /// Fires every timer whose deadline is at or before `now`, earliest first, handing each
    /// to `fired`; returns how many fired. To arm timers while firing, loop on `expire`.
    pub fn poll(&mut self, now: Instant, mut fired: impl FnMut(TimerId, T)) -> usize {
        let mut count = 0;
        while let Some((id, value)) = self.expire(now) {
            fired(id, value);
            count += 1;
        }
        count
    }

    /// The earliest timer whose deadline is at or before `now`, disarmed; `None` when none
    /// is due. A timer armed between calls in the past fires after those already found due.
    pub fn expire(&mut self, now: Instant) -> Option<(TimerId, T)> {
        loop {
            let index = self.heads[DUE as usize];
            if index != NIL {
                self.unlink(index);
                let generation = self.nodes[index as usize].generation;
                return Some((TimerId { index, generation }, self.release(index)));
            }
            if !self.advance(now) {
                return None;
            }
        }
    }

    /// Processes the next occupied slot if it starts by `now`: a level-0 slot's due timers
    /// go to the due list in deadline order, a coarser slot's timers are re-filed finer.
    /// False when nothing more is due.
    fn advance(&mut self, now: Instant) -> bool {
        let now_tick = now.as_nanos() / self.tick_nanos;
        let (level, slot, start) = match self.next_slot() {
            Some(next) if next.2 <= now_tick => next,
            _ => {
                // No slot starts by now, so every timer stays filed correctly relative to
                // `now_tick` too; moving there keeps later arms in fine levels.
                self.elapsed = self.elapsed.max(now_tick);
                return false;
            }
        };
        self.elapsed = start;
        let list = level * SLOTS + slot;
        let mut index = std::mem::replace(&mut self.heads[list], NIL);
        self.occupied[level] &= !(1 << slot);
        if level > 0 {
            while index != NIL {
                let next = self.nodes[index as usize].next;
                self.file(index);
                index = next;
            }
            return true;
        }
        // Level 0: every timer here is due by the end of this tick; those after `now`
        // (this tick is `now_tick`) go back.
        self.scratch.clear();
        while index != NIL {
            let next = self.nodes[index as usize].next;
            if self.nodes[index as usize].deadline <= now {
                self.scratch.push(index);
            } else {
                self.file(index);
            }
            index = next;
        }
        if self.scratch.is_empty() {
            return false;
        }
        let nodes = &self.nodes;
        self.scratch
            .sort_unstable_by_key(|&i| (nodes[i as usize].deadline, i));
        for k in 0..self.scratch.len() {
            let index = self.scratch[k];
            self.push_due(index);
        }
        true
    }

    /// The earliest occupied slot: (level, slot, its first tick). Lower levels always come
    /// first: a timer sits at the level of the highest base-64 digit in which its tick
    /// differs from `elapsed`, so a coarser slot lies past every finer one.
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        let level = self.occupied.iter().position(|&o| o != 0)?;
        let shift = SLOT_BITS * level as u32;
        let slot_ticks = 1u64 << shift;
        let level_ticks = slot_ticks << SLOT_BITS;
        let current = ((self.elapsed >> shift) & SLOT_MASK) as u32;
        let ahead = self.occupied[level].rotate_right(current).trailing_zeros();
        let slot = (current + ahead) as usize % SLOTS;
        let mut start = (self.elapsed & !(level_ticks - 1)) + slot as u64 * slot_ticks;
        if level > 0 && start <= self.elapsed {
            // Only the top level wraps: it holds deadlines past the wheel's span in the slot
            // of `elapsed + SPAN - 1`, which may come before the current one.
            debug_assert_eq!(level, LEVELS - 1);
            start = start.saturating_add(level_ticks);
        }
        Some((level, slot, start))
    }

    /// Puts node `index` in the slot its deadline calls for, relative to `elapsed`.
    fn file(&mut self, index: u32) {
        let when = self.nodes[index as usize].deadline.as_nanos() / self.tick_nanos;
        // A past deadline goes in the current slot (due on the next poll); one past the span
        // goes as far as the wheel reaches and is re-filed from there.
        let place = when.clamp(self.elapsed, self.elapsed.saturating_add(SPAN - 1));
        let differs = ((self.elapsed ^ place) | SLOT_MASK).min(SPAN - 1);
        let level = ((63 - differs.leading_zeros()) / SLOT_BITS) as usize;
        let slot = ((place >> (SLOT_BITS * level as u32)) & SLOT_MASK) as usize;
        let list = level * SLOTS + slot;
        let head = self.heads[list];
        if head != NIL {
            self.nodes[head as usize].prev = index;
        }
        let node = &mut self.nodes[index as usize];
        node.prev = NIL;
        node.next = head;
        node.list = list as u16;
        self.heads[list] = index;
        self.occupied[level] |= 1 << slot;
    }

    fn push_due(&mut self, index: u32) {
        let tail = self.due_tail;
        if tail != NIL {
            self.nodes[tail as usize].next = index;
        } else {
            self.heads[DUE as usize] = index;
        }
        let node = &mut self.nodes[index as usize];
        node.prev = tail;
        node.next = NIL;
        node.list = DUE;
        self.due_tail = index;
    }

    /// Takes node `index` out of its list (a slot or the due list).
    fn unlink(&mut self, index: u32) {
        let Node {
            prev, next, list, ..
        } = self.nodes[index as usize];
        let list = list as usize;
        if prev != NIL {
            self.nodes[prev as usize].next = next;
        } else {
            self.heads[list] = next;
        }
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        } else if list == DUE as usize {
            self.due_tail = prev;
        }
        if list < DUE as usize && self.heads[list] == NIL {
            self.occupied[list / SLOTS] &= !(1 << (list % SLOTS));
        }
    }

    /// Frees unlinked node `index`, ending its id, and returns its value.
    fn release(&mut self, index: u32) -> T {
        let node = &mut self.nodes[index as usize];
        node.generation = node.generation.wrapping_add(1);
        node.list = FREE;
        node.prev = NIL;
        node.next = self.free;
        self.free = index;
        self.len -= 1;
        node.value.take().expect("an armed timer holds its value")
    }

    fn live(&self, id: TimerId) -> Option<u32> {
        let node = self.nodes.get(id.index as usize)?;
        (node.generation == id.generation && node.list != FREE).then_some(id.index)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn ms(n: u64) -> Instant {
        Instant::from_millis(n)
    }

    fn fire_all<T>(w: &mut TimerWheel<T>, now: Instant) -> Vec<T> {
        let mut out = Vec::new();
        w.poll(now, |_, v| out.push(v));
        out
    }

    /// A test's random numbers (xorshift64*): seeded, so a failure replays.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn a_timer_fires_at_its_deadline_never_before() {
        let mut w = TimerWheel::new(Instant::ZERO, MS);
        w.insert(ms(10) + Duration::from_micros(300), "a");
        assert_eq!(w.len(), 1);
        assert!(fire_all(&mut w, ms(10)).is_empty(), "fired early");
        assert!(fire_all(&mut w, ms(10) + Duration::from_micros(299)).is_empty());
        assert!(w.next_deadline().unwrap() <= ms(11));
        assert_eq!(fire_all(&mut w, ms(10) + Duration::from_micros(300)), ["a"]);
        assert!(w.is_empty());
        assert_eq!(w.next_deadline(), None);
        assert!(fire_all(&mut w, ms(1000)).is_empty(), "fires once");
    }

    #[test]
    fn cancel_returns_the_value_once_and_a_fired_id_is_a_no_op() {
        let mut w = TimerWheel::new(Instant::ZERO, MS);
        let a = w.insert(ms(5), 'a');
        let b = w.insert(ms(7), 'b');
        assert_eq!(w.cancel(a), Some('a'));
        assert_eq!(w.cancel(a), None);
        assert_eq!(w.len(), 1);
        assert!(
            fire_all(&mut w, ms(6)).is_empty(),
            "a cancelled timer never fires"
        );
        assert_eq!(fire_all(&mut w, ms(7)), ['b']);
        assert_eq!(w.cancel(b), None, "cancelling a fired timer does nothing");
        assert!(!w.reset(b, ms(100)));
        assert!(w.is_empty());
    }

    #[test]
    fn a_stale_id_cannot_reach_the_timer_that_reuses_its_slot() {
        let mut w = TimerWheel::new(Instant::ZERO, MS);
        let old = w.insert(ms(5), "old");
        w.cancel(old);
        let new = w.insert(ms(9), "new");
        assert_eq!(new.index, old.index, "the slot is reused");
        assert_eq!(w.cancel(old), None);
        assert!(!w.reset(old, ms(1)));
        assert_eq!(fire_all(&mut w, ms(9)), ["new"]);
        let again = w.insert(ms(20), "again");
        assert_eq!(w.cancel(new), None, "a fired id cannot cancel the reuser");
        assert_eq!(w.cancel(again), Some("again"));
    }

    #[test]
    fn reset_moves_a_timer_later_or_earlier() {
        let mut w = TimerWheel::new(Instant::ZERO, MS);
        let a = w.insert(ms(10), "a");
        let b = w.insert(ms(20), "b");
        assert!(w.reset(a, ms(30)));
        assert!(w.reset(b, ms(5)));
        assert_eq!(fire_all(&mut w, ms(10)), ["b"]);
        assert!(fire_all(&mut w, ms(29)).is_empty());
        assert_eq!(fire_all(&mut w, ms(30)), ["a"]);
    }

    #[test]
    fn past_deadlines_fire_on_the_next_poll_in_order() {
        let mut w = TimerWheel::new(ms(1000), MS);
        w.insert(ms(999), 2);
        w.insert(ms(1), 1);
        w.insert(ms(1000) + Duration::from_nanos(1), 3);
        assert_eq!(w.next_deadline(), Some(ms(1001)), "rounded up to the tick");
        assert_eq!(fire_all(&mut w, ms(1000)), [1, 2]);
        // Armed in the past after the wheel moved on.
        assert_eq!(fire_all(&mut w, ms(2000)), [3]);
        w.insert(ms(1500), 4);
        assert_eq!(fire_all(&mut w, ms(2000)), [4]);
    }

    #[test]
    fn timers_armed_while_firing_fire_in_the_same_loop() {
        let mut w = TimerWheel::new(Instant::ZERO, MS);
        w.insert(ms(3), 0u32);
        let mut seen = Vec::new();
        while let Some((_, n)) = w.expire(ms(10)) {
            seen.push(n);
            if n < 3 {
                w.insert(ms(4 + u64::from(n)), n + 1);
            }
        }
        assert_eq!(seen, [0, 1, 2, 3]);
    }

    #[test]
    fn deadlines_hours_and_years_away_work() {
        // A 1 µs tick spans 2^36 µs, 19 hours: three days is past the wheel's reach.
        let mut w = TimerWheel::new(Instant::ZERO, Duration::from_micros(1));
        let hour = 3600;
        let far = Instant::from_secs(72 * hour) + Duration::from_nanos(1_500);
        let near = Instant::from_secs(2 * hour);
        w.insert(far, "far");
        w.insert(near, "near");
        w.insert(Instant::MAX, "never");
        let mut now = Instant::ZERO;
        let mut fired = Vec::new();
        let mut polls = 0;
        // Sleep until each next deadline, as a worker does.
        while fired.len() < 2 {
            let next = w.next_deadline().unwrap();
            assert!(next > now || polls == 0, "no progress at {now:?}");
            now = next;
            w.poll(now, |_, v| fired.push((v, now)));
            polls += 1;
        }
        assert_eq!(fired[0].0, "near");
        assert!(fired[0].1 >= near && fired[0].1 - near <= Duration::from_micros(1));
        assert_eq!(fired[1].0, "far");
        assert!(fired[1].1 >= far && fired[1].1 - far <= Duration::from_micros(1));
        assert!(polls < 40, "{polls} wakes for two timers");
        assert_eq!(w.len(), 1, "Instant::MAX never fires");
        assert!(fire_all(&mut w, Instant::from_secs(1 << 33)).is_empty());
    }

    /// 100,000 timers over four hours of virtual time, a tenth of them cancelled and a tenth
    /// re-armed: each of the rest fires exactly once, never early, at most a tick after its
    /// deadline for a worker that sleeps until `next_deadline`, and in deadline order.
    #[test]
    fn a_hundred_thousand_timers_fire_once_on_time_in_order() {
        const N: usize = 100_000;
        let horizon = 4 * 3600 * 1000; // ms
        let mut rng = Rng(0x5eed_1234_abcd_ef01);
        let mut w = TimerWheel::with_capacity(Instant::ZERO, MS, N);
        let mut deadline = vec![Instant::ZERO; N];
        let mut ids = Vec::with_capacity(N);
        for (i, d) in deadline.iter_mut().enumerate() {
            *d = Instant::from_nanos(rng.below(horizon * 1_000_000));
            ids.push(w.insert(*d, i));
        }
        let mut expected = N;
        for _ in 0..N / 10 {
            let i = rng.below(N as u64) as usize;
            if w.cancel(ids[i]).is_some() {
                deadline[i] = Instant::MAX;
                expected -= 1;
            }
        }
        for _ in 0..N / 10 {
            let i = rng.below(N as u64) as usize;
            let d = Instant::from_nanos(rng.below(horizon * 1_000_000));
            if w.reset(ids[i], d) {
                deadline[i] = d;
            }
        }
        assert_eq!(w.len(), expected);
        let mut fired = vec![false; N];
        let (mut count, mut last, mut now) = (0, Instant::ZERO, Instant::ZERO);
        while let Some(next) = w.next_deadline() {
            assert!(next >= now, "next_deadline went back: {next:?} < {now:?}");
            now = next;
            w.poll(now, |id, i| {
                assert_eq!(ids[i], id);
                assert!(!fired[i], "timer {i} fired twice");
                fired[i] = true;
                let d = deadline[i];
                assert!(d <= now, "timer {i} fired early: {d:?} at {now:?}");
                assert!(now - d <= MS, "timer {i} fired late: {d:?} at {now:?}");
                assert!(d >= last, "out of order: {d:?} after {last:?}");
                last = d;
                count += 1;
            });
        }
        assert_eq!(count, expected);
        assert!(w.is_empty());
        for (i, &f) in fired.iter().enumerate() {
            assert_eq!(f, deadline[i] != Instant::MAX, "timer {i}");
        }
        // Every cancelled id stays dead, whatever reused its slot.
        assert!(ids.iter().all(|&id| w.cancel(id).is_none()));
    }

    /// Polls at random moments rather than at `next_deadline`: each timer fires on the first
    /// poll at or after its deadline.
    #[test]
    fn random_polls_fire_each_timer_on_the_first_poll_past_its_deadline() {
        let mut rng = Rng(42);
        let mut w = TimerWheel::new(Instant::ZERO, Duration::from_micros(100));
        let mut now = Instant::ZERO;
        let mut pending = Vec::new();
        for round in 0..2_000u64 {
            for _ in 0..rng.below(8) {
                let d = now + Duration::from_micros(rng.below(5_000_000));
                w.insert(d, (d, round));
                pending.push(d);
            }
            let prev = now;
            now += Duration::from_micros(rng.below(20_000));
            w.poll(now, |_, (d, _)| {
                assert!(
                    d <= now && d > prev,
                    "{d:?} fired at {now:?}, last poll {prev:?}"
                );
                pending.retain(|&p| p != d);
            });
        }
        assert!(pending.iter().all(|&d| d > now));
        assert_eq!(w.len(), pending.len());
    }
}
