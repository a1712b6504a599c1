//! [`FileExporter`]: OTLP JSON lines per signal, rotated by size.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use hpcotel_core::{Batch, ComponentError, ExportError, ExportOutcome, Exporter, Signal};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use tracing::debug;

use super::config::Config;

/// Why a file exporter could not be built or write.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The output directory could not be created.
    #[error("path: cannot create directory '{}'", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be opened, written, renamed or flushed.
    #[error("cannot {action} '{}'", path.display())]
    Io {
        /// What was being done: `open`, `write`, `rotate`, `flush`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A batch could not be encoded as JSON.
    #[error("cannot encode the batch as OTLP JSON")]
    Encode(#[source] serde_json::Error),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Writes each batch as one OTLP JSON line; see the [module docs](super).
#[derive(Debug)]
pub struct FileExporter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    max_bytes: u64,
    max_files: usize,
    files: [Mutex<Option<Open>>; 3],
}

#[derive(Debug)]
struct Open {
    writer: BufWriter<File>,
    size: u64,
}

/// The active file of `signal` in `dir`: `traces.jsonl`, `metrics.jsonl`, `logs.jsonl`.
pub fn active_file(dir: &Path, signal: Signal) -> PathBuf {
    rotated_file(dir, signal, 0)
}

/// The `n`th rotated file of `signal` (1 = newest): `traces.1.jsonl`, `traces.2.jsonl`, ...;
/// `n = 0` is the active file.
pub fn rotated_file(dir: &Path, signal: Signal, n: usize) -> PathBuf {
    if n == 0 {
        dir.join(format!("{}.jsonl", signal.as_str()))
    } else {
        dir.join(format!("{}.{n}.jsonl", signal.as_str()))
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_owned();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

impl FileExporter {
    /// Creates the output directory (and its parents) and the exporter. Files are opened
    /// (appended to, when they exist) on the first batch of their signal.
    pub fn new(config: &Config) -> Result<FileExporter> {
        std::fs::create_dir_all(&config.path).map_err(|source| Error::CreateDir {
            path: config.path.clone(),
            source,
        })?;
        Ok(FileExporter {
            inner: Arc::new(Inner {
                dir: config.path.clone(),
                max_bytes: config.max_file_size_mib.max(1).saturating_mul(1024 * 1024),
                max_files: config.max_files.max(1),
                files: Default::default(),
            }),
        })
    }

    /// The directory written to.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}

/// The OTLP/JSON form of an `Export*ServiceRequest`, serialized from the borrowed batch.
#[derive(serde::Serialize)]
enum JsonRequest<'a> {
    #[serde(rename = "resourceSpans")]
    Spans(&'a [ResourceSpans]),
    #[serde(rename = "resourceMetrics")]
    Metrics(&'a [ResourceMetrics]),
    #[serde(rename = "resourceLogs")]
    Logs(&'a [ResourceLogs]),
}

/// One JSON line (with its newline) for `batch`: the OTLP/JSON `Export*ServiceRequest`,
/// e.g. `{"resourceSpans":[...]}`.
pub fn encode_line(batch: &Batch) -> Result<Vec<u8>> {
    let request = match batch {
        Batch::Traces(v) => JsonRequest::Spans(v),
        Batch::Metrics(v) => JsonRequest::Metrics(v),
        Batch::Logs(v) => JsonRequest::Logs(v),
    };
    let mut line = serde_json::to_vec(&request).map_err(Error::Encode)?;
    line.push(b'\n');
    Ok(line)
}

fn lock(m: &Mutex<Option<Open>>) -> MutexGuard<'_, Option<Open>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn open(&self, signal: Signal) -> Result<Open> {
        let path = active_file(&self.dir, signal);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io("open", &path))?;
        let size = file.metadata().map_err(io("open", &path))?.len();
        Ok(Open {
            writer: BufWriter::new(file),
            size,
        })
    }

    /// Shifts `x.(n).jsonl` to `x.(n+1).jsonl` (the oldest is overwritten) and the active
    /// file to `x.1.jsonl`; with `max_files: 1` the active file is simply removed.
    fn rotate(&self, signal: Signal) -> Result<()> {
        if self.max_files == 1 {
            let path = active_file(&self.dir, signal);
            return std::fs::remove_file(&path).map_err(io("rotate", &path));
        }
        for n in (1..self.max_files).rev() {
            let from = rotated_file(&self.dir, signal, n - 1);
            let to = rotated_file(&self.dir, signal, n);
            match std::fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("rotate", &from)(e)),
            }
        }
        debug!(dir = %self.dir.display(), %signal, "rotated file");
        Ok(())
    }

    fn write(&self, signal: Signal, line: &[u8]) -> Result<()> {
        let mut slot = lock(&self.files[signal.index()]);
        let len = line.len() as u64;
        if let Some(open) = slot.as_mut()
            && open.size > 0
            && open.size + len > self.max_bytes
        {
            let path = active_file(&self.dir, signal);
            let flushed = open.writer.flush().map_err(io("flush", &path));
            *slot = None;
            flushed?;
            self.rotate(signal)?;
        }
        if slot.is_none() {
            let mut open = self.open(signal)?;
            if open.size > 0 && open.size + len > self.max_bytes {
                drop(open);
                self.rotate(signal)?;
                open = self.open(signal)?;
            }
            *slot = Some(open);
        }
        let Some(open) = slot.as_mut() else {
            return Ok(());
        };
        let path = active_file(&self.dir, signal);
        let written = open
            .writer
            .write_all(line)
            .and_then(|()| open.writer.flush());
        if let Err(e) = written {
            // Start over from the file's real size next time.
            *slot = None;
            return Err(io("write", &path)(e));
        }
        open.size += len;
        Ok(())
    }

    fn flush_all(&self) -> Result<()> {
        for signal in Signal::ALL {
            if let Some(open) = lock(&self.files[signal.index()]).as_mut() {
                let path = active_file(&self.dir, signal);
                open.writer.flush().map_err(io("flush", &path))?;
                open.writer
                    .get_ref()
                    .sync_data()
                    .map_err(io("flush", &path))?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Exporter for FileExporter {
    async fn export(&self, batch: &Batch) -> Result<ExportOutcome, ExportError> {
        let signal = batch.signal();
        let inner = self.inner.clone();
        // Encoding is CPU work on the borrowed batch: on a multi-threaded runtime, tell it
        // this worker is busy so its other tasks move on; the write goes to a blocking thread.
        let line = match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| encode_line(batch))
            }
            _ => encode_line(batch),
        };
        let written = match line {
            Ok(line) => tokio::task::spawn_blocking(move || inner.write(signal, &line)).await,
            Err(e) => Ok(Err(e)),
        };
        match written {
            Ok(Ok(())) => Ok(ExportOutcome::default()),
            Ok(Err(e @ Error::Encode(_))) => Err(ExportError::Permanent {
                reason: crate::error_chain(&e),
            }),
            Ok(Err(e)) => Err(ExportError::Retryable {
                reason: crate::error_chain(&e),
                retry_after: None,
            }),
            Err(e) => Err(ExportError::Retryable {
                reason: format!("file write task failed: {e}"),
                retry_after: None,
            }),
        }
    }

    async fn shutdown(&self) -> Result<(), ComponentError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.flush_all())
            .await
            .map_err(|e| Box::new(e) as ComponentError)?
            .map_err(|e| Box::new(e) as ComponentError)
    }
}
