//! `rotate`: seal the active file now.

use std::process::ExitCode;

use anyhow::Result;

use crate::app::Ctx;

pub fn run(ctx: &Ctx) -> Result<ExitCode> {
    // A running service holds the log: it does the rotation.
    if let Some(msg) = crate::client::control(ctx, "rotate")? {
        crate::outln!("{msg}")?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut log = ctx.open_log()?;
    match log.rotate()? {
        Some(s) => println!(
            "sealed {} (ids {}..{}, {} records)",
            s.path.display(),
            s.info.first_id,
            s.info.last_id,
            s.info.records
        ),
        None => println!("nothing to seal: the active file holds no record"),
    }
    Ok(ExitCode::SUCCESS)
}
