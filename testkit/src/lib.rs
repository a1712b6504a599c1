//! hpcotel-testkit: test doubles that speak the real protocols.
//!
//! - [`sink`]: an OTLP sink (gRPC and HTTP) that records what it receives and can be scripted
//!   to stall, answer UNAVAILABLE / 503 with RetryInfo / Retry-After, or reject.

pub mod sink;
