//! Sending batches: a background thread every export period, and a bounded synchronous
//! flush at the end of the rank.
//!
//! A missing, failing or slow collector costs the job nothing but the flush bound: MPI calls
//! only ever take the state lock, never wait for the network. The first failure prints one
//! warning per rank; later ones are counted, not printed. Failed batches are dropped (the
//! histograms are cumulative, so the next successful export carries their counts).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use prost::Message;

use crate::http::{self, Url};
use crate::recorder::Batch;

/// Where and how to send.
pub struct Exporter {
    traces: Option<Url>,
    metrics: Option<Url>,
    logs: Option<Url>,
    headers: Vec<(String, String)>,
    timeout: Duration,
    rank: i32,
    warned: AtomicBool,
    stop: Mutex<bool>,
    wake: Condvar,
    /// Resolved addresses per `host:port`, so later sends (the final flush above all) need
    /// no lookup.
    addrs: Mutex<HashMap<(String, u16), Vec<SocketAddr>>>,
}

impl Exporter {
    /// An exporter for `rank` (URLs that failed to parse were reported at init; their signal
    /// is not sent).
    pub fn new(settings: &crate::settings::Settings, rank: i32) -> Exporter {
        Exporter {
            traces: Url::parse(&settings.traces_url).ok(),
            metrics: Url::parse(&settings.metrics_url).ok(),
            logs: Url::parse(&settings.logs_url).ok(),
            headers: settings.headers.clone(),
            timeout: settings.export_timeout,
            rank,
            warned: AtomicBool::new(false),
            stop: Mutex::new(false),
            wake: Condvar::new(),
            addrs: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `batch`, each request bounded by the export timeout and all by `deadline`.
    pub fn send(&self, batch: Batch, deadline: Option<Instant>) {
        let deadline_for = || {
            let d = Instant::now() + self.timeout;
            deadline.map_or(d, |f| f.min(d))
        };
        let requests: [(Option<&Url>, Option<Vec<u8>>); 3] = [
            (
                self.traces.as_ref(),
                batch.traces.map(|r| r.encode_to_vec()),
            ),
            (
                self.metrics.as_ref(),
                batch.metrics.map(|r| r.encode_to_vec()),
            ),
            (self.logs.as_ref(), batch.logs.map(|r| r.encode_to_vec())),
        ];
        for (url, body) in requests {
            let (Some(url), Some(body)) = (url, body) else {
                continue;
            };
            let d = deadline_for();
            if http::remaining(d).is_zero() {
                self.failed(url, &http::Error::Timeout);
                continue;
            }
            let key = (url.host.clone(), url.port);
            let cached = self
                .addrs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&key)
                .cloned();
            let addrs = match cached {
                Some(a) => a,
                None => match http::resolve(url, d) {
                    Ok(a) => {
                        self.addrs
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(key, a.clone());
                        a
                    }
                    Err(e) => {
                        self.failed(url, &e);
                        continue;
                    }
                },
            };
            match http::post(url, &addrs, &self.headers, &body, d) {
                Ok(()) => {}
                Err(e) => self.failed(url, &e),
            }
        }
    }

    fn failed(&self, url: &Url, e: &http::Error) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            crate::warn(
                self.rank,
                &format!(
                    "cannot export to {}: {e}; this rank's telemetry is dropped until the \
                     collector answers (the MPI job is not affected; no further warnings)",
                    url.display()
                ),
            );
        }
    }

    /// Runs `collect` and sends its batch every `period` until [`Exporter::stop`].
    pub fn spawn(
        self: &Arc<Self>,
        period: Duration,
        collect: impl Fn() -> Option<Batch> + Send + 'static,
    ) -> std::io::Result<()> {
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name("hpcotel-mpi-export".into())
            .spawn(move || {
                let mut next = Instant::now() + period;
                loop {
                    {
                        let mut stop = me.stop.lock().unwrap_or_else(|e| e.into_inner());
                        while !*stop {
                            let left = next.saturating_duration_since(Instant::now());
                            if left.is_zero() {
                                break;
                            }
                            stop = me
                                .wake
                                .wait_timeout(stop, left)
                                .unwrap_or_else(|e| e.into_inner())
                                .0;
                        }
                        if *stop {
                            return;
                        }
                    }
                    next = Instant::now() + period;
                    match collect() {
                        Some(batch) => me.send(batch, None),
                        None => return,
                    }
                }
            })
            .map(|_| ())
    }

    /// Tells the background thread to exit (it finishes a request in flight first).
    pub fn stop(&self) {
        *self.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.notify_all();
    }
}
