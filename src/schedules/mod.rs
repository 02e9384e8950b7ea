//! Schedules (SPEC §5): one TOML file per schedule in the schedules
//! directory, named after the file (`rotate-daily.toml` is `rotate-daily`):
//!
//! ```toml
//! cron = "0 0 0 * * *"   # sec min hour day-of-month month day-of-week [year], crontab(5) style; or @hourly …
//! job = "rotate"         # rotate | archive | purge | backup | upload
//! enabled = true         # default true
//! # target = "auditors"  # upload: the [targets.NAME] to send to
//! # keep = 7             # backup: bundles to keep (default: keep_backups)
//! # out = "/srv/backup"  # backup: where bundles go (default: <data-dir>/backups)
//! ```
//!
//! Times are local; daylight-saving changes are handled as cron does (see
//! [`crate::schedules::crontab`]). A file that cannot be used is reported by name and line
//! and the others still load. Also here: the persisted run history and the
//! last due time of each schedule, from which runs missed while the service
//! was down are caught up (once) at start.

use anyhow::{Context, Result};
use chrono::{DateTime, Local};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

pub mod crontab;

use crate::fsx::write_atomic;
use crate::store::layout::Layout;
use crontab::Cron;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    Rotate,
    Archive,
    Purge,
    Backup { keep: Option<usize>, out: Option<PathBuf> },
    Upload { target: String },
}

impl Job {
    pub fn name(&self) -> &'static str {
        match self {
            Job::Rotate => "rotate",
            Job::Archive => "archive",
            Job::Purge => "purge",
            Job::Backup { .. } => "backup",
            Job::Upload { .. } => "upload",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub path: PathBuf,
    pub cron_text: String,
    cron: Cron,
    pub job: Job,
    pub enabled: bool,
    pub description: Option<String>,
}

impl Schedule {
    /// The first fire time strictly after `t`; `fired` is when it last ran
    /// (see [`Cron::next_after`]).
    pub fn next_after(&self, t: &DateTime<Local>, fired: Option<&DateTime<Local>>) -> Option<DateTime<Local>> {
        self.cron.next_after(t, fired)
    }

