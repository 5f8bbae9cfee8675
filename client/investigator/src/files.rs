//! Writing the investigator's files: keys and warrants atomically (a crash
//! leaves the old file or the new one, never half of one), bundles never over
//! an existing file. Every file is made readable by its owner only.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::InvestigatorError;

fn owner_only(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn temporary_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Writes `bytes` to `path` (mode 0600) so that a crash leaves the old file or the new one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), InvestigatorError> {
    let tmp = temporary_beside(path);
    let mut file = owner_only(OpenOptions::new().write(true).create(true).truncate(true))
        .open(&tmp)
        .map_err(InvestigatorError::io(&tmp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(InvestigatorError::io(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(InvestigatorError::io(path))?;
    std::fs::File::open(parent_of(path))
        .and_then(|d| d.sync_all())
        .map_err(InvestigatorError::io(parent_of(path)))
}

/// Fails with [`InvestigatorError::Exists`] when `path` exists: checked
/// before asking a relay for anything, so its answer has somewhere to go.
pub fn ensure_absent(path: &Path) -> Result<(), InvestigatorError> {
    if path.symlink_metadata().is_ok() {
        return Err(InvestigatorError::Exists {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// Writes `bytes` to a new file at `path` (mode 0600); never replaces one,
/// even one made since [`ensure_absent`] looked.
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<(), InvestigatorError> {
    let mut file = owner_only(OpenOptions::new().write(true).create_new(true))
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => InvestigatorError::Exists {
                path: path.to_owned(),
            },
            _ => InvestigatorError::Io {
                path: path.to_owned(),
                reason: source,
            },
        })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(InvestigatorError::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_never_replaces_an_existing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle");
        write_new(&path, b"first").unwrap();
        assert!(matches!(
            ensure_absent(&path),
            Err(InvestigatorError::Exists { .. })
        ));
        assert!(matches!(
            write_new(&path, b"second"),
            Err(InvestigatorError::Exists { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
    }

    #[cfg(unix)]
    #[test]
    fn files_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        for (name, write) in [
            ("atomic", write_atomically as fn(&Path, &[u8]) -> _),
            ("new", write_new),
        ] {
            let path = dir.path().join(name);
            write(&path, b"secret").unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
        write_atomically(&dir.path().join("atomic"), b"again").unwrap();
        assert_eq!(std::fs::read(dir.path().join("atomic")).unwrap(), b"again");
    }
}
