//! `archive`: compress sealed files into `archive/`.

use std::process::ExitCode;

use anyhow::Result;

use crate::app::Ctx;

pub fn run(ctx: &Ctx) -> Result<ExitCode> {
    let report = crate::maintenance::archive::archive(&ctx.layout, ctx.clock.as_ref())?;
    for n in &report.notes {
        tracing::info!("{n}");
    }
    crate::outln!("{report}")?;
    match report.damage() {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}
