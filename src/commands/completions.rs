//! `completions SHELL`: a completion script generated from the clap
//! definitions, so it always knows every command and flag of this version.

use std::process::ExitCode;

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::{CompletionsArgs, Opts};

pub fn run(args: &CompletionsArgs) -> Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Opts::command(), "audit-trail", &mut script);
    if args.shell == clap_complete::Shell::Bash {
        script = fix_bash_state_names(&script);
    }
    // Written as one block that reports a closed pipe instead of panicking.
    use std::io::Write as _;
    std::io::stdout().lock().write_all(&script)?;
    Ok(ExitCode::SUCCESS)
}

/// clap_complete's bash script spells the state of a subcommand of a
/// hyphenated program two ways (`audit__trail__subcmd__status` where it is
/// set, `audit__subcmd__trail__subcmd__status` where it is matched), so no
/// flag of a subcommand ever completes (clap-rs/clap#6421). One spelling
/// makes them agree.
fn fix_bash_state_names(script: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(script).replace("audit__subcmd__trail", "audit__trail").into_bytes()
}
