//! Abuse limits: fixed-window request counters per credential and per client IP, and
//! failed-login counters per email and per IP. A tripped limit answers 429 with
//! `Retry-After` (seconds until the window ends).
//!
//! Memory is bounded: windows are kept in one map per limiter, swept of expired entries
//! whenever it grows past `MAX_KEYS`, and a limiter that is still full refuses new keys
//! rather than grow (fail closed).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys a limiter tracks at most.
const MAX_KEYS: usize = 100_000;

pub struct Limiter {
    limit: u32,
    window: Duration,
    counts: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Limiter {
    /// `limit` events per `window` per key; 0 disables the limiter.
    pub fn new(limit: u32, window: Duration) -> Self {
        Limiter {
            limit,
            window,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one event for `key`; `Err(retry_after)` when over the limit.
    pub fn hit(&self, key: &str) -> Result<(), Duration> {
        self.check(key, true)
    }

    /// Whether `key` is currently over the limit, without counting.
    pub fn blocked(&self, key: &str) -> Result<(), Duration> {
        self.check(key, false)
    }

    fn check(&self, key: &str, count: bool) -> Result<(), Duration> {
        if self.limit == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let Ok(mut counts) = self.counts.lock() else {
            return Ok(());
        };
        if counts.len() >= MAX_KEYS && !counts.contains_key(key) {
            counts.retain(|_, (start, _)| now.duration_since(*start) < self.window);
            if counts.len() >= MAX_KEYS {
                return Err(self.window);
            }
        }
        let entry = counts.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.limit {
            return Err(self.window.saturating_sub(now.duration_since(entry.0)));
        }
        if count {
            entry.1 += 1;
        }
        Ok(())
    }

    /// Takes back one event counted for `key` (an attempt reserved with [`Limiter::hit`]
    /// that turned out not to count, such as a successful login).
    pub fn refund(&self, key: &str) {
        if let Ok(mut counts) = self.counts.lock() {
            if let Some(entry) = counts.get_mut(key) {
                entry.1 = entry.1.saturating_sub(1);
            }
        }
    }

    /// Forgets `key` (e.g. after a successful login).
    pub fn reset(&self, key: &str) {
        if let Ok(mut counts) = self.counts.lock() {
            counts.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_key_within_a_window() {
        let limiter = Limiter::new(2, Duration::from_secs(60));
        assert!(limiter.hit("a").is_ok() && limiter.hit("a").is_ok());
        let retry = limiter.hit("a").unwrap_err();
        assert!(retry <= Duration::from_secs(60) && retry > Duration::from_secs(58));
        assert!(limiter.hit("b").is_ok());
        limiter.refund("a");
        assert!(limiter.hit("a").is_ok(), "a refunded event frees its place");
        assert!(limiter.hit("a").is_err());
        limiter.reset("a");
        assert!(limiter.hit("a").is_ok());
        assert!(Limiter::new(0, Duration::from_secs(1)).hit("x").is_ok());
    }
}
