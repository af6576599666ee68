//! IP policies and their rules as shown to users (ngrok's JSON shapes, minus `uri` and `metadata`), and the
//! rules for a rule's CIDR.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::Serialize;

use crate::error::{Result, StoreError};

/// A named list of CIDR rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpPolicy {
    /// `ipp_` + 26 base32 characters.
    pub id: String,
    /// RFC 3339 UTC, second precision.
    pub created_at: String,
    /// Free text (may be empty).
    pub description: String,
}

/// The policy a rule belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpPolicyRef {
    /// The policy's id.
    pub id: String,
}

/// One rule: a CIDR range and whether it is allowed or denied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IpPolicyRule {
    /// `ipr_` + 26 base32 characters.
    pub id: String,
    /// RFC 3339 UTC, second precision.
    pub created_at: String,
    /// Free text (may be empty).
    pub description: String,
    /// The range, normalized (`10.0.0.0/8`, `2001:db8::/32`).
    pub cidr: String,
    /// The owning policy.
    pub ip_policy: IpPolicyRef,
    /// `allow` or `deny`.
    pub action: RuleAction,
}

/// What a rule does to the addresses in its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    Allow,
    Deny,
}

impl RuleAction {
    /// The stored and printed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

impl FromStr for RuleAction {
    type Err = StoreError;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "allow" => Ok(Self::Allow),
            "deny" => Ok(Self::Deny),
            other => Err(StoreError::Invalid(format!(
                "invalid IP policy rule action '{}': use allow or deny",
                other.escape_debug()
            ))),
        }
    }
}

/// Parses a rule's CIDR. A bare address, an invalid range and a range with host bits set are refused with
/// the text to write instead.
pub fn parse_rule_cidr(text: &str) -> Result<IpNet> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        return Err(StoreError::Invalid(format!(
            "'{text}' is an address, not a CIDR range: write {text}/{bits}"
        )));
    }
    let net: IpNet = text
        .parse()
        .map_err(|_| StoreError::Invalid(format!("invalid CIDR '{}'", text.escape_debug())))?;
    if net.trunc() != net {
        return Err(StoreError::Invalid(format!(
            "'{text}' has host bits set: write {}",
            net.trunc()
        )));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_ranges_without_host_bits() {
        assert_eq!(
            parse_rule_cidr(" 10.0.0.0/8 ").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_rule_cidr("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        for (bad, message) in [
            (
                "10.0.0.1",
                "'10.0.0.1' is an address, not a CIDR range: write 10.0.0.1/32",
            ),
            (
                "::1",
                "'::1' is an address, not a CIDR range: write ::1/128",
            ),
            (
                "10.0.0.1/8",
                "'10.0.0.1/8' has host bits set: write 10.0.0.0/8",
            ),
            ("10.0.0.0/33", "invalid CIDR '10.0.0.0/33'"),
            ("office", "invalid CIDR 'office'"),
        ] {
            let err = parse_rule_cidr(bad).unwrap_err();
            assert!(err.is_invalid_input());
            assert_eq!(err.to_string(), message);
        }
    }

    #[test]
    fn actions_are_allow_or_deny() {
        assert_eq!("allow".parse::<RuleAction>().unwrap(), RuleAction::Allow);
        assert_eq!("deny".parse::<RuleAction>().unwrap(), RuleAction::Deny);
        assert!("Allow".parse::<RuleAction>().is_err());
        assert_eq!(
            serde_json::to_value(RuleAction::Deny).unwrap(),
            serde_json::json!("deny")
        );
    }
}
