//! `verify [PATH…]`: check the data directory or any set of offboard files.

use std::process::ExitCode;

use anyhow::Result;

use super::Ctx;
use crate::cli::VerifyArgs;
use crate::verify;

pub fn run(ctx: &Ctx, args: VerifyArgs) -> Result<ExitCode> {
    let targets =
        if args.paths.is_empty() { verify::data_dir_targets(&ctx.layout)? } else { verify::path_targets(&args.paths)? };
    if targets.is_empty() {
        anyhow::bail!("no audit-trail files to verify");
    }
    let report = verify::verify(targets);
    for n in &report.notes {
        eprintln!("audit-trail: note: {n}");
    }
    let range = match (report.first_id, report.last_id) {
        (Some(a), Some(b)) => format!("ids {a}..{b}"),
        _ => "no records".into(),
    };
    if let Some(first) = report.problems.first() {
        for p in &report.problems {
            eprintln!("audit-trail: {p}");
        }
        eprintln!("audit-trail: verify FAILED: {} problem(s); first: {first}", report.problems.len());
        return Ok(ExitCode::FAILURE);
    }
    println!("OK: {} files, {} records, {range}", report.files, report.records);
    Ok(ExitCode::SUCCESS)
}
