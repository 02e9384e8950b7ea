//! `status`: where the log stands (`--json` for scripts).

use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use crate::app::Ctx;
use crate::cli::StatusArgs;
use crate::store::layout::FileKind;
use crate::store::reader;

#[derive(Debug, Serialize)]
struct Status {
    data_dir: String,
    host: String,
    capacity: u64,
    next_id: u64,
    /// Records in the circular log.
    circular_records: u64,
    /// Oldest id still held locally (0 when none).
    oldest_id: u64,
    active_file: Option<ActiveStatus>,
    sealed_files: usize,
    archived_files: usize,
    /// The service running on this data directory.
    service: Option<ServiceStatus>,
    /// Records dropped by the event mask, per category.
    dropped: std::collections::BTreeMap<String, u64>,
    event_mask: String,
    schedules: Vec<super::schedules::ScheduleStatus>,
    schedule_errors: Vec<String>,
    /// Upload targets and the files still waiting for them.
    uploads: Vec<crate::upload::TargetStatus>,
    /// SIEM forwarding, when configured.
    siem: Option<SiemStatus>,
    /// The hash chain's newest value: an anchor to keep off this host.
    chain: Option<ChainStatus>,
    /// Id of the seal MAC key (`hmac_key_file`), when one is configured.
    mac_key_id: Option<String>,
    /// The outcome of the last `verify` of the data directory.
    last_verify: Option<super::verify::LastVerify>,
    /// With `--check`: the exit status and what needs attention.
    #[serde(skip_serializing_if = "Option::is_none")]
    check: Option<Check>,
}

/// What `status --check` found.
#[derive(Debug, Serialize)]
struct Check {
    /// The exit status: the lowest code of the problems, 0 when none.
    status: u8,
    problems: Vec<Problem>,
}

/// One thing that needs attention, with the exit status it gives.
#[derive(Debug, Serialize)]
struct Problem {
    code: u8,
    check: &'static str,
    message: String,
}

/// Exit statuses of `status --check` (README "Monitoring"): when several
/// problems are found, the lowest code is the exit status.
pub const SERVICE_DOWN: u8 = 10;
pub const VERIFY_FAILED: u8 = 11;
pub const UPLOADS_FAILING: u8 = 12;
pub const SIEM_FAILING: u8 = 13;
pub const SCHEDULE_FAILED: u8 = 14;

/// The problems `status --check` reports for `st`.
fn problems(st: &Status, args: &StatusArgs) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut add = |code, check, message: String| out.push(Problem { code, check, message });
    if st.service.is_none() && !args.allow_stopped {
        add(SERVICE_DOWN, "service", format!("the service is not running on {}", st.data_dir));
    }
    if let Some(v) = st.last_verify.as_ref().filter(|v| !v.ok) {
        let first = v.first.as_deref().map(|f| format!("; first: {f}")).unwrap_or_default();
        add(VERIFY_FAILED, "verify", format!("the last verify ({}) found {} problem(s){first}", v.time, v.problems));
    }
    for u in st.uploads.iter().filter(|u| u.enabled) {
        if let Some(max) = args.max_upload_pending.filter(|m| u.pending > *m) {
            add(UPLOADS_FAILING, "uploads", format!("{} file(s) wait for target {} (max {max})", u.pending, u.name));
        }
    }
    for s in st.schedules.iter().filter(|s| s.enabled) {
        let Some(r) = s.last_run.as_ref().filter(|r| r.outcome == crate::schedules::RunOutcome::Failed) else {
            continue;
        };
        let (code, check) =
            if s.job == "upload" { (UPLOADS_FAILING, "uploads") } else { (SCHEDULE_FAILED, "schedules") };
        add(code, check, format!("the last run of schedule {} ({}, {}) failed: {}", s.name, s.job, r.start, r.error));
    }
    for e in &st.schedule_errors {
        add(SCHEDULE_FAILED, "schedules", format!("not loaded: {e}"));
    }
    if let Some(si) = st.siem.as_ref().filter(|s| s.enabled) {
        if let Some(e) = &si.last_error {
            let since = si.last_error_time.as_deref().unwrap_or("?");
            add(SIEM_FAILING, "siem", format!("forwarding to {} fails ({since}): {e}", si.receiver));
        }
        if let Some(max) = args.max_siem_lag.filter(|m| si.lag > *m) {
            add(
                SIEM_FAILING,
                "siem",
                format!("forwarding to {} is {} records behind (max {max})", si.receiver, si.lag),
            );
        }
    }
    out
}

#[derive(Debug, Serialize)]
struct ChainStatus {
    /// Id of the newest record.
    id: u64,
    /// Its chain value.
    value: String,
    /// `id:value`, as `verify --anchor` takes it.
    anchor: String,
}

