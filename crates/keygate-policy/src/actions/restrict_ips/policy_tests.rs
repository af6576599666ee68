//! `ip_policies`: ids checked at load, rules joined with the inline lists, changes applied live.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;
use keygate_cel::Compiler;
use keygate_secrets::{IpPolicySnapshot, IpRule, RuleAction};

use crate::build::Deps;
use crate::diagnostic::Severity;
use crate::engine::Outcome;
use crate::exchange::Exchange;
use crate::ip_policies::IpPolicies;
use crate::policy::Policy;

/// IP policies in memory: `current` is what the cache holds, `unseen` what the store holds but the
/// cache has not loaded yet (a re-read or a refresh brings it in).
#[derive(Default)]
struct Memory {
    current: ArcSwap<IpPolicySnapshot>,
    unseen: Mutex<Option<IpPolicySnapshot>>,
}

impl Memory {
    fn with(policies: &[(&str, &[(&str, RuleAction)])]) -> Arc<Self> {
        let memory = Arc::new(Self::default());
        memory.current.store(Arc::new(snapshot(1, policies)));
        memory
    }

    /// A change the cache has loaded.
    fn load(&self, policies: &[(&str, &[(&str, RuleAction)])]) {
        let generation = self.current.load().generation() + 1;
        self.current.store(Arc::new(snapshot(generation, policies)));
    }

    /// A change in the store the cache has not loaded.
    fn write(&self, policies: &[(&str, &[(&str, RuleAction)])]) {
        let generation = self.current.load().generation() + 1;
        *self.unseen.lock().unwrap() = Some(snapshot(generation, policies));
    }

    fn take_unseen(&self) -> bool {
        let unseen = self.unseen.lock().unwrap().take();
        unseen.map(|s| self.current.store(Arc::new(s))).is_some()
    }
}

fn snapshot(generation: u64, policies: &[(&str, &[(&str, RuleAction)])]) -> IpPolicySnapshot {
    IpPolicySnapshot::new(
        generation,
        policies.iter().map(|(id, rules)| {
            let rules = rules
                .iter()
                .map(|(cidr, action)| IpRule {
                    net: cidr.parse().unwrap(),
                    action: *action,
                })
                .collect();
            (id.to_string(), rules)
        }),
    )
}

impl IpPolicies for Memory {
    fn generation(&self) -> u64 {
        self.current.load().generation()
    }

    fn snapshot(&self) -> Arc<IpPolicySnapshot> {
        self.current.load_full()
    }

    fn refresh(&self) {
        self.take_unseen();
    }

    fn reread_after_miss(&self) -> bool {
        self.take_unseen()
    }
}

const ALLOW: RuleAction = RuleAction::Allow;
const DENY: RuleAction = RuleAction::Deny;

fn deps(source: Option<Arc<Memory>>, offline: bool) -> Deps {
    Deps {
        ip_policies: source.map(|s| s as Arc<dyn IpPolicies>),
        offline,
        ..Deps::for_test()
    }
}

/// Compiles a restrict-ips with `config` (YAML flow map body); errors and warnings as
/// `path: message` lines.
fn compile(config: &str, deps: &Deps) -> Result<(Policy, Vec<String>), String> {
    let text = format!(
        "on_http_request:\n  - actions:\n      - type: restrict-ips\n        config: {{{config}}}\n"
    );
    let lines = |diagnostics: &[crate::diagnostic::Diagnostic]| {
        diagnostics
            .iter()
            .map(|d| format!("{}: {}", d.path, d.message))
            .collect::<Vec<_>>()
    };
    match Policy::compile("t.yml", &text, &Compiler::new(), deps) {
        Ok(policy) => {
            assert!(policy
                .warnings
                .iter()
                .all(|w| w.severity == Severity::Warning));
            let warnings = lines(&policy.warnings);
            Ok((policy, warnings))
        }
        Err(err) => Err(lines(&err.diagnostics).join("\n")),
    }
}

