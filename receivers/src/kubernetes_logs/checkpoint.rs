//! The offsets checkpoint: for each file being read, its identity (device, inode and a
//! fingerprint of its first bytes) and the offset up to which its records were delivered
//! (settled by the exporters; see `commit`). Written atomically (a temporary file renamed over `offsets.json`), read at
//! start; a file whose identity no longer matches (a recreated file reusing an inode) starts
//! from its first byte.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the checkpoint in the state directory.
pub const FILE_NAME: &str = "offsets.json";

/// What can go wrong with the checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state directory or file could not be written.
    #[error("could not write the offsets checkpoint '{}': {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// One file's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The path it was last seen at (for people reading the file).
    pub path: PathBuf,
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
    /// Its first bytes, hex (up to [`super::tail::FINGERPRINT_LEN`]).
    pub fingerprint: String,
    /// Bytes whose records were delivered (or dropped for a counted reason).
    pub offset: u64,
    /// Bytes read from it when this was written (at least `offset`): what was there past
    /// `offset` is known lost if the file is gone at the next start. 0 in checkpoints
    /// written before it was kept.
    #[serde(default)]
    pub read: u64,
}

/// The checkpoint's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offsets {
    /// Format version (1).
    pub version: u32,
    /// Every file being read.
    pub files: Vec<Entry>,
}

/// Reads `dir/offsets.json`; a missing or unreadable file is an empty checkpoint (logged).
pub fn load(dir: &Path) -> Offsets {
    let path = dir.join(FILE_NAME);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(path = %path.display(), error = %e, "offsets checkpoint unreadable; starting without it");
            Offsets::default()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Offsets::default(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "offsets checkpoint unreadable; starting without it");
            Offsets::default()
        }
    }
}

/// Writes `offsets` to `dir/offsets.json` atomically.
pub fn store(dir: &Path, offsets: &Offsets) -> Result<(), Error> {
    let path = dir.join(FILE_NAME);
    let err = |source| Error::Write {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    let bytes = serde_json::to_vec(offsets).map_err(|e| err(std::io::Error::other(e)))?;
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&bytes).map_err(err)?;
        // On disk before the rename makes it the checkpoint: after a power loss the file is
        // the old checkpoint or the new one, never a torn one.
        f.sync_all().map_err(err)?;
    }
    std::fs::rename(&tmp, &path).map_err(err)
}
