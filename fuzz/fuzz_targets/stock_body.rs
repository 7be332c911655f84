//! Stock command bodies (seed 000's REST and WebSocket data) and thresholds: parsed or
//! refused with a message; a parsed command never plans a level out of range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stocky_core::stock::{plan, StockCommand, StockOp, Thresholds, MAX_AMOUNT};

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for op in StockOp::ALL {
        if let Ok(command) = StockCommand::parse(op, op.rest_field(), value.get(op.rest_field())) {
            // Against an empty store and one that holds the largest amount of everything.
            for level in [None, Some(MAX_AMOUNT)] {
                if let Ok(movements) = plan(&command, &mut |_| level) {
                    for m in movements {
                        assert!(m.after.abs() <= 2 * MAX_AMOUNT, "{m:?}");
                    }
                }
            }
        }
        let _ = StockCommand::parse(op, "data", Some(&value));
    }
    let _ = Thresholds::parse(1, &value);
});
