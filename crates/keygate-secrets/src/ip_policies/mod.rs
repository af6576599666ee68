//! IP policies: named lists of CIDR rules (`allow` or `deny`) kept in the store, mirroring ngrok's IP
//! Policies and IP Policy Rules, for `restrict-ips` to reference by id (`ip_policies: [ipp_...]`).
//!
//! They live here, beside vaults and secrets, because they are store records like them: the same database,
//! ids, validation, generation counter and [`crate::Refreshing`] cache. They need no master key. This crate
//! keeps the records and hands out parsed rules ([`IpPolicySnapshot`]); what they mean for a request is
//! `restrict-ips`'s business (keygate-policy).

mod cache;
mod model;

pub use cache::{CachedIpPolicies, IpPolicySnapshot, IpRule};
pub use model::{parse_rule_cidr, IpPolicy, IpPolicyRef, IpPolicyRule, RuleAction};

/// Prefix of IP policy ids (ngrok's).
pub const IP_POLICY_PREFIX: &str = "ipp_";
/// Prefix of IP policy rule ids (ngrok's).
pub const IP_POLICY_RULE_PREFIX: &str = "ipr_";
