//! Acceptance (issue 15): gzip and zstd requests are accepted on both OTLP receivers and sent
//! by both OTLP exporters with their contents intact; a small compressed body that inflates
//! past the size limit is refused with the documented status on either protocol, the process's
//! memory stays bounded, and it goes on serving.

mod common;

use std::io::Write as _;
use std::time::Duration;

use bytes::Bytes;
use common::otlp::{attr_str, logs_request, spans_request, spans_where};
use common::{Hpcotel, PeakRss, free_port, proc_status_kib};
use hpcotel_testkit::sink::OtlpSink;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use tonic::codec::CompressionEncoding;

const WAIT: Duration = Duration::from_secs(30);
const MIB: u64 = 1024 * 1024;
/// The receiver's memory budget in these tests (`limits.memory_mib`).
const BUDGET_MIB: u64 = 32;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn config(grpc: u16, http: u16, sink: &OtlpSink) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
      http: {{ endpoint: "127.0.0.1:{http}" }}
    limits: {{ memory_mib: {BUDGET_MIB} }}
exporters:
  otlp/zstd: {{ endpoint: "{g}", compression: zstd }}
  otlphttp/zstd: {{ endpoint: "{h}", compression: zstd }}
service:
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [otlp/zstd] }}
    logs: {{ receivers: [otlp], exporters: [otlphttp/zstd] }}
"#,
        g = sink.grpc_endpoint(),
        h = sink.http_endpoint(),
    )
}

async fn post(url: &str, body: Vec<u8>, encoding: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-protobuf")
        .header("content-encoding", encoding)
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_and_zstd_requests_in_both_protocols_arrive_intact_through_zstd_exporters() {
    let sink = OtlpSink::start().await;
    let (grpc, http) = (free_port(), free_port());
    let _hpcotel = Hpcotel::start(&config(grpc, http, &sink));
    let endpoint = format!("http://127.0.0.1:{grpc}");

    // gRPC: one request per encoding, each under its own run name.
    let mut sent = Vec::new();
    for encoding in [CompressionEncoding::Gzip, CompressionEncoding::Zstd] {
        let run = format!("grpc-{encoding}");
        let request = spans_request(&run, 0, 40);
        TraceServiceClient::connect(endpoint.clone())
            .await
            .unwrap()
            .send_compressed(encoding)
            .export(request.clone())
            .await
            .unwrap_or_else(|e| panic!("{run}: {e}"));
        sent.push((run, request));
    }
    // HTTP: the same with Content-Encoding.
    for (encoding, compress) in [
        ("gzip", gzip as fn(&[u8]) -> Vec<u8>),
        ("zstd", |b: &[u8]| zstd::bulk::compress(b, 3).unwrap()),
    ] {
        let run = format!("http-{encoding}");
        let request = spans_request(&run, 0, 40);
        let resp = post(
            &format!("http://127.0.0.1:{http}/v1/traces"),
            compress(&request.encode_to_vec()),
            encoding,
        )
        .await;
        assert_eq!(resp.status(), 200, "{run}: {}", resp.text().await.unwrap());
        sent.push((run, request));
    }
    // Logs in over gRPC zstd, out over OTLP/HTTP zstd.
    LogsServiceClient::connect(endpoint)
        .await
        .unwrap()
        .send_compressed(CompressionEncoding::Zstd)
        .export(logs_request("logs-zstd", 0, 25))
        .await
        .unwrap();

    let got = sink
        .wait_for("160 spans and 25 log records", WAIT, |r| {
            r.span_count() == 160 && r.log_record_count() == 25
        })
        .await;
    for (run, request) in &sent {
        let arrived: Vec<_> = spans_where(&got.traces, "test.run_id", run)
            .into_iter()
            .cloned()
            .collect();
        assert_eq!(
            arrived, request.resource_spans[0].scope_spans[0].spans,
            "{run}: the spans as sent"
        );
    }
    let bodies: Vec<_> = got
        .logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| &sl.log_records)
        .filter_map(common::otlp::body)
        .collect();
    let expected: Vec<_> = (0..25).map(|i| format!("logs-zstd-{i}")).collect();
    assert_eq!(bodies, expected);
    assert!(got.logs.iter().all(|rl| {
        rl.resource
            .as_ref()
            .is_some_and(|r| attr_str(&r.attributes, "test.run_id") == Some("logs-zstd"))
    }));
    // Every request out of hpcotel was zstd: gRPC and HTTP.
    let encodings: Vec<_> = sink
        .requests()
        .iter()
        .map(|r| {
            r.header("grpc-encoding")
                .or(r.header("content-encoding"))
                .map(str::to_owned)
        })
        .collect();
    assert!(
        encodings.iter().all(|e| e.as_deref() == Some("zstd")),
        "{encodings:?}"
    );
}