/// The status a request from 127.0.0.1 gets: 200 when it passes.
async fn status(policy: &Policy) -> u16 {
    let (head, ()) = http::Request::get("/").body(()).unwrap().into_parts();
    let mut ex = Exchange::for_test(head, Bytes::new(), 1024, Deps::for_test().secrets);
    match policy.on_http_request(&mut ex).await {
        Outcome::Continue => 200,
        Outcome::Respond(response) => response.status().as_u16(),
        Outcome::Close => 0,
    }
}

#[test]
fn ids_must_name_policies_in_the_store() {
    let store = Memory::with(&[("ipp_office", &[("10.0.0.0/8", ALLOW)])]);
    let online = deps(Some(store.clone()), false);
    compile("ip_policies: [ipp_office]", &online).expect("a known id, no inline allow needed");
    for (config, needle) in [
        (
            "allow: ['::1/128'], ip_policies: [ipp_office, ipp_gone]",
            "config.ip_policies[1]: IP policy 'ipp_gone' not found in the data dir",
        ),
        (
            "ip_policies: [office]",
            "config.ip_policies[0]: 'office' is not an IP policy id (ipp_...)",
        ),
        (
            "deny: ['10.9.0.0/16']",
            "config.deny: restrict-ips needs at least one allow CIDR or IP policy",
        ),
    ] {
        let err = compile(config, &online).map(|_| ()).unwrap_err();
        assert!(err.contains(needle), "{config}: {err}");
    }
    // A policy created just before the policy file naming it is found (the load refreshes).
    store.write(&[("ipp_office", &[]), ("ipp_new", &[("10.0.0.0/8", DENY)])]);
    let (_, warnings) = compile("ip_policies: [ipp_new]", &online).unwrap();
    assert_eq!(
        warnings,
        ["on_http_request[0].actions[0].config.ip_policies: no allow CIDR here nor an allow rule in \
          these IP policies yet: every request is refused until an allow rule is added"]
    );
    // `policy check` has no store and takes ids on trust; a gateway without one refuses them.
    compile("ip_policies: [ipp_anything]", &deps(None, true)).expect("offline");
    let err = compile("ip_policies: [ipp_anything]", &deps(None, false))
        .map(|_| ())
        .unwrap_err();
    assert!(err.contains("has not opened"), "{err}");
}

#[tokio::test]
async fn policy_rules_join_the_inline_lists_and_deny_wins() {
    let store = Memory::with(&[("ipp_lan", &[("127.0.0.0/8", ALLOW)]), ("ipp_block", &[])]);
    let deps = deps(Some(store.clone()), false);
    let (by_policy, _) = compile("ip_policies: [ipp_lan, ipp_block]", &deps).unwrap();
    let (inline_allow, _) =
        compile("allow: ['127.0.0.1/32'], ip_policies: [ipp_block]", &deps).unwrap();
    assert_eq!(status(&by_policy).await, 200);
    assert_eq!(status(&inline_allow).await, 200);

    // A deny rule loaded by the cache applies to the next request, over inline allows too.
    store.load(&[
        ("ipp_lan", &[("127.0.0.0/8", ALLOW)]),
        ("ipp_block", &[("127.0.0.1/32", DENY)]),
    ]);
    assert_eq!(status(&by_policy).await, 403);
    assert_eq!(status(&inline_allow).await, 403);

    // A deleted policy counts as one without rules.
    store.load(&[("ipp_lan", &[("127.0.0.0/8", ALLOW)])]);
    assert_eq!(status(&by_policy).await, 200);
    store.load(&[]);
    assert_eq!(status(&by_policy).await, 403);
    assert_eq!(status(&inline_allow).await, 200);
}

#[tokio::test]
async fn a_refusal_rereads_the_store_before_it_is_final() {
    let store = Memory::with(&[("ipp_lan", &[])]);
    let (policy, _) = compile("ip_policies: [ipp_lan]", &deps(Some(store.clone()), false)).unwrap();
    assert_eq!(status(&policy).await, 403);
    // An allow rule is in the store but not in the cache yet: the refusal re-reads and allows.
    store.write(&[("ipp_lan", &[("127.0.0.1/32", ALLOW)])]);
    assert_eq!(status(&policy).await, 200);
    assert_eq!(store.generation(), 2);
}
