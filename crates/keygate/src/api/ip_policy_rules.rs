//! `keygate api ip-policy-rules ...`: the CIDR rules of IP policies.

use clap::Subcommand;
use keygate_secrets::{RuleAction, Store};

use super::{print, Failure};

#[derive(Subcommand)]
pub(super) enum IpPolicyRulesCommand {
    /// Add a rule to an IP policy; a running gateway applies it to the next request.
    Create {
        /// The IP policy the rule belongs to (ipp_...).
        #[arg(long)]
        ip_policy_id: String,
        /// The range, e.g. 203.0.113.0/24 or 2001:db8::/32 (a single address is /32 or /128).
        #[arg(long)]
        cidr: String,
        /// allow or deny.
        #[arg(long, value_parser = parse_action)]
        action: RuleAction,
        /// Free-text description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List rules, optionally of one IP policy.
    List {
        /// Only the rules of this IP policy.
        #[arg(long)]
        ip_policy_id: Option<String>,
    },
    /// Show one rule.
    Get {
        /// Rule id (ipr_...).
        id: String,
    },
    /// Delete a rule.
    Delete {
        /// Rule id (ipr_...).
        id: String,
    },
}

fn parse_action(text: &str) -> Result<RuleAction, String> {
    text.parse()
        .map_err(|err: keygate_secrets::StoreError| err.to_string())
}

pub(super) fn run(store: &Store, command: &IpPolicyRulesCommand) -> Result<(), Failure> {
    match command {
        IpPolicyRulesCommand::Create {
            ip_policy_id,
            cidr,
            action,
            description,
        } => print(&store.create_ip_policy_rule(ip_policy_id, cidr, *action, description)?),
        IpPolicyRulesCommand::List { ip_policy_id } => print(&serde_json::json!({
            "ip_policy_rules": store.list_ip_policy_rules(ip_policy_id.as_deref())?
        })),
        IpPolicyRulesCommand::Get { id } => print(&store.get_ip_policy_rule(id)?),
        IpPolicyRulesCommand::Delete { id } => Ok(store.delete_ip_policy_rule(id)?),
    }
}
