//! IP policy and rule operations, and their tables (a schema component of their own).

use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row};

use super::Store;
use crate::error::{Result, StoreError};
use crate::ids::new_id;
use crate::ip_policies::{
    parse_rule_cidr, IpPolicy, IpPolicyRef, IpPolicyRule, RuleAction, IP_POLICY_PREFIX,
    IP_POLICY_RULE_PREFIX,
};
use crate::model::now;
use crate::validate::check_description;

/// Component name in `schema_components`: a component, not a core step, so a data directory stays readable
/// by a keygate that predates IP policies.
pub(crate) const COMPONENT: &str = "ip-policies";

/// Migration steps; step `n` takes the component from version `n` to `n + 1`. Only ever append.
pub(crate) const STEPS: &[&str] = &["
CREATE TABLE ip_policies (
    id          TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE TABLE ip_policy_rules (
    id           TEXT PRIMARY KEY,
    ip_policy_id TEXT NOT NULL REFERENCES ip_policies (id),
    cidr         TEXT NOT NULL,
    action       TEXT NOT NULL CHECK (action IN ('allow', 'deny')),
    description  TEXT NOT NULL,
    created_at   TEXT NOT NULL
);
CREATE INDEX ip_policy_rules_by_policy ON ip_policy_rules (ip_policy_id);
"];

const POLICY_COLUMNS: &str = "id, created_at, description";
const RULE_COLUMNS: &str = "id, created_at, description, cidr, ip_policy_id, action";

fn policy_from_row(row: &Row<'_>) -> rusqlite::Result<IpPolicy> {
    Ok(IpPolicy {
        id: row.get(0)?,
        created_at: row.get(1)?,
        description: row.get(2)?,
    })
}

fn rule_from_row(row: &Row<'_>) -> rusqlite::Result<IpPolicyRule> {
    let action: String = row.get(5)?;
    Ok(IpPolicyRule {
        id: row.get(0)?,
        created_at: row.get(1)?,
        description: row.get(2)?,
        cidr: row.get(3)?,
        ip_policy: IpPolicyRef { id: row.get(4)? },
        action: action.parse().map_err(|err: StoreError| {
            rusqlite::Error::FromSqlConversionFailure(5, Type::Text, Box::new(err))
        })?,
    })
}

fn policy_by_id(conn: &Connection, id: &str) -> Result<IpPolicy> {
    let sql = format!("SELECT {POLICY_COLUMNS} FROM ip_policies WHERE id = ?1");
    conn.prepare_cached(&sql)?
        .query_row([id], policy_from_row)
        .optional()?
        .ok_or_else(|| StoreError::IpPolicyNotFound(id.to_owned()))
}

fn rule_by_id(conn: &Connection, id: &str) -> Result<IpPolicyRule> {
    let sql = format!("SELECT {RULE_COLUMNS} FROM ip_policy_rules WHERE id = ?1");
    conn.prepare_cached(&sql)?
        .query_row([id], rule_from_row)
        .optional()?
        .ok_or_else(|| StoreError::IpPolicyRuleNotFound(id.to_owned()))
}

impl Store {
    /// Creates an empty IP policy.
    pub fn create_ip_policy(&self, description: &str) -> Result<IpPolicy> {
        check_description(description)?;
        let policy = IpPolicy {
            id: new_id(IP_POLICY_PREFIX)?,
            created_at: now(),
            description: description.to_owned(),
        };
        self.write(|tx| {
            tx.execute(
                "INSERT INTO ip_policies (id, created_at, description) VALUES (?1, ?2, ?3)",
                (&policy.id, &policy.created_at, &policy.description),
            )?;
            Ok::<_, StoreError>(())
        })?;
        Ok(policy)
    }

    /// All IP policies, oldest first.
    pub fn list_ip_policies(&self) -> Result<Vec<IpPolicy>> {
        let sql = format!("SELECT {POLICY_COLUMNS} FROM ip_policies ORDER BY rowid");
        let mut stmt = self.connection().prepare_cached(&sql)?;
        let policies = stmt
            .query_map([], policy_from_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(policies)
    }

    /// The IP policy with this id.
    pub fn get_ip_policy(&self, id: &str) -> Result<IpPolicy> {
        policy_by_id(self.connection(), id)
    }

    /// Deletes an IP policy and its rules. As at ngrok, a `restrict-ips` already running with a reference to
    /// it then sees a policy without rules (a policy loaded afterwards with the reference is refused).
    pub fn delete_ip_policy(&self, id: &str) -> Result<()> {
        self.write(|tx| {
            policy_by_id(tx, id)?;
            tx.execute("DELETE FROM ip_policy_rules WHERE ip_policy_id = ?1", [id])?;
            tx.execute("DELETE FROM ip_policies WHERE id = ?1", [id])?;
            Ok(())
        })
    }

    /// Adds a rule to policy `ip_policy_id`. The CIDR must be a range without host bits
    /// ([`parse_rule_cidr`]); it is stored normalized.
    pub fn create_ip_policy_rule(
        &self,
        ip_policy_id: &str,
        cidr: &str,
        action: RuleAction,
        description: &str,
    ) -> Result<IpPolicyRule> {
        let net = parse_rule_cidr(cidr)?;
        check_description(description)?;
        let rule = IpPolicyRule {
            id: new_id(IP_POLICY_RULE_PREFIX)?,
            created_at: now(),
            description: description.to_owned(),
            cidr: net.to_string(),
            ip_policy: IpPolicyRef {
                id: ip_policy_id.to_owned(),
            },
            action,
        };
        self.write(|tx| {
            policy_by_id(tx, ip_policy_id)?;
            tx.execute(
                "INSERT INTO ip_policy_rules (id, ip_policy_id, cidr, action, description, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                (
                    &rule.id,
                    &rule.ip_policy.id,
                    &rule.cidr,
                    rule.action.as_str(),
                    &rule.description,
                    &rule.created_at,
                ),
            )?;
            Ok::<_, StoreError>(())
        })?;
        Ok(rule)
    }

    /// All rules, or those of one policy ([`StoreError::IpPolicyNotFound`] for an unknown id), oldest first.
    pub fn list_ip_policy_rules(&self, ip_policy_id: Option<&str>) -> Result<Vec<IpPolicyRule>> {
        let conn = self.connection();
        let rules = match ip_policy_id {
            Some(id) => {
                policy_by_id(conn, id)?;
                let sql = format!(
                    "SELECT {RULE_COLUMNS} FROM ip_policy_rules WHERE ip_policy_id = ?1 ORDER BY rowid"
                );
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt.query_map([id], rule_from_row)?;
                rows.collect::<rusqlite::Result<_>>()?
            }
            None => {
                let sql = format!("SELECT {RULE_COLUMNS} FROM ip_policy_rules ORDER BY rowid");
                let mut stmt = conn.prepare_cached(&sql)?;
                let rows = stmt.query_map([], rule_from_row)?;
                rows.collect::<rusqlite::Result<_>>()?
            }
        };
        Ok(rules)
    }

    /// The rule with this id.
    pub fn get_ip_policy_rule(&self, id: &str) -> Result<IpPolicyRule> {
        rule_by_id(self.connection(), id)
    }

    /// Deletes a rule.
    pub fn delete_ip_policy_rule(&self, id: &str) -> Result<()> {
        self.write(
            |tx| match tx.execute("DELETE FROM ip_policy_rules WHERE id = ?1", [id])? {
                0 => Err(StoreError::IpPolicyRuleNotFound(id.to_owned())),
                _ => Ok(()),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip_policies::IpRule;
    use crate::test_support::TempDir;

    #[test]
    fn policies_and_rules_round_trip_and_load_as_a_snapshot() {
        let dir = TempDir::new("ip-policies");
        let store = Store::open(dir.path()).unwrap();
        let office = store.create_ip_policy("office").unwrap();
        assert!(office.id.starts_with(IP_POLICY_PREFIX), "{}", office.id);
        let empty = store.create_ip_policy("").unwrap();
        assert_eq!(
            store.list_ip_policies().unwrap(),
            [office.clone(), empty.clone()]
        );
        assert_eq!(store.get_ip_policy(&office.id).unwrap(), office);

        let lan = store
            .create_ip_policy_rule(&office.id, "10.0.0.0/8", RuleAction::Allow, "lan")
            .unwrap();
        assert!(lan.id.starts_with(IP_POLICY_RULE_PREFIX), "{}", lan.id);
        let guest = store
            .create_ip_policy_rule(&office.id, " 2001:db8::/32 ", RuleAction::Deny, "")
            .unwrap();
        assert_eq!(guest.cidr, "2001:db8::/32");
        assert_eq!(guest.ip_policy.id, office.id);
        assert_eq!(store.get_ip_policy_rule(&lan.id).unwrap(), lan);
        assert_eq!(
            store.list_ip_policy_rules(Some(&office.id)).unwrap(),
            [lan.clone(), guest.clone()]
        );
        assert!(store
            .list_ip_policy_rules(Some(&empty.id))
            .unwrap()
            .is_empty());
        assert_eq!(store.list_ip_policy_rules(None).unwrap().len(), 2);

        let snapshot = store.load_ip_policies().unwrap();
        assert_eq!(snapshot.generation(), store.generation().unwrap());
        assert_eq!(
            snapshot.rules(&office.id).unwrap(),
            [
                IpRule {
                    net: "10.0.0.0/8".parse().unwrap(),
                    action: RuleAction::Allow
                },
                IpRule {
                    net: "2001:db8::/32".parse().unwrap(),
                    action: RuleAction::Deny
                }
            ]
        );
        assert_eq!(snapshot.rules(&empty.id), Some(&[][..]));
        assert_eq!(snapshot.rules("ipp_unknown"), None);

        store.delete_ip_policy_rule(&lan.id).unwrap();
        assert!(matches!(
            store.delete_ip_policy_rule(&lan.id),
            Err(StoreError::IpPolicyRuleNotFound(_))
        ));
        // Deleting a policy deletes its rules.
        store.delete_ip_policy(&office.id).unwrap();
        assert!(matches!(
            store.get_ip_policy_rule(&guest.id),
            Err(StoreError::IpPolicyRuleNotFound(_))
        ));
        assert_eq!(store.list_ip_policies().unwrap(), [empty]);
        assert_eq!(store.load_ip_policies().unwrap().rule_count(), 0);
    }

    #[test]
    fn bad_rules_and_unknown_policies_are_input_errors() {
        let dir = TempDir::new("ip-policy-errors");
        let store = Store::open(dir.path()).unwrap();
        let policy = store.create_ip_policy("").unwrap();
        let generation = store.generation().unwrap();
        for (policy_id, cidr, message) in [
            (policy.id.as_str(), "10.1.2.3", "is an address"),
            (policy.id.as_str(), "10.1.2.3/8", "host bits"),
            (
                "ipp_missing",
                "10.0.0.0/8",
                "IP policy 'ipp_missing' not found",
            ),
        ] {
            let err = store
                .create_ip_policy_rule(policy_id, cidr, RuleAction::Allow, "")
                .unwrap_err();
            assert!(err.is_invalid_input(), "{err}");
            assert!(err.to_string().contains(message), "{err}");
        }
        assert!(store
            .create_ip_policy("bell\u{7}")
            .unwrap_err()
            .is_invalid_input());
        assert!(matches!(
            store.delete_ip_policy("ipp_missing"),
            Err(StoreError::IpPolicyNotFound(_))
        ));
        assert_eq!(
            store.generation().unwrap(),
            generation,
            "nothing was written"
        );
    }
}