    /// The next `n` fire times after `from`, strictly increasing.
    pub fn upcoming(&self, from: &DateTime<Local>, fired: Option<&DateTime<Local>>, n: usize) -> Vec<DateTime<Local>> {
        self.cron.upcoming(from, fired, n)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleFile {
    cron: Spanned<String>,
    job: Spanned<String>,
    #[serde(default = "yes")]
    enabled: bool,
    target: Option<Spanned<String>>,
    keep: Option<Spanned<usize>>,
    out: Option<Spanned<PathBuf>>,
    description: Option<String>,
}

fn yes() -> bool {
    true
}

/// The schedules of a directory, and a message for each file that could not
/// be used.
#[derive(Debug, Default)]
pub struct Loaded {
    pub schedules: Vec<Schedule>,
    pub errors: Vec<String>,
}

pub fn load_dir(dir: &Path) -> Loaded {
    let mut out = Loaded::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            out.errors.push(format!("schedules directory {}: {e}", dir.display()));
            return out;
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    for path in paths {
        // A name is printed by `status` and `schedules` and written into
        // logs: one holding a control character (a line break, an escape)
        // or not UTF-8 is refused, named with those characters escaped.
        let name = path.file_name().unwrap_or_default();
        if name.to_str().is_none_or(|n| n.chars().any(char::is_control)) {
            out.errors.push(format!(
                "{}/{:?}: the file name holds a control character or is not UTF-8; rename it",
                dir.display(),
                name
            ));
            continue;
        }
        match load_file(&path) {
            Ok(s) => out.schedules.push(s),
            Err(e) => out.errors.push(e),
        }
    }
    out
}

/// Reads one schedule file; the error names the file and, where it can, the line.
pub fn load_file(path: &Path) -> Result<Schedule, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_file(path, &text)
}

/// A schedule file's text (`path` names it in errors and gives its name).
pub(crate) fn parse_file(path: &Path, text: &str) -> Result<Schedule, String> {
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
    let at = |span: std::ops::Range<usize>| format!("{}:{}", path.display(), line_of(text, span.start));
    let file: ScheduleFile = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| format!(":{}", line_of(text, s.start))).unwrap_or_default();
        format!("{}{line}: {}", path.display(), e.message())
    })?;
    let cron = parse_cron(file.cron.get_ref()).map_err(|e| format!("{}: {e}", at(file.cron.span())))?;
    let only = |what: &str, span: std::ops::Range<usize>, job: &str| {
        format!("{}: `{what}` is a parameter of the {job} job only", at(span))
    };
    let job = match file.job.get_ref().as_str() {
        "upload" => {
            let target = file
                .target
                .as_ref()
                .ok_or_else(|| format!("{}: an upload job needs `target = \"NAME\"`", at(file.job.span())))?;
            Job::Upload { target: target.get_ref().clone() }
        }
        "backup" => Job::Backup {
            keep: file.keep.as_ref().map(|k| *k.get_ref()),
            out: file.out.as_ref().map(|o| o.get_ref().clone()),
        },
        j @ ("rotate" | "archive" | "purge") => match j {
            "rotate" => Job::Rotate,
            "archive" => Job::Archive,
            _ => Job::Purge,
        },
        other => {
            return Err(format!(
                "{}: unknown job {other:?} (rotate, archive, purge, backup or upload)",
                at(file.job.span())
            ));
        }
    };
    if !matches!(job, Job::Upload { .. })
        && let Some(t) = &file.target
    {
        return Err(only("target", t.span(), "upload"));
    }
    if !matches!(job, Job::Backup { .. }) {
        if let Some(k) = &file.keep {
            return Err(only("keep", k.span(), "backup"));
        }
        if let Some(o) = &file.out {
            return Err(only("out", o.span(), "backup"));
        }
    }
    Ok(Schedule {
        name,
        path: path.to_path_buf(),
        cron_text: file.cron.get_ref().clone(),
        cron,
        job,
        enabled: file.enabled,
        description: file.description,
    })
}

fn line_of(text: &str, offset: usize) -> usize {
    1 + text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count()
}

/// Parses a cron expression (see [`crate::schedules::crontab`]) and refuses one that
/// can never fire (30 February).
pub fn parse_cron(expr: &str) -> Result<Cron, String> {
    let cron = Cron::parse(expr)?;
    if cron.next_after(&chrono::Utc::now(), None).is_none() {
        return Err(format!("cron {expr:?} never fires (no date matches it)"));
    }
    Ok(cron)
}

/// How a run ended (written as `ok`, `failed` or `skipped` in
/// `state/jobs/history.jsonl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunOutcome {
    Ok,
    Failed,
    /// Not started: the previous run of the schedule was still going.
    Skipped,
}

impl std::fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunOutcome::Ok => "ok",
            RunOutcome::Failed => "failed",
            RunOutcome::Skipped => "skipped",
        })
    }
}

/// One run of a schedule's job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub schedule: String,
    pub job: String,
    /// The fire time the run was for (absent for runs recorded before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned: Option<String>,
    pub start: String,
    pub end: String,
    pub outcome: RunOutcome,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

fn jobs_dir(layout: &Layout) -> PathBuf {
    layout.state.join("jobs")
}

fn history_path(layout: &Layout) -> PathBuf {
    jobs_dir(layout).join("history.jsonl")
}

fn due_path(layout: &Layout) -> PathBuf {
    jobs_dir(layout).join("last-due.json")
}

/// Runs kept in the history file (older ones are trimmed at service start).
const KEEP_RUNS: usize = 2000;

