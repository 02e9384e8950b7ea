//! `local` targets: a directory on this machine, typically a mounted share
//! (NFS, SMB). Same rules as the network targets: a temporary name, fsync,
//! then a rename, so the directory never shows a partial file under a final
//! name.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufRead};
use std::path::Path;
use std::time::Duration;

use super::remote::{self, RResult, Remote, RemoteError};
use crate::config::TargetConfig;

pub struct LocalRemote {
    timeout: Duration,
}

pub fn connect(cfg: &TargetConfig, step: &mut dyn FnMut(&str, String)) -> RResult<Box<dyn Remote>> {
    step("directory", cfg.remote_dir.clone());
    Ok(Box::new(LocalRemote { timeout: Duration::from_secs(cfg.timeout_secs) }))
}

fn fail(what: &str, path: &str, e: io::Error, timeout: Duration) -> RemoteError {
    RemoteError::retry(format!("{what} {path}: {}", remote::io_reason(&e, timeout)))
}

impl Remote for LocalRemote {
    fn ensure_dir(&mut self, dir: &str) -> RResult<bool> {
        if Path::new(dir).is_dir() {
            return Ok(false);
        }
        fs::create_dir_all(dir).map_err(|e| RemoteError::fatal(format!("cannot create directory {dir}: {e}")))?;
        Ok(true)
    }

    fn list(&mut self, dir: &str) -> RResult<HashSet<String>> {
        let names = crate::fsx::dir_names(Path::new(dir)).map_err(|e| RemoteError::retry(format!("{e:#}")))?;
        Ok(names.into_iter().collect())
    }

    fn size(&mut self, path: &str) -> RResult<Option<u64>> {
        match fs::metadata(path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(fail("cannot check", path, e, self.timeout)),
        }
    }

    fn put(&mut self, path: &str, src: &mut dyn BufRead, progress: &mut dyn FnMut(u64)) -> RResult<u64> {
        let mut f = File::create(path).map_err(|e| fail("cannot create", path, e, self.timeout))?;
        let n = remote::copy(src, &mut f, progress).map_err(|e| e.into_remote(path, self.timeout))?;
        f.sync_all().map_err(|e| fail("cannot sync", path, e, self.timeout))?;
        Ok(n)
    }

    fn rename(&mut self, from: &str, to: &str) -> RResult<()> {
        fs::rename(from, to).map_err(|e| fail("cannot rename", from, e, self.timeout))?;
        if let Some(dir) = Path::new(to).parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::fsx::sync_dir(dir).map_err(|e| RemoteError::retry(format!("{e:#}")))?;
        }
        Ok(())
    }

    fn remove(&mut self, path: &str) -> RResult<()> {
        fs::remove_file(path).map_err(|e| fail("cannot remove", path, e, self.timeout))
    }
}
