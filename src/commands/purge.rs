//! `purge`: apply retention (`retention_days`), and record what was removed.

use std::process::ExitCode;

use anyhow::Result;

use crate::app::Ctx;

pub fn run(ctx: &Ctx) -> Result<ExitCode> {
    let report = crate::maintenance::purge::purge(&ctx.layout, &ctx.config, ctx.clock.as_ref())?;
    for n in &report.notes {
        tracing::info!("{n}");
    }
    crate::outln!("{report}")?;
    if let Some(event) = crate::maintenance::purge::audit_event(&report) {
        ctx.record_events(&[event])?;
    }
    Ok(ExitCode::SUCCESS)
}
