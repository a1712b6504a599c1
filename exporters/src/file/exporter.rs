//! [`FileExporter`]: OTLP JSON lines per signal, rotated by size.

use std::borrow::Borrow;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use hpcotel_core::{Batch, ComponentError, ExportError, ExportOutcome, Exporter, Signal};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use serde::ser::{self, Serialize, Serializer};
use tracing::{debug, warn};

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
/// e.g. `{"resourceSpans":[...]}`. A non-finite double is written as `"NaN"`, `"Infinity"`
/// or `"-Infinity"`, as the protobuf JSON mapping wants (see [`NonFinite`]).
pub fn encode_line(batch: &Batch) -> Result<Vec<u8>> {
    let request = match batch {
        Batch::Traces(v) => JsonRequest::Spans(v),
        Batch::Metrics(v) => JsonRequest::Metrics(v),
        Batch::Logs(v) => JsonRequest::Logs(v),
        // Scope entries shared, not copied; decoded into prost types for JSON.
        Batch::Raw(raw) => return encode_line(&raw.clone().decode()),
    };
    let mut line = Vec::new();
    request
        .serialize(NonFinite(&mut serde_json::Serializer::new(&mut line)))
        .map_err(Error::Encode)?;
    line.push(b'\n');
    Ok(line)
}

/// A [`Serializer`] that writes a non-finite `f64` or `f32` as the string `"NaN"`,
/// `"Infinity"` or `"-Infinity"` and passes everything else to the serializer it wraps.
///
/// serde_json writes a non-finite double as `null`, losing it, and opentelemetry-proto's
/// serde mapping hands it a plain `f64` for every double (a point's or exemplar's
/// `asDouble`, a histogram's `sum`, `min`, `max`, `zeroThreshold`, an `AnyValue`'s
/// `doubleValue`, ...; only a summary's quantile values are special-cased). Wrapping the
/// serializer, every compound serializer it returns and every value handed to those (as
/// [`Wrapped`]) catches each of them, nested or behind `#[serde(flatten)]`, while the batch
/// stays borrowed and nothing is copied. (Serializing to a `serde_json::Value` first would
/// not help: it turns NaN into `null` too.)
struct NonFinite<S>(S);

/// A value serialized through [`NonFinite`].
struct Wrapped<'a, T: ?Sized>(&'a T);

impl<T: Serialize + ?Sized> Serialize for Wrapped<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(NonFinite(serializer))
    }
}

/// The protobuf JSON mapping's name of a non-finite double.
fn non_finite_name(d: f64) -> &'static str {
    if d.is_nan() {
        "NaN"
    } else if d > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

/// Methods passed on unchanged: `name(self, v: T)`.
macro_rules! forward {
    ($($name:ident($t:ty)),* $(,)?) => {
        $(fn $name(self, v: $t) -> Result<S::Ok, S::Error> {
            self.0.$name(v)
        })*
    };
}

