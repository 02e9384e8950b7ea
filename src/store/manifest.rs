//! The archive manifest (`archive/manifest.jsonl`): one JSON line per archived
//! file, with its ids, first and last record time, sizes, SHA-256 and when it
//! was sealed and archived. Archive appends to it, purge rewrites it, the
//! reader and upload read it.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::store::layout::Layout;

/// File name of the manifest under `archive/`.
pub const MANIFEST: &str = "manifest.jsonl";

/// One line of `archive/manifest.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// `<name>.xml.gz`, under `archive/`.
    pub file: String,
    pub first_id: u64,
    pub last_id: u64,
    pub records: u64,
    /// Timestamp of the first and last record (absent for a file without records).
    pub first_time: Option<String>,
    pub last_time: Option<String>,
    /// Bytes of the `.gz`.
    pub size: u64,
    /// Bytes of the plain `.xml` it holds.
    pub plain_size: u64,
    /// SHA-256 of the `.gz`, hex.
    pub sha256: String,
    /// When it was archived.
    pub archived: String,
    /// When it was sealed (its seal's `sealed` attribute): what retention
    /// goes by. Absent in entries written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
}

pub fn manifest_path(layout: &Layout) -> PathBuf {
    layout.archive.join(MANIFEST)
}

/// The manifest's entries, and the length of its complete lines (a crash
/// during an append can leave a last line without its newline; it is ignored).
pub fn read_manifest_raw(layout: &Layout) -> Result<(Vec<ManifestEntry>, u64, u64)> {
    let p = manifest_path(layout);
    let bytes = match fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0, 0)),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", p.display())),
    };
    let good = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut entries = Vec::new();
    for (i, line) in bytes[..good].split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let e: ManifestEntry = serde_json::from_slice(line)
            .with_context(|| format!("{} line {} is not a manifest entry", p.display(), i + 1))?;
        entries.push(e);
    }
    Ok((entries, good as u64, bytes.len() as u64))
}

/// The entries of `archive/manifest.jsonl`, oldest first (none when there is no manifest).
pub fn read_manifest(layout: &Layout) -> Result<Vec<ManifestEntry>> {
    Ok(read_manifest_raw(layout)?.0)
}

/// Replaces the manifest with `entries`, atomically.
pub fn write_manifest(layout: &Layout, entries: &[ManifestEntry]) -> Result<()> {
    let mut text = Vec::new();
    for e in entries {
        serde_json::to_writer(&mut text, e)?;
        text.push(b'\n');
    }
    crate::fsx::write_atomic(&manifest_path(layout), &text)
}

pub fn append_manifest(layout: &Layout, entry: &ManifestEntry) -> Result<()> {
    let p = manifest_path(layout);
    let created = !p.exists();
    let mut f = crate::fsx::open_append_nofollow(&p).with_context(|| format!("cannot open {}", p.display()))?;
    let mut line = serde_json::to_vec(entry)?;
    line.push(b'\n');
    f.write_all(&line).and_then(|()| f.sync_data()).with_context(|| format!("cannot write {}", p.display()))?;
    if created {
        crate::fsx::sync_dir(&layout.archive)?;
    }
    Ok(())
}

/// The manifest entry of one archived file (`<name>.xml.gz`), found without
/// parsing the other lines (the newest entry for it if there are several).
pub fn find_entry(layout: &Layout, file: &str) -> Result<Option<ManifestEntry>> {
    let p = manifest_path(layout);
    let bytes = match fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", p.display())),
    };
    let good = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let needle = serde_json::to_vec(&serde_json::json!({ "file": file }))?;
    // `{"file":"NAME"}` without its braces: how every line starts.
    let needle = &needle[1..needle.len() - 1];
    let mut found = None;
    for at in memchr::memmem::find_iter(&bytes[..good], needle) {
        let start = bytes[..at].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let end = start + bytes[start..good].iter().position(|&b| b == b'\n').unwrap_or(good - start);
        if let Ok(e) = serde_json::from_slice::<ManifestEntry>(&bytes[start..end])
            && e.file == file
        {
            found = Some(e);
        }
    }
    Ok(found)
}
