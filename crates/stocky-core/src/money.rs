//! Money as exact integers: amounts travel as JSON numbers with at most two decimals
//! (`12.5`, `3`) and are kept in minor units (cents), so totals add up exactly and no
//! rounding ever happens on the server.
//!
//! Invariant: every stored amount is within `0..=MAX_MONEY` minor units; sums are checked.

use serde::Serializer;
use serde_json::Value;

/// The largest amount accepted, in minor units (10^13 cents = 10^11 currency units).
pub const MAX_MONEY: i64 = 10_000_000_000_000;

/// Minor units per currency unit.
pub const SCALE: i64 = 100;

/// Reads a non-negative amount with at most two decimals, in minor units. `at` names the
/// field in the message.
pub fn parse_amount(value: &Value, at: &str) -> Result<i64, String> {
    let Value::Number(n) = value else {
        return Err(format!(
            "{at} must be a number, got {}",
            crate::stock::type_name(value)
        ));
    };
    let minor = if let Some(whole) = n.as_i64() {
        whole.checked_mul(SCALE)
    } else {
        n.as_f64().and_then(|x| {
            let scaled = x * SCALE as f64;
            let rounded = scaled.round();
            // Two decimals at most: 12.345 is refused rather than rounded.
            ((scaled - rounded).abs() < 1e-6 && rounded.abs() < 9.0e15).then_some(rounded as i64)
        })
    };
    match minor {
        Some(m) if m < 0 => Err(format!("{at} must not be negative")),
        Some(m) if m <= MAX_MONEY => Ok(m),
        Some(_) => Err(format!("{at} is larger than {}", MAX_MONEY / SCALE)),
        None => Err(format!("{at} must have at most two decimals")),
    }
}

/// An amount in minor units as the JSON number clients sent (`1250` → `12.5`).
pub fn to_json(minor: i64) -> Value {
    if minor % SCALE == 0 {
        Value::from(minor / SCALE)
    } else {
        Value::from(minor as f64 / SCALE as f64)
    }
}

/// `serialize_with` for fields kept in minor units.
pub fn serialize<S: Serializer>(minor: &i64, s: S) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&to_json(*minor), s)
}

/// `serialize_with` for optional fields kept in minor units.
pub fn serialize_opt<S: Serializer>(minor: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&minor.map(to_json), s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts_are_exact_cents() {
        assert_eq!(parse_amount(&json!(12.5), "p"), Ok(1250));
        assert_eq!(parse_amount(&json!(3), "p"), Ok(300));
        assert_eq!(parse_amount(&json!(0.1), "p"), Ok(10));
        assert_eq!(parse_amount(&json!(19.99), "p"), Ok(1999));
        assert!(parse_amount(&json!(1.005), "p").is_err());
        assert!(parse_amount(&json!(-1), "p")
            .unwrap_err()
            .contains("negative"));
        assert!(parse_amount(&json!("1"), "p").is_err());
        assert!(parse_amount(&json!(i64::MAX), "p").is_err());
        assert!(parse_amount(&json!(1e300), "p").is_err());
        assert_eq!(to_json(1250), json!(12.5));
        assert_eq!(to_json(300), json!(3));
        assert_eq!(to_json(1999), json!(19.99));
    }
}
