//! `restrict-ips`: allow a request only from listed client address ranges (deny wins).
//!
//! Literal CIDRs are parsed at load into a [`CidrSet`] (one binary search per lookup); entries
//! that interpolate `${...}` are evaluated per request and may yield a CIDR or a list of CIDRs.
//! `ip_policies` adds the rules of IP policies kept in the data dir's store (`referenced`).

pub mod cidr_set;
#[cfg(test)]
mod policy_tests;
mod referenced;

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use keygate_cel::{EvalError, Scope, Template, Value};
use serde::Deserialize;

use self::cidr_set::{normalize_net, CidrSet};
use self::referenced::{Compiled, Referenced};
use crate::action::{
    ready, Action, ActionError, ActionFuture, ActionKind, Flow, Phase, Termination,
};
use crate::build::BuildContext;
use crate::diagnostic::Diagnostic;
use crate::error::{ErrorCode, GatewayError};
use crate::exchange::Exchange;

pub const KIND: ActionKind = ActionKind {
    name: "restrict-ips",
    result_name: "restrict_ips",
    phases: &[
        Phase::OnTcpConnect,
        Phase::OnHttpRequest,
        Phase::OnHttpResponse,
    ],
    termination: Termination::Sometimes,
    needs_config: true,
    build,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    enforce: Option<bool>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    /// Ids of IP policies in the data dir's store (`keygate api ip-policies`).
    #[serde(default)]
    ip_policies: Vec<String>,
}

struct RestrictIps {
    allow: Ranges,
    deny: Ranges,
    policies: Option<Referenced>,
    enforce: bool,
}

/// One list (`allow` or `deny`): literal ranges parsed at load plus per-request templates.
struct Ranges {
    set: CidrSet,
    dynamic: Vec<Template>,
}

/// A list entry as written in the policy.
#[derive(Debug, PartialEq)]
enum Entry {
    Net(IpNet),
    /// Contains `${...}`: compiled as a template, evaluated per request.
    Dynamic,
}

fn build(cx: &BuildContext<'_>) -> Result<Box<dyn Action>, Diagnostic> {
    let config: Config = cx.config()?;
    if config.allow.is_empty() && config.ip_policies.is_empty() {
        return Err(cx.error(
            if config.deny.is_empty() { "" } else { "deny" },
            "restrict-ips needs at least one allow CIDR or IP policy (a deny-only list would refuse \
             everyone): to allow all but the denied ranges, add allow: ['0.0.0.0/0', '::/0']",
        ));
    }
    let policies = Referenced::build(cx, &config.ip_policies)?;
    if config.allow.is_empty()
        && policies
            .as_ref()
            .is_some_and(|p| p.current().allow.is_empty())
    {
        cx.warn(
            "ip_policies",
            "no allow CIDR here nor an allow rule in these IP policies yet: every request is refused \
             until an allow rule is added",
        );
    }
    Ok(Box::new(RestrictIps {
        allow: Ranges::build(cx, "allow", &config.allow)?,
        deny: Ranges::build(cx, "deny", &config.deny)?,
        policies,
        enforce: config.enforce.unwrap_or(true),
    }))
}

impl Ranges {
    fn build(cx: &BuildContext<'_>, field: &str, sources: &[String]) -> Result<Self, Diagnostic> {
        let mut nets = Vec::with_capacity(sources.len());
        let mut dynamic = Vec::new();
        for (i, source) in sources.iter().enumerate() {
            let at = format!("{field}[{i}]");
            match parse_entry(source).map_err(|message| cx.error(&at, message))? {
                Entry::Net(net) => {
                    if net.trunc() != net {
                        cx.warn(
                            &at,
                            format!("'{source}' has host bits set; it means {}", net.trunc()),
                        );
                    }
                    nets.push(net);
                }
                Entry::Dynamic => dynamic.push(cx.template(&at, source)?),
            }
        }
        Ok(Self {
            set: CidrSet::new(nets),
            dynamic,
        })
    }

    /// The listed range holding `ip`: a literal one (the most specific) or else the first dynamic one.
    fn lookup(&self, ip: IpAddr, scope: &Scope<'_>) -> Result<Option<IpNet>, EvalError> {
        if let Some(net) = self.set.lookup(ip) {
            return Ok(Some(*net));
        }
        for template in &self.dynamic {
            let value = template.eval(scope)?;
            if let Some(net) = dynamic_nets(&value)?
                .into_iter()
                .find(|net| net.contains(&ip))
            {
                return Ok(Some(net));
            }
        }
        Ok(None)
    }
}