#[derive(Debug, Serialize)]
struct SiemStatus {
    receiver: String,
    enabled: bool,
    format: String,
    /// The first id not yet known to be delivered.
    next_id: u64,
    /// Records accepted but not yet sent.
    lag: u64,
    sent: u64,
    last_sent: Option<String>,
    last_error: Option<String>,
    last_error_time: Option<String>,
    /// The last chain anchor sent to the receiver.
    last_anchor: Option<SiemAnchorStatus>,
    /// Records gone from the log before they could be forwarded.
    lost: u64,
    last_lost: Option<String>,
}

#[derive(Debug, Serialize)]
struct SiemAnchorStatus {
    /// The record it names.
    id: u64,
    /// That record's chain value.
    value: String,
    /// `id:value`, as `verify --anchor` takes it.
    anchor: String,
    /// When it was sent.
    time: String,
}

#[derive(Debug, Serialize)]
struct ServiceStatus {
    pid: u32,
    socket: String,
}

#[derive(Debug, Serialize)]
struct ActiveStatus {
    path: String,
    first_id: u64,
    records: u64,
}

pub fn run(ctx: &Ctx, args: StatusArgs) -> Result<ExitCode> {
    let mut st = gather(ctx)?;
    if args.check {
        let problems = problems(&st, &args);
        st.check = Some(Check { status: problems.iter().map(|p| p.code).min().unwrap_or(0), problems });
    }
    let code = ExitCode::from(st.check.as_ref().map_or(0, |c| c.status));
    // The status of a check is the answer: a reader that stops reading
    // early (`| head -1`) must not turn it into success.
    match print(ctx, &st, args.json) {
        Err(e) if crate::error::is_stdout_closed(&e) => Ok(code),
        r => r.map(|()| code),
    }
}

/// What `status --json` prints (without `check`), for the web console.
pub fn json(ctx: &Ctx) -> Result<serde_json::Value> {
    Ok(serde_json::to_value(gather(ctx)?)?)
}

fn gather(ctx: &Ctx) -> Result<Status> {
    let (schedules, schedule_errors) = super::schedules::collect(ctx, 1);
    // Files by name; only the oldest and the newest two are opened, so the
    // cost does not grow with the history.
    let names = reader::list_names(&ctx.layout)?;
    let count = |kind| names.iter().filter(|n| n.kind == kind).count();
    let (sealed_files, archived_files) = (count(FileKind::Sealed), count(FileKind::Archived));
    let mut back = reader::Backwards::over(&ctx.layout, names.clone());
    let mut newest = Vec::new();
    for _ in 0..2 {
        if let Some(f) = back.older()? {
            newest.insert(0, f);
        }
    }
    let mut oldest = None;
    for n in &names {
        if let Some(f) = reader::resolve(&ctx.layout, n)? {
            oldest = Some(f);
            break;
        }
    }
    let (last, head) = reader::last_record(&ctx.layout, &newest)?;
    let from = reader::circular_from(last, ctx.config.capacity);
    // The active file is the newest, so its records run from its first id to `last`.
    let active = newest.iter().find(|f| f.kind == FileKind::Active).map(|f| ActiveStatus {
        path: f.path.display().to_string(),
        first_id: f.first_id,
        records: (last + 1).saturating_sub(f.first_id),
    });
    let st = Status {
        data_dir: ctx.layout.data_dir.display().to_string(),
        host: ctx.host.clone(),
        capacity: ctx.config.capacity,
        next_id: last + 1,
        circular_records: if last == 0 { 0 } else { last - from + 1 },
        oldest_id: oldest.map_or(0, |f| f.first_id.min(last)),
        active_file: active,
        sealed_files,
        archived_files,
        service: crate::service::running_pid(&ctx.layout).map(|pid| ServiceStatus {
            pid,
            socket: crate::service::ingest_socket_path(&ctx.layout, &ctx.config).display().to_string(),
        }),
        dropped: crate::config::mask::read_dropped(&ctx.layout)?,
        event_mask: ctx.config.event_mask.clone(),
        schedules,
        schedule_errors,
        // Without targets there is nothing to count (and no listing to make).
        uploads: if ctx.config.targets.is_empty() {
            Vec::new()
        } else {
            crate::upload::status(&ctx.layout, &ctx.config)?
        },
        chain: head.filter(|_| last > 0).map(|c| {
            let value = crate::store::chain::hex(&c);
            ChainStatus { id: last, anchor: format!("{last}:{value}"), value }
        }),
        mac_key_id: match ctx.config.mac_key() {
            Ok(k) => k.map(|k| k.id().to_owned()),
            Err(e) => Some(format!("unreadable: {e:#}")),
        },
        siem: match &ctx.config.siem {
            Some(cfg) => {
                let state = crate::siem::read_state(&ctx.layout)?.unwrap_or_default();
                let next_id = if state.next_id == 0 { last + 1 } else { state.next_id };
                let send_next = if state.send_next == 0 { next_id } else { state.send_next };
                Some(SiemStatus {
                    receiver: cfg.describe(),
                    enabled: cfg.enabled,
                    format: cfg.format.to_string(),
                    next_id,
                    lag: (last + 1).saturating_sub(send_next),
                    sent: state.sent,
                    last_sent: state.last_sent,
                    last_error: state.last_error,
                    last_error_time: state.last_error_time,
                    lost: state.lost,
                    last_lost: state.last_lost,
                    last_anchor: state.last_anchor.map(|a| SiemAnchorStatus {
                        id: a.id,
                        anchor: a.anchor(),
                        value: a.value,
                        time: a.time,
                    }),
                })
            }
            None => None,
        },
        last_verify: super::verify::last(&ctx.layout),
        check: None,
    };
    Ok(st)
}

