//! `verify [PATH…]`: check the data directory or any set of offboard files.

use std::process::ExitCode;

use anyhow::Result;

use crate::app::Ctx;
use crate::cli::VerifyArgs;
use crate::store::chain::{self, MacKey};
use crate::store::verify;

pub fn run(ctx: &Ctx, args: VerifyArgs) -> Result<ExitCode> {
    let keys = args.keys.iter().map(|p| MacKey::load(p)).collect::<Result<Vec<_>>>()?;
    let targets =
        if args.paths.is_empty() { verify::data_dir_targets(&ctx.layout)? } else { verify::path_targets(&args.paths)? };
    if targets.is_empty() {
        anyhow::bail!("no audit-trail files to verify");
    }
    let opts = verify::Options { keys, anchors: args.anchors };
    let report = if args.paths.is_empty() {
        verify::verify(targets, &opts)
    } else {
        // Offboard files of several hosts: each host's ids and chain on their own.
        let mut reports = verify::verify_by_host(targets, &opts);
        if reports.len() > 1 {
            return several_hosts(reports, &opts, args.json);
        }
        reports.pop().map(|(_, r)| r).unwrap_or_default()
    };
    if args.paths.is_empty() {
        record(ctx, &report);
    }
    if args.json {
        let code = if report.problems.is_empty() { ExitCode::SUCCESS } else { tampered() };
        // The status is the verdict, even when the reader stops reading early.
        return match crate::outln!("{}", serde_json::to_string_pretty(&json(&report, &opts))?) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(code),
            r => r.map(|()| code).map_err(Into::into),
        };
    }
    for n in &report.notes {
        tracing::info!("{n}");
    }
    let range = match (report.first_id, report.last_id) {
        (Some(a), Some(b)) => format!("ids {a}..{b}"),
        _ => "no records".into(),
    };
    if let Some(first) = report.problems.first() {
        for p in &report.problems {
            tracing::error!("{p}");
        }
        tracing::error!("verify FAILED: {} problem(s); first: {first}", report.problems.len());
        return Ok(tampered());
    }
    let mut extra = String::new();
    if !opts.keys.is_empty() {
        extra.push_str(&format!(", {} sealed file(s) authenticated", report.authenticated));
    }
    if !opts.anchors.is_empty() {
        extra.push_str(&format!(", {} anchor(s) checked", opts.anchors.len()));
    }
    crate::outln!("OK: {} files, {} records, {range}{extra}", report.files, report.records)?;
    if let Some((id, value)) = report.chain_head {
        crate::outln!("chain head: {id}:{}", chain::hex(&value))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The verdict on files of several hosts: one line (or JSON object) per host.
fn several_hosts(reports: Vec<(String, verify::Report)>, opts: &verify::Options, json_out: bool) -> Result<ExitCode> {
    if !opts.anchors.is_empty() {
        anyhow::bail!("--anchor names one host's record: give the files of one host at a time");
    }
    let failed = reports.iter().any(|(_, r)| !r.problems.is_empty());
    let code = if failed { tampered() } else { ExitCode::SUCCESS };
    if json_out {
        let all: serde_json::Map<String, serde_json::Value> =
            reports.iter().map(|(h, r)| (h.clone(), json(r, opts))).collect();
        let v = serde_json::json!({ "ok": !failed, "hosts": all });
        return match crate::outln!("{}", serde_json::to_string_pretty(&v)?) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(code),
            r => r.map(|()| code).map_err(Into::into),
        };
    }
    for (host, r) in &reports {
        for p in &r.problems {
            tracing::error!("{host}: {p}");
        }
        match r.problems.first() {
            Some(first) => tracing::error!("{host}: verify FAILED: {} problem(s); first: {first}", r.problems.len()),
            None => {
                let range = match (r.first_id, r.last_id) {
                    (Some(a), Some(b)) => format!("ids {a}..{b}"),
                    _ => "no records".into(),
                };
                crate::outln!("{host}: OK: {} files, {} records, {range}", r.files, r.records)?;
                if let Some((id, value)) = r.chain_head {
                    crate::outln!("{host}: chain head: {id}:{}", chain::hex(&value))?;
                }
            }
        }
    }
    Ok(code)
}

fn json(report: &verify::Report, opts: &verify::Options) -> serde_json::Value {
    serde_json::json!({
        "ok": report.problems.is_empty(),
        "files": report.files,
        "records": report.records,
        "first_id": report.first_id,
        "last_id": report.last_id,
        "chain_head": report.chain_head.map(|(id, v)| serde_json::json!({"id": id, "value": chain::hex(&v)})),
        "keys": opts.keys.len(),
        "authenticated": report.authenticated,
        "anchors": opts.anchors.len(),
        "problems": report.problems.iter().map(|p| serde_json::json!({
            "path": p.path.display().to_string(),
            "record": p.record,
            "kind": p.kind.label(),
            "what": p.what,
        })).collect::<Vec<_>>(),
        "notes": report.notes,
    })
}

/// The exit status for files that did not verify.
fn tampered() -> ExitCode {
    ExitCode::from(crate::error::Kind::Tampered.exit_code())
}

/// The outcome of the last `verify` of the data directory, kept in
/// `state/verify.json` for `status --check`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct LastVerify {
    pub time: String,
    pub ok: bool,
    pub problems: usize,
    /// The first problem found, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
}

fn last_verify_path(layout: &crate::store::layout::Layout) -> std::path::PathBuf {
    layout.state.join("verify.json")
}

/// Keeps the outcome for `status --check`. Verifying is read-only for whoever
/// runs it (an auditor's account may not write here): a failure to keep it
/// is not an error of the verification.
fn record(ctx: &Ctx, report: &verify::Report) {
    if !ctx.layout.state.is_dir() {
        return;
    }
    let last = LastVerify {
        time: ctx.clock.now().to_rfc3339(),
        ok: report.problems.is_empty(),
        problems: report.problems.len(),
        first: report.problems.first().map(|p| p.to_string()),
    };
    if let Ok(bytes) = serde_json::to_vec_pretty(&last) {
        let _ = crate::fsx::write_atomic(&last_verify_path(&ctx.layout), &bytes);
    }
}

/// The outcome of the last `verify` of the data directory, if one was kept.
pub fn last(layout: &crate::store::layout::Layout) -> Option<LastVerify> {
    let bytes = std::fs::read(last_verify_path(layout)).ok()?;
    serde_json::from_slice(&bytes).ok()
}
