//! `authorities.toml` on disk: read afresh for every warrant, so it can be
//! edited (or changed with `sotto-relay authority`) while the relay runs.
//! Parsing is the warrant crate's; this file only reads and writes it.

use std::path::Path;

use anyhow::{Context, Result};
use sotto_warrant::AuthorityFile;

/// The file at `path`, or an empty list if there is none yet.
pub fn load(path: &Path) -> Result<AuthorityFile> {
    if !path.exists() {
        return Ok(AuthorityFile::default());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    AuthorityFile::parse(&text).with_context(|| format!("{} is damaged", path.display()))
}

/// Replaces the file at `path` atomically.
pub fn save(path: &Path, file: &AuthorityFile) -> Result<()> {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, file.to_toml())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))
}
