//! The socket table: four-tuple → socket, shared by every worker and the control plane.
//!
//! Built on `papaya::HashMap`, a well-kept concurrent map whose reads are lock-free and
//! never block, whose writes are lock-free but for resizes, and which frees memory with
//! epoch-style reclamation — so workers look up on every datagram while other workers
//! insert and remove, with no lock on the read path. The maps are sized for every socket
//! number up front and copy incrementally (`Layout::Presized`), so a worker opening a
//! connection never waits for a map to grow or for another writer's copy. (crossbeam-epoch by hand would
//! give the same guarantees with more code to get right; a sharded `RwLock` map would not
//! be lock-free.)
//!
//! Lookups try, in order: the exact four-tuple (a connected socket), the local address
//! and port with any remote (a bound socket), and the port on any local address.
//! Sockets are also found by their host-local number (see `numbers`).

pub mod numbers;

use std::net::{Ipv4Addr, SocketAddrV4};

pub use crate::wire::Protocol;

pub use numbers::{NumberAllocator, NumberError, SocketNumber};

/// (protocol, local address:port, remote address:port). An unspecified remote (0.0.0.0:0)
/// means "any remote" (a bound socket); an unspecified local address means any address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FourTuple {
    pub proto: Protocol,
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
}

pub const ANY_REMOTE: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);

impl FourTuple {
    pub fn bound(proto: Protocol, local: SocketAddrV4) -> Self {
        Self {
            proto,
            local,
            remote: ANY_REMOTE,
        }
    }

    pub fn connected(proto: Protocol, local: SocketAddrV4, remote: SocketAddrV4) -> Self {
        Self {
            proto,
            local,
            remote,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.remote != ANY_REMOTE
    }
}

/// A socket in the table.
#[derive(Clone, Debug)]
pub struct Entry<V> {
    pub number: SocketNumber,
    pub tuple: FourTuple,
    pub value: V,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    #[error(transparent)]
    Number(#[from] NumberError),
    #[error("{proto:?} {local} is already bound{}", if remote == &ANY_REMOTE { String::new() } else { format!(" to {remote}") })]
    InUse {
        proto: Protocol,
        local: SocketAddrV4,
        remote: SocketAddrV4,
    },
}

/// foldhash's keyed "quality" hasher: several times faster than std's SipHash on a 13-byte
/// key, and seeded per process, since remote addresses and ports are the sender's choice.
type Hasher = foldhash::quality::RandomState;

pub struct SocketTable<V> {
    by_tuple: papaya::HashMap<FourTuple, Entry<V>, Hasher>,
    by_number: papaya::HashMap<u32, (SocketNumber, FourTuple), Hasher>,
    numbers: NumberAllocator,
}

/// Sockets a table holds at most: numbers are 1 ..= this.
pub fn numbers_capacity() -> u32 {
    DEFAULT_CAPACITY
}

/// Sockets a table holds at most, unless built with another capacity.
pub const DEFAULT_CAPACITY: u32 = 65_536;

/// How the table's maps are sized and resized. `SocketTable::new` uses `Presized`; the
/// others are kept so `benches/table_latency.rs` can measure against them.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Room for every socket number from the start (capacity × 4/3, rounded up to a power of
    /// two), so the maps never grow below full capacity. papaya reuses no removed slot, so
    /// churn still fills the map with tombstones and a same-size copy sweeps them now and
    /// then; incremental, that copy costs each write at most a chunk of 64 entries, and no
    /// writer waits for a whole copy.
    Presized,
    /// Presized, with blocking copies: the writer that finds the map full of tombstones
    /// copies all of it while every other writer waits.
    PresizedBlocking,
    /// The table before workers wrote to it: 1024 entries, grown by blocking resizes.
    Grown,
}

impl<V: Clone + Send + Sync> SocketTable<V> {
    fn map<K, T>(capacity: u32, layout: Layout) -> papaya::HashMap<K, T, Hasher> {
        let (capacity, resize) = match layout {
            Layout::Presized => (capacity as usize, papaya::ResizeMode::Incremental(64)),
            Layout::PresizedBlocking => (capacity as usize, papaya::ResizeMode::Blocking),
            Layout::Grown => (1024, papaya::ResizeMode::Blocking),
        };
        papaya::HashMap::builder()
            .capacity(capacity)
            .hasher(Hasher::default())
            .resize_mode(resize)
            .build()
    }

