//! `backup [--out DIR] [--keep N]`: write a bundle of the data directory.

use std::process::ExitCode;

use anyhow::Result;

use super::Ctx;
use crate::cli::BackupArgs;

pub fn run(ctx: &Ctx, args: BackupArgs) -> Result<ExitCode> {
    let _ = (ctx, args);
    anyhow::bail!("not yet")
}
