//! Where everything lives inside a data directory (SPEC §3), and the one place
//! that knows how history files are named.
//!
//! A history file is `<host>_<YYYYMMDDHHMMSS>` (its *stem*) plus a suffix that
//! says what it is: `.xml.open` while it is written (under `state/active`),
//! `.xml` once sealed (under `audit_trail`), `.xml.gz` once archived (under
//! `archive`). Names starting with `.` are work files of a step in progress
//! (`.NAME.RANDOM.tmp`, `.NAME.RANDOM.partial`) and never part of the history.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Where everything lives inside a data directory.
#[derive(Debug, Clone)]
pub struct Layout {
    pub data_dir: PathBuf,
    /// Sealed `*.xml` files.
    pub sealed: PathBuf,
    /// Compressed sealed files and their manifest.
    pub archive: PathBuf,
    pub backups: PathBuf,
    pub state: PathBuf,
    /// The file being written (`*.xml.open`), never a `*.xml` under `sealed`.
    pub active: PathBuf,
    /// Held by whoever writes the log.
    pub lock: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Layout {
        let state = data_dir.join("state");
        Layout {
            data_dir: data_dir.to_path_buf(),
            sealed: data_dir.join("audit_trail"),
            archive: data_dir.join("archive"),
            backups: data_dir.join("backups"),
            active: state.join("active"),
            lock: state.join("lock"),
            state,
        }
    }

    /// Creates the directories a writer needs.
    pub fn create(&self) -> Result<()> {
        for dir in [&self.sealed, &self.archive, &self.backups, &self.state, &self.active] {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Ok(())
    }

    /// The directory that holds files of this kind.
    pub fn dir(&self, kind: FileKind) -> &Path {
        match kind {
            FileKind::Archived => &self.archive,
            FileKind::Sealed => &self.sealed,
            FileKind::Active => &self.active,
        }
    }

    /// The path of the file of this kind with this stem.
    pub fn file(&self, kind: FileKind, stem: &str) -> PathBuf {
        self.dir(kind).join(kind.file_name(stem))
    }
}

/// What a history file is, from its name. The order is the order of a file's
/// life backwards, so that sorting (stem, kind) puts an archived twin first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileKind {
    Archived,
    Sealed,
    Active,
}

/// The suffix of the file being written.
pub const ACTIVE_SUFFIX: &str = ".xml.open";
/// The suffix of a sealed file.
pub const SEALED_SUFFIX: &str = ".xml";
/// The suffix of an archived (gzip-compressed) sealed file.
pub const ARCHIVED_SUFFIX: &str = ".xml.gz";

impl FileKind {
    pub const fn suffix(self) -> &'static str {
        match self {
            FileKind::Archived => ARCHIVED_SUFFIX,
            FileKind::Sealed => SEALED_SUFFIX,
            FileKind::Active => ACTIVE_SUFFIX,
        }
    }

    /// `<stem><suffix>`.
    pub fn file_name(self, stem: &str) -> String {
        format!("{stem}{}", self.suffix())
    }

    /// The stem of `name` if it is a file of this kind (work files, which
    /// start with `.`, are not).
    pub fn stem_of(self, name: &str) -> Option<&str> {
        name.strip_suffix(self.suffix()).filter(|_| !name.starts_with('.'))
    }
}

/// The kind and stem of a history file's name; `None` for anything else
/// (work files starting with `.` included).
pub fn kind_of(name: &str) -> Option<(FileKind, &str)> {
    [FileKind::Active, FileKind::Archived, FileKind::Sealed]
        .into_iter()
        .find_map(|kind| kind.stem_of(name).map(|stem| (kind, stem)))
}

/// Whether `stem` is `<host>_<YYYYMMDDHHMMSS>` as the writer makes it: a host
/// of letters, digits, `.` and `-` (at most 64, not hidden) and a valid time.
pub fn valid_stem(stem: &str) -> bool {
    let Some((host, stamp)) = stem.rsplit_once('_') else { return false };
    !host.is_empty()
        && host.len() <= 64
        && !host.starts_with('.')
        && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        && crate::timestamp::parse_file_stamp(stamp).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_to_their_kind_and_stem() {
        for kind in [FileKind::Archived, FileKind::Sealed, FileKind::Active] {
            let name = kind.file_name("pbx01_20260101120000");
            assert_eq!(kind_of(&name), Some((kind, "pbx01_20260101120000")), "{name}");
        }
        assert_eq!(kind_of("pbx01_1.xml.gz.tmp"), None);
        assert_eq!(kind_of(".pbx01_1.xml"), None);
        assert_eq!(kind_of("manifest.json"), None);
        let layout = Layout::new(Path::new("/d"));
        assert_eq!(layout.file(FileKind::Archived, "h_1"), Path::new("/d/archive/h_1.xml.gz"));
        assert_eq!(layout.file(FileKind::Active, "h_1"), Path::new("/d/state/active/h_1.xml.open"));
    }

    #[test]
    fn stems_are_what_the_writer_makes() {
        assert!(valid_stem("pbx-01.example.com_20260101120000"));
        for bad in ["pbx01_2026", "_20260101120000", ".h_20260101120000", "h_20261301120000", "a b_20260101120000"] {
            assert!(!valid_stem(bad), "{bad}");
        }
    }
}
