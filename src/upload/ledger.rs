//! The upload ledger: which file reached which target (SPEC §6).
//!
//! One file per target, `state/uploads/<target>.ledger`, one line per file
//! that reached it: `<file name>\t<size>\t<sha256>\t<time>`. Lines are only
//! ever appended (and fsynced), so a crash can at worst leave a last line
//! without its newline; readers ignore such a line, and the upload it stood
//! for is simply done again.
//!
//! A file counts as uploaded under either of its names: a sealed file that
//! was uploaded as `X.xml` and later archived as `X.xml.gz` (or the other way
//! round) holds the same records.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::config::Config;
use crate::store::layout::{FileKind, Layout};

/// One line of a ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub file: String,
    pub size: u64,
    pub sha256: String,
    pub time: String,
}

/// The directory holding the ledgers.
pub fn dir(layout: &Layout) -> PathBuf {
    layout.state.join("uploads")
}

/// The ledger of one target.
pub fn path(layout: &Layout, target: &str) -> PathBuf {
    dir(layout).join(format!("{target}.ledger"))
}

/// The entries of a target's ledger (none when it has no ledger yet).
pub fn read(layout: &Layout, target: &str) -> Result<Vec<LedgerEntry>> {
    let p = path(layout, target);
    let text = match fs::read(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read upload ledger {}", p.display())),
    };
    let complete = match text.iter().rposition(|&b| b == b'\n') {
        Some(end) => &text[..=end],
        None => &[][..],
    };
    let text = std::str::from_utf8(complete).with_context(|| format!("upload ledger {} is not UTF-8", p.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split('\t').collect();
        let (Some(file), Some(size), Some(sha256), Some(time), 4) =
            (parts.first(), parts.get(1), parts.get(2), parts.get(3), parts.len())
        else {
            bail!(
                "upload ledger {} line {}: expected 4 tab-separated fields, found {}",
                p.display(),
                i + 1,
                parts.len()
            );
        };
        let size =
            size.parse().with_context(|| format!("upload ledger {} line {}: bad size {size:?}", p.display(), i + 1))?;
        out.push(LedgerEntry {
            file: (*file).to_owned(),
            size,
            sha256: (*sha256).to_owned(),
            time: (*time).to_owned(),
        });
    }
    Ok(out)
}

/// Appends lines to one target's ledger during a run. Lines are written as
/// files arrive and made durable by [`Writer::sync`] (once per run, and
/// on drop). A line lost to a crash before that is harmless: the next run
/// finds the file complete on the server and records it again without
/// sending it.
pub struct Writer {
    file: std::fs::File,
    path: PathBuf,
    unsynced: bool,
}

impl Writer {
    pub fn open(layout: &Layout, target: &str) -> Result<Writer> {
        let d = dir(layout);
        fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
        let p = path(layout, target);
        let created = !p.exists();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .with_context(|| format!("cannot open upload ledger {}", p.display()))?;
        if created {
            crate::fsx::sync_dir(&d)?;
        }
        Ok(Writer { file, path: p, unsynced: false })
    }

    /// Records that `entry` reached the target.
    pub fn append(&mut self, entry: &LedgerEntry) -> Result<()> {
        if [&entry.file, &entry.sha256, &entry.time].iter().any(|s| s.contains(['\t', '\n'])) {
            bail!("ledger fields cannot hold tabs or newlines: {:?}", entry.file);
        }
        let line = format!("{}\t{}\t{}\t{}\n", entry.file, entry.size, entry.sha256, entry.time);
        self.file
            .write_all(line.as_bytes())
            .with_context(|| format!("cannot write upload ledger {}", self.path.display()))?;
        self.unsynced = true;
        Ok(())
    }

    /// Makes every line appended so far durable.
    pub fn sync(&mut self) -> Result<()> {
        if self.unsynced {
            self.file.sync_data().with_context(|| format!("cannot write upload ledger {}", self.path.display()))?;
            self.unsynced = false;
        }
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.sync();
    }
}

/// `X` for `X.xml` and `X.xml.gz`: the name both forms of a file share.
pub fn stem(name: &str) -> &str {
    FileKind::Archived.stem_of(name).or_else(|| FileKind::Sealed.stem_of(name)).unwrap_or(name)
}

/// The ledgers of every enabled target, read once.
#[derive(Debug, Default)]
pub struct Ledgers {
    /// Enabled target → stems of the files it holds.
    uploaded: BTreeMap<String, HashSet<String>>,
}

impl Ledgers {
    pub fn load(layout: &Layout, config: &Config) -> Result<Ledgers> {
        let mut uploaded = BTreeMap::new();
        for (name, target) in &config.targets {
            if target.enabled {
                let stems = read(layout, name)?.into_iter().map(|e| stem(&e.file).to_owned()).collect();
                uploaded.insert(name.clone(), stems);
            }
        }
        Ok(Ledgers { uploaded })
    }

    /// Enabled targets that have not received `file_name` yet.
    pub fn pending(&self, file_name: &str) -> Vec<String> {
        let s = stem(file_name);
        self.uploaded.iter().filter(|(_, stems)| !stems.contains(s)).map(|(t, _)| t.clone()).collect()
    }
}

/// Enabled targets whose ledger does not list `file_name` (in either its
/// plain or its compressed form): the file is still waiting for them.
#[cfg(test)]
pub fn pending_targets(layout: &Layout, config: &Config, file_name: &str) -> Result<Vec<String>> {
    Ok(Ledgers::load(layout, config)?.pending(file_name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TargetConfig;

    fn target(enabled: bool) -> TargetConfig {
        toml::from_str::<TargetConfig>(&format!("protocol = 'sftp'\nhost = '127.0.0.1'\nenabled = {enabled}\n"))
            .unwrap()
    }

    #[test]
    fn pending_until_listed_in_either_form() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let mut config = Config::default();
        config.targets.insert("a".into(), target(true));
        config.targets.insert("b".into(), target(true));
        config.targets.insert("off".into(), target(false));
        assert_eq!(pending_targets(&layout, &config, "h_1.xml.gz").unwrap(), ["a", "b"]);
        let e = LedgerEntry { file: "h_1.xml".into(), size: 10, sha256: "ab".into(), time: "t".into() };
        let mut w = Writer::open(&layout, "a").unwrap();
        w.append(&e).unwrap();
        w.sync().unwrap();
        assert_eq!(read(&layout, "a").unwrap(), [e]);
        assert_eq!(pending_targets(&layout, &config, "h_1.xml.gz").unwrap(), ["b"]);
        assert_eq!(pending_targets(&layout, &config, "h_2.xml").unwrap(), ["a", "b"]);
    }

    #[test]
    fn torn_last_line_is_ignored_and_bad_line_named() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        fs::create_dir_all(super::dir(&layout)).unwrap();
        fs::write(path(&layout, "a"), "h_1.xml.gz\t5\tab\tt\nh_2.xml.gz\t5").unwrap();
        assert_eq!(read(&layout, "a").unwrap().len(), 1);
        fs::write(path(&layout, "a"), "h_1.xml.gz\tfive\tab\tt\n").unwrap();
        let e = read(&layout, "a").unwrap_err();
        assert!(format!("{e:#}").contains("line 1"), "{e:#}");
    }
}
