//! The ISO-8601 parser: whatever it accepts renders back to a time that parses to the same
//! instant.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stocky_core::time::{iso8601, parse_iso8601};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(ms) = parse_iso8601(text) {
        let rendered = iso8601(ms);
        assert_eq!(parse_iso8601(&rendered), Some(ms), "{text:?} → {rendered}");
    }
});