/// Appends a run to the history.
pub fn record_run(layout: &Layout, run: &Run) -> Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(jobs_dir(layout))?;
    let path = history_path(layout);
    // Never through a link planted in its place (see `fsx`).
    let mut f = crate::fsx::open_append_nofollow(&path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut line = serde_json::to_vec(run)?;
    line.push(b'\n');
    f.write_all(&line).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Every run in the history, oldest first. Lines cut short by a crash are skipped.
pub fn runs(layout: &Layout) -> Vec<Run> {
    let mut text = String::new();
    let read = crate::fsx::open_read_nofollow(&history_path(layout)).and_then(|mut f| {
        use std::io::Read;
        f.read_to_string(&mut text)
    });
    if read.is_err() {
        return Vec::new();
    }
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// The last run of each schedule.
pub fn last_runs(layout: &Layout) -> BTreeMap<String, Run> {
    runs(layout).into_iter().map(|r| (r.schedule.clone(), r)).collect()
}

/// Keeps the newest [`KEEP_RUNS`] runs.
pub fn trim_history(layout: &Layout) -> Result<()> {
    let all = runs(layout);
    if all.len() > KEEP_RUNS {
        let mut text = String::new();
        for r in &all[all.len() - KEEP_RUNS..] {
            text.push_str(&serde_json::to_string(r)?);
            text.push('\n');
        }
        write_atomic(&history_path(layout), text.as_bytes())?;
    }
    Ok(())
}

/// The last time each schedule was due (and handled).
pub fn read_last_due(layout: &Layout) -> BTreeMap<String, DateTime<Local>> {
    let Ok(bytes) = std::fs::read(due_path(layout)) else { return BTreeMap::new() };
    let map: BTreeMap<String, String> = serde_json::from_slice(&bytes).unwrap_or_default();
    map.into_iter()
        .filter_map(|(k, v)| Some((k, DateTime::parse_from_rfc3339(&v).ok()?.with_timezone(&Local))))
        .collect()
}

pub fn write_last_due(layout: &Layout, due: &BTreeMap<String, DateTime<Local>>) -> Result<()> {
    std::fs::create_dir_all(jobs_dir(layout))?;
    let map: BTreeMap<&String, String> = due.iter().map(|(k, v)| (k, v.to_rfc3339())).collect();
    write_atomic(&due_path(layout), serde_json::to_string_pretty(&map)?.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_name_with_a_control_character_is_refused_and_named_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let good = "job = \"rotate\"\ncron = \"0 0 * * * *\"\n";
        std::fs::write(dir.path().join("ok.toml"), good).unwrap();
        std::fs::write(dir.path().join("evil\naudit-trail: error: forged\u{1b}[31m.toml"), good).unwrap();
        let loaded = load_dir(dir.path());
        assert_eq!(loaded.schedules.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["ok"]);
        assert_eq!(loaded.errors.len(), 1);
        let e = &loaded.errors[0];
        assert!(!e.chars().any(char::is_control), "{e:?}");
        assert!(e.contains("evil\\naudit-trail") && e.contains("control character"), "{e}");
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn good_and_bad_files() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a.toml", "cron = \"*/2 * * * * *\"\njob = \"rotate\"\n");
        write(d.path(), "b.toml", "job = \"purge\"\n\ncron = \"0 30 1 * *\"\n");
        write(d.path(), "c.toml", "cron = \"@daily\"\njob = \"upload\"\nenabled = false\ntarget = \"ftp1\"\n");
        write(d.path(), "d.toml", "cron = \"@hourly\"\njob = \"rotate\"\ncolour = 1\n");
        write(d.path(), "e.toml", "cron = \"@hourly\"\njob = \"rotate\"\nkeep = 3\n");
        let l = load_dir(d.path());
        let names: Vec<_> = l.schedules.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(l.schedules[1].job, Job::Upload { target: "ftp1".into() });
        assert!(!l.schedules[1].enabled);
        assert_eq!(l.errors.len(), 3, "{:?}", l.errors);
        assert!(l.errors[0].contains("b.toml:3") && l.errors[0].contains("seconds field"), "{}", l.errors[0]);
        assert!(l.errors[1].contains("d.toml:3") && l.errors[1].contains("colour"), "{}", l.errors[1]);
        assert!(l.errors[2].contains("e.toml:3") && l.errors[2].contains("backup"), "{}", l.errors[2]);
        let now = Local::now();
        let next = l.schedules[0].upcoming(&now, None, 3);
        assert_eq!(next.len(), 3);
        assert_eq!((next[1] - next[0]).num_seconds(), 2);
    }
}
