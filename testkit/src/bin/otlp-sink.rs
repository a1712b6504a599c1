//! `otlp-sink`: a standalone OTLP sink (gRPC + HTTP) that counts what it receives and prints
//! running totals, for benchmarks and manual checks.
//!
//! `otlp-sink --grpc 127.0.0.1:14317 --http 127.0.0.1:14318 --print-every 1s` prints one line
//! `spans=N metric_points=N log_records=N requests=N` per interval and a last one on
//! SIGINT/SIGTERM. It keeps counts only, never the data, so long runs use constant memory.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use hpcotel_testkit::sink::{OtlpSink, SinkOptions, Totals};

/// A counting OTLP sink.
#[derive(Debug, Parser)]
#[command(name = "otlp-sink", version, about)]
struct Args {
    /// OTLP/gRPC listen address.
    #[arg(long, default_value = "127.0.0.1:14317")]
    grpc: SocketAddr,
    /// OTLP/HTTP listen address.
    #[arg(long, default_value = "127.0.0.1:14318")]
    http: SocketAddr,
    /// How often to print the running totals (e.g. `1s`, `500ms`).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    print_every: Duration,
    /// Refuse requests longer than this many bytes, as a collector's receive limit does
    /// (4194304 is the OpenTelemetry Collector's gRPC default). Default: no limit.
    #[arg(long)]
    max_message_bytes: Option<usize>,
}

fn print(t: Totals) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "spans={} metric_points={} log_records={} requests={}",
        t.spans, t.metric_points, t.log_records, t.requests
    );
    let _ = out.flush();
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let sink = OtlpSink::start_with(SinkOptions {
        grpc: args.grpc,
        http: args.http,
        record: false,
        max_message_bytes: args.max_message_bytes,
    })
    .await?;
    eprintln!(
        "otlp-sink listening: grpc={} http={}",
        sink.grpc_addr(),
        sink.http_addr()
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut tick = tokio::time::interval(args.print_every.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => print(sink.totals()),
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
    }
    print(sink.totals());
    sink.shutdown().await;
    Ok(())
}
