//! `view [PATH…]`: verify files, then serve the read-only web view on loopback.

use std::process::ExitCode;

use anyhow::Result;

use crate::app::Ctx;
use crate::cli::ViewArgs;
use crate::web::history::Source;

pub fn run(ctx: &Ctx, args: ViewArgs) -> Result<ExitCode> {
    let source = if args.paths.is_empty() { Source::DataDir(ctx.layout.clone()) } else { Source::Paths(args.paths) };
    crate::web::view(source, args.listen)?;
    Ok(ExitCode::SUCCESS)
}