/// Classifies one configured entry; literal entries must be valid CIDRs.
fn parse_entry(source: &str) -> Result<Entry, String> {
    if source.contains("${") {
        return Ok(Entry::Dynamic);
    }
    parse_cidr(source.trim()).map(Entry::Net)
}

/// Parses one CIDR (IPv4 or IPv6). A bare address is refused with a hint.
fn parse_cidr(text: &str) -> Result<IpNet, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        return Err(format!(
            "'{text}' is an address, not a CIDR range: write {text}/{bits}"
        ));
    }
    text.parse::<IpNet>()
        .map(normalize_net)
        .map_err(|_| format!("invalid CIDR '{text}'"))
}

/// The ranges an interpolated entry produced: a CIDR string or a list of them.
fn dynamic_nets(value: &Value) -> Result<Vec<IpNet>, EvalError> {
    let one = |value: &Value| match value {
        Value::String(text) => parse_cidr(text.trim()).map_err(|message| EvalError { message }),
        _ => Err(EvalError {
            message: "a restrict-ips entry must evaluate to a CIDR string".into(),
        }),
    };
    match value {
        Value::List(items) => items.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

/// Whether an address passes, and the range that decided it.
#[derive(Debug, PartialEq)]
struct Decision {
    allowed: bool,
    /// The deny range that matched, else the allow range that matched, else none.
    matched: Option<IpNet>,
}

impl RestrictIps {
    /// The decision over the listed ranges and the referenced policies' rules (`policies`).
    fn decide(
        &self,
        ip: IpAddr,
        scope: &Scope<'_>,
        policies: Option<&Compiled>,
    ) -> Result<Decision, EvalError> {
        let in_policies = |pick: fn(&Compiled) -> &CidrSet| {
            policies.and_then(|compiled| pick(compiled).lookup(ip).copied())
        };
        let denied = match self.deny.lookup(ip, scope)? {
            Some(net) => Some(net),
            None => in_policies(|compiled| &compiled.deny),
        };
        if let Some(net) = denied {
            return Ok(Decision {
                allowed: false,
                matched: Some(net),
            });
        }
        let matched = match self.allow.lookup(ip, scope)? {
            Some(net) => Some(net),
            None => in_policies(|compiled| &compiled.allow),
        };
        Ok(Decision {
            allowed: matched.is_some(),
            matched,
        })
    }

    /// Decides with the policies' current rules; a refusal is decided again after a re-read of the
    /// store when it may hold newer rules (an allow rule just added).
    fn decide_now(&self, ip: IpAddr, scope: &Scope<'_>) -> Result<Decision, EvalError> {
        let Some(policies) = &self.policies else {
            return self.decide(ip, scope, None);
        };
        let decision = self.decide(ip, scope, Some(&policies.current()))?;
        if decision.allowed || !policies.reread_after_miss() {
            return Ok(decision);
        }
        self.decide(ip, scope, Some(&policies.current()))
    }

    fn check(&self, ex: &mut Exchange) -> Result<Flow, ActionError> {
        let ip = ex.conn.client_ip.to_canonical();
        let decision = self.decide_now(ip, &ex.scope())?;
        ex.results.set(
            KIND.result_name,
            Value::from(HashMap::from([
                (
                    "action",
                    Value::from(if decision.allowed { "allow" } else { "deny" }),
                ),
                (
                    "matched_cidr",
                    Value::from(
                        decision
                            .matched
                            .map(|net| net.to_string())
                            .unwrap_or_default(),
                    ),
                ),
            ])),
        );
        if decision.allowed || !self.enforce {
            return Ok(Flow::Continue);
        }
        Err(GatewayError::new(ErrorCode::Forbidden, "blocked by endpoint IP restriction").into())
    }
}

impl Action for RestrictIps {
    fn run<'a>(&'a self, ex: &'a mut Exchange) -> ActionFuture<'a> {
        ready(self.check(ex))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    #[test]
    fn entries_parse_or_explain() {
        assert_eq!(parse_entry("10.0.0.0/8"), Ok(Entry::Net(net("10.0.0.0/8"))));
        assert_eq!(
            parse_entry(" 2001:db8::/32 "),
            Ok(Entry::Net(net("2001:db8::/32")))
        );
        assert_eq!(
            parse_entry("::ffff:10.0.0.0/104"),
            Ok(Entry::Net(net("10.0.0.0/8")))
        );
        assert_eq!(parse_entry("${vars.office_cidr}"), Ok(Entry::Dynamic));
        assert_eq!(
            parse_entry("10.0.0.1"),
            Err("'10.0.0.1' is an address, not a CIDR range: write 10.0.0.1/32".into())
        );
        assert_eq!(
            parse_entry("::1"),
            Err("'::1' is an address, not a CIDR range: write ::1/128".into())
        );
        assert_eq!(
            parse_entry("10.0.0.0/33"),
            Err("invalid CIDR '10.0.0.0/33'".into())
        );
        assert_eq!(
            parse_entry("2001:db8::/129"),
            Err("invalid CIDR '2001:db8::/129'".into())
        );
        assert_eq!(parse_entry("office"), Err("invalid CIDR 'office'".into()));
        assert_eq!(parse_entry(""), Err("invalid CIDR ''".into()));
    }

    #[test]
    fn dynamic_values_are_cidrs_or_lists_of_cidrs() {
        let one = Value::from("192.0.2.0/24");
        assert_eq!(dynamic_nets(&one).unwrap(), vec![net("192.0.2.0/24")]);
        let list = Value::List(vec![Value::from("192.0.2.0/24"), Value::from("::1/128")].into());
        assert_eq!(
            dynamic_nets(&list).unwrap(),
            vec![net("192.0.2.0/24"), net("::1/128")]
        );
        assert!(dynamic_nets(&Value::from("192.0.2.1"))
            .unwrap_err()
            .message
            .contains("192.0.2.1/32"));
        assert!(dynamic_nets(&Value::Int(3)).is_err());
        assert!(dynamic_nets(&Value::List(vec![Value::Bool(true)].into())).is_err());
    }

    fn action(allow: &[&str], deny: &[&str]) -> RestrictIps {
        let set = |nets: &[&str]| Ranges {
            set: CidrSet::new(nets.iter().map(|n| net(n))),
            dynamic: Vec::new(),
        };
        RestrictIps {
            allow: set(allow),
            deny: set(deny),
            policies: None,
            enforce: true,
        }
    }

    /// Runs the real decision over literal ranges (no template is evaluated).
    fn decide(action: &RestrictIps, ip: &str) -> Decision {
        let conn = keygate_cel::ConnInfo {
            client_ip: ip.parse().unwrap(),
            client_port: 40000,
            server_ip: "127.0.0.1".parse().unwrap(),
            server_port: 8080,
            tls: None,
            started: std::time::SystemTime::now(),
            ip_intel: Default::default(),
        };
        let (vars, actions, secrets) = (
            Default::default(),
            Default::default(),
            keygate_cel::MemorySecrets::default(),
        );
        let scope = Scope {
            conn: &conn,
            req: None,
            res: None,
            vars: &vars,
            actions: &actions,
            secrets: &secrets,
            extra: &[],
        };
        action
            .decide(conn.client_ip.to_canonical(), &scope, None)
            .unwrap()
    }

    #[test]
    fn deny_wins_over_allow() {
        let a = action(&["127.0.0.0/8", "::1/128"], &["127.0.0.3/32"]);
        assert_eq!(
            decide(&a, "127.0.0.2"),
            Decision {
                allowed: true,
                matched: Some(net("127.0.0.0/8"))
            }
        );
        assert_eq!(
            decide(&a, "127.0.0.3"),
            Decision {
                allowed: false,
                matched: Some(net("127.0.0.3/32"))
            }
        );
        assert_eq!(
            decide(&a, "::ffff:127.0.0.3"),
            Decision {
                allowed: false,
                matched: Some(net("127.0.0.3/32"))
            }
        );
        assert_eq!(
            decide(&a, "::1"),
            Decision {
                allowed: true,
                matched: Some(net("::1/128"))
            }
        );
        assert_eq!(
            decide(&a, "10.1.1.1"),
            Decision {
                allowed: false,
                matched: None
            }
        );
        assert_eq!(
            decide(&a, "::2"),
            Decision {
                allowed: false,
                matched: None
            }
        );
    }
}
