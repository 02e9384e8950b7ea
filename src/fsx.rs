//! Opening files inside the data directory without trusting its contents.
//!
//! Whoever can write into the data directory (the service account, say) can
//! plant a symbolic link where audit-trail expects one of its own files. A
//! process that follows it, as root, would truncate, overwrite or append to
//! whatever the link points at. So:
//!
//! * state files that are opened again and again (`state/serve.lock`,
//!   `state/jobs/history.jsonl`, lock files, the archive manifest) are opened
//!   with `O_NOFOLLOW`: a link in their place is an error, never followed;
//! * temporary files are created exclusively (`O_CREAT|O_EXCL`, which never
//!   follows a link either) under a name with a random part, so nobody can
//!   prepare the name in advance;
//! * files are created with mode 0640 at most, and the process umask always
//!   masks at least 0027 ([`restrict_umask`]), so records, bundles and state
//!   are readable by the owner and its group only.
//!
//! Temporaries of archive and backup are written in `state/tmp/` (the same
//! filesystem as `archive/` and `backups/`) and renamed into place complete,
//! so those directories, which backup tools pick up, only ever hold whole
//! files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// `O_NOFOLLOW`: opening a symbolic link fails (`ELOOP`) instead of
/// following it.
pub const NOFOLLOW: i32 = rustix::fs::OFlags::NOFOLLOW.bits() as i32;

/// Permission bits every file audit-trail creates leaves out: nothing for
/// others, no writing for the group.
pub const UMASK: u32 = 0o027;

/// Adds [`UMASK`] to the process umask (a stricter one is kept), so files and
/// directories are created readable by the owner and its group only, whatever
/// the umask of whoever started the process.
pub fn restrict_umask() {
    use rustix::fs::Mode;
    let old = rustix::process::umask(Mode::from_raw_mode(UMASK));
    rustix::process::umask(old | Mode::from_raw_mode(UMASK));
}

/// `n` random bytes as lowercase hex, from the kernel's random source.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    let got = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf));
    if got.is_err() {
        // No /dev/urandom (a bare chroot): fall back to the randomly seeded
        // hasher of the standard library, still unpredictable from outside.
        use std::hash::{BuildHasher, Hasher};
        for chunk in buf.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
            );
            let v = h.finish().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    hex::encode(buf)
}

/// Opens a file for appending (and reading, to look at what it ends with),
/// creating it (mode 0640) when missing; a symbolic link in its place is
/// refused.
pub fn open_append_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).read(true).mode(0o640).custom_flags(NOFOLLOW).open(path)
}

/// Opens a file for reading and writing without truncating it, creating it
/// (mode 0640) when missing; a symbolic link in its place is refused.
pub fn open_rw_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).truncate(false).read(true).write(true).mode(0o640).custom_flags(NOFOLLOW).open(path)
}

/// Opens an existing file for writing (no create, no truncate); a symbolic
/// link in its place is refused.
pub fn open_write_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).custom_flags(NOFOLLOW).open(path)
}

/// Opens an existing file for reading; a symbolic link in its place is
/// refused.
pub fn open_read_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(NOFOLLOW).open(path)
}

/// Creates a new file (mode 0640) exclusively: it fails if anything, a link
/// included, already has the name.
pub fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new().create_new(true).write(true).mode(0o640).custom_flags(NOFOLLOW).open(path)
}

/// Creates `dir/.<stem>.<random>.tmp` exclusively and returns its path and
/// the open file. The random part makes the name impossible to prepare.
pub fn create_temp_exclusive(dir: &Path, stem: &str) -> Result<(PathBuf, File)> {
    for _ in 0..16 {
        let path = dir.join(format!(".{stem}.{}.tmp", random_hex(8)));
        match create_new(&path) {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
    }
    bail!("cannot create a temporary file in {}: every name tried was taken", dir.display())
}

/// `(device, inode)` of a path itself (a link is not followed).
pub fn identity(path: &Path) -> io::Result<(u64, u64)> {
    fs::symlink_metadata(path).map(|m| (m.dev(), m.ino()))
}

// Durable-file helpers: what archive, purge, backup and the writer build on.

/// Opens (creating it and its directory) a file used only for its `flock`.
pub fn open_lock_file(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    crate::fsx::open_rw_nofollow(path).with_context(|| format!("cannot open lock file {}", path.display()))
}

/// Makes a directory's entries (creations, renames, removals) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("cannot sync directory {}", dir.display()))
}

/// Hex SHA-256 of everything `r` yields, and its length.
pub fn sha256_of(mut r: impl Read) -> io::Result<(String, u64)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut n = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex::encode(h.finalize()), n))
}

/// Hex SHA-256 and length of a file.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    sha256_of(f).with_context(|| format!("cannot read {}", path.display()))
}

/// Replaces `path` with `bytes` atomically: written to a hidden temporary
/// beside it (created exclusively, under a random name), fsynced, renamed,
/// and the directory fsynced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (tmp, mut f) = crate::fsx::create_temp_exclusive(dir, &name)?;
    let written =
        f.write_all(bytes).and_then(|()| f.sync_all()).with_context(|| format!("cannot write {}", tmp.display()));
    drop(f);
    if let Err(e) =
        written.and_then(|()| fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display())))
    {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// The names in a directory (none when it does not exist), sorted.
pub fn dir_names(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        if let Some(n) = entry.file_name().to_str() {
            names.push(n.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Removes a file; one already gone is fine.
pub fn remove_if_exists(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

/// Human-readable byte count (`1.5 MB`).
pub fn human_bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.1} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_refused_and_temporaries_are_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(open_append_nofollow(&link).is_err());
        assert!(open_rw_nofollow(&link).is_err());
        assert!(open_read_nofollow(&link).is_err());
        assert!(open_write_nofollow(&link).is_err());
        assert!(create_new(&link).is_err());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");

        let (a, _) = create_temp_exclusive(dir.path(), "x").unwrap();
        let (b, _) = create_temp_exclusive(dir.path(), "x").unwrap();
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".x.") && name.ends_with(".tmp") && name.len() == ".x.".len() + 16 + 4, "{name}");
        assert_ne!(random_hex(8), random_hex(8));
    }
}
