//! [`IpPolicySnapshot`]: every IP policy's rules, parsed, as of one store generation; [`CachedIpPolicies`]:
//! the gateway's self-refreshing copy of it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use super::model::{parse_rule_cidr, RuleAction};
use crate::error::Result;
use crate::refreshing::{Refreshing, Reload};
use crate::store::ip_policies::IP_POLICIES;
use crate::store::Store;

/// One parsed rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRule {
    pub net: IpNet,
    pub action: RuleAction,
}

/// Every IP policy (by id) with its rules, oldest rule first.
#[derive(Debug, Default)]
pub struct IpPolicySnapshot {
    generation: u64,
    policies: BTreeMap<String, Vec<IpRule>>,
}

impl IpPolicySnapshot {
    /// A snapshot of `policies` (id and rules) at `generation`, for sources other than the store.
    pub fn new(generation: u64, policies: impl IntoIterator<Item = (String, Vec<IpRule>)>) -> Self {
        Self {
            generation,
            policies: policies.into_iter().collect(),
        }
    }

    /// The store generation this snapshot was read at.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The rules of policy `id`, or `None` when there is no such policy.
    pub fn rules(&self, id: &str) -> Option<&[IpRule]> {
        self.policies.get(id).map(Vec::as_slice)
    }

    /// Number of rules across all policies.
    pub fn rule_count(&self) -> usize {
        self.policies.values().map(Vec::len).sum()
    }
}

impl Store {
    /// Reads every IP policy and rule in one read transaction. Needs no master key. A stored CIDR that no
    /// longer parses (edited outside Keygate) is logged and skipped.
    pub fn load_ip_policies(&self) -> Result<IpPolicySnapshot> {
        self.read(IP_POLICIES.name, |tx, generation| {
            let mut policies: BTreeMap<String, Vec<IpRule>> = BTreeMap::new();
            for row in tx.query("SELECT id FROM ip_policies", &[])? {
                policies.insert(row.get(0)?, Vec::new());
            }
            let rules = tx.query(
                "SELECT id, ip_policy_id, cidr, action FROM ip_policy_rules ORDER BY seq",
                &[],
            )?;
            for row in rules {
                let (id, policy): (String, String) = (row.get(0)?, row.get(1)?);
                let (cidr, action): (String, String) = (row.get(2)?, row.get(3)?);
                let Ok(rule) = parse_rule(&cidr, &action) else {
                    tracing::error!(
                        rule = %id,
                        ip_policy = %policy,
                        "stored IP policy rule is invalid; ignoring it"
                    );
                    continue;
                };
                policies.entry(policy).or_default().push(rule);
            }
            Ok(IpPolicySnapshot {
                generation,
                policies,
            })
        })
    }
}

fn parse_rule(cidr: &str, action: &str) -> Result<IpRule> {
    Ok(IpRule {
        net: parse_rule_cidr(cidr)?,
        action: action.parse()?,
    })
}

impl Reload for IpPolicySnapshot {
    const COMPONENT: &'static str = IP_POLICIES.name;

    fn load(store: &Store) -> Result<Self> {
        store.load_ip_policies()
    }

    fn generation(&self) -> u64 {
        self.generation
    }

    fn entries(&self) -> usize {
        self.rule_count()
    }
}

/// A cached, self-refreshing view of every IP policy: lock-free reads, changes by any process or instance
/// loaded as soon as the store's change feed reports them. Dropping it stops the watcher thread.
pub struct CachedIpPolicies(Refreshing<IpPolicySnapshot>);

impl std::fmt::Debug for CachedIpPolicies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CachedIpPolicies").field(&self.0).finish()
    }
}

impl CachedIpPolicies {
    /// Loads every policy from `store` (a broken database fails here, at startup), then follows changes
    /// (see [`Refreshing::start`] for `poll_interval`).
    pub fn start(store: Store, poll_interval: Duration) -> Result<Self> {
        Refreshing::start(store, poll_interval).map(Self)
    }

    /// The generation of the current snapshot (no reference count taken).
    pub fn generation(&self) -> u64 {
        self.0.current().generation
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<IpPolicySnapshot> {
        self.0.current_full()
    }

    /// Waits (at most 2 s) until a change committed before this call is visible.
    pub fn refresh(&self) {
        self.0.refresh();
    }

    /// See [`Refreshing::reread_after_miss`].
    pub fn reread_after_miss(&self) -> bool {
        self.0.reread_after_miss()
    }
}
