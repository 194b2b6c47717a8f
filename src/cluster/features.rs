//! Feature levels the cluster finalizes (Kafka's KIP-584 feature flags): only
//! `transaction.version` (KIP-890 part 2 at level 2). A level lives in the metadata log
//! (`MetadataRecord::FeatureLevel`), so every broker answers ApiVersions with the same one and
//! every transaction coordinator follows it; UpdateFeatures changes it through the controller,
//! and at start a node finalizes `--transaction-version` if the cluster has no level yet
//! (`shard::features::bootstrap`, as Kafka's storage format does).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::coordinator::txn::coordinator::TRANSACTION_VERSION_MAX;

/// Kafka's name of the transaction protocol's feature.
pub const TRANSACTION_VERSION: &str = "transaction.version";

/// Every feature this broker knows: (name, lowest level, highest level).
pub const SUPPORTED: &[(&str, i16, i16)] = &[(TRANSACTION_VERSION, 0, TRANSACTION_VERSION_MAX)];

/// How an update may move a level (UpdateFeatures' `upgrade_type`; v0's `allow_downgrade`
/// is a safe downgrade).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UpgradeType {
    Upgrade,
    SafeDowngrade,
    UnsafeDowngrade,
}

impl UpgradeType {
    /// From the wire's `upgrade_type` (1, 2, 3).
    pub fn from_wire(code: i8) -> Option<UpgradeType> {
        match code {
            1 => Some(UpgradeType::Upgrade),
            2 => Some(UpgradeType::SafeDowngrade),
            3 => Some(UpgradeType::UnsafeDowngrade),
            _ => None,
        }
    }
}

/// One feature's new finalized level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureUpdate {
    pub name: String,
    pub level: i16,
    pub kind: UpgradeType,
}

/// Whether `update` may apply to a cluster whose finalized level of that feature is
/// `current` (`None`: never finalized, i.e. 0); the reason if not, for INVALID_UPDATE_VERSION.
pub fn check(current: Option<i16>, update: &FeatureUpdate) -> Result<(), String> {
    let name = &update.name;
    let Some(&(_, min, max)) = SUPPORTED.iter().find(|(n, _, _)| n == name) else {
        return Err(format!("the feature {name} is not supported"));
    };
    if update.level < min || update.level > max {
        return Err(format!(
            "{name} level {} is outside the supported range {min}..={max}",
            update.level
        ));
    }
    if update.level < current.unwrap_or(0) && update.kind == UpgradeType::Upgrade {
        return Err(format!(
            "{name} cannot be downgraded from {} to {} without a downgrade upgrade type",
            current.unwrap_or(0),
            update.level
        ));
    }
    Ok(())
}

/// The levels `updates` set in a cluster whose finalized levels are `finalized`: every update
/// checked ([`check`]), none if one fails (its reason); levels already in place are left out.
/// With `bootstrap` (a node's start), features the cluster has finalized are skipped.
pub fn plan(
    finalized: &BTreeMap<String, i16>,
    updates: &[FeatureUpdate],
    bootstrap: bool,
) -> Result<Vec<(String, i16)>, String> {
    let mut out = Vec::new();
    for u in updates {
        let current = finalized.get(&u.name).copied();
        if bootstrap && current.is_some() {
            continue;
        }
        check(current, u)?;
        if current != Some(u.level) {
            out.push((u.name.clone(), u.level));
        }
    }
    Ok(out)
}

/// The finalized `transaction.version` in `finalized`, or `default` (the node's
/// `--transaction-version`) while the cluster has none.
pub fn transaction_version(finalized: &BTreeMap<String, i16>, default: i16) -> i16 {
    finalized
        .get(TRANSACTION_VERSION)
        .copied()
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(name: &str, level: i16, kind: UpgradeType) -> FeatureUpdate {
        FeatureUpdate {
            name: name.to_owned(),
            level,
            kind,
        }
    }

    #[test]
    fn updates_follow_kafkas_rules() {
        let tv = TRANSACTION_VERSION;
        assert_eq!(check(None, &update(tv, 2, UpgradeType::Upgrade)), Ok(()));
        assert_eq!(check(Some(1), &update(tv, 2, UpgradeType::Upgrade)), Ok(()));
        assert_eq!(check(Some(2), &update(tv, 2, UpgradeType::Upgrade)), Ok(()));
        // Down needs a downgrade type; either kind will do for this feature.
        assert!(check(Some(2), &update(tv, 1, UpgradeType::Upgrade)).is_err());
        assert_eq!(
            check(Some(2), &update(tv, 0, UpgradeType::SafeDowngrade)),
            Ok(())
        );
        assert_eq!(
            check(Some(2), &update(tv, 1, UpgradeType::UnsafeDowngrade)),
            Ok(())
        );
        // Out of range, unknown.
        assert!(check(
            None,
            &update(tv, TRANSACTION_VERSION_MAX + 1, UpgradeType::Upgrade)
        )
        .unwrap_err()
        .contains("outside"));
        assert!(check(None, &update(tv, -1, UpgradeType::SafeDowngrade)).is_err());
        assert!(
            check(None, &update("metadata.version", 1, UpgradeType::Upgrade))
                .unwrap_err()
                .contains("not supported")
        );
        assert_eq!(UpgradeType::from_wire(2), Some(UpgradeType::SafeDowngrade));
        assert_eq!(UpgradeType::from_wire(0), None);
    }
}
