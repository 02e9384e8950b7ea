//! The scheduler thread and the jobs it runs. Each run happens on its own
//! thread, so a long archive or backup never holds up the next due time of
//! another schedule, and ingest (other threads) never waits for a job. A
//! schedule whose previous run is still going is not started again: the run
//! is recorded as skipped.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use chrono::{DateTime, Local};

use super::writer::{Batch, Request};
use crate::config::Config;
use crate::record::Defaults;
use crate::schedules::{self, Job, Run, Schedule};
use crate::selfaudit::Event;
use crate::store::layout::Layout;
use crate::timestamp::{self, Clock};

/// What jobs need from the running service.
pub struct JobEnv {
    pub layout: Layout,
    pub config: RwLock<Config>,
    pub host: String,
    pub clock: Arc<dyn Clock>,
    pub writer: SyncSender<Request>,
    pub schedules_dir: PathBuf,
    pub config_path: PathBuf,
    /// The service's metrics (job runs; the endpoint reads the rest through it).
    pub metrics: Arc<super::metrics::Metrics>,
}

impl JobEnv {
    /// Records the archiver's own events through the log writer.
    pub fn audit(&self, events: &[Event]) -> Result<()> {
        submit_events(&self.writer, &self.host, &*self.clock, events)
    }
}

/// Appends events through the writer and waits until they are on disk.
pub fn submit_events(writer: &SyncSender<Request>, host: &str, clock: &dyn Clock, events: &[Event]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let now = timestamp::format(&clock.now());
    let defaults = Defaults { now: &now, node: host };
    let mut bodies = Vec::new();
    let mut ends = Vec::new();
    for e in events {
        bodies.extend_from_slice(&e.entry(&defaults));
        ends.push(bodies.len());
    }
    let (tx, rx) = mpsc::channel();
    writer.send(Request::Append(Batch { bodies, ends, reply: tx })).map_err(|_| anyhow!("the log writer stopped"))?;
    rx.recv().map_err(|_| anyhow!("the log writer stopped"))?.map_err(|e| anyhow!(e.message))?;
    Ok(())
}

/// Runs one job to completion; returns a one-line summary.
pub fn run_job(env: &JobEnv, job: &Job) -> Result<String> {
    match job {
        Job::Rotate => {
            let (tx, rx) = mpsc::channel();
            env.writer.send(Request::Rotate(tx)).map_err(|_| anyhow!("the log writer stopped"))?;
            match rx.recv().map_err(|_| anyhow!("the log writer stopped"))?.map_err(|e| anyhow!(e))? {
                Some(s) => Ok(format!(
                    "sealed {} (ids {}..{}, {} records)",
                    s.path.display(),
                    s.info.first_id,
                    s.info.last_id,
                    s.info.records
                )),
                None => Ok("nothing to seal: the active file holds no record".into()),
            }
        }
        Job::Archive => {
            let report = crate::maintenance::archive::archive(&env.layout, &*env.clock)?;
            match report.damage() {
                Some(e) => Err(e.context(report.to_string())),
                None => Ok(report.to_string()),
            }
        }
        Job::Purge => {
            let config = env.config.read().unwrap_or_else(|e| e.into_inner()).clone();
            let report = crate::maintenance::purge::purge(&env.layout, &config, &*env.clock)?;
            for n in &report.notes {
                tracing::info!("purge: {n}");
            }
            if let Some(event) = crate::maintenance::purge::audit_event(&report) {
                env.audit(&[event]).context("the purge could not be recorded")?;
            }
            Ok(report.to_string().replace('\n', ";"))
        }
        Job::Backup { keep, out } => {
            let config = env.config.read().unwrap_or_else(|e| e.into_inner()).clone();
            let opts = crate::maintenance::backup::BackupOptions {
                out_dir: out.clone(),
                keep: *keep,
                config_file: Some(env.config_path.clone()),
                schedules_dir: Some(env.schedules_dir.clone()),
                host: env.host.clone(),
            };
            Ok(crate::maintenance::backup::backup(&env.layout, &config, &opts, &*env.clock)?.to_string())
        }
        Job::Upload { target } => {
            let config = env.config.read().unwrap_or_else(|e| e.into_inner()).clone();
            if config.targets.get(target).is_some_and(|t| !t.enabled) {
                return Ok(format!(
                    "target {target} is disabled (enabled = false in [targets.{target}]): nothing sent"
                ));
            }
            let reports = crate::upload::run(&env.layout, &config, Some(target), &*env.clock, &crate::upload::Quiet)?;
            for r in &reports {
                for n in &r.notes {
                    tracing::info!("upload: {n}");
                }
            }
            let line = reports.iter().map(|r| r.to_string()).collect::<Vec<_>>().join("; ");
            if reports.iter().all(|r| r.ok()) { Ok(line) } else { Err(anyhow!(line)) }
        }
    }
}

