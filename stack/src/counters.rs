//! Counters owned by the layer that counts: each layer names its own (the worker its rings
//! and frames, the demux its parse verdicts, UDP its datagrams) and keeps them in a plain
//! array on the worker thread, bumped without atomics. The worker publishes all of them
//! with relaxed stores, one writer per slot, for `fastpath stats`.

use std::sync::atomic::{AtomicU64, Ordering};

/// A layer's set of counters: a fieldless enum whose variants index an array.
pub trait CounterSet: Copy + 'static {
    /// The layer that counts (a label in the Prometheus output: worker, demux, udp …).
    const LAYER: &'static str;
    /// Every counter, in index order.
    const ALL: &'static [Self];
    fn index(self) -> usize;
    fn name(self) -> &'static str;
}

/// One layer's tally on the worker thread.
#[derive(Clone, Debug)]
pub struct Counters<C: CounterSet> {
    values: Box<[u64]>,
    _set: std::marker::PhantomData<C>,
}

impl<C: CounterSet> Default for Counters<C> {
    fn default() -> Self {
        Self {
            values: vec![0; C::ALL.len()].into_boxed_slice(),
            _set: std::marker::PhantomData,
        }
    }
}

impl<C: CounterSet> Counters<C> {
    #[inline]
    pub fn add(&mut self, counter: C, n: u64) {
        self.values[counter.index()] += n;
    }

    #[inline]
    pub fn bump(&mut self, counter: C) {
        self.add(counter, 1);
    }

    pub fn get(&self, counter: C) -> u64 {
        self.values[counter.index()]
    }

    pub fn values(&self) -> &[u64] {
        &self.values
    }

    /// (layer, name) of every counter.
    pub fn names() -> impl Iterator<Item = (&'static str, &'static str)> {
        C::ALL.iter().map(|c| (C::LAYER, c.name()))
    }
}

/// Published counters of one worker, named, on cache lines of their own.
#[repr(align(128))]
pub struct SharedCounters {
    names: Box<[(&'static str, &'static str)]>,
    values: Box<[AtomicU64]>,
}

impl SharedCounters {
    /// Slots for counters named (layer, name).
    pub fn new(names: Vec<(&'static str, &'static str)>) -> Self {
        let values = names.iter().map(|_| AtomicU64::new(0)).collect();
        Self {
            names: names.into_boxed_slice(),
            values,
        }
    }

    /// Stores `values` from slot `offset` on (the worker is the only writer).
    pub fn store(&self, offset: usize, values: &[u64]) {
        for (slot, v) in self.values[offset..].iter().zip(values) {
            slot.store(*v, Ordering::Relaxed);
        }
    }

    /// A counter by name (the first layer that has it).
    pub fn get(&self, name: &str) -> Option<u64> {
        let i = self.names.iter().position(|(_, n)| *n == name)?;
        Some(self.values[i].load(Ordering::Relaxed))
    }

    /// (layer, name, value) of every counter.
    pub fn snapshot(&self) -> Vec<(&'static str, &'static str, u64)> {
        self.names
            .iter()
            .zip(self.values.iter())
            .map(|((l, n), v)| (*l, *n, v.load(Ordering::Relaxed)))
            .collect()
    }
}

/// Declares a counter set of a layer:
/// `counter_set! { "udp", pub enum UdpCounter { Replied = "replied", … } }`.
#[macro_export]
macro_rules! counter_set {
    ($layer:literal, $(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        $vis enum $name { $($(#[$vmeta])* $variant),+ }

        impl $crate::counters::CounterSet for $name {
            const LAYER: &'static str = $layer;
            const ALL: &'static [Self] = &[$($name::$variant),+];
            fn index(self) -> usize {
                self as usize
            }
            fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    counter_set! {
        "demo",
        enum Demo { A = "a", B = "b" }
    }

    #[test]
    fn layers_count_locally_and_publish_by_name() {
        let mut c = Counters::<Demo>::default();
        c.bump(Demo::B);
        c.add(Demo::B, 2);
        assert_eq!((c.get(Demo::A), c.get(Demo::B)), (0, 3));
        let names: Vec<_> = Counters::<Demo>::names().chain([("other", "x")]).collect();
        let shared = SharedCounters::new(names);
        shared.store(0, c.values());
        shared.store(2, &[7]);
        assert_eq!(shared.get("b"), Some(3));
        assert_eq!(shared.get("x"), Some(7));
        assert_eq!(
            shared.snapshot(),
            vec![("demo", "a", 0), ("demo", "b", 3), ("other", "x", 7)]
        );
    }
}
