//! `test-target NAME`: check a target step by step and say what worked.

use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::app::Ctx;
use crate::cli::TestTargetArgs;

pub fn run(ctx: &Ctx, args: TestTargetArgs) -> Result<ExitCode> {
    let Some(cfg) = ctx.config.targets.get(&args.name) else {
        let names: Vec<&str> = ctx.config.targets.keys().map(String::as_str).collect();
        bail!(
            "no target {:?} in the configuration (targets: {})",
            args.name,
            if names.is_empty() { "none".to_owned() } else { names.join(", ") }
        );
    };
    crate::outln!("target {} ({}){}", args.name, cfg.describe(), if cfg.enabled { "" } else { " [disabled]" })?;
    let ok = crate::upload::test_target(cfg, &mut |s| {
        if s.ok {
            let _ = crate::outln!("  ok      {:<17} {}", s.name, s.detail);
        } else {
            let _ = crate::outln!("  FAILED  {:<17} {}", s.name, s.detail);
        }
    });
    if ok {
        crate::outln!("target {} works: uploads can reach it", args.name)?;
        Ok(ExitCode::SUCCESS)
    } else {
        tracing::error!("target {} does not work (see the FAILED step above)", args.name);
        Ok(ExitCode::FAILURE)
    }
}
