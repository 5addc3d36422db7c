//! Placeholder timer facility with the timer wheel's API (replaced by the wheel).

use std::{collections::BTreeMap, time::Duration};

use crate::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(u64);

pub struct TimerWheel<T> {
    next: u64,
    by_deadline: BTreeMap<(Instant, u64), T>,
    deadlines: std::collections::HashMap<u64, Instant>,
}

impl<T> TimerWheel<T> {
    pub fn new(_now: Instant, _tick: Duration) -> Self {
        Self {
            next: 0,
            by_deadline: BTreeMap::new(),
            deadlines: Default::default(),
        }
    }

    pub fn insert(&mut self, deadline: Instant, value: T) -> TimerId {
        self.next += 1;
        self.by_deadline.insert((deadline, self.next), value);
        self.deadlines.insert(self.next, deadline);
        TimerId(self.next)
    }

    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let d = self.deadlines.remove(&id.0)?;
        self.by_deadline.remove(&(d, id.0))
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.by_deadline.keys().next().map(|k| k.0)
    }

    pub fn poll(&mut self, now: Instant, mut fired: impl FnMut(TimerId, T)) {
        while let Some(entry) = self.by_deadline.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((_, id), v) = entry.remove_entry();
            self.deadlines.remove(&id);
            fired(TimerId(id), v);
        }
    }

    pub fn len(&self) -> usize {
        self.deadlines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }
}
