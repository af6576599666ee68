//! IP policy and rule operations, and their tables (a schema component of their own).

use keygate_store::{Component, Row, Step, Tx};

use super::Store;
use crate::error::{Result, StoreError};
use crate::ids::new_id;
use crate::ip_policies::{
    parse_rule_cidr, IpPolicy, IpPolicyRef, IpPolicyRule, RuleAction, IP_POLICY_PREFIX,
    IP_POLICY_RULE_PREFIX,
};
use crate::model::now;
use crate::schema::next_seq;
use crate::validate::check_description;

/// The IP policy tables: a component of their own, so a database stays readable by a keygate that
/// predates IP policies.
pub(crate) const IP_POLICIES: Component = Component {
    name: "ip-policies",
    steps: &[
        Step::same(
            "
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
",
        ),
        // Creation order, for listings on both engines (see `next_seq`).
        Step::per_backend(
            "
ALTER TABLE ip_policies ADD COLUMN seq BIGINT;
UPDATE ip_policies SET seq = rowid;
ALTER TABLE ip_policy_rules ADD COLUMN seq BIGINT;
UPDATE ip_policy_rules SET seq = rowid;
",
            "
ALTER TABLE ip_policies ADD COLUMN seq BIGINT;
ALTER TABLE ip_policy_rules ADD COLUMN seq BIGINT;
",
        ),
    ],
};

const POLICY_COLUMNS: &str = "id, created_at, description";
const RULE_COLUMNS: &str = "id, created_at, description, cidr, ip_policy_id, action";

fn policy_from_row(row: &Row) -> Result<IpPolicy> {
    Ok(IpPolicy {
        id: row.get(0)?,
        created_at: row.get(1)?,
        description: row.get(2)?,
    })
}

fn rule_from_row(row: &Row) -> Result<IpPolicyRule> {
    let action: String = row.get(5)?;
    Ok(IpPolicyRule {
        id: row.get(0)?,
        created_at: row.get(1)?,
        description: row.get(2)?,
        cidr: row.get(3)?,
        ip_policy: IpPolicyRef { id: row.get(4)? },
        action: action.parse()?,
    })
}

fn policy_by_id(tx: &mut Tx<'_>, id: &str) -> Result<IpPolicy> {
    let sql = format!("SELECT {POLICY_COLUMNS} FROM ip_policies WHERE id = $1");
    match tx.query_opt(&sql, &[&id])? {
        Some(row) => policy_from_row(&row),
        None => Err(StoreError::IpPolicyNotFound(id.to_owned())),
    }
}

fn rule_by_id(tx: &mut Tx<'_>, id: &str) -> Result<IpPolicyRule> {
    let sql = format!("SELECT {RULE_COLUMNS} FROM ip_policy_rules WHERE id = $1");
    match tx.query_opt(&sql, &[&id])? {
        Some(row) => rule_from_row(&row),
        None => Err(StoreError::IpPolicyRuleNotFound(id.to_owned())),
    }
}

