//! `restore BUNDLE [--force]`: restore a bundle into the data directory,
//! verify it, and record the restore in the restored log.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::app::Ctx;
use crate::cli::RestoreArgs;
use crate::selfaudit::{self, Event};
use crate::store::writer::Log;

pub fn run(ctx: &Ctx, args: RestoreArgs) -> Result<ExitCode> {
    let report = crate::maintenance::backup::restore(&args.bundle, &ctx.layout.data_dir, args.force)?;
    for n in &report.verify.notes {
        tracing::info!("{n}");
    }
    crate::outln!("{report}")?;
    // The configuration in effect: the one kept from the replaced directory,
    // or none (the bundle's is only set beside, see `backup`).
    let (cfg, _) = ctx.reload_config().context("the restored configuration does not load")?;
    let host = cfg.host();
    let (mut log, notes) = Log::open(&ctx.layout, &host, cfg.capacity, ctx.clock.clone(), cfg.mac_key()?)?;
    for n in notes {
        tracing::warn!("{}", n.replace(crate::store::writer::GAP_LOST, crate::store::writer::GAP_REPLACED));
    }
    let name =
        args.bundle.file_name().map_or_else(|| args.bundle.display().to_string(), |n| n.to_string_lossy().into());
    let mut data = format!("data directory {} restored from bundle {name}", ctx.layout.data_dir.display());
    if args.force {
        data.push_str(" (replacing its previous contents)");
    }
    // Ids skipped here are those the replaced directory had handed out: said
    // so, which is also how `verify` tells this gap from lost records.
    let mut events: Vec<Event> = log
        .take_incidents()
        .into_iter()
        .map(|i| i.replace(crate::store::writer::GAP_LOST, crate::store::writer::GAP_REPLACED))
        .map(|i| Event::new("Log", "Integrity", i).failed())
        .collect();
    events.push(Event::new("Restore", "Restore", data));
    let (_, id) =
        selfaudit::append_to(&mut log, &events, &host, &*ctx.clock)?.context("the restore could not be recorded")?;
    crate::outln!("recorded the restore as id {id}")?;
    Ok(ExitCode::SUCCESS)
}
