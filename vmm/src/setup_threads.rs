//! Threads that do start-up work and end before any guest code runs: the
//! memory reservation's workers ([`crate::memory`]) and the threads that
//! open passthrough devices ([`crate::slot_devices`]). They are scoped, so
//! they borrow what they work on, and run without a seccomp filter (see
//! `crate::sandbox`).

use std::io;
use std::thread::ScopedJoinHandle;

/// Joins every thread of `handles` (each as its spawn returned it) and
/// returns the first error in their order: a thread's own, or `failed` of
/// the spawn's error for a thread that did not start, or of `panicked` for
/// one that panicked.
pub fn join_all<E>(
    handles: Vec<io::Result<ScopedJoinHandle<'_, Result<(), E>>>>,
    panicked: &str,
    failed: impl Fn(io::Error) -> E,
) -> Result<(), E> {
    let mut result = Ok(());
    for h in handles {
        let r = match h {
            Ok(h) => h
                .join()
                .unwrap_or_else(|_| Err(failed(io::Error::other(panicked)))),
            Err(e) => Err(failed(e)),
        };
        if result.is_ok() {
            result = r;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_thread_is_joined_and_the_first_error_wins() {
        let ran = AtomicUsize::new(0);
        let result = std::thread::scope(|s| {
            let spawned = |r: Result<(), String>| {
                let ran = &ran;
                s.spawn(move || {
                    ran.fetch_add(1, Ordering::Relaxed);
                    r
                })
            };
            let handles = vec![
                Ok(spawned(Ok(()))),
                Err(io::Error::other("no thread")),
                Ok(spawned(Err("second".into()))),
                Ok(spawned(Ok(()))),
            ];
            join_all(handles, "it panicked", |e| e.to_string())
        });
        assert_eq!(result, Err("no thread".to_string()));
        assert_eq!(ran.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_panic_is_an_error_named_by_the_caller() {
        let result = std::thread::scope(|s| {
            let handles =
                vec![Ok(s.spawn(|| -> Result<(), String> {
                    panic!("in a test thread")
                }))];
            join_all(handles, "it panicked", |e| format!("thread: {e}"))
        });
        assert_eq!(result, Err("thread: it panicked".to_string()));
    }
}
