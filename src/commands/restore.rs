//! `restore BUNDLE [--force]`: restore a bundle into the data directory and verify it.

use std::process::ExitCode;

use anyhow::Result;

use super::Ctx;
use crate::cli::RestoreArgs;

pub fn run(ctx: &Ctx, args: RestoreArgs) -> Result<ExitCode> {
    let report = crate::backup::restore(&args.bundle, &ctx.layout.data_dir, args.force)?;
    for n in &report.verify.notes {
        eprintln!("audit-trail: note: {n}");
    }
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}
