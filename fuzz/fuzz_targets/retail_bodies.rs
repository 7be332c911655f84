//! Sales, refunds, products, orders, customers, configs and transfers as clients and the
//! other tier send them: parsed or refused with a code; what parses renders back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stocky_core::catalog::{Product, ProductFields};
use stocky_core::customers::Customer;
use stocky_core::orders::{BusinessClock, NewOrder, Order};
use stocky_core::sales::{NewSale, RefundRequest, SaleRecord};
use stocky_core::sync_rules::Side;
use stocky_core::transfers::TransferRequest;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Some(o) = value.as_object() {
        if let Ok(sale) = NewSale::parse(o) {
            let record = sale.into_record("s", None, 0);
            let _ = record.status();
            let _ = record.movements();
        }
        let _ = RefundRequest::parse(o);
        let _ = ProductFields::parse(o, None);
        let _ = NewOrder::parse(o);
        let _ = TransferRequest::parse(o);
    }
    if let Ok(record) = SaleRecord::from_json(&value, "s", 0) {
        let back = SaleRecord::from_json(&record.to_json(&[]), "s", 0);
        assert_eq!(back.as_ref(), Ok(&record));
    }
    if let Ok(product) = Product::from_json(&value) {
        let _ = product.to_json();
    }
    if let Ok(order) = Order::from_json(&value, "s") {
        let _ = order.to_json();
    }
    if let Ok(mut customer) = Customer::from_json(&value, Side::Local, 0) {
        let copy = customer.clone();
        customer.merge(&copy);
        let _ = customer.to_json();
    }
    if let Ok(clock) = BusinessClock::from_config(&value) {
        let _ = clock.day_of(0);
    }
});