/// A gRPC message frame: compressed flag 1, length, payload.
fn grpc_frame(payload: &[u8]) -> Bytes {
    let mut frame = Vec::with_capacity(5 + payload.len());
    frame.push(1);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    frame.into()
}

/// Sends one gzip-compressed gRPC message over a raw HTTP/2 stream; the `grpc-status` answered.
async fn grpc_gzip_raw(port: u16, frame: Bytes) -> String {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(format!(
        "http://127.0.0.1:{port}/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    ))
    .header("content-type", "application/grpc")
    .header("grpc-encoding", "gzip")
    .header("te", "trailers")
    .body(())
    .unwrap();
    let (response, mut send) = client.send_request(request, false).unwrap();
    send.send_data(frame, true).unwrap();
    let response = tokio::time::timeout(WAIT, response)
        .await
        .expect("an answer")
        .unwrap();
    if let Some(s) = response.headers().get("grpc-status") {
        return s.to_str().unwrap().to_owned();
    }
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await.unwrap().expect("trailers");
    trailers["grpc-status"].to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_mib_body_inflating_past_the_limit_is_refused_and_memory_stays_bounded() {
    let sink = OtlpSink::start().await;
    let (grpc, http) = (free_port(), free_port());
    let hpcotel = Hpcotel::start(&config(grpc, http, &sink));
    let pid = hpcotel.pid();

    // 1 GiB of zeros gzips to about 1 MiB: a thousandfold inflation.
    let bomb = gzip(&vec![0u8; 1024 * 1024 * 1024]);
    let wire = bomb.len() as u64;
    assert!(
        (900 * 1024..=1100 * 1024).contains(&wire),
        "{wire} bytes on the wire"
    );
    // 256 MiB of zeros in zstd (level 19, window 8 MiB): about 8 KiB.
    let zstd_bomb = zstd::bulk::compress(&vec![0u8; 256 * 1024 * 1024], 19).unwrap();
    let frame = grpc_frame(&bomb);
    let traces_url = format!("http://127.0.0.1:{http}/v1/traces");

    for kind in ["OTLP/HTTP gzip", "OTLP/HTTP zstd", "OTLP/gRPC gzip"] {
        let before = proc_status_kib(pid, "VmRSS:") * 1024;
        let peak = PeakRss::watch(pid);
        for round in 0..4 {
            match kind {
                "OTLP/HTTP gzip" | "OTLP/HTTP zstd" => {
                    let (body, encoding) = if kind.ends_with("gzip") {
                        (bomb.clone(), "gzip")
                    } else {
                        (zstd_bomb.clone(), "zstd")
                    };
                    // 413, naming the limit.
                    let resp = post(&traces_url, body, encoding).await;
                    assert_eq!(resp.status(), 413, "{kind}, round {round}");
                    let status = tonic_types::Status::decode(resp.bytes().await.unwrap()).unwrap();
                    assert!(
                        status.message.contains(
                            "decompressed request body exceeds the limit of 4194304 bytes"
                        ),
                        "{kind}: {}",
                        status.message
                    );
                }
                _ => {
                    // RESOURCE_EXHAUSTED (8), as grpc-go answers a message over its limit.
                    assert_eq!(
                        grpc_gzip_raw(grpc, frame.clone()).await,
                        "8",
                        "{kind}, round {round}"
                    );
                }
            }
        }
        let grew = peak.peak().saturating_sub(before);
        println!(
            "{kind}: 4 bodies of {} KiB inflating to {} MiB: RSS {:.1} MiB before, peak {:.1} MiB \
             (+{:.1} MiB; budget {BUDGET_MIB} MiB)",
            if kind.contains("zstd") {
                zstd_bomb.len() / 1024
            } else {
                wire as usize / 1024
            },
            if kind.contains("zstd") { 256 } else { 1024 },
            before as f64 / MIB as f64,
            peak.peak() as f64 / MIB as f64,
            grew as f64 / MIB as f64
        );
        assert!(
            grew <= BUDGET_MIB * MIB,
            "{kind}: RSS grew by {:.1} MiB, past the {BUDGET_MIB} MiB budget",
            grew as f64 / MIB as f64
        );
    }

    // Still serving, and nothing of the bombs was forwarded.
    TraceServiceClient::connect(format!("http://127.0.0.1:{grpc}"))
        .await
        .unwrap()
        .send_compressed(CompressionEncoding::Gzip)
        .export(spans_request("after", 0, 3))
        .await
        .expect("served after the bombs");
    let got = sink
        .wait_for("the 3 spans sent after", WAIT, |r| r.span_count() >= 3)
        .await;
    assert_eq!(got.span_count(), 3);
}
