//! Cost of IP intelligence: one lookup (City + ASN + categories) and a policy condition that
//! reads it, with the connection's facts already cached or looked up by the evaluation.
//!
//! `cargo bench -p keygate-ipintel --bench lookup`

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use keygate_cel::{ActionResults, Compiler, ConnInfo, IpIntel, MemorySecrets, Scope, Vars};
use keygate_ipintel::IpFiles;
use keygate_test_support::mmdb::{asn_value, MmdbWriter, AMSTERDAM};

/// 4096 /24 networks in the City and ASN databases, and 50 000 blocklisted addresses plus
/// 1000 /24 networks in the category file: about the shape of a blocklist feed.
fn files(dir: &std::path::Path) -> IpFiles {
    let record = AMSTERDAM.value();
    let mut city = MmdbWriter::new("GeoLite2-City");
    let mut asn = MmdbWriter::new("GeoLite2-ASN");
    for i in 0..4096u32 {
        let net = format!("{}/24", Ipv4Addr::from((10 << 24) | (i << 8)));
        city.insert(&net, &record);
        asn.insert(&net, &asn_value(64500 + i, "Example Transit"));
    }
    let mut cats = String::new();
    for i in 0..50_000u32 {
        cats.push_str(&format!(
            "{} blocklist.feed\n",
            Ipv4Addr::from((11 << 24) | i)
        ));
    }
    for i in 0..1000u32 {
        cats.push_str(&format!(
            "{}/24 proxy.anonymous.tor\n",
            Ipv4Addr::from((12 << 24) | (i << 8))
        ));
    }
    std::fs::write(dir.join("city.mmdb"), city.to_bytes()).unwrap();
    std::fs::write(dir.join("asn.mmdb"), asn.to_bytes()).unwrap();
    std::fs::write(dir.join("cats.txt"), cats).unwrap();
    IpFiles::open(
        &[dir.join("city.mmdb"), dir.join("asn.mmdb")],
        &[dir.join("cats.txt")],
    )
    .unwrap()
}

/// What a scope borrows besides the connection, all empty.
#[derive(Default)]
struct Empty {
    vars: Vars,
    actions: ActionResults,
    secrets: MemorySecrets,
}

impl Empty {
    fn scope<'a>(&'a self, conn: &'a ConnInfo) -> Scope<'a> {
        Scope {
            conn,
            req: None,
            res: None,
            vars: &self.vars,
            actions: &self.actions,
            secrets: &self.secrets,
            extra: &[],
        }
    }
}

fn benches(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("keygate-ipintel-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let files = Arc::new(files(&dir));
    let client: IpAddr = "10.0.7.9".parse().unwrap();
    c.bench_function("lookup (city + asn + categories)", |b| {
        b.iter(|| black_box(files.lookup(black_box(client))))
    });
    let compiler = Compiler::new().with_ip_intel(files.clone());
    let rule = compiler
        .condition("conn.geo.country_code in ['NL', 'BE'] && conn.client_ip.as.number != 64501")
        .unwrap();
    let plain = compiler.condition("conn.client_ip == '10.0.7.9'").unwrap();
    let conn = ConnInfo::new(
        SocketAddr::new(client, 50000),
        "127.0.0.1:8080".parse().unwrap(),
    );
    let empty = Empty::default();
    c.bench_function("condition on conn.geo + as, facts cached", |b| {
        let cached = empty.scope(&conn);
        assert!(rule.eval_bool(&cached).unwrap());
        b.iter(|| black_box(rule.eval_bool(&cached).unwrap()))
    });
    c.bench_function("condition on conn.geo + as, new connection", |b| {
        b.iter(|| {
            let fresh = conn.clone();
            black_box(rule.eval_bool(&empty.scope(&fresh)).unwrap())
        })
    });
    c.bench_function("condition on conn.client_ip only", |b| {
        let cached = empty.scope(&conn);
        b.iter(|| black_box(plain.eval_bool(&cached).unwrap()))
    });
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches_group, benches);
criterion_main!(benches_group);
