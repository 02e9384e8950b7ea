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
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::config::Layout;

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

/// Opens a file for appending, creating it (mode 0640) when missing; a
/// symbolic link in its place is refused.
pub fn open_append_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(0o640).custom_flags(NOFOLLOW).open(path)
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

/// `state/tmp/`: where archive and backup write their temporaries (they hold
/// the maintenance lock while they do).
pub fn tmp_dir(layout: &Layout) -> PathBuf {
    layout.state.join("tmp")
}

/// Where to write a temporary that is then renamed into `dest_dir`:
/// `state/tmp/` (created, and checked to be a real directory) when it is on
/// the same filesystem as `dest_dir`, else `dest_dir` itself (a hidden,
/// random name there; a rename cannot cross filesystems).
pub fn staging_dir(layout: &Layout, dest_dir: &Path) -> Result<PathBuf> {
    let tmp = tmp_dir(layout);
    fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let meta = fs::symlink_metadata(&tmp).with_context(|| format!("cannot read {}", tmp.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory (a link or a file is in its place); remove it", tmp.display());
    }
    let dest = fs::metadata(dest_dir).with_context(|| format!("cannot read {}", dest_dir.display()))?;
    Ok(if dest.dev() == meta.dev() { tmp } else { dest_dir.to_path_buf() })
}

/// Removes everything in `state/tmp/` (temporaries of an interrupted archive
/// or backup; the caller holds the maintenance lock). Returns the names
/// removed.
pub fn clean_tmp_dir(layout: &Layout) -> Result<Vec<String>> {
    let dir = tmp_dir(layout);
    let mut removed = Vec::new();
    for name in crate::maintenance::dir_names(&dir)? {
        let p = dir.join(&name);
        let res = match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&p),
            Ok(_) => fs::remove_file(&p),
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => removed.push(name),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", p.display())),
        }
    }
    Ok(removed)
}

/// `(device, inode)` of a path itself (a link is not followed).
pub fn identity(path: &Path) -> io::Result<(u64, u64)> {
    fs::symlink_metadata(path).map(|m| (m.dev(), m.ino()))
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
