//! Dropping the calling thread's capabilities to a kind's set, and
//! no_new_privs. Capabilities are per thread in Linux: each thread drops
//! its own as it enters its sandbox, and threads it starts later inherit
//! what is left.

use caps::{CapSet, Capability, CapsHashSet};

/// Keeps only `keep` (of what the thread has) in its effective, permitted
/// and bounding sets, clears its inheritable and ambient sets and sets
/// no_new_privs, so no exec could gain any back.
pub(super) fn restrict(keep: &[Capability]) -> Result<(), String> {
    let keep: CapsHashSet = keep.iter().copied().collect();
    let err = |what: &str, e: caps::errors::CapsError| format!("{what}: {e}");
    // The bounding set first: dropping from it takes CAP_SETPCAP, which
    // goes with the effective set. Without it (an unprivileged vfvm) there
    // is nothing to drop it for.
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP)
        .map_err(|e| err("capget", e))?
    {
        let bounding = caps::read(None, CapSet::Bounding).map_err(|e| err("bounding set", e))?;
        for cap in bounding.difference(&keep) {
            caps::drop(None, CapSet::Bounding, *cap).map_err(|e| err("bounding set", e))?;
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| err("ambient set", e))?;
    caps::clear(None, CapSet::Inheritable).map_err(|e| err("inheritable set", e))?;
    for set in [CapSet::Effective, CapSet::Permitted] {
        let have = caps::read(None, set).map_err(|e| err("capget", e))?;
        let left: CapsHashSet = have.intersection(&keep).copied().collect();
        caps::set(None, set, &left).map_err(|e| err("capset", e))?;
    }
    // SAFETY: prctl with integer arguments only; it changes this thread's
    // flag, which its later threads inherit.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(format!("no_new_privs: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}
