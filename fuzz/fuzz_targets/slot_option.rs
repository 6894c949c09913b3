//! The `-s` option parser (vmm/src/config/slot.rs), the one parser behind
//! `-s`, `vfvm ctl add-device` and VM files, on arbitrary input: it must
//! return a slot or a one-line error, never panic. A slot it accepts must
//! print as `-s` text that parses back to the same slot, and survive the
//! JSON the API and VM files carry.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vmm::config::PciSlotConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<PciSlotConfig>() {
        Ok(slot) => {
            let printed = slot.to_string();
            let again: PciSlotConfig = printed
                .parse()
                .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}, which fails: {e}"));
            assert_eq!(again, slot, "{text:?} printed as {printed:?}");
            let json = serde_json::to_string(&slot).unwrap();
            let back: PciSlotConfig = serde_json::from_str(&json).unwrap();
            assert_eq!(back, slot, "JSON {json}");
        }
        Err(e) => {
            let line = e.to_string();
            assert!(!line.contains('\n') || text.contains('\n'), "{line:?}");
        }
    }
});
