//! One module per command behind one dispatcher. Each command gets the
//! resolved [`Ctx`] (data directory, configuration, clock) and returns the
//! process exit code.

use std::process::ExitCode;

use anyhow::Result;

use crate::app::Ctx;
use crate::cli::{Command, Opts};

mod append;
mod archive;
mod backup;
mod completions;
mod config;
mod export;
mod man;
mod purge;
mod restore;
mod rotate;
mod schedules;
mod show;
mod siem;
pub(crate) mod status;
mod test_target;
mod upload;
mod user;
pub(crate) mod verify;
mod view;

pub fn run(opts: Opts) -> Result<ExitCode> {
    // Commands that must work whatever the configuration holds.
    match &opts.command {
        Command::Config(a) => return config::run(&opts.settings(), &a.command),
        Command::Completions(a) => return completions::run(a),
        Command::Man(a) => return man::run(a),
        _ => {}
    }
    let ctx = Ctx::new(&opts.settings())?;
    match opts.command {
        Command::Append(a) => append::run(&ctx, *a),
        Command::Show(a) => show::run(&ctx, a),
        Command::Export(a) => export::run(&ctx, a),
        Command::Rotate => rotate::run(&ctx),
        Command::Verify(a) => verify::run(&ctx, a),
        Command::View(a) => view::run(&ctx, a),
        Command::User(a) => user::run(&ctx, a),
        Command::Keygen(a) => {
            let key = crate::store::chain::generate_key(&a.path)?;
            crate::outln!(
                "wrote {} (key id {}); set hmac_key_file to it and keep a copy off this host",
                a.path.display(),
                key.id()
            )?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status(a) => status::run(&ctx, a),
        Command::Serve => crate::service::run(&ctx),
        Command::Schedules(a) => schedules::run(&ctx, a),
        Command::Archive => archive::run(&ctx),
        Command::Purge => purge::run(&ctx),
        Command::Backup(a) => backup::run(&ctx, a),
        Command::Restore(a) => restore::run(&ctx, a),
        Command::Upload(a) => upload::run(&ctx, a),
        Command::Siem(a) => siem::run(&ctx, a),
        Command::TestTarget(a) => test_target::run(&ctx, a),
        Command::Config(_) | Command::Completions(_) | Command::Man(_) => {
            unreachable!("handled before the configuration is loaded")
        }
    }
}
