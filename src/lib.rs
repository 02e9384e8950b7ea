//! audit-trail: an audit-trail archiver for telephony and unified-communications
//! systems. Records go into a circular log and hostname-named XML files that are
//! sealed every `capacity` records; see README.md for the whole picture and
//! ARCHITECTURE.md for how the modules below fit together.

mod app;
mod cli;
mod client;
mod commands;
mod config;
mod error;
mod export;
mod fsx;
#[cfg(test)]
mod fuzz;
mod logging;
mod maintenance;
mod protocol;
mod record;
mod schedules;
mod selfaudit;
mod service;
mod siem;
mod store;
mod timestamp;
mod tls;
mod upload;
mod web;

/// Runs the command line: parses the arguments, runs the command and returns
/// its exit status (the reason for a failure is printed on stderr, on one
/// line; README "Exit status").
pub fn main() -> std::process::ExitCode {
    use clap::Parser;
    // Whatever the umask of whoever started it, files are never world-readable.
    fsx::restrict_umask();
    let opts = cli::Opts::parse();
    logging::init(opts.verbose.min(9) as i8 - opts.quiet.min(9) as i8);
    match commands::run(opts) {
        Ok(code) => code,
        Err(e) if error::is_stdout_closed(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            logging::final_error(&format!("{e:#}"));
            std::process::ExitCode::from(error::kind_of(&e).exit_code())
        }
    }
}

/// The command-line definition (every command, flag and help text), for
/// tools that generate from it.
pub fn command() -> clap::Command {
    <cli::Opts as clap::CommandFactory>::command()
}

/// The stylesheet shipped next to sealed files (schema/audit-trail.xsl).
pub const STYLESHEET_XSL: &str = include_str!("../schema/audit-trail.xsl");
/// The schema of the file format (schema/audit-trail.xsd).
pub const SCHEMA_XSD: &str = include_str!("../schema/audit-trail.xsd");