impl<S: Serializer> Serializer for NonFinite<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = NonFinite<S::SerializeSeq>;
    type SerializeTuple = NonFinite<S::SerializeTuple>;
    type SerializeTupleStruct = NonFinite<S::SerializeTupleStruct>;
    type SerializeTupleVariant = NonFinite<S::SerializeTupleVariant>;
    type SerializeMap = NonFinite<S::SerializeMap>;
    type SerializeStruct = NonFinite<S::SerializeStruct>;
    type SerializeStructVariant = NonFinite<S::SerializeStructVariant>;

    fn serialize_f64(self, v: f64) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            self.0.serialize_f64(v)
        } else {
            self.0.serialize_str(non_finite_name(v))
        }
    }

    fn serialize_f32(self, v: f32) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            self.0.serialize_f32(v)
        } else {
            self.0.serialize_str(non_finite_name(v.into()))
        }
    }

    forward!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_none(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_none()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&Wrapped(v))
    }

    fn serialize_unit(self) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_unit_variant(name, index, variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_struct(name, &Wrapped(v))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0
            .serialize_newtype_variant(name, index, variant, &Wrapped(v))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        self.0.serialize_seq(len).map(NonFinite)
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.0.serialize_tuple(len).map(NonFinite)
    }

    fn serialize_tuple_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.0.serialize_tuple_struct(name, len).map(NonFinite)
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.0
            .serialize_tuple_variant(name, index, variant, len)
            .map(NonFinite)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        self.0.serialize_map(len).map(NonFinite)
    }

    fn serialize_struct(
        self,
        name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, S::Error> {
        self.0.serialize_struct(name, len).map(NonFinite)
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.0
            .serialize_struct_variant(name, index, variant, len)
            .map(NonFinite)
    }

    fn collect_str<T: std::fmt::Display + ?Sized>(self, v: &T) -> Result<S::Ok, S::Error> {
        self.0.collect_str(v)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// The compound serializers whose elements are `(&mut self, v: &T)`: elements wrapped.
macro_rules! compound {
    ($($trait:ident: $element:ident),* $(,)?) => {
        $(impl<S: ser::$trait> ser::$trait for NonFinite<S> {
            type Ok = S::Ok;
            type Error = S::Error;

            fn $element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), S::Error> {
                self.0.$element(&Wrapped(v))
            }

            fn end(self) -> Result<S::Ok, S::Error> {
                self.0.end()
            }
        })*
    };
}

compound!(
    SerializeSeq: serialize_element,
    SerializeTuple: serialize_element,
    SerializeTupleStruct: serialize_field,
    SerializeTupleVariant: serialize_field,
);

/// The compound serializers whose fields are named: values wrapped.
macro_rules! named_fields {
    ($($trait:ident),* $(,)?) => {
        $(impl<S: ser::$trait> ser::$trait for NonFinite<S> {
            type Ok = S::Ok;
            type Error = S::Error;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                v: &T,
            ) -> Result<(), S::Error> {
                self.0.serialize_field(key, &Wrapped(v))
            }

            fn skip_field(&mut self, key: &'static str) -> Result<(), S::Error> {
                self.0.skip_field(key)
            }

            fn end(self) -> Result<S::Ok, S::Error> {
                self.0.end()
            }
        })*
    };
}

named_fields!(SerializeStruct, SerializeStructVariant);

impl<S: ser::SerializeMap> ser::SerializeMap for NonFinite<S> {
    type Ok = S::Ok;
    type Error = S::Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), S::Error> {
        self.0.serialize_key(&Wrapped(key))
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), S::Error> {
        self.0.serialize_value(&Wrapped(v))
    }

    fn serialize_entry<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &mut self,
        key: &K,
        v: &V,
    ) -> Result<(), S::Error> {
        self.0.serialize_entry(&Wrapped(key), &Wrapped(v))
    }

    fn end(self) -> Result<S::Ok, S::Error> {
        self.0.end()
    }
}

/// Appends `line` to the file behind `writer`, which is `size` bytes long, and flushes.
/// Returns the writer to go on with; on failure, the error and the writer if it is still
/// usable.
///
/// A write can fail part-way (a full disk, a quota): then the rest of the line still in the
/// buffer is discarded (a dropped `BufWriter` would try to write it) and the file is cut
/// back to `size`, so that the retry of the batch appends a whole line rather than a second
/// copy after a fragment that would corrupt the file; the writer stays usable at `size`.
/// If even that fails, the fragment stays; no writer comes back (the file is opened again,
/// at its real size, next time).
///
/// Generic over the file only so that tests can make a write fail after some bytes
/// (`Borrow<File>` is how `set_len` reaches the real file); it is a `File` otherwise.
pub(super) fn append_line<F: Write + Borrow<File>>(
    mut writer: BufWriter<F>,
    size: u64,
    line: &[u8],
) -> Result<BufWriter<F>, (Option<BufWriter<F>>, std::io::Error)> {
    let Err(e) = writer.write_all(line).and_then(|()| writer.flush()) else {
        return Ok(writer);
    };
    let capacity = writer.capacity();
    let (file, _unwritten) = writer.into_parts();
    match file.borrow().set_len(size) {
        Ok(()) => Err((Some(BufWriter::with_capacity(capacity, file)), e)),
        Err(truncate) => {
            warn!(
                error = %truncate,
                size,
                "could not cut a file back after a failed write; a partial line stays in it"
            );
            Err((None, e))
        }
    }
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
        let Some(Open { writer, size }) = slot.take() else {
            return Ok(());
        };
        let path = active_file(&self.dir, signal);
        match append_line(writer, size, line) {
            Ok(writer) => {
                *slot = Some(Open {
                    writer,
                    size: size + len,
                });
                Ok(())
            }
            Err((writer, e)) => {
                // Cut back to `size`, the file is as it was and a retry writes a clean line;
                // without a writer, the file is opened again (at its real size) next time.
                *slot = writer.map(|writer| Open { writer, size });
                Err(io("write", &path)(e))
            }
        }
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
