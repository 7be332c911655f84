//! Declarative sync rules between a store node (the local side) and the hub (the remote
//! side), per document collection (seed 003 §6.4, seed 004's per-entity table):
//!
//! - **direction**: `up` (the store is the master: its changes go to the hub, the hub's
//!   never come down), `down` (the hub is the master), or `both`;
//! - **conflict**: which whole revision wins when both sides changed a record — `lww`
//!   (higher `version`, then later `updated_at`, then the hub), `cloud` (the hub always)
//!   or `local` (the store always);
//! - **field priority**: fields whose value always comes from one side, whoever won
//!   (seed 004: the store wins `isBanned`, the hub wins `firstName`).
//!
//! [`resolve`] applies a rule to a stored revision and an incoming one. It is the one
//! merge every tier runs, so a record converges: merging the merge result again on the
//! other side gives the same result (no ping-pong). The first rule whose `db` and `store`
//! match (`*` matches anything) applies; without one, a collection syncs both ways by LWW.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Which way a collection's changes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Store → hub only.
    Up,
    /// Hub → store only.
    Down,
    Both,
}

impl Direction {
    /// The store's changes go to the hub.
    pub fn goes_up(self) -> bool {
        matches!(self, Direction::Up | Direction::Both)
    }

    /// The hub's changes come down to the store.
    pub fn comes_down(self) -> bool {
        matches!(self, Direction::Down | Direction::Both)
    }
}

/// Which whole revision wins a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Conflict {
    /// Higher `version`, then later `updated_at`; a full tie goes to the hub.
    Lww,
    /// The hub's revision always wins.
    Cloud,
    /// The store's revision always wins.
    Local,
}

/// The tier a revision comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The store node (edge).
    Local,
    /// The hub.
    Remote,
}

/// The rule of the collections it matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectionRule {
    /// Database name, or `*`.
    pub db: String,
    /// Store (collection) name, or `*`.
    pub store: String,
    pub direction: Direction,
    #[serde(default = "lww")]
    pub conflict: Conflict,
    /// Fields whose value always comes from the store's revision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local_fields: Vec<String>,
    /// Fields whose value always comes from the hub's revision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_fields: Vec<String>,
}

fn lww() -> Conflict {
    Conflict::Lww
}

impl CollectionRule {
    /// A rule for `db`/`store` (either may be `*`).
    pub fn new(db: &str, store: &str, direction: Direction) -> Self {
        CollectionRule {
            db: db.into(),
            store: store.into(),
            direction,
            conflict: Conflict::Lww,
            local_fields: Vec::new(),
            remote_fields: Vec::new(),
        }
    }

    fn matches(&self, db: &str, store: &str) -> bool {
        (self.db == "*" || self.db == db) && (self.store == "*" || self.store == store)
    }
}

/// The rules of a hub and its store nodes, first match wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRules {
    pub collections: Vec<CollectionRule>,
}

impl Default for SyncRules {
    /// Every collection both ways, last write wins.
    fn default() -> Self {
        SyncRules {
            collections: vec![CollectionRule::new("*", "*", Direction::Both)],
        }
    }
}

impl SyncRules {
    /// The rule for `db`/`store`.
    pub fn rule_for(&self, db: &str, store: &str) -> CollectionRule {
        self.collections
            .iter()
            .find(|r| r.matches(db, store))
            .cloned()
            .unwrap_or_else(|| CollectionRule::new("*", "*", Direction::Both))
    }

    /// A problem with the rules, if any (an unusable name, a field on both sides).
    pub fn check(&self) -> Result<(), String> {
        for (i, rule) in self.collections.iter().enumerate() {
            for name in [&rule.db, &rule.store] {
                if name != "*" {
                    crate::documents::check_name("collection", name)
                        .map_err(|e| format!("collections[{i}]: {e}"))?;
                }
            }
            if let Some(both) = rule
                .local_fields
                .iter()
                .find(|f| rule.remote_fields.contains(f))
            {
                return Err(format!(
                    "collections[{i}]: field {both:?} cannot have priority on both sides"
                ));
            }
        }
        Ok(())
    }
}

