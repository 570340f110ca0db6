//! Relay's files at rest are its owner's alone: the data directory (0700), the SQLite database
//! with its `-wal` and `-shm` files, and the generated key file (0600). New ones are created
//! that way; existing ones wider than that are reported at start (with the fix), not changed,
//! since an operator may have widened them on purpose (a backup agent's group, say).

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::keys::KEY_FILE;

/// Creates `dir` (and missing parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Logs a warning for each of Relay's files or directories that other local users can read
/// or enter. Missing files are skipped (a PostgreSQL deployment has no database file).
pub fn warn_if_open_to_others(config: &Config) {
    for (path, wanted) in files_at_rest(config) {
        if let Some(mode) = open_mode(&path)
            && mode & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                wanted = format!("{wanted:o}"),
                "a file holding Relay's data is open to other local users; restrict it with `chmod {wanted:o} {}`",
                path.display()
            );
        }
    }
}

/// Each path Relay keeps data in, with the mode it should have.
fn files_at_rest(config: &Config) -> Vec<(PathBuf, u32)> {
    let mut files = Vec::new();
    let key_file = config.data_dir.join(KEY_FILE);
    if config.embedded || key_file.exists() {
        files.push((config.data_dir.clone(), 0o700));
        files.push((key_file, 0o600));
    }
    if let Some(db) = sqlite_file(&config.database_url) {
        if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty())
            && !files.iter().any(|(p, _)| p == dir)
        {
            files.push((dir.to_path_buf(), 0o700));
        }
        for suffix in ["", "-wal", "-shm"] {
            let mut name = db.clone().into_os_string();
            name.push(suffix);
            files.push((PathBuf::from(name), 0o600));
        }
    }
    files
}

/// The file of a `sqlite:` URL (`sqlite://path?mode=rwc`), or `None` (PostgreSQL, in memory).
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.contains(":memory:")).then(|| PathBuf::from(path))
}

#[cfg(unix)]
fn open_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn open_mode(_path: &Path) -> Option<u32> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sqlite_file_is_read_from_the_url() {
        assert_eq!(
            sqlite_file("sqlite://data/relay.db?mode=rwc"),
            Some(PathBuf::from("data/relay.db"))
        );
        assert_eq!(
            sqlite_file("sqlite:/var/lib/relay.db"),
            Some(PathBuf::from("/var/lib/relay.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://u@h/db"), None);
    }
}
