//! The data dir's IP policies, as `restrict-ips` reads them (`ip_policies: [ipp_...]`). The store keeps
//! them (keygate-secrets); this is the view a compiled policy holds.

use std::sync::Arc;

use keygate_secrets::{CachedIpPolicies, IpPolicySnapshot};

/// Where `restrict-ips` finds the IP policies it references: the store's self-refreshing cache in a
/// running gateway.
pub trait IpPolicies: Send + Sync {
    /// The generation of the current snapshot: a lock-free read, so each request can tell whether the
    /// rules it compiled are still current.
    fn generation(&self) -> u64;
    /// The current snapshot.
    fn snapshot(&self) -> Arc<IpPolicySnapshot>;
    /// Brings the view up to date with the store before returning (at load, for a policy created just
    /// before the policy file naming it).
    fn refresh(&self);
    /// After a request was refused: re-reads the store when it may hold something newer (coalesced and
    /// rate-limited) and returns whether the caller should decide again.
    fn reread_after_miss(&self) -> bool;
}

impl IpPolicies for CachedIpPolicies {
    fn generation(&self) -> u64 {
        CachedIpPolicies::generation(self)
    }

    fn snapshot(&self) -> Arc<IpPolicySnapshot> {
        CachedIpPolicies::snapshot(self)
    }

    fn refresh(&self) {
        CachedIpPolicies::refresh(self);
    }

    fn reread_after_miss(&self) -> bool {
        CachedIpPolicies::reread_after_miss(self)
    }
}
