//! Archive, purge and backup: the jobs that move, compress, remove and copy
//! sealed files, and the maintenance lock that keeps them from moving files
//! under each other (in this process or any other).
//!
//! The log writer (`state/lock`) is a different lock on purpose: maintenance
//! must never stall ingestion, and the log never needs files that maintenance
//! moves (it reads the newest sealed file only when no active file exists).

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::fsx::open_lock_file;
use crate::store::layout::Layout;

pub mod archive;
pub mod backup;
pub mod purge;

/// File name of the maintenance lock under `state/`.
pub const LOCK_NAME: &str = "maintenance.lock";

/// An exclusive `flock` on `state/maintenance.lock`, held while archive, purge
/// or backup runs, in this process or any other. Released on drop.
#[derive(Debug)]
pub struct MaintenanceLock {
    _file: File,
}

impl MaintenanceLock {
    /// Waits for any other maintenance job to finish, then takes the lock.
    pub fn acquire(layout: &Layout) -> Result<MaintenanceLock> {
        let path = layout.state.join(LOCK_NAME);
        let file = open_lock_file(&path)?;
        file.lock().with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(MaintenanceLock { _file: file })
    }
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

/// Prefix of the spool file of a bulk `append --json` (`commands::append`).
pub const APPEND_SPOOL: &str = "append-input";
/// A spool file younger than this may belong to an append still running.
const SPOOL_IN_USE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Removes what is in `state/tmp/`: temporaries of an interrupted archive or
/// backup (the caller holds the maintenance lock), and spool files of bulk
/// appends a crash left, once they are a day old (appends take no
/// maintenance lock: a younger one may be in use). Returns the names
/// removed.
pub fn clean_tmp_dir(layout: &Layout) -> Result<Vec<String>> {
    let dir = tmp_dir(layout);
    let mut removed = Vec::new();
    for name in crate::fsx::dir_names(&dir)? {
        let p = dir.join(&name);
        if name.trim_start_matches('.').starts_with(APPEND_SPOOL)
            && fs::symlink_metadata(&p)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < SPOOL_IN_USE))
        {
            continue;
        }
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