/// One revision of a record: its client fields and server-owned metadata.
#[derive(Debug, Clone, Copy)]
pub struct Revision<'a> {
    pub fields: &'a Map<String, Value>,
    pub version: i64,
    /// Milliseconds since the epoch.
    pub updated_at: i64,
    pub deleted: bool,
}

impl Revision<'_> {
    fn same_as(&self, other: &Revision<'_>) -> bool {
        self.version == other.version
            && self.updated_at == other.updated_at
            && self.deleted == other.deleted
            && (self.deleted || self.fields == other.fields)
    }
}

/// What to do with an incoming revision.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolution {
    /// The incoming revision is the stored one.
    Same,
    /// The stored revision won.
    Keep,
    /// Store the incoming revision as it is.
    Take,
    /// Store these fields as a new revision (after the higher of the two versions): the
    /// field priorities took values from both sides.
    Merge(Map<String, Value>),
}

/// Resolves `incoming` (from `incoming_from`) against `stored` under `rule`.
pub fn resolve(
    stored: Option<Revision<'_>>,
    incoming: Revision<'_>,
    incoming_from: Side,
    rule: &CollectionRule,
) -> Resolution {
    let Some(stored) = stored else {
        return Resolution::Take;
    };
    if stored.same_as(&incoming) {
        return Resolution::Same;
    }
    let incoming_wins = match rule.conflict {
        Conflict::Cloud => incoming_from == Side::Remote,
        Conflict::Local => incoming_from == Side::Local,
        Conflict::Lww => match (incoming.version, incoming.updated_at)
            .cmp(&(stored.version, stored.updated_at))
        {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => incoming_from == Side::Remote,
        },
    };
    let (winner, loser) = if incoming_wins {
        (incoming, stored)
    } else {
        (stored, incoming)
    };
    let plain = if incoming_wins {
        Resolution::Take
    } else {
        Resolution::Keep
    };
    if winner.deleted || loser.deleted {
        return plain;
    }
    let (local, remote) = match incoming_from {
        Side::Local => (incoming, stored),
        Side::Remote => (stored, incoming),
    };
    let mut fields = winner.fields.clone();
    for (names, source) in [(&rule.local_fields, local), (&rule.remote_fields, remote)] {
        for name in names {
            match source.fields.get(name) {
                Some(value) => fields.insert(name.clone(), value.clone()),
                None => fields.remove(name),
            };
        }
    }
    if fields == *winner.fields {
        plain
    } else {
        Resolution::Merge(fields)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn rev(fields: &Map<String, Value>, version: i64, updated_at: i64) -> Revision<'_> {
        Revision {
            fields,
            version,
            updated_at,
            deleted: false,
        }
    }

    /// Applies a resolution the way a store does, returning (fields, version).
    fn apply(
        stored: (&Map<String, Value>, i64, i64),
        incoming: (&Map<String, Value>, i64, i64),
        from: Side,
        rule: &CollectionRule,
    ) -> (Map<String, Value>, i64, i64) {
        match resolve(
            Some(rev(stored.0, stored.1, stored.2)),
            rev(incoming.0, incoming.1, incoming.2),
            from,
            rule,
        ) {
            Resolution::Same | Resolution::Keep => (stored.0.clone(), stored.1, stored.2),
            Resolution::Take => (incoming.0.clone(), incoming.1, incoming.2),
            Resolution::Merge(f) => (f, stored.1.max(incoming.1) + 1, 1_000),
        }
    }

    #[test]
    fn last_write_wins_by_version_then_time_then_hub() {
        let rule = CollectionRule::new("*", "*", Direction::Both);
        let (a, b) = (map(json!({"n": "a"})), map(json!({"n": "b"})));
        let take = |s: (i64, i64), i: (i64, i64), from| {
            resolve(Some(rev(&a, s.0, s.1)), rev(&b, i.0, i.1), from, &rule)
        };
        assert_eq!(take((1, 5), (2, 1), Side::Local), Resolution::Take);
        assert_eq!(take((3, 5), (2, 9), Side::Remote), Resolution::Keep);
        assert_eq!(take((2, 5), (2, 6), Side::Local), Resolution::Take);
        assert_eq!(take((2, 5), (2, 5), Side::Remote), Resolution::Take);
        assert_eq!(take((2, 5), (2, 5), Side::Local), Resolution::Keep);
        assert_eq!(
            resolve(Some(rev(&a, 2, 5)), rev(&a, 2, 5), Side::Remote, &rule),
            Resolution::Same,
            "the same revision is no change"
        );
        assert_eq!(
            resolve(None, rev(&a, 7, 5), Side::Local, &rule),
            Resolution::Take
        );
    }

    #[test]
    fn cloud_and_local_win_whatever_the_versions() {
        let (a, b) = (map(json!({"n": "a"})), map(json!({"n": "b"})));
        let mut rule = CollectionRule::new("*", "*", Direction::Both);
        rule.conflict = Conflict::Cloud;
        let r = |from| resolve(Some(rev(&a, 9, 9)), rev(&b, 1, 1), from, &rule);
        assert_eq!(r(Side::Remote), Resolution::Take);
        assert_eq!(r(Side::Local), Resolution::Keep);
        rule.conflict = Conflict::Local;
        let r = |from| resolve(Some(rev(&a, 9, 9)), rev(&b, 1, 1), from, &rule);
        assert_eq!(r(Side::Remote), Resolution::Keep);
        assert_eq!(r(Side::Local), Resolution::Take);
    }

    #[test]
    fn field_priorities_take_each_side_and_converge() {
        // Seed 004's customers: the store wins isBanned, the hub wins firstName.
        let mut rule = CollectionRule::new("*", "customers", Direction::Both);
        rule.local_fields = vec!["isBanned".into()];
        rule.remote_fields = vec!["firstName".into()];
        let store = map(json!({"firstName": "Ana (typo)", "isBanned": true, "notes": "old"}));
        let hub = map(json!({"firstName": "Ana", "isBanned": false, "notes": "new"}));
        // The hub's newer revision arrives at the store.
        let (at_store, v, t) = apply((&store, 3, 10), (&hub, 4, 20), Side::Remote, &rule);
        assert_eq!(
            Value::Object(at_store.clone()),
            json!({"firstName": "Ana", "isBanned": true, "notes": "new"})
        );
        // The merge goes up; at the hub it is taken as it is: no ping-pong.
        let (at_hub, v2, _) = apply((&hub, 4, 20), (&at_store, v, t), Side::Local, &rule);
        assert_eq!((at_hub.clone(), v2), (at_store.clone(), v));
        // And coming down again changes nothing.
        assert_eq!(
            resolve(
                Some(rev(&at_store, v, t)),
                rev(&at_hub, v2, t),
                Side::Remote,
                &rule
            ),
            Resolution::Same
        );
        // A field missing on its priority side is removed.
        let bare = map(json!({"firstName": "Ana", "notes": "x"}));
        let (merged, _, _) = apply((&bare, 1, 1), (&store, 2, 2), Side::Remote, &rule);
        assert_eq!(
            Value::Object(merged),
            json!({"firstName": "Ana (typo)", "notes": "old"})
        );
    }

    #[test]
    fn rules_match_in_order_and_check_their_names() {
        let rules = SyncRules {
            collections: vec![
                CollectionRule::new("pos", "menu", Direction::Up),
                CollectionRule::new("*", "orders", Direction::Down),
                CollectionRule::new("*", "*", Direction::Both),
            ],
        };
        assert_eq!(rules.rule_for("pos", "menu").direction, Direction::Up);
        assert_eq!(rules.rule_for("other", "menu").direction, Direction::Both);
        assert_eq!(rules.rule_for("x", "orders").direction, Direction::Down);
        assert!(rules.check().is_ok());
        let parsed: SyncRules = serde_json::from_value(json!({"collections": [
            {"db": "*", "store": "customers", "direction": "both",
             "localFields": ["isBanned"], "remoteFields": ["isBanned"]}
        ]}))
        .unwrap();
        assert_eq!(parsed.collections[0].conflict, Conflict::Lww);
        assert!(parsed.check().unwrap_err().contains("both sides"));
        assert!(SyncRules::default().rule_for("a", "b").direction == Direction::Both);
    }
}
