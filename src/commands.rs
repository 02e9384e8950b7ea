//! One module per command behind one dispatcher. Each command gets the
//! resolved [`Ctx`] (data directory, configuration, clock) and returns the
//! process exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;

use crate::cli::{Command, Opts};
use crate::config::{Config, Layout};
use crate::log::Log;
use crate::timestamp::{Clock, SystemClock};

mod append;
mod archive;
mod backup;
mod export;
mod purge;
mod restore;
mod rotate;
mod show;
mod status;
mod verify;

/// Everything a command needs, resolved once from flags, environment and file.
pub struct Ctx {
    pub layout: Layout,
    pub config: Config,
    pub host: String,
    pub clock: Arc<dyn Clock>,
    /// The configuration file in use (it may not exist).
    pub config_file: PathBuf,
    /// Where schedule files are read from.
    pub schedules_dir: PathBuf,
}

impl Ctx {
    pub fn from_opts(opts: &Opts) -> Result<Ctx> {
        let data_dir = opts.data_dir.clone().unwrap_or_else(|| PathBuf::from("audit-data"));
        let (config_path, explicit) = match &opts.config {
            Some(p) => (p.clone(), true),
            None => (data_dir.join("audit-trail.toml"), false),
        };
        let config = Config::load(&config_path, explicit)?;
        let host = config.host();
        let schedules_dir = opts
            .schedules
            .clone()
            .or_else(|| config.schedules_dir.clone())
            .unwrap_or_else(|| PathBuf::from("schedules"));
        Ok(Ctx {
            layout: Layout::new(&data_dir),
            config,
            host,
            clock: Arc::new(SystemClock),
            config_file: config_path,
            schedules_dir,
        })
    }

    /// Opens the log for writing, printing what recovery repaired.
    pub fn open_log(&self) -> Result<Log> {
        let (log, notes) = Log::open(&self.layout, &self.host, self.config.capacity, self.clock.clone())?;
        for n in notes {
            eprintln!("audit-trail: {n}");
        }
        Ok(log)
    }
}

pub fn run(opts: Opts) -> Result<ExitCode> {
    let ctx = Ctx::from_opts(&opts)?;
    match opts.command {
        Command::Append(a) => append::run(&ctx, *a),
        Command::Show(a) => show::run(&ctx, a),
        Command::Export(a) => export::run(&ctx, a),
        Command::Rotate => rotate::run(&ctx),
        Command::Verify(a) => verify::run(&ctx, a),
        Command::Status(a) => status::run(&ctx, a),
        Command::Archive => archive::run(&ctx),
        Command::Purge => purge::run(&ctx),
        Command::Backup(a) => backup::run(&ctx, a),
        Command::Restore(a) => restore::run(&ctx, a),
    }
}
