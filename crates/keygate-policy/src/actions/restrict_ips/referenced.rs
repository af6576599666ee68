//! `ip_policies`: the rules of IP policies kept in the data dir's store, referenced by id. Read live: a
//! rule added or removed with `keygate api ip-policy-rules ...` applies without a reload. The rules are
//! compiled into [`CidrSet`]s again only when the store's generation moves; a request checks that with two
//! lock-free loads.

use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use keygate_secrets::{IpPolicySnapshot, IpRule, RuleAction, IP_POLICY_PREFIX};

use super::cidr_set::CidrSet;
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::ip_policies::IpPolicies;

/// The referenced policies of one `restrict-ips` action.
pub(super) struct Referenced {
    source: Arc<dyn IpPolicies>,
    ids: Vec<String>,
    compiled: ArcSwap<Compiled>,
}

/// The referenced policies' rules as of one store generation.
pub(super) struct Compiled {
    generation: u64,
    pub allow: CidrSet,
    pub deny: CidrSet,
}

impl Compiled {
    /// A policy deleted since load counts as one without rules (as at ngrok).
    fn new(snapshot: &IpPolicySnapshot, ids: &[String]) -> Self {
        let rules = ids
            .iter()
            .flat_map(|id| snapshot.rules(id).unwrap_or_default());
        let (allow, deny): (Vec<&IpRule>, Vec<&IpRule>) =
            rules.partition(|rule| rule.action == RuleAction::Allow);
        Self {
            generation: snapshot.generation(),
            allow: CidrSet::new(allow.into_iter().map(|rule| rule.net)),
            deny: CidrSet::new(deny.into_iter().map(|rule| rule.net)),
        }
    }
}

impl Referenced {
    /// Checks the ids of `ip_policies` (all must exist in the store) and compiles their rules. `None`
    /// when the list is empty, or when the policy is only checked (`deps.offline` without a store: the
    /// ids are taken on trust and no rule applies).
    pub fn build(cx: &BuildContext<'_>, ids: &[String]) -> Result<Option<Self>, Diagnostic> {
        if ids.is_empty() {
            return Ok(None);
        }
        for (i, id) in ids.iter().enumerate() {
            if !id.starts_with(IP_POLICY_PREFIX) {
                return Err(cx.error(
                    &format!("ip_policies[{i}]"),
                    format!("'{id}' is not an IP policy id (ipp_...)"),
                ));
            }
        }
        let Some(source) = cx.deps.ip_policies.clone() else {
            if cx.deps.offline {
                return Ok(None);
            }
            return Err(cx.error(
                "ip_policies",
                "ip_policies needs the data dir's IP policies, which this gateway has not opened",
            ));
        };
        let mut snapshot = source.snapshot();
        if ids.iter().any(|id| snapshot.rules(id).is_none()) {
            // Created just before this policy file was written?
            source.refresh();
            snapshot = source.snapshot();
        }
        if let Some(i) = ids.iter().position(|id| snapshot.rules(id).is_none()) {
            return Err(cx.error(
                &format!("ip_policies[{i}]"),
                format!(
                    "IP policy '{}' not found in the data dir (see keygate api ip-policies list)",
                    ids[i]
                ),
            ));
        }
        Ok(Some(Self {
            compiled: ArcSwap::from_pointee(Compiled::new(&snapshot, ids)),
            source,
            ids: ids.to_vec(),
        }))
    }

    /// The rules as of the store's current generation, compiled again if it moved.
    pub fn current(&self) -> Guard<Arc<Compiled>> {
        let compiled = self.compiled.load();
        if compiled.generation == self.source.generation() {
            return compiled;
        }
        let fresh = Compiled::new(&self.source.snapshot(), &self.ids);
        self.compiled.store(Arc::new(fresh));
        self.compiled.load()
    }

    /// See [`IpPolicies::reread_after_miss`].
    pub fn reread_after_miss(&self) -> bool {
        self.source.reread_after_miss()
    }
}
