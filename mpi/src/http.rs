//! A minimal blocking OTLP/HTTP client: one `POST` of a protobuf body per request, over a
//! fresh TCP connection, every step bounded by a deadline.
//!
//! The library lives inside other people's MPI processes, so it carries no async runtime and
//! no TLS stack: it speaks plain HTTP/1.1 to the node-local collector, which does TLS and auth
//! towards the backend.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// An `http://host:port/path` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// Host name or address (brackets kept for IPv6).
    pub host: String,
    /// Port; 80 when the URL names none.
    pub port: u16,
    /// Path with query, `/` at least.
    pub path: String,
}

impl Url {
    /// Parses an `http://` URL; `https://` is refused with the reason.
    pub fn parse(s: &str) -> Result<Url, String> {
        let rest = if let Some(r) = s.strip_prefix("http://") {
            r
        } else if s.starts_with("https://") {
            return Err(
                "https is not supported by libhpcotel_mpi: export to the node-local \
                        collector over http and let it do TLS"
                    .into(),
            );
        } else {
            return Err("expected an http://host:port URL".into());
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err("credentials in the URL are not supported: pass them in \
                        OTEL_EXPORTER_OTLP_HEADERS"
                .into());
        }
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err("the path has spaces or control characters".into());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !p.contains(']') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("bad port {p:?} in {s:?}"))?,
            ),
            _ => (authority, 80),
        };
        if host.is_empty() {
            return Err(format!("no host in {s:?}"));
        }
        Ok(Url {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    /// `http://host:port/path` without the query, for messages (a query may hold a token).
    pub fn display(&self) -> String {
        let path = self.path.split('?').next().unwrap_or_default();
        format!("http://{}:{}{path}", self.host, self.port)
    }
}

/// `url` for a message: no credentials, no query.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let rest = rest.split('?').next().unwrap_or_default();
    if scheme.is_empty() {
        rest.to_owned()
    } else {
        format!("{scheme}://{rest}")
    }
}

/// Resolves `url`'s host, giving up at `deadline`: the system resolver ignores deadlines, so
/// a name is looked up on a helper thread (left to finish on its own when it is late).
pub fn resolve(url: &Url, deadline: Instant) -> Result<Vec<SocketAddr>, Error> {
    let host = url
        .host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, url.port)]);
    }
    let (tx, rx) = mpsc::channel();
    let port = url.port;
    let lookup = host.clone();
    std::thread::Builder::new()
        .name("hpcotel-mpi-dns".into())
        .spawn(move || {
            let r = (lookup.as_str(), port)
                .to_socket_addrs()
                .map(|a| a.collect::<Vec<_>>());
            let _ = tx.send(r);
        })
        .map_err(|e| Error::Io(format!("cannot start a resolver thread: {e}")))?;
    match rx.recv_timeout(remaining(deadline)) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err(Error::Io(format!("{host} resolved to no address"))),
        Ok(Err(e)) => Err(Error::Io(format!("cannot resolve {host}: {e}"))),
        Err(_) => Err(Error::Timeout),
    }
}

/// Why a request failed.
#[derive(Debug)]
pub enum Error {
    /// Could not resolve, connect, write or read.
    Io(String),
    /// The collector answered with a non-2xx status.
    Status(u16),
    /// The deadline passed.
    Timeout,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{e}"),
            Error::Status(s) => write!(f, "the collector answered HTTP {s}"),
            Error::Timeout => write!(f, "no answer before the deadline"),
        }
    }
}

/// POSTs `body` as `application/x-protobuf`, finishing by `deadline`. Header values are sent,
/// never logged.
pub fn post(
    url: &Url,
    addrs: &[SocketAddr],
    headers: &[(String, String)],
    body: &[u8],
    deadline: Instant,
) -> Result<(), Error> {
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or(Error::Timeout)
    };
    let mut last = Error::Io(format!("{} resolved to no address", url.host));
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(addr, left()?) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => last = Error::Timeout,
            Err(e) => last = Error::Io(format!("cannot connect to {addr}: {e}")),
        }
    }
    let mut stream = stream.ok_or(last)?;
    let _ = stream.set_nodelay(true);
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Error::Timeout,
        _ => Error::Io(e.to_string()),
    };

    let mut head = format!(
        "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/x-protobuf\r\n\
         Content-Length: {}\r\nUser-Agent: hpcotel-mpi/{}\r\nConnection: close\r\n",
        url.path,
        url.host,
        url.port,
        body.len(),
        env!("CARGO_PKG_VERSION")
    );
    for (k, v) in headers {
        head.push_str(k);
        head.push_str(": ");
        head.push_str(v);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.set_write_timeout(Some(left()?)).map_err(io)?;
    stream.write_all(head.as_bytes()).map_err(io)?;
    stream.set_write_timeout(Some(left()?)).map_err(io)?;
    stream.write_all(body).map_err(io)?;

    // Only the status line matters; the body (a partial-success message at most) is ignored.
    let mut buf = [0u8; 512];
    let mut got = 0;
    loop {
        stream.set_read_timeout(Some(left()?)).map_err(io)?;
        let n = stream.read(&mut buf[got..]).map_err(io)?;
        if n == 0 {
            break;
        }
        got += n;
        if buf[..got].windows(2).any(|w| w == b"\r\n") || got == buf.len() {
            break;
        }
    }
    let line = String::from_utf8_lossy(&buf[..got]);
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| Error::Io(format!("not an HTTP answer: {:?}", line.lines().next())))?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(Error::Status(status))
    }
}