    /// A table for up to `capacity` sockets, its maps sized for all of them up front: a
    /// worker inserting a connection never waits for a map to grow (`Layout::Presized`;
    /// measured in `benches/table_latency.rs`). Costs 9 bytes per map slot, two maps of
    /// capacity × 4/3 slots rounded up to a power of two: 2.4 MB at the default 65,536,
    /// 4.7 MB at 131,072 (and as much again while a copy sweeps tombstones).
    pub fn new(capacity: u32) -> Self {
        Self::with_layout(capacity, Layout::Presized)
    }

    #[doc(hidden)]
    pub fn with_layout(capacity: u32, layout: Layout) -> Self {
        Self {
            by_tuple: Self::map(capacity, layout),
            by_number: Self::map(capacity, layout),
            numbers: NumberAllocator::new(capacity),
        }
    }

    /// Sockets the table holds at most.
    pub fn capacity(&self) -> u32 {
        self.numbers.capacity()
    }

    /// Adds a socket for `tuple`, numbered with the smallest free number; `make` builds its
    /// value from that number.
    pub fn insert(
        &self,
        tuple: FourTuple,
        make: impl FnOnce(SocketNumber) -> V,
    ) -> Result<SocketNumber, TableError> {
        let number = self.numbers.allocate()?;
        let entry = Entry {
            number,
            tuple,
            value: make(number),
        };
        if self.by_tuple.pin().try_insert(tuple, entry).is_err() {
            // Never visible: the number was not handed out.
            let _ = self.numbers.release(number);
            return Err(TableError::InUse {
                proto: tuple.proto,
                local: tuple.local,
                remote: tuple.remote,
            });
        }
        self.by_number.pin().insert(number.get(), (number, tuple));
        Ok(number)
    }

    /// Moves socket `number` to `tuple`, keeping its number and value (a UDP `connect`
    /// narrowing a bound socket to one remote). The new tuple must be free.
    pub fn rekey(&self, number: SocketNumber, tuple: FourTuple) -> Result<(), TableError> {
        let entry = self.get(number)?;
        let moved = Entry {
            number,
            tuple,
            value: entry.value.clone(),
        };
        if self.by_tuple.pin().try_insert(tuple, moved).is_err() {
            return Err(TableError::InUse {
                proto: tuple.proto,
                local: tuple.local,
                remote: tuple.remote,
            });
        }
        // From here both tuples lead to the socket; then the old one goes.
        let _ = self
            .by_tuple
            .pin()
            .remove_if(&entry.tuple, |_, e| e.number == number);
        self.by_number.pin().insert(number.get(), (number, tuple));
        Ok(())
    }

    /// Removes the socket `number` names; a stale number (closed, maybe reused) is an error
    /// and leaves the table untouched.
    pub fn remove(&self, number: SocketNumber) -> Result<Entry<V>, TableError> {
        let stale = || {
            TableError::Number(NumberError::Stale {
                number: number.get(),
                generation: number.generation(),
            })
        };
        let tuple = match self
            .by_number
            .pin()
            .remove_if(&number.get(), |_, (n, _)| *n == number)
        {
            Ok(Some((_, (_, tuple)))) => *tuple,
            _ => return Err(stale()),
        };
        let entry = match self
            .by_tuple
            .pin()
            .remove_if(&tuple, |_, e| e.number == number)
        {
            Ok(Some((_, e))) => e.clone(),
            _ => return Err(stale()),
        };
        self.numbers.release(number)?;
        Ok(entry)
    }

