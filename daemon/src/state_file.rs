//! The daemon's records in its state directory (the peers that were up, the network changes it
//! made): JSON lists written atomically and readable by root alone, and read back by the next
//! run as untrusted input, since a crash or an editor may have left anything there.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a state file's list is not taken.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// Not JSON, or not a list of what it should list.
    #[error("not a list of {what} ({error})")]
    Malformed {
        /// What it should list.
        what: String,
        /// Where the JSON went wrong, on one line (it may quote the file).
        error: String,
    },
    /// Longer than any list of ours.
    #[error("{count} {what} listed, more than {max}")]
    TooLong {
        /// What it lists.
        what: String,
        /// How many.
        count: usize,
        /// The most we write.
        max: usize,
    },
}

/// The list of `what` in a state file's `bytes`: at most `max` entries.
pub fn parse_list<T: DeserializeOwned>(
    bytes: &[u8],
    max: usize,
    what: &str,
) -> Result<Vec<T>, ListError> {
    match serde_json::from_slice::<Vec<T>>(bytes) {
        Ok(list) if list.len() <= max => Ok(list),
        Ok(list) => Err(ListError::TooLong {
            what: what.to_string(),
            count: list.len(),
            max,
        }),
        Err(error) => Err(ListError::Malformed {
            what: what.to_string(),
            error: hometun_config::one_line::escape_controls(&error.to_string()),
        }),
    }
}

/// The list in `path`, or none: a missing file is an empty list; an unreadable or malformed
/// one, or one of more than `max` entries, is one warning naming the file and `what` it should
/// list, and ignored.
pub fn read_list<T: DeserializeOwned>(path: &Path, max: usize, what: &str) -> Vec<T> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(error) => {
            tracing::warn!("{}: cannot read: {error}", path.display());
            return Vec::new();
        }
    };
    match parse_list(&bytes, max, what) {
        Ok(list) => list,
        Err(error) => {
            tracing::warn!("{}: {error}: ignored", path.display());
            Vec::new()
        }
    }
}

/// Replaces `path` with `list` at once (a new file renamed over it), mode 0600.
pub fn write_list<T: Serialize>(path: &Path, list: &[T]) -> io::Result<()> {
    let json = serde_json::to_vec(list).map_err(io::Error::other)?;
    let temporary = path.with_extension("json.new");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(&json)?;
    file.sync_data()?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_comes_back_and_anything_else_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list.json");
        assert!(read_list::<u32>(&path, 4, "numbers").is_empty());
        write_list(&path, &[1u32, 2, 3]).unwrap();
        assert_eq!(read_list::<u32>(&path, 4, "numbers"), vec![1, 2, 3]);
        let mode = std::fs::metadata(&path).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        assert!(read_list::<u32>(&path, 2, "numbers").is_empty(), "over max");
        std::fs::write(&path, b"{\"not\": \"a list\"}").unwrap();
        assert!(
            read_list::<u32>(&path, 4, "numbers").is_empty(),
            "malformed"
        );
    }
}
