//! The offline advisor's time per advice (issue target: at most 2 s on 2 cores), on the cervix
//! protocol's report of the test fixtures (`tests/common`), with the model from
//! `scripts/fetch-offline-model.sh`.
//!
//! Each prompt carries one few-shot example, as the offline advisor is run (`--n-examples 1
//! --selection per-objective`): the report's organ objectives with their changes as an answer.
//! Two cases: the first advice of a fresh advisor (system turn, examples, history and report
//! all read), and the steady state of a plan, where the advisor's prompt cache holds the system
//! turn and the stable start (examples and history) and each advice reads the new report: two
//! contexts that differ only in their report, asked in turn.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use llm_providers::embedded::EmbeddedAdvisor;

#[path = "../tests/common/mod.rs"]
mod common;

fn advice(c: &mut Criterion) {
    let model = common::root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !model.is_file() {
        eprintln!(
            "{}: no model, nothing measured (scripts/fetch-offline-model.sh)",
            model.display()
        );
        return;
    }
    let mut first = common::context();
    first.examples.push(common::example());
    let mut second = first.clone();
    second.current.iteration += 1;
    for o in &mut second.current.objectives {
        o.current_cgy -= 50.0;
    }
    let mut g = c.benchmark_group("embedded-advice");
    g.sample_size(10);
    g.bench_function("fresh advisor", |b| {
        b.iter_batched(
            || EmbeddedAdvisor::load(&model).unwrap(),
            |advisor| black_box(advisor.decide(&first).unwrap()),
            criterion::BatchSize::PerIteration,
        )
    });
    let advisor = EmbeddedAdvisor::load(&model).unwrap();
    advisor.decide(&first).unwrap();
    let mut turn = 0usize;
    g.bench_function("next report, cached start", |b| {
        b.iter(|| {
            turn += 1;
            let ctx = if turn % 2 == 0 { &first } else { &second };
            black_box(advisor.decide(ctx).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, advice);
criterion_main!(benches);
