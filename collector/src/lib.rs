//! hpcotel, the collector: YAML config -> a topology of receivers, processors and exporters
//! joined by bounded channels; the processors; the extensions (health check); self-telemetry;
//! graceful shutdown. The binary (`main.rs`) is the CLI around [`service::Collector`].

pub mod config;
pub mod extensions;
pub mod gpus;
pub mod mpirun;
pub mod processors;
pub mod service;
