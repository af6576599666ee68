//! `keygate api ip-policies ...`: named lists of CIDR rules for `restrict-ips` (`ip_policies: [ipp_...]`).

use clap::Subcommand;
use keygate_secrets::Store;

use super::{print, Failure};

#[derive(Subcommand)]
pub(super) enum IpPoliciesCommand {
    /// Create an IP policy (without rules; add them with `ip-policy-rules create`).
    Create {
        /// Free-text description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List all IP policies.
    List,
    /// Show one IP policy.
    Get {
        /// IP policy id (ipp_...).
        id: String,
    },
    /// Delete an IP policy and its rules. A running restrict-ips that references it then sees a policy
    /// without rules.
    Delete {
        /// IP policy id (ipp_...).
        id: String,
    },
}

pub(super) fn run(store: &Store, command: &IpPoliciesCommand) -> Result<(), Failure> {
    match command {
        IpPoliciesCommand::Create { description } => print(&store.create_ip_policy(description)?),
        IpPoliciesCommand::List => {
            print(&serde_json::json!({ "ip_policies": store.list_ip_policies()? }))
        }
        IpPoliciesCommand::Get { id } => print(&store.get_ip_policy(id)?),
        IpPoliciesCommand::Delete { id } => Ok(store.delete_ip_policy(id)?),
    }
}