    /// The socket `number` names, if it is still that socket.
    pub fn get(&self, number: SocketNumber) -> Result<Entry<V>, TableError> {
        let stale = TableError::Number(NumberError::Stale {
            number: number.get(),
            generation: number.generation(),
        });
        let tuple = match self.by_number.pin().get(&number.get()) {
            Some((n, t)) if *n == number => *t,
            _ => return Err(stale),
        };
        match self.by_tuple.pin().get(&tuple) {
            Some(e) if e.number == number => Ok(e.clone()),
            _ => Err(stale),
        }
    }

    /// The socket a datagram from `remote` to `local` belongs to: connected (to this local
    /// address, then to any), then bound to the address, then bound to the port on any.
    #[inline]
    pub fn lookup(
        &self,
        proto: Protocol,
        local: SocketAddrV4,
        remote: SocketAddrV4,
    ) -> Option<Entry<V>> {
        self.lookup_with(proto, local, remote, Entry::clone)
    }

    /// `lookup` without a copy: runs `f` on the entry while the map's guard is held. The
    /// workers use this, so a datagram costs no reference-count traffic on its socket.
    #[inline]
    pub fn lookup_with<R>(
        &self,
        proto: Protocol,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        f: impl FnOnce(&Entry<V>) -> R,
    ) -> Option<R> {
        let map = self.by_tuple.pin();
        let any_local = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, local.port());
        map.get(&FourTuple::connected(proto, local, remote))
            .or_else(|| map.get(&FourTuple::connected(proto, any_local, remote)))
            .or_else(|| map.get(&FourTuple::bound(proto, local)))
            .or_else(|| map.get(&FourTuple::bound(proto, any_local)))
            .map(f)
    }

    /// Every socket, by number.
    pub fn entries(&self) -> Vec<Entry<V>> {
        let mut all: Vec<Entry<V>> = self.by_tuple.pin().values().cloned().collect();
        all.sort_by_key(|e| e.number.get());
        all
    }

    pub fn len(&self) -> usize {
        self.by_number.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether any socket is still bound to `proto` / port `port` (any address, any remote).
    pub fn port_in_use(&self, proto: Protocol, port: u16) -> bool {
        self.by_tuple
            .pin()
            .keys()
            .any(|t| t.proto == proto && t.local.port() == port)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    use super::*;

    fn addr(last: u8, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, last), port)
    }

    #[test]
    fn two_connections_differ_only_by_remote_port() {
        let t = SocketTable::new(64);
        let a = t
            .insert(
                FourTuple::connected(Protocol::Tcp, addr(1, 80), addr(2, 40000)),
                |_| "a",
            )
            .unwrap();
        let b = t
            .insert(
                FourTuple::connected(Protocol::Tcp, addr(1, 80), addr(2, 40001)),
                |_| "b",
            )
            .unwrap();
        assert_eq!((a.get(), b.get()), (1, 2));
        assert_eq!(
            t.lookup(Protocol::Tcp, addr(1, 80), addr(2, 40001))
                .unwrap()
                .value,
            "b"
        );
        assert!(
            t.lookup(Protocol::Tcp, addr(1, 80), addr(2, 40002))
                .is_none()
        );
    }

