//! `schedules`: every schedule file with its job, next fire times and last
//! run; files that cannot be used are listed with the reason.

use std::process::ExitCode;

use anyhow::Result;
use chrono::Local;
use serde::Serialize;

use crate::app::Ctx;
use crate::cli::SchedulesArgs;
use crate::schedules::{self, Run};

#[derive(Debug, Serialize)]
pub struct ScheduleStatus {
    pub name: String,
    pub file: String,
    pub cron: String,
    pub job: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub enabled: bool,
    /// The schedule file's `description`, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub next: Vec<String>,
    pub last_run: Option<Run>,
}

/// The schedules of `ctx` with `n` next fire times each, and load errors.
pub fn collect(ctx: &Ctx, n: usize) -> (Vec<ScheduleStatus>, Vec<String>) {
    let loaded = schedules::load_dir(&ctx.schedules_dir);
    let mut last = schedules::last_runs(&ctx.layout);
    let now = ctx.clock.now().with_timezone(&Local);
    let list = loaded
        .schedules
        .iter()
        .map(|s| ScheduleStatus {
            name: s.name.clone(),
            file: s.path.display().to_string(),
            cron: s.cron_text.clone(),
            job: s.job.name().into(),
            target: match &s.job {
                schedules::Job::Upload { target } => Some(target.clone()),
                _ => None,
            },
            enabled: s.enabled,
            description: s.description.clone(),
            next: if s.enabled {
                let fired = last
                    .get(&s.name)
                    .and_then(|r| chrono::DateTime::parse_from_rfc3339(r.planned.as_deref().unwrap_or(&r.start)).ok())
                    .map(|t| t.with_timezone(&Local));
                s.upcoming(&now, fired.as_ref(), n)
                    .iter()
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S %:z").to_string())
                    .collect()
            } else {
                Vec::new()
            },
            last_run: last.remove(&s.name),
        })
        .collect();
    (list, loaded.errors)
}

pub fn run(ctx: &Ctx, args: SchedulesArgs) -> Result<ExitCode> {
    let (list, errors) = collect(ctx, args.next);
    if args.json {
        let v = serde_json::json!({
            "dir": ctx.schedules_dir.display().to_string(),
            "schedules": list,
            "errors": errors,
        });
        crate::outln!("{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        crate::outln!("schedules from {}", ctx.schedules_dir.display())?;
        for s in &list {
            let target = s.target.as_deref().map(|t| format!(" → {t}")).unwrap_or_default();
            crate::outln!("\n{}  ({}{target}, cron \"{}\")", s.name, s.job, s.cron)?;
            if let Some(d) = &s.description {
                crate::outln!("  {d}")?;
            }
            if s.enabled {
                for t in &s.next {
                    crate::outln!("  next      {t}")?;
                }
            } else {
                crate::outln!("  disabled")?;
            }
            match &s.last_run {
                Some(r) => {
                    let text = if r.error.is_empty() { &r.message } else { &r.error };
                    let planned = r.planned.as_deref().map(|p| format!(" (planned {p})")).unwrap_or_default();
                    crate::outln!("  last run  {}{planned} {}: {text}", r.start, r.outcome)?;
                }
                None => println!("  last run  never"),
            }
        }
        for e in &errors {
            crate::outln!("\nnot loaded: {e}")?;
        }
    }
    Ok(if errors.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}