/// The time left before `deadline`, zero when it passed.
pub fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn urls() {
        assert_eq!(
            Url::parse("http://127.0.0.1:4318/v1/traces").unwrap(),
            Url {
                host: "127.0.0.1".into(),
                port: 4318,
                path: "/v1/traces".into()
            }
        );
        assert_eq!(Url::parse("http://collector").unwrap().port, 80);
        assert_eq!(Url::parse("http://[::1]:4318/x").unwrap().host, "[::1]");
        assert!(Url::parse("https://c:4318").unwrap_err().contains("https"));
        assert!(Url::parse("c:4318").is_err());
        assert!(Url::parse("http://c:http/").is_err());
        assert!(
            Url::parse("http://u:pw@c:4318/")
                .unwrap_err()
                .contains("credentials")
        );
        assert!(Url::parse("http://c:4318/v1/x\r\nX-Evil: 1").is_err());
        assert_eq!(
            redact("http://u:s3cret@c:4318/v1/traces?token=abc"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            Url::parse("http://c:4318/v1/traces?token=abc")
                .unwrap()
                .display(),
            "http://c:4318/v1/traces"
        );
        // A literal address needs no lookup; an unknown name fails by the deadline.
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(
            resolve(&Url::parse("http://[::1]:4318/").unwrap(), deadline).unwrap(),
            vec!["[::1]:4318".parse().unwrap()]
        );
        assert!(
            resolve(
                &Url::parse("http://no-such-host.invalid/").unwrap(),
                deadline
            )
            .is_err()
        );
    }

    #[test]
    fn posts_the_body_with_headers_and_reads_the_status() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/v1/traces", l.local_addr().unwrap())).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.ends_with(b"body!") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "client closed early");
                req.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            String::from_utf8(req).unwrap()
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let addrs = resolve(&url, deadline).unwrap();
        post(
            &url,
            &addrs,
            &[("authorization".into(), "Bearer t".into())],
            b"body!",
            deadline,
        )
        .unwrap();
        let req = server.join().unwrap();
        assert!(req.starts_with("POST /v1/traces HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("Content-Type: application/x-protobuf\r\n"));
        assert!(req.contains("Content-Length: 5\r\n"));
        assert!(req.contains("authorization: Bearer t\r\n"));
    }

    #[test]
    fn a_refused_connection_an_error_status_and_a_silent_server_all_fail_in_time() {
        // Nothing listens on a port just released.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = Url::parse(&format!("http://127.0.0.1:{port}/v1/logs")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let addrs = resolve(&url, deadline).unwrap();
        assert!(matches!(
            post(&url, &addrs, &[], b"x", deadline),
            Err(Error::Io(_))
        ));

        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/v1/logs", l.local_addr().unwrap())).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"HTTP/1.1 503 Service Unavailable\r\n\r\n")
                .unwrap();
            // A second client that never gets an answer.
            let (_silent, _) = l.accept().unwrap();
            std::thread::park_timeout(Duration::from_secs(5));
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        let addrs = resolve(&url, deadline).unwrap();
        assert!(matches!(
            post(&url, &addrs, &[], b"x", deadline),
            Err(Error::Status(503))
        ));
        let start = Instant::now();
        let deadline = start + Duration::from_millis(300);
        assert!(matches!(
            post(&url, &addrs, &[], b"x", deadline),
            Err(Error::Timeout)
        ));
        // Bounded by the deadline (with slack for a loaded machine), not by the server.
        assert!(start.elapsed() < Duration::from_secs(4));
        server.thread().unpark();
        drop(server);
    }
}
