//! Request compression shared by both transports, and the decompression of the (small)
//! answers a gRPC backend may compress.

use std::io::{Read, Write as _};

use bytes::Bytes;
use hpcotel_core::{Batch, ExportError};

use super::config::Compression;

/// Longest answer message accepted from a backend once decompressed, in bytes: an
/// `Export*ServiceResponse` is a count and a message.
pub(super) const MAX_RESPONSE: usize = 1024 * 1024;

impl Compression {
    /// The `grpc-encoding` / `Content-Encoding` name; `None` for no compression.
    pub(super) fn encoding(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
        }
    }
}

/// The request for `batch`: encoded, then compressed as `compression` says.
pub(super) fn encode_request(
    compression: Compression,
    level: i32,
    batch: &Batch,
) -> Result<Bytes, ExportError> {
    let encoded = batch.encode_request();
    if compression == Compression::None {
        return Ok(encoded.into());
    }
    compress(compression, level, &encoded)
        .map(Bytes::from)
        .map_err(|e| ExportError::Permanent {
            reason: format!("cannot compress the request: {e}"),
        })
}

/// `body` compressed as `compression` says at `level` (a copy for `None`).
pub(super) fn compress(
    compression: Compression,
    level: i32,
    body: &[u8],
) -> std::io::Result<Vec<u8>> {
    match compression {
        Compression::None => Ok(body.to_vec()),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(
                Vec::with_capacity(body.len() / 4 + 64),
                flate2::Compression::new(level.clamp(0, 9) as u32),
            );
            enc.write_all(body)?;
            enc.finish()
        }
        Compression::Zstd => zstd::bulk::compress(body, level),
    }
}

/// Decompresses an answer compressed with `encoding` (`gzip` or `zstd`), at most
/// [`MAX_RESPONSE`] bytes of it.
pub(super) fn decompress(encoding: &str, body: &[u8]) -> std::io::Result<Vec<u8>> {
    let out = inflate(encoding, body, MAX_RESPONSE as u64 + 1)?;
    if out.len() > MAX_RESPONSE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("answer longer than {MAX_RESPONSE} bytes once decompressed"),
        ));
    }
    Ok(out)
}

/// A request this exporter compressed, decompressed again (to cut it in halves when the
/// backend refused it as too large). No limit: the bytes are our own.
pub(super) fn decompress_request(
    compression: Compression,
    body: &[u8],
) -> std::io::Result<Vec<u8>> {
    match compression.encoding() {
        None => Ok(body.to_vec()),
        Some(encoding) => inflate(encoding, body, u64::MAX),
    }
}

/// `body` (`gzip` or `zstd`) decompressed, at most `limit` bytes of it.
fn inflate(encoding: &str, body: &[u8], limit: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => flate2::read::GzDecoder::new(body)
            .take(limit)
            .read_to_end(&mut out)?,
        "zstd" => zstd::stream::read::Decoder::new(body)?
            .take(limit)
            .read_to_end(&mut out)?,
        other => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("unknown grpc-encoding '{other}'"),
            ));
        }
    };
    Ok(out)
}
