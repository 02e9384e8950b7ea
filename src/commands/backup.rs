//! `backup [--out DIR] [--keep N]`: write a bundle of the data directory.

use std::process::ExitCode;

use anyhow::Result;

use crate::app::Ctx;
use crate::cli::BackupArgs;
use crate::maintenance::backup::{self, BackupOptions};

pub fn run(ctx: &Ctx, args: BackupArgs) -> Result<ExitCode> {
    let opts = BackupOptions {
        out_dir: args.out,
        keep: args.keep,
        config_file: Some(ctx.config_path.clone()),
        schedules_dir: Some(ctx.schedules_dir.clone()),
        host: ctx.host.clone(),
    };
    let report = backup::backup(&ctx.layout, &ctx.config, &opts, ctx.clock.as_ref())?;
    crate::outln!("{report}")?;
    Ok(ExitCode::SUCCESS)
}
