//! Hostile clients against the real binary on its default limits: uploads that stall
//! mid-body over HTTP/1.1, one HTTP/2 connection holding 300 stalled gRPC streams, and
//! 5,000 idle connections. What a node agent must do: stay within its memory budget (plus
//! a constant), cut the stalled clients off within the read timeout, serve other pods
//! meanwhile, give the memory back, and close idle connections after the idle timeout.
//!
//! The attackers connect from 127.0.0.1, the well-behaved pod from 127.0.0.2 (Linux routes
//! all of 127/8 to the loopback interface): one pod's stalled uploads may hold only its
//! share of the budget.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::otlp::spans_request;
use common::{Hpcotel, PeakRss, free_port};
use hpcotel_testkit::sink::OtlpSink;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const MIB: usize = 1024 * 1024;
/// What each stalled upload declares, and how much of it it sends before stalling.
const DECLARED: usize = 4 * MIB;
const SENT: usize = DECLARED - MIB / 2;
/// The receiver's defaults (`limits.read_timeout`, `limits.idle_timeout`,
/// `limits.max_connections`).
const READ_TIMEOUT: Duration = Duration::from_secs(10);
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_CONNECTIONS: usize = 1024;
/// What the process may hold beyond its memory budget: the runtime, the pipelines, the
/// connections' own buffers (README, "Limits").
const RSS_CONSTANT: u64 = 64 * MIB as u64;
/// Slack on every deadline, for a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(5);

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const GOOD_POD: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

struct Node {
    hpcotel: Hpcotel,
    grpc: SocketAddr,
    http: SocketAddr,
    budget: u64,
    health: u16,
    _sink: OtlpSink,
}

async fn start() -> Node {
    let sink = OtlpSink::start().await;
    let (grpc, http, health) = (free_port(), free_port(), free_port());
    let mut hpcotel = Hpcotel::start(&format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
      http: {{ endpoint: "127.0.0.1:{http}" }}
exporters:
  otlp/sink: {{ endpoint: "{sink}" }}
extensions:
  health_check: {{ endpoint: "127.0.0.1:{health}" }}
service:
  extensions: [health_check]
  telemetry: {{ metrics: {{ level: none }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [otlp/sink] }}
"#,
        sink = sink.grpc_endpoint()
    ));
    let line = hpcotel.wait_for_log("memory_budget_mib=", Duration::from_secs(10));
    let budget: u64 = line
        .split("memory_budget_mib=")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no budget in {line:?}"));
    println!("memory budget: {budget} MiB");
    Node {
        hpcotel,
        grpc: format!("127.0.0.1:{grpc}").parse().unwrap(),
        http: format!("127.0.0.1:{http}").parse().unwrap(),
        budget: budget * MIB as u64,
        health,
        _sink: sink,
    }
}

/// A node agent served one good request (its RSS `before` the attack), its peak RSS watched.
async fn warmed_up() -> (Node, u32, u64, PeakRss) {
    let node = start().await;
    let pid = node.hpcotel.pid();
    good_requests_are_served(&node, "warm-up").await;
    let before = rss(pid);
    let peak = PeakRss::watch(pid);
    (node, pid, before, peak)
}

/// The process's resident set, bytes.
fn rss(pid: u32) -> u64 {
    common::proc_status_kib(pid, "VmRSS:") * 1024
}

async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from.into(), 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// A good request from `GOOD_POD` over both protocols; both must be accepted.
async fn good_requests_are_served(node: &Node, run: &str) {
    let req = spans_request(run, 0, 3);
    let mut http = connect_from(GOOD_POD, node.http).await;
    let body = req.encode_to_vec();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nhost: {}\r\ncontent-type: application/x-protobuf\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        node.http,
        body.len()
    );
    http.write_all(head.as_bytes()).await.unwrap();
    http.write_all(&body).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(SLACK, http.read_to_end(&mut answer))
        .await
        .expect("the good HTTP request was not answered in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "good HTTP request: {answer}"
    );

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", node.grpc))
        .unwrap()
        .local_address(Some(GOOD_POD.into()))
        .connect()
        .await
        .unwrap();
    let r = tokio::time::timeout(SLACK, TraceServiceClient::new(channel).export(req)).await;
    let r = r.expect("the good gRPC request was not answered in time");
    assert!(r.is_ok(), "good gRPC request: {r:?}");
}

