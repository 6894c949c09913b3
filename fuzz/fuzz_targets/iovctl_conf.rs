//! The iovctl.conf(5) syntax parser (vmm/src/iov/ucl.rs) on arbitrary
//! input: it must return a tree or an error, never panic, overflow its
//! stack or loop. The file has no dependency but std, so it is built here
//! as it is.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../vmm/src/iov/ucl.rs"]
#[allow(dead_code)]
mod ucl;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(pairs) = ucl::parse(text) {
            // Every position is inside the text.
            let lines = text.lines().count().max(1) as u32 + 1;
            for p in &pairs {
                assert!(p.pos.line >= 1 && p.pos.line <= lines);
                assert!(p.value.pos >= p.pos);
            }
        }
    }
});