/// Runs `f` in one read snapshot of the IP policy tables.
fn query<T>(store: &Store, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
    store.read(IP_POLICIES.name, |tx, _| f(tx))
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
        self.write(IP_POLICIES.name, |tx| {
            let sql = format!(
                "INSERT INTO ip_policies (id, created_at, description, seq) VALUES ($1, $2, $3, {})",
                next_seq("ip_policies")
            );
            tx.execute(&sql, &[&policy.id, &policy.created_at, &policy.description])?;
            Ok::<_, StoreError>(())
        })?;
        Ok(policy)
    }

    /// All IP policies, oldest first.
    pub fn list_ip_policies(&self) -> Result<Vec<IpPolicy>> {
        let sql = format!("SELECT {POLICY_COLUMNS} FROM ip_policies ORDER BY seq");
        query(self, |tx| {
            tx.query(&sql, &[])?.iter().map(policy_from_row).collect()
        })
    }

    /// The IP policy with this id.
    pub fn get_ip_policy(&self, id: &str) -> Result<IpPolicy> {
        query(self, |tx| policy_by_id(tx, id))
    }

    /// Deletes an IP policy and its rules. As at ngrok, a `restrict-ips` already running with a reference to
    /// it then sees a policy without rules (a policy loaded afterwards with the reference is refused).
    pub fn delete_ip_policy(&self, id: &str) -> Result<()> {
        self.write(IP_POLICIES.name, |tx| {
            policy_by_id(tx, id)?;
            tx.execute(
                "DELETE FROM ip_policy_rules WHERE ip_policy_id = $1",
                &[&id],
            )?;
            tx.execute("DELETE FROM ip_policies WHERE id = $1", &[&id])?;
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
        self.write(IP_POLICIES.name, |tx| {
            policy_by_id(tx, ip_policy_id)?;
            let sql = format!(
                "INSERT INTO ip_policy_rules (id, ip_policy_id, cidr, action, description, created_at, seq) \
                 VALUES ($1, $2, $3, $4, $5, $6, {})",
                next_seq("ip_policy_rules")
            );
            tx.execute(
                &sql,
                &[
                    &rule.id,
                    &rule.ip_policy.id,
                    &rule.cidr,
                    &rule.action.as_str(),
                    &rule.description,
                    &rule.created_at,
                ],
            )?;
            Ok::<_, StoreError>(())
        })?;
        Ok(rule)
    }

    /// All rules, or those of one policy ([`StoreError::IpPolicyNotFound`] for an unknown id), oldest first.
    pub fn list_ip_policy_rules(&self, ip_policy_id: Option<&str>) -> Result<Vec<IpPolicyRule>> {
        query(self, |tx| {
            if let Some(id) = ip_policy_id {
                policy_by_id(tx, id)?;
            }
            let sql = format!(
                "SELECT {RULE_COLUMNS} FROM ip_policy_rules WHERE CAST($1 AS TEXT) IS NULL OR ip_policy_id = $1 ORDER BY seq"
            );
            tx.query(&sql, &[&ip_policy_id])?
                .iter()
                .map(rule_from_row)
                .collect()
        })
    }

    /// The rule with this id.
    pub fn get_ip_policy_rule(&self, id: &str) -> Result<IpPolicyRule> {
        query(self, |tx| rule_by_id(tx, id))
    }

    /// Deletes a rule.
    pub fn delete_ip_policy_rule(&self, id: &str) -> Result<()> {
        self.write(IP_POLICIES.name, |tx| {
            match tx.execute("DELETE FROM ip_policy_rules WHERE id = $1", &[&id])? {
                0 => Err(StoreError::IpPolicyRuleNotFound(id.to_owned())),
                _ => Ok(()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ip_policies::IpRule;
    use keygate_test_support::{on_both_backends, TestDatabase};

    on_both_backends!(
        policies_and_rules_round_trip_and_load_as_a_snapshot,
        bad_rules_and_unknown_policies_are_input_errors,
    );

    fn policies_and_rules_round_trip_and_load_as_a_snapshot(db: &TestDatabase) {
        let location = keygate_store::Location::parse(&db.url).unwrap();
        let store = Store::open_database(db.dir.path(), &location).unwrap();
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
        assert_eq!(
            snapshot.generation(),
            store.generation(IP_POLICIES.name).unwrap()
        );
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

    fn bad_rules_and_unknown_policies_are_input_errors(db: &TestDatabase) {
        let location = keygate_store::Location::parse(&db.url).unwrap();
        let store = Store::open_database(db.dir.path(), &location).unwrap();
        let policy = store.create_ip_policy("").unwrap();
        let generation = store.generation(IP_POLICIES.name).unwrap();
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
            store.generation(IP_POLICIES.name).unwrap(),
            generation,
            "nothing was written"
        );
    }
}
