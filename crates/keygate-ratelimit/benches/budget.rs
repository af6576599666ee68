//! Budget reservation cost: `MemoryBudgets` reserve then settle, for one access key drawing on two
//! counters (its tokens this hour and its spend today), through `dyn BudgetStore` as the gateway calls it.

use std::hint::black_box;
use std::task::{Context, Poll, Waker};

use criterion::{criterion_group, criterion_main, Criterion};
use keygate_ratelimit::{
    Ask, BudgetFailure, BudgetFuture, BudgetStore, Counter, Draw, Grant, MemoryBudgets,
};

/// Polls a memory store's future, which is always ready at once.
fn ready<T>(mut f: BudgetFuture<'_, T>) -> T {
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => value,
        Poll::Pending => unreachable!("memory budget futures are ready at once"),
    }
}

fn memory(c: &mut Criterion) {
    let store = MemoryBudgets::default();
    let budgets: &dyn BudgetStore = &store;
    // Limits the bench never reaches: every reservation takes the granting path.
    let counters = [
        Counter {
            id: "aigk_bench:tokens:3600:481234".to_owned(),
            limit: 1 << 50,
            expires_at_ms: u64::MAX,
        },
        Counter {
            id: "aigk_bench:spend:86400:20051".to_owned(),
            limit: 1 << 50,
            expires_at_ms: u64::MAX,
        },
    ];
    // 500 prompt tokens and up to 4096 output tokens, priced in micro-USD.
    let draws = [
        Draw {
            base: 500,
            per_unit: 1,
        },
        Draw {
            base: 1_500,
            per_unit: 15,
        },
    ];
    let ask = Ask {
        counters: &counters,
        draws: &draws,
        min_units: 1,
        max_units: 4_096,
    };
    c.bench_function("budget/memory_reserve_settle_two_counters", |b| {
        b.iter(|| {
            let Grant::Granted { units, local } =
                ready(budgets.reserve(black_box(ask), BudgetFailure::Local))
            else {
                unreachable!("the limits are never reached");
            };
            // The response used 200 of the units granted: refund the rest.
            let unused = (units - 200) as i64;
            ready(budgets.settle(&counters, &[-unused, -15 * unused], local));
        })
    });
}

criterion_group!(benches, memory);
criterion_main!(benches);
