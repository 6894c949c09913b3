//! Device counters: the one trait through which the API (and any exporter)
//! lists them, whatever the device, and [`Counters`], a fixed set of named
//! atomics that a device bumps from any thread.
//!
//! A device declares its counters once with [`counter_set!`] (an enum whose
//! variants name the counters, and their report keys), keeps a
//! [`Counters`] of them and shares it with the VMM as `Arc<dyn Metrics>`.
//! A new device thus adds counters without the API knowing its kind.

use std::sync::atomic::{AtomicU64, Ordering};

/// What reports a device's counters.
pub trait Metrics: Send + Sync {
    /// Every counter as (key, value), in a fixed order.
    fn counters(&self) -> Vec<(&'static str, u64)>;

    /// Parts counted apart as well (a disk's queues), each with the suffix
    /// that names it after the device's id; none unless the device says.
    fn parts(&self) -> Vec<(String, &dyn Metrics)> {
        Vec::new()
    }
}

/// An enum of counters: each variant's place in [`CounterSet::KEYS`].
pub trait CounterSet: Copy {
    /// The report key of every counter, in declaration order.
    const KEYS: &'static [&'static str];
    /// This counter's index in `KEYS`.
    fn index(self) -> usize;
}

/// Declares an enum of counters and their report keys in one list:
/// `counter_set! { pub enum Counter { Requests => "requests", ... } }`.
#[macro_export]
macro_rules! counter_set {
    ($(#[$meta:meta])* $vis:vis enum $name:ident {
        $($(#[$vmeta:meta])* $variant:ident => $key:literal),+ $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        $vis enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $crate::metrics::CounterSet for $name {
            const KEYS: &'static [&'static str] = &[$($key),+];
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

/// The live values of the counters of `C`.
#[derive(Debug)]
pub struct Counters<C: CounterSet> {
    values: Box<[AtomicU64]>,
    _set: std::marker::PhantomData<C>,
}

impl<C: CounterSet> Default for Counters<C> {
    fn default() -> Self {
        Counters {
            values: C::KEYS.iter().map(|_| AtomicU64::new(0)).collect(),
            _set: std::marker::PhantomData,
        }
    }
}

impl<C: CounterSet> Counters<C> {
    /// Adds `n` to `counter`.
    pub fn add(&self, counter: C, n: u64) {
        self.values[counter.index()].fetch_add(n, Ordering::Relaxed);
    }

    /// The current value of `counter`.
    pub fn get(&self, counter: C) -> u64 {
        self.values[counter.index()].load(Ordering::Relaxed)
    }
}

impl<C: CounterSet + Send + Sync> Metrics for Counters<C> {
    fn counters(&self) -> Vec<(&'static str, u64)> {
        C::KEYS
            .iter()
            .zip(self.values.iter())
            .map(|(key, v)| (*key, v.load(Ordering::Relaxed)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    counter_set! {
        enum Test {
            A => "a",
            B => "b",
        }
    }

    #[test]
    fn counts_and_lists_in_declaration_order() {
        let c = Counters::<Test>::default();
        c.add(Test::B, 2);
        c.add(Test::B, 3);
        c.add(Test::A, 1);
        assert_eq!((c.get(Test::A), c.get(Test::B)), (1, 5));
        let m: &dyn Metrics = &c;
        assert_eq!(m.counters(), [("a", 1), ("b", 5)]);
    }
}
