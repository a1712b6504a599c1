//! The gpu receiver's own cost per GPU per sample, against testkit's fake NVML (so the
//! driver's time is excluded: what is left is hpcotel's code plus the fake's trivial answers).
//!
//! `cargo bench -p hpcotel-benches --bench gpu_sampler`
//!
//! - `sample/8 GPUs`: one `Sampler::sample` over 8 GPUs (utilization, encoder, decoder,
//!   memory, power, temperatures, 3 clocks, throttle reasons, PCIe throughput). Divide by 8
//!   for the per-GPU cost.
//! - `report/8 GPUs`: one `Sampler::report` (slow readings + building every OTLP metric).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hpcotel_core::Catalog;
use hpcotel_core::telemetry::unix_nanos;
use hpcotel_receivers::gpu::sampler::{Options, Sampler, XidStats};
use hpcotel_receivers::gpu::{Config, load_nvml};
use hpcotel_testkit::nvml::{FakeNvml, Scenario};

fn sampler(fake: &FakeNvml) -> Sampler {
    let config = Config {
        library_path: fake.library_path(),
        ..Default::default()
    };
    let nvml = Arc::new(load_nvml(&config).expect("the fake NVML loads"));
    Sampler::new(
        nvml,
        Catalog::new(),
        Arc::new(XidStats::default()),
        Options {
            host: Vec::new(),
            logs: true,
            processes: true,
            mig: true,
            proc_root: PathBuf::from("/proc"),
        },
    )
}

fn bench(c: &mut Criterion) {
    const GPUS: u32 = 8;
    let fake = FakeNvml::new(&Scenario::with_gpus(GPUS));
    let mut s = sampler(&fake);
    let mut group = c.benchmark_group("gpu_sampler");
    group.throughput(Throughput::Elements(u64::from(GPUS)));
    group.bench_function("sample/8 GPUs", |b| b.iter(|| s.sample()));
    group.bench_function("report/8 GPUs", |b| {
        b.iter(|| {
            s.sample();
            s.report(unix_nanos(SystemTime::now()))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
