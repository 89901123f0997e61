//! The few small files the agent reads and writes itself: one that may be absent, and one
//! written so that a crash never leaves it half-written.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use super::error::{StartError, io_error};

/// The contents of `path`, `None` when there is no such file.
pub(super) fn read_if_present(path: &Path) -> Result<Option<String>, StartError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path, &e)),
    }
}

/// Writes `contents` to a temporary file beside `path`, syncs it and renames it over `path`,
/// so a crash never leaves a half-written file. Creates the parent directory.
pub(super) fn write_atomically(path: &Path, contents: &str) -> Result<(), StartError> {
    write_with_mode(path, contents, 0o644)
}

/// [`write_atomically`], readable and writable by the owner only (a file with passwords).
pub(super) fn write_private(path: &Path, contents: &str) -> Result<(), StartError> {
    write_with_mode(path, contents, 0o600)
}

fn write_with_mode(path: &Path, contents: &str, mode: u32) -> Result<(), StartError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| io_error("create", parent, &e))?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let write = || -> io::Result<()> {
        // A temporary left by a crash may have another mode: start afresh.
        match fs::remove_file(&temporary) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temporary)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()
    };
    write().map_err(|e| io_error("write", &temporary, &e))?;
    fs::rename(&temporary, path).map_err(|e| io_error("write", path, &e))
}
