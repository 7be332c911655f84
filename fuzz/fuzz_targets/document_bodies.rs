//! Document, restore and ledger bodies (seed 000's `/api/sync/:db/:store` and backups).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stocky_core::documents::{parse_backup_stores, parse_bulk, parse_restore, SyncedRecord};
use stocky_core::stock::parse_ledger;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = parse_bulk(&value);
    let _ = parse_restore("shop", &value);
    let _ = parse_restore("_stock", &value);
    let _ = parse_backup_stores(value.get("backup"));
    let _ = parse_ledger(value.get("movements"));
    let _ = SyncedRecord::from_rendered(&value);
});
