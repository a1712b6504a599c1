//! hpcotel-testkit: test doubles that speak the real protocols.
//!
//! - [`sink`]: an OTLP sink (gRPC and HTTP) that records what it receives and can be scripted
//!   to stall, answer UNAVAILABLE / 503 with RetryInfo / Retry-After, or reject.
//! - [`nvml`]: a fake NVML driver (`libnvidia-ml.so.1` over a scripted scenario) loaded
//!   through nvml-wrapper's real dynamic-loading path.
//! - [`podresources`]: a fake kubelet serving PodResources v1 on a Unix socket.
//! - [`kube`]: a fake kube-apiserver speaking the real list/watch protocol over HTTP, with
//!   a script API for a cluster's history and fixtures in the real APIs' shapes.

pub mod kube;
pub mod nvml;
pub mod podresources;
pub mod sink;
