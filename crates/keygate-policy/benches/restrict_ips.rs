//! `restrict-ips` lookups: one address against 5,000 CIDR ranges (IPv4 and IPv6, many nested).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{criterion_group, criterion_main, Criterion};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use keygate_policy::actions::restrict_ips::cidr_set::CidrSet;

/// A deterministic xorshift generator, so every run measures the same set.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn ranges(count: usize) -> Vec<IpNet> {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    (0..count)
        .map(|i| {
            if i % 5 == 4 {
                let addr = Ipv6Addr::from(u128::from(rng.next()) << 64 | u128::from(rng.next()));
                IpNet::V6(
                    Ipv6Net::new(addr, 32 + (rng.next() % 97) as u8)
                        .unwrap()
                        .trunc(),
                )
            } else {
                let addr = Ipv4Addr::from(rng.next() as u32);
                IpNet::V4(
                    Ipv4Net::new(addr, 8 + (rng.next() % 25) as u8)
                        .unwrap()
                        .trunc(),
                )
            }
        })
        .collect()
}

fn lookups(c: &mut Criterion) {
    let nets = ranges(5_000);
    let set = CidrSet::new(nets.clone());
    let IpNet::V4(inside) = nets[0] else {
        unreachable!()
    };
    let hit = IpAddr::V4(inside.network());
    let mapped = IpAddr::V6(inside.network().to_ipv6_mapped());
    let v6 = match nets[4] {
        IpNet::V6(net) => IpAddr::V6(net.network()),
        IpNet::V4(_) => unreachable!(),
    };
    let addresses: Vec<IpAddr> = {
        let mut rng = Rng(7);
        (0..1024)
            .map(|_| IpAddr::V4(Ipv4Addr::from(rng.next() as u32)))
            .collect()
    };
    let mut group = c.benchmark_group("restrict_ips_5000_ranges");
    group.bench_function("ipv4_hit", |b| b.iter(|| set.lookup(black_box(hit))));
    group.bench_function("ipv4_mapped_hit", |b| {
        b.iter(|| set.lookup(black_box(mapped)))
    });
    group.bench_function("ipv6_hit", |b| b.iter(|| set.lookup(black_box(v6))));
    group.bench_function("ipv4_random", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 1023;
            set.lookup(black_box(addresses[i]))
        })
    });
    group.finish();
    c.bench_function("restrict_ips_build_5000_ranges", |b| {
        b.iter(|| CidrSet::new(black_box(nets.clone())))
    });
}

criterion_group!(benches, lookups);
criterion_main!(benches);