    #[test]
    fn lookup_prefers_connected_then_bound_then_any_address() {
        let t = SocketTable::new(64);
        t.insert(
            FourTuple::bound(Protocol::Udp, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 53)),
            |_| "any",
        )
        .unwrap();
        assert_eq!(
            t.lookup(Protocol::Udp, addr(1, 53), addr(2, 1))
                .unwrap()
                .value,
            "any"
        );
        t.insert(FourTuple::bound(Protocol::Udp, addr(1, 53)), |_| "bound")
            .unwrap();
        assert_eq!(
            t.lookup(Protocol::Udp, addr(1, 53), addr(2, 1))
                .unwrap()
                .value,
            "bound"
        );
        t.insert(
            FourTuple::connected(Protocol::Udp, addr(1, 53), addr(2, 1)),
            |_| "conn",
        )
        .unwrap();
        assert_eq!(
            t.lookup(Protocol::Udp, addr(1, 53), addr(2, 1))
                .unwrap()
                .value,
            "conn"
        );
        assert_eq!(
            t.lookup(Protocol::Udp, addr(1, 53), addr(2, 2))
                .unwrap()
                .value,
            "bound"
        );
        assert!(t.lookup(Protocol::Tcp, addr(1, 53), addr(2, 1)).is_none());
        // Connected from any local address.
        let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 99);
        t.insert(
            FourTuple::connected(Protocol::Udp, any, addr(2, 5)),
            |_| "conn-any",
        )
        .unwrap();
        assert_eq!(
            t.lookup(Protocol::Udp, addr(1, 99), addr(2, 5))
                .unwrap()
                .value,
            "conn-any"
        );
        assert!(t.lookup(Protocol::Udp, addr(1, 99), addr(2, 6)).is_none());
    }

    #[test]
    fn a_taken_tuple_is_refused_and_costs_no_number() {
        let t = SocketTable::new(64);
        let tuple = FourTuple::bound(Protocol::Udp, addr(1, 7));
        t.insert(tuple, |_| 1).unwrap();
        assert!(matches!(
            t.insert(tuple, |_| 2),
            Err(TableError::InUse { .. })
        ));
        let next = t
            .insert(FourTuple::bound(Protocol::Udp, addr(1, 8)), |_| 3)
            .unwrap();
        assert_eq!(next.get(), 2);
    }

    #[test]
    fn rekey_narrows_a_bound_socket_and_keeps_its_number() {
        let t = SocketTable::new(64);
        let n = t
            .insert(FourTuple::bound(Protocol::Udp, addr(1, 7)), |_| "s")
            .unwrap();
        t.rekey(
            n,
            FourTuple::connected(Protocol::Udp, addr(1, 7), addr(2, 9)),
        )
        .unwrap();
        assert_eq!(
            t.lookup(Protocol::Udp, addr(1, 7), addr(2, 9))
                .unwrap()
                .number,
            n
        );
        assert!(
            t.lookup(Protocol::Udp, addr(1, 7), addr(2, 10)).is_none(),
            "no longer bound"
        );
        assert!(t.get(n).unwrap().tuple.is_connected());
        let other = t
            .insert(FourTuple::bound(Protocol::Udp, addr(1, 8)), |_| "o")
            .unwrap();
        assert!(matches!(
            t.rekey(
                other,
                FourTuple::connected(Protocol::Udp, addr(1, 7), addr(2, 9))
            ),
            Err(TableError::InUse { .. })
        ));
        t.remove(n).unwrap();
        assert!(t.lookup(Protocol::Udp, addr(1, 7), addr(2, 9)).is_none());
    }

    #[test]
    fn a_stale_number_cannot_reach_the_socket_that_reuses_it() {
        let t = SocketTable::new(64);
        let old = t
            .insert(FourTuple::bound(Protocol::Udp, addr(1, 7)), |_| "old")
            .unwrap();
        t.remove(old).unwrap();
        let new = t
            .insert(FourTuple::bound(Protocol::Udp, addr(1, 9)), |_| "new")
            .unwrap();
        assert_eq!(
            new.get(),
            old.get(),
            "the number is reused, like a descriptor"
        );
        let err = t.get(old).unwrap_err();
        assert!(err.to_string().contains("socket 1 is closed"), "{err}");
        assert!(t.remove(old).is_err());
        assert_eq!(
            t.get(new).unwrap().value,
            "new",
            "the new socket is untouched"
        );
        assert!(!t.port_in_use(Protocol::Udp, 7));
        assert!(t.port_in_use(Protocol::Udp, 9));
    }

    /// One thread inserts 100,000 sockets (a worker accepting connections) while another
    /// looks up those already inserted: none is ever missing or found under another socket,
    /// and at the end every one is where it should be, by tuple and by number.
    #[test]
    fn a_hundred_thousand_inserts_beside_lookups_lose_and_misplace_nothing() {
        use std::sync::atomic::AtomicU32;
        const N: u32 = 100_000;
        fn tuple(i: u32) -> FourTuple {
            let [_, b, c, d] = i.to_be_bytes();
            FourTuple::connected(
                Protocol::Tcp,
                addr(1, 443),
                SocketAddrV4::new(Ipv4Addr::new(10, b, c, d), 40_000),
            )
        }
        let t = Arc::new(SocketTable::<u32>::new(N + 1024));
        let published = Arc::new(AtomicU32::new(0));
        let reader = {
            let (t, published) = (t.clone(), published.clone());
            std::thread::spawn(move || {
                let (mut x, mut checked) = (0x2545_f491u32, 0u64);
                loop {
                    let done = published.load(Ordering::Acquire);
                    if done == 0 {
                        continue;
                    }
                    for _ in 0..64 {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        let i = x % done;
                        let want = tuple(i);
                        let (value, tuple) = t
                            .lookup_with(want.proto, want.local, want.remote, |e| {
                                (e.value, e.tuple)
                            })
                            .unwrap_or_else(|| panic!("socket {i} went missing"));
                        assert_eq!((value, tuple), (i, want), "lookup found another socket");
                        checked += 1;
                    }
                    if done == N {
                        return checked;
                    }
                }
            })
        };
        let mut numbers = Vec::with_capacity(N as usize);
        for i in 0..N {
            numbers.push(t.insert(tuple(i), |_| i).unwrap());
            published.store(i + 1, Ordering::Release);
        }
        let checked = reader.join().unwrap();
        assert!(checked > 0);
        assert_eq!(t.len(), N as usize);
        for (i, n) in (0..N).zip(numbers) {
            assert_eq!(n.get(), i + 1, "numbers are handed out in order");
            let e = t.get(n).unwrap();
            assert_eq!((e.value, e.tuple), (i, tuple(i)));
        }
    }

    /// Readers look up a stable set while writers churn another: a stable entry is never
    /// missed (no lost entry), a churned one is never found after its removal returned, and
    /// never found under another socket's number (no phantom).
    #[test]
    fn concurrent_lookups_see_no_lost_or_phantom_entries() {
        let t = Arc::new(SocketTable::<u32>::new(DEFAULT_CAPACITY));
        let stable: Vec<SocketAddrV4> = (0..256).map(|i| addr(2, 10_000 + i)).collect();
        for (i, r) in stable.iter().enumerate() {
            t.insert(FourTuple::connected(Protocol::Udp, addr(1, 80), *r), |_| {
                i as u32
            })
            .unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let (t, stop) = (t.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut rounds = 0u32;
                    while !stop.load(Ordering::Relaxed) {
                        let remote = addr(3 + w, 20_000 + (rounds % 1000) as u16);
                        let tuple = FourTuple::connected(Protocol::Udp, addr(1, 80), remote);
                        let n = t.insert(tuple, |_| u32::MAX).unwrap();
                        let found = t.lookup(Protocol::Udp, addr(1, 80), remote).unwrap();
                        assert_eq!(found.number, n);
                        t.remove(n).unwrap();
                        let after = t.lookup(Protocol::Udp, addr(1, 80), remote);
                        assert!(after.is_none_or(|e| e.number != n), "phantom after removal");
                        rounds += 1;
                    }
                    rounds
                })
            })
            .collect();
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (t, stable) = (t.clone(), stable.clone());
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        for (i, r) in stable.iter().enumerate() {
                            let e = t
                                .lookup(Protocol::Udp, addr(1, 80), *r)
                                .expect("a stable entry went missing");
                            assert_eq!(e.value, i as u32, "lookup returned another socket");
                        }
                    }
                })
            })
            .collect();
        for r in readers {
            r.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        let churned: u32 = writers.into_iter().map(|w| w.join().unwrap()).sum();
        assert!(churned > 100, "writers barely ran: {churned}");
        assert_eq!(t.len(), 256);
    }
}