struct State {
    schedules: Vec<Schedule>,
    /// Bumped on reload.
    generation: u64,
    stop: bool,
    running: HashSet<String>,
}

/// Handle on the scheduler thread.
pub struct Scheduler {
    shared: Arc<(Mutex<State>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Scheduler {
    pub fn start(env: Arc<JobEnv>, schedules: Vec<Schedule>) -> Scheduler {
        let shared = Arc::new((
            Mutex::new(State { schedules, generation: 0, stop: false, running: HashSet::new() }),
            Condvar::new(),
        ));
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("scheduler".into())
            .spawn(move || scheduler_loop(&env, &sh))
            .expect("cannot start the scheduler thread");
        Scheduler { shared, thread: Some(thread) }
    }

    pub fn reload(&self, schedules: Vec<Schedule>) {
        let (lock, cv) = &*self.shared;
        let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
        st.schedules = schedules;
        st.generation += 1;
        cv.notify_all();
    }

    /// Stops firing, and waits up to `grace` for runs in progress. Jobs are
    /// safe to interrupt (each leaves only complete files), so one still
    /// running after that is left to end with the process.
    pub fn stop(mut self, grace: Duration) -> Vec<String> {
        let (lock, cv) = &*self.shared;
        let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
        st.stop = true;
        cv.notify_all();
        let deadline = Instant::now() + grace;
        while !st.running.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = cv.wait_timeout(st, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        let left: Vec<String> = st.running.iter().cloned().collect();
        drop(st);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        left
    }
}

/// Longest sleep between looks at the clock (wall-clock jumps are noticed within it).
const MAX_SLEEP: Duration = Duration::from_secs(30);

fn scheduler_loop(env: &Arc<JobEnv>, shared: &Arc<(Mutex<State>, Condvar)>) {
    let (lock, cv) = &**shared;
    // The service's clock, in the local zone (schedules are local times).
    let now_local = || env.clock.now().with_timezone(&Local);
    let mut due = schedules::read_last_due(&env.layout);
    // When each schedule last ran: a fixed-time schedule that ran in the
    // first pass of a repeated hour does not run again in the second.
    let mut fired: BTreeMap<String, DateTime<Local>> = schedules::last_runs(&env.layout)
        .into_iter()
        .filter_map(|(name, r)| {
            let t = DateTime::parse_from_rfc3339(r.planned.as_deref().unwrap_or(&r.start)).ok()?;
            Some((name, t.with_timezone(&Local)))
        })
        .collect();
    let started = now_local();
    // Catch-up: a schedule that was due while the service was down runs once now.
    {
        let st = lock.lock().unwrap_or_else(|e| e.into_inner());
        let schedules = st.schedules.clone();
        drop(st);
        for s in schedules.iter().filter(|s| s.enabled) {
            // A last due time in the future (the clock was ahead then) counts from now.
            if let Some(last) = due.get(&s.name).filter(|l| **l <= started)
                && let Some(planned) = s.next_after(last, fired.get(&s.name)).filter(|n| *n <= started)
            {
                fire(env, shared, s, Some(planned), "missed while the service was down");
                fired.insert(s.name.clone(), started);
            }
            due.insert(s.name.clone(), started);
        }
        save_due(env, &due);
    }
    let mut generation = 0;
    let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if st.stop {
            return;
        }
        let now = now_local();
        if st.generation != generation {
            // New or changed schedules start counting from now (no catch-up on reload).
            generation = st.generation;
            let names: HashSet<&str> = st.schedules.iter().map(|s| s.name.as_str()).collect();
            due.retain(|k, _| names.contains(k.as_str()));
            for s in &st.schedules {
                due.entry(s.name.clone()).or_insert(now);
            }
            save_due(env, &due);
        }
        // A clock stepped back (after a bad time source) never stalls a
        // schedule: what was due "in the future" counts from now.
        let mut stepped = false;
        for (name, last) in due.iter_mut() {
            if *last > now + chrono::Duration::seconds(1) {
                tracing::warn!(
                    "scheduler: the clock went back from {} to {}; schedule {name} counts from now",
                    last.format("%Y-%m-%d %H:%M:%S %:z"),
                    now.format("%Y-%m-%d %H:%M:%S %:z")
                );
                *last = now;
                stepped = true;
            }
        }
        if stepped {
            save_due(env, &due);
        }
        let mut to_fire = Vec::new();
        let mut next: Option<DateTime<Local>> = None;
        for s in st.schedules.iter().filter(|s| s.enabled) {
            let last = due.get(&s.name).copied().unwrap_or(now);
            match s.next_after(&last, fired.get(&s.name)) {
                Some(n) if n <= now => to_fire.push((s.clone(), n)),
                Some(n) => next = Some(next.map_or(n, |m| m.min(n))),
                None => {}
            }
        }
        if !to_fire.is_empty() {
            drop(st);
            for (s, planned) in &to_fire {
                fire(env, shared, s, Some(*planned), "");
                due.insert(s.name.clone(), now);
                fired.insert(s.name.clone(), now);
            }
            save_due(env, &due);
            st = lock.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        let sleep = next
            .map(|n| (n - now).to_std().unwrap_or(Duration::ZERO) + Duration::from_millis(2))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        st = cv.wait_timeout(st, sleep).unwrap_or_else(|e| e.into_inner()).0;
    }
}

fn save_due(env: &JobEnv, due: &BTreeMap<String, DateTime<Local>>) {
    if let Err(e) = schedules::write_last_due(&env.layout, due) {
        tracing::error!("scheduler: {e:#}");
    }
}

/// Starts a run of `s` on its own thread, unless one is still going.
fn fire(
    env: &Arc<JobEnv>,
    shared: &Arc<(Mutex<State>, Condvar)>,
    s: &Schedule,
    planned: Option<DateTime<Local>>,
    why: &str,
) {
    let planned = planned.map(|p| timestamp::format(&p.fixed_offset()));
    let (lock, cv) = &**shared;
    let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
    if st.stop {
        return;
    }
    if !st.running.insert(s.name.clone()) {
        drop(st);
        let t = timestamp::format(&env.clock.now());
        let run = Run {
            schedule: s.name.clone(),
            job: s.job.name().into(),
            planned,
            start: t.clone(),
            end: t,
            outcome: schedules::RunOutcome::Skipped,
            message: "the previous run is still in progress".into(),
            error: String::new(),
        };
        log_run(env, &run);
        return;
    }
    drop(st);
    let name = s.name.clone();
    let (env, shared, s, why) = (env.clone(), shared.clone(), s.clone(), why.to_owned());
    let spawned = std::thread::Builder::new().name(format!("job-{}", s.name)).spawn(move || {
        let start = timestamp::format(&env.clock.now());
        let result = run_job(&env, &s.job);
        let mut run = Run {
            schedule: s.name.clone(),
            job: s.job.name().into(),
            planned,
            start,
            end: timestamp::format(&env.clock.now()),
            outcome: if result.is_ok() { schedules::RunOutcome::Ok } else { schedules::RunOutcome::Failed },
            message: String::new(),
            error: String::new(),
        };
        match result {
            Ok(m) => run.message = if why.is_empty() { m } else { format!("{m} ({why})") },
            Err(e) => run.error = format!("{e:#}"),
        }
        log_run(&env, &run);
        let (lock, cv) = &*shared;
        lock.lock().unwrap_or_else(|e| e.into_inner()).running.remove(&s.name);
        cv.notify_all();
    });
    if spawned.is_err() {
        lock.lock().unwrap_or_else(|e| e.into_inner()).running.remove(&name);
        cv.notify_all();
    }
}

fn log_run(env: &JobEnv, run: &Run) {
    env.metrics.job_run(&run.schedule, &run.job, &run.outcome.to_string());
    let text = if run.error.is_empty() { &run.message } else { &run.error };
    if run.error.is_empty() {
        tracing::info!("schedule {} ({}): {}: {text}", run.schedule, run.job, run.outcome);
    } else {
        tracing::warn!("schedule {} ({}): {}: {text}", run.schedule, run.job, run.outcome);
    }
    if let Err(e) = schedules::record_run(&env.layout, run).context("cannot record the run") {
        tracing::error!("{e:#}");
    }
}
