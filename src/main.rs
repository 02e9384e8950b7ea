use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Whatever the umask of whoever started it, files are never world-readable.
    audit_trail::fsx::restrict_umask();
    let opts = audit_trail::cli::Opts::parse();
    match audit_trail::commands::run(opts) {
        Ok(code) => code,
        Err(e) if audit_trail::error::is_stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("audit-trail: error: {e:#}");
            ExitCode::from(audit_trail::error::kind_of(&e).exit_code())
        }
    }
}
