//! The WebSocket client-message parser: any text a client sends (commands, `auth`,
//! `request_sync`, `ping`) gets a message or a protocol error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = stocky_core::protocol::parse_client_message(text);
    }
});
