//! Replace a file atomically: write a locked temporary file beside the target,
//! then rename it over the target, so readers see the old file or the
//! complete new one, never a part.
//!
//! A writer killed mid-way (SIGKILL, power loss) leaves its temporary file
//! behind.  Each writer holds an exclusive `flock` on its temporary for as
//! long as it is open, and [`AtomicFile::create`] first removes the
//! temporaries of the same target that nobody holds: those of dead writers,
//! never a live one's.  Every mlxfn writer (exports, `mlxfn convert`,
//! `mlxfn graph`) goes through this type, so they never collide.

use std::fs::File;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const TEMP_SUFFIX: &str = ".tmp";

/// The environment variable of the writers' test hook (`checkpoint`).
pub const PAUSE_VARIABLE: &str = "MLXFN_WRITE_PAUSE";

/// A point a writer reports on its way: "temporary" (created and locked),
/// "constants" (every constant written), "graph" (header and graph written,
/// not yet renamed), "renamed".  When the environment variable
/// `MLXFN_WRITE_PAUSE` names the point, the writer says so on stderr
/// (`mlxfn: write paused at <point>`) and waits there forever: a test can
/// kill it at exactly that point (tests/test_reliability_crash.py).
pub fn checkpoint(point: &str) {
    if std::env::var_os(PAUSE_VARIABLE).is_some_and(|v| v == point) {
        eprintln!("mlxfn: write paused at {point}");
        loop {
            std::thread::park();
        }
    }
}

fn temp_prefix(name: &str) -> String {
    format!(".{name}.")
}

/// A locked temporary file beside `target`, renamed over it by
/// [`commit`](Self::commit); dropped uncommitted, it is removed.
#[derive(Debug)]
pub struct AtomicFile {
    target: PathBuf,
    shown: String,
    dir: PathBuf,
    tmp: tempfile::NamedTempFile,
}

impl AtomicFile {
    /// Sweep the target's stale temporaries and create a new locked one.
    /// Fails (naming the target) when its directory is missing or not
    /// writable: the caller learns it before doing any work.
    pub fn create(target: &Path) -> Result<AtomicFile> {
        let shown = target.display().to_string();
        let name = match target.file_name() {
            Some(name) => name.to_string_lossy().into_owned(),
            None => {
                let source = std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name");
                return Err(Error::Io { path: shown, source });
            }
        };
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        remove_stale_temporaries(&dir, &name);
        let tmp = locked_temporary(&dir, &name).map_err(|e| Error::io(&shown, e))?;
        checkpoint("temporary");
        Ok(AtomicFile { target: target.to_path_buf(), shown, dir, tmp })
    }

    /// The open temporary file.
    pub fn file(&self) -> &File {
        self.tmp.as_file()
    }

    /// Where the temporary file is (for writers that need a path).
    pub fn temp_path(&self) -> &Path {
        self.tmp.path()
    }

    /// The target, as given.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Rename the temporary over the target; with `durable`, fsync the file
    /// before and the directory after.
    pub fn commit(self, durable: bool) -> Result<()> {
        let io = |e: std::io::Error| Error::io(&self.shown, e);
        if durable {
            self.tmp.as_file().sync_all().map_err(io)?;
        }
        self.tmp.persist(&self.target).map_err(|e| io(e.error))?;
        checkpoint("renamed");
        if durable {
            File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(())
    }
}

/// A new temporary file beside the target, exclusively locked for as long as
/// it is open.  Another writer's cleanup can delete it in the instant between
/// its creation and the lock; that is detected (the name no longer leads to
/// our file) and a fresh one is made.
fn locked_temporary(dir: &Path, name: &str) -> std::io::Result<tempfile::NamedTempFile> {
    loop {
        let tmp = tempfile::Builder::new()
            .prefix(&temp_prefix(name))
            .suffix(TEMP_SUFFIX)
            .permissions(std::fs::Permissions::from_mode(0o666)) // the umask applies, as for any new file
            .tempfile_in(dir)?;
        tmp.as_file().lock()?;
        let ours = tmp.as_file().metadata()?;
        match std::fs::symlink_metadata(tmp.path()) {
            Ok(named) if named.ino() == ours.ino() && named.dev() == ours.dev() => return Ok(tmp),
            _ => continue, // removed under us before we held the lock
        }
    }
}

/// Remove `dir/.{name}.*.tmp` files left by writers that died: a file whose
/// lock can be taken has no live writer.  Best effort: a file that cannot be
/// opened or removed is left alone.
pub fn remove_stale_temporaries(dir: &Path, name: &str) {
    let prefix = temp_prefix(name);
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else { continue };
        if !(file_name.starts_with(&prefix) && file_name.ends_with(TEMP_SUFFIX)) {
            continue;
        }
        let path = entry.path();
        let Ok(file) = File::open(&path) else { continue };
        if !matches!(file.metadata(), Ok(m) if m.is_file()) {
            continue;
        }
        if file.try_lock().is_ok() {
            // Held until `file` drops: no writer can claim it meanwhile.
            let _ = std::fs::remove_file(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_renames_and_drop_removes() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.bin");
        let file = AtomicFile::create(&target).unwrap();
        std::fs::write(file.temp_path(), b"new").unwrap();
        assert!(!target.exists(), "nothing at the target before the commit");
        file.commit(true).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        let dropped = AtomicFile::create(&target).unwrap();
        let temp = dropped.temp_path().to_path_buf();
        assert!(temp.exists());
        drop(dropped);
        assert!(!temp.exists(), "an uncommitted temporary is removed");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_unwritable_target_fails_at_creation() {
        let err = AtomicFile::create(Path::new("/nonexistent-dir/x.mlxfn")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/x.mlxfn"), "{err}");
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
    }
}