/// How a stalled upload ended, and when (since it started).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Answered with this HTTP status.
    Status(u16),
    /// Closed (reset) without an answer the client could read.
    Closed,
}

/// Reads an HTTP/1.1 status line; `None` when the connection ends first.
async fn status(r: &mut tokio::net::tcp::OwnedReadHalf) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(2).any(|w| w == b"\r\n") {
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let line = String::from_utf8_lossy(&buf);
    line.split(' ').nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stalled_http_uploads_stay_within_the_budget_are_cut_off_and_do_not_starve_other_pods() {
    let (node, pid, before, peak) = warmed_up().await;

    let body = Bytes::from(vec![0u8; SENT]);
    let sent_all = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicUsize::new(0));
    let mut uploads = Vec::new();
    let attack = Instant::now();
    for _ in 0..300 {
        let (body, sent_all, ended, to) =
            (body.clone(), sent_all.clone(), ended.clone(), node.http);
        uploads.push(tokio::spawn(async move {
            let (mut r, mut w) = connect_from(ATTACKER, to).await.into_split();
            let started = Instant::now();
            let head = format!(
                "POST /v1/traces HTTP/1.1\r\nhost: {to}\r\ncontent-type: application/x-protobuf\r\n\
                 content-length: {DECLARED}\r\n\r\n"
            );
            let writer = tokio::spawn(async move {
                w.write_all(head.as_bytes()).await?;
                w.write_all(&body).await?;
                sent_all.fetch_add(1, Ordering::Relaxed);
                // Stall: keep the connection open, send nothing more.
                Ok::<_, std::io::Error>(w)
            });
            let end = match tokio::time::timeout(READ_TIMEOUT + SLACK * 2, status(&mut r)).await {
                Ok(Some(code)) => End::Status(code),
                Ok(None) => End::Closed,
                Err(_) => panic!(
                    "a stalled upload was still open after {:?}",
                    READ_TIMEOUT + SLACK * 2
                ),
            };
            ended.fetch_add(1, Ordering::Relaxed);
            drop(writer);
            (end, started.elapsed())
        }));
    }
    // Wait until every upload was either refused or sent everything it will send and stalled.
    let deadline = Instant::now() + READ_TIMEOUT;
    while sent_all.load(Ordering::Relaxed) + ended.load(Ordering::Relaxed) < 300 {
        assert!(
            Instant::now() < deadline,
            "uploads neither refused nor stalled in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "{:.1} s into the attack: {} uploads answered, the others sent all they will and stalled",
        attack.elapsed().as_secs_f64(),
        ended.load(Ordering::Relaxed)
    );
    good_requests_are_served(&node, "meanwhile").await;
    // /readyz says why: the receiver refused for memory just now.
    let ready = reqwest::get(format!("http://127.0.0.1:{}/readyz", node.health))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = serde_json::from_slice(&ready.bytes().await.unwrap()).unwrap();
    let otlp = &body["receivers"]["otlp"];
    assert_eq!(otlp["status"], "at_memory_budget", "{body}");
    assert!(
        otlp["memory_in_use_bytes"].as_u64().unwrap() <= node.budget,
        "{body}"
    );
    println!("/readyz meanwhile: {otlp}");
    let open_meanwhile = 300 - ended.load(Ordering::Relaxed);
    assert!(
        open_meanwhile > 0,
        "the stalled uploads ended before the good pod was served: not 'meanwhile'"
    );

    let mut ends = Vec::new();
    for u in uploads {
        ends.push(u.await.unwrap());
    }
    let cut: Vec<Duration> = ends
        .iter()
        .filter(|(e, _)| *e == End::Status(408))
        .map(|(_, t)| *t)
        .collect();
    let refused = ends.iter().filter(|(e, _)| *e == End::Status(429)).count();
    let closed = ends.iter().filter(|(e, _)| *e == End::Closed).count();
    let others: Vec<_> = ends
        .iter()
        .filter(|(e, _)| !matches!(e, End::Status(408 | 429) | End::Closed))
        .collect();
    let slowest = cut.iter().max().copied().unwrap_or_default();
    let peak = peak.peak();
    println!(
        "300 stalled uploads: {} cut off with 408 (the last after {:.1} s), {refused} refused \
         with 429, {closed} closed unread, {open_meanwhile} still open when the good pod was \
         served; RSS before {:.1} MiB, peak {:.1} MiB (budget {} MiB)",
        cut.len(),
        slowest.as_secs_f64(),
        before as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        node.budget / MIB as u64,
    );
    assert!(others.is_empty(), "unexpected answers: {others:?}");
    assert!(
        !cut.is_empty(),
        "no upload was held long enough to be cut off"
    );
    assert!(slowest <= READ_TIMEOUT + SLACK, "cut off after {slowest:?}");
    assert!(
        peak <= node.budget + RSS_CONSTANT,
        "peak RSS {peak} over the budget {} + {RSS_CONSTANT}",
        node.budget
    );
    rss_returns(pid, before).await;
}

/// Waits until `pid`'s RSS is back within 20 % of `before`.
async fn rss_returns(pid: u32, before: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = rss(pid);
        if now as f64 <= before as f64 * 1.2 {
            println!(
                "RSS after the burst: {:.1} MiB ({:+.0} % of before)",
                now as f64 / MIB as f64,
                (now as f64 / before as f64 - 1.0) * 100.0
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "RSS stayed at {:.1} MiB after the burst, before {:.1} MiB",
            now as f64 / MIB as f64,
            before as f64 / MIB as f64
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_grpc_connection_with_300_stalled_streams_is_bounded_and_cut_off() {
    let (node, pid, before, peak) = warmed_up().await;

    let tcp = connect_from(ATTACKER, node.grpc).await;
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    // The gRPC message header declares 4 MiB; most of it follows, then the stream stalls.
    let mut message = Vec::with_capacity(5 + SENT);
    message.push(0);
    message.extend_from_slice(&(DECLARED as u32).to_be_bytes());
    message.resize(5 + SENT, 0);
    let message = Bytes::from(message);
    let uri = format!(
        "http://{}/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        node.grpc
    );
    let ended = Arc::new(AtomicUsize::new(0));
    let opener = {
        let ended = ended.clone();
        tokio::spawn(async move {
            let mut client = client;
            let mut streams = Vec::new();
            let mut held = Vec::new();
            for _ in 0..300 {
                // Waits while the server's SETTINGS_MAX_CONCURRENT_STREAMS are all in use.
                client = client.ready().await.unwrap();
                let request = http::Request::post(uri.as_str())
                    .header("content-type", "application/grpc")
                    .header("te", "trailers")
                    .body(())
                    .unwrap();
                let (response, mut send) = client.send_request(request, false).unwrap();
                let _ = send.send_data(message.clone(), false);
                held.push(send);
                let ended = ended.clone();
                let started = Instant::now();
                streams.push(tokio::spawn(async move {
                    let r = response.await;
                    ended.fetch_add(1, Ordering::Relaxed);
                    let status = match r {
                        Ok(resp) => resp
                            .headers()
                            .get("grpc-status")
                            .map(|v| v.to_str().unwrap().to_owned())
                            .unwrap_or_else(|| format!("http {}", resp.status())),
                        Err(e) => format!("reset: {e}"),
                    };
                    (status, started.elapsed())
                }));
            }
            (streams, held, client)
        })
    };
    // While the attacker's streams are held, another pod is served.
    let deadline = Instant::now() + READ_TIMEOUT;
    while ended.load(Ordering::Relaxed) < 30 {
        assert!(
            Instant::now() < deadline,
            "no stream was refused: nothing is bounded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    good_requests_are_served(&node, "meanwhile").await;
    let served_with = 300 - ended.load(Ordering::Relaxed);
    assert!(
        served_with > 0,
        "every stream had ended before the good pod was served"
    );

    let (streams, held, _client) = tokio::time::timeout(READ_TIMEOUT * 4, opener)
        .await
        .expect("streams never all opened")
        .unwrap();
    let mut ends = Vec::new();
    for s in streams {
        let end = tokio::time::timeout(READ_TIMEOUT + SLACK * 2, s)
            .await
            .expect("a stalled stream was still open after the read timeout")
            .unwrap();
        ends.push(end);
    }
    drop(held);
    let count = |code: &str| ends.iter().filter(|(s, _)| s == code).count();
    // RESOURCE_EXHAUSTED (8): over the budget; DEADLINE_EXCEEDED (4): cut off.
    let (exhausted, cut) = (count("8"), count("4"));
    let slowest = ends
        .iter()
        .filter(|(s, _)| s == "4")
        .map(|(_, t)| *t)
        .max()
        .unwrap_or_default();
    let peak = peak.peak();
    println!(
        "300 stalled gRPC streams on one connection: {cut} cut off with DEADLINE_EXCEEDED (the \
         last after {:.1} s), {exhausted} refused with RESOURCE_EXHAUSTED, {served_with} still \
         open when the good pod was served; RSS before {:.1} MiB, peak {:.1} MiB (budget {} MiB)",
        slowest.as_secs_f64(),
        before as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        node.budget / MIB as u64,
    );
    let others: Vec<_> = ends.iter().filter(|(s, _)| s != "4" && s != "8").collect();
    assert!(others.is_empty(), "unexpected ends: {others:?}");
    assert!(cut > 0, "no stream was held long enough to be cut off");
    assert!(slowest <= READ_TIMEOUT + SLACK, "cut off after {slowest:?}");
    assert!(
        peak <= node.budget + RSS_CONSTANT,
        "peak RSS {peak} over the budget {} + {RSS_CONSTANT}",
        node.budget
    );
    rss_returns(pid, before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_thousand_idle_connections_are_closed_after_the_idle_timeout() {
    let node = start().await;
    const EACH: usize = 2500;
    let flood = Instant::now();
    let mut conns = Vec::new();
    // Silent TCP connections to the HTTP port; connections that sent only the HTTP/2
    // preface (and its empty SETTINGS) to the gRPC port.
    for i in 0..2 * EACH {
        let (to, preface) = if i % 2 == 0 {
            (node.http, &b""[..])
        } else {
            (
                node.grpc,
                &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"[..],
            )
        };
        let mut c = connect_from(ATTACKER, to).await;
        c.write_all(preface).await.unwrap();
        let opened = Instant::now();
        conns.push(tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            loop {
                match c.read(&mut buf).await {
                    Ok(0) | Err(_) => return (i, opened.elapsed()),
                    Ok(_) => {}
                }
            }
        }));
    }
    println!(
        "5000 idle connections opened in {:.1} s",
        flood.elapsed().as_secs_f64()
    );
    // While the flood is held, other pods still connect and are served: a new connection
    // closes the longest-idle one.
    good_requests_are_served(&node, "during the flood").await;
    let mut lifetimes = Vec::new();
    for c in conns {
        let end = tokio::time::timeout(IDLE_TIMEOUT + SLACK * 2, c)
            .await
            .expect("an idle connection was still open after the idle timeout")
            .unwrap();
        lifetimes.push(end);
    }
    let longest = lifetimes.iter().map(|(_, t)| *t).max().unwrap();
    // The most recent ones (per port: as many as the limit) stayed until the idle timeout;
    // the older ones made room for them.
    let kept: Vec<Duration> = lifetimes
        .iter()
        .filter(|(_, t)| *t >= IDLE_TIMEOUT - Duration::from_secs(1))
        .map(|(_, t)| *t)
        .collect();
    println!(
        "5000 idle connections: all closed, {} after the idle timeout (the last after {:.1} s), \
         {} earlier to make room for newer ones",
        kept.len(),
        longest.as_secs_f64(),
        lifetimes.len() - kept.len()
    );
    assert!(longest <= IDLE_TIMEOUT + SLACK, "open for {longest:?}");
    // 2 ports × the limit, less the connections the good requests took.
    assert!(
        kept.len() >= 2 * MAX_CONNECTIONS - 4 && kept.len() <= 2 * MAX_CONNECTIONS,
        "{} connections lasted the idle timeout",
        kept.len()
    );
}
