//! `restore BUNDLE [--force]`: restore a bundle into the data directory and verify it.

use std::process::ExitCode;

use anyhow::Result;

use super::Ctx;
use crate::cli::RestoreArgs;

pub fn run(ctx: &Ctx, args: RestoreArgs) -> Result<ExitCode> {
    let _ = (ctx, args);
    anyhow::bail!("not yet")
}