fn print(ctx: &Ctx, st: &Status, json: bool) -> Result<()> {
    if json {
        crate::outln!("{}", serde_json::to_string_pretty(st)?)?;
        return Ok(());
    }
    crate::outln!("data directory   {}", st.data_dir)?;
    crate::outln!("host             {}", st.host)?;
    crate::outln!("next id          {}", st.next_id)?;
    crate::outln!("circular log     {} of {} records", st.circular_records, st.capacity)?;
    match &st.active_file {
        Some(a) => println!("active file      {} ({} records from id {})", a.path, a.records, a.first_id),
        None => println!("active file      none yet"),
    }
    crate::outln!("sealed files     {}", st.sealed_files)?;
    crate::outln!("archived files   {}", st.archived_files)?;
    match &st.chain {
        Some(c) => println!("chain head       {}", c.anchor),
        None => println!("chain head       none yet"),
    }
    if let Some(k) = &st.mac_key_id {
        crate::outln!("seal MAC key id  {k}")?;
    }
    match &st.service {
        Some(s) => println!("service          running (pid {}, socket {})", s.pid, s.socket),
        None => println!("service          not running"),
    }
    let dropped: u64 = st.dropped.values().sum();
    crate::outln!("event mask       {} ({dropped} records dropped)", st.event_mask)?;
    for (cat, n) in &st.dropped {
        crate::outln!("  dropped        {n} {cat}")?;
    }
    crate::outln!("schedules        {} ({})", st.schedules.len(), ctx.schedules_dir.display())?;
    for s in &st.schedules {
        let next = s.next.first().map_or("disabled", String::as_str);
        let last = match &s.last_run {
            Some(r) => match &r.planned {
                Some(p) => format!("last {} {} (planned {p})", r.outcome, r.start),
                None => format!("last {} {}", r.outcome, r.start),
            },
            None => "never run".into(),
        };
        crate::outln!("  {:<20} {:<8} next {next}; {last}", s.name, s.job)?;
        if let Some(r) = s.last_run.as_ref().filter(|r| !r.error.is_empty()) {
            crate::outln!("  {:<20} error: {}", "", r.error)?;
        }
    }
    for e in &st.schedule_errors {
        crate::outln!("  not loaded: {e}")?;
    }
    let pending: usize = st.uploads.iter().filter(|u| u.enabled).map(|u| u.pending).sum();
    crate::outln!("upload targets   {} ({pending} file uploads pending)", st.uploads.len())?;
    for u in &st.uploads {
        let last = u.last_upload.as_deref().map_or("never".to_owned(), |t| format!("last {t}"));
        let state = if u.enabled { "" } else { " [disabled]" };
        crate::outln!(
            "  {:<20} {}{state}: {} uploaded, {} pending; {last}",
            u.name,
            u.endpoint,
            u.uploaded,
            u.pending
        )?;
    }
    if let Some(si) = &st.siem {
        let state = if si.enabled { "" } else { " [disabled]" };
        crate::outln!(
            "siem             {} {}{state}: next id {}, {} behind, {} sent",
            si.receiver,
            si.format,
            si.next_id,
            si.lag,
            si.sent
        )?;
        if let Some(a) = &si.last_anchor {
            crate::outln!("  last anchor    {} ({})", a.anchor, a.time)?;
        }
        if let Some(e) = &si.last_error {
            crate::outln!("  last error     {} ({})", e, si.last_error_time.as_deref().unwrap_or("?"))?;
        }
        if si.lost > 0 {
            crate::outln!("  NOT FORWARDED  {} record(s); last: {}", si.lost, si.last_lost.as_deref().unwrap_or("?"))?;
        }
    }
    match &st.last_verify {
        Some(v) if v.ok => crate::outln!("last verify      OK ({})", v.time)?,
        Some(v) => crate::outln!("last verify      FAILED ({}): {} problem(s)", v.time, v.problems)?,
        None => crate::outln!("last verify      never (of this data directory)")?,
    }
    if let Some(c) = &st.check {
        if c.problems.is_empty() {
            crate::outln!("check            OK")?;
        } else {
            crate::outln!("check            {} problem(s), exit {}", c.problems.len(), c.status)?;
        }
        for p in &c.problems {
            crate::outln!("  {:<14} {}", p.check, p.message)?;
        }
    }
    Ok(())
}
