//! `user add|passwd|del|list`: the web console's accounts.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::app::Ctx;
use crate::cli::{RoleArg, UserArgs, UserCommand};
use crate::web::auth::{self, Accounts, Role};

fn role_of(r: RoleArg) -> Role {
    match r {
        RoleArg::Auditor => Role::Auditor,
        RoleArg::Operator => Role::Operator,
    }
}

/// The password from stdin's first line, or asked twice on the terminal.
fn password(from_stdin: bool) -> Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read the password from stdin")?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_string());
    }
    let a = rpassword::prompt_password("Password: ").context("cannot read the password (use --password-stdin)")?;
    let b = rpassword::prompt_password("Again: ").context("cannot read the password")?;
    if a != b {
        bail!("the two passwords differ");
    }
    Ok(a)
}

pub fn run(ctx: &Ctx, args: UserArgs) -> Result<ExitCode> {
    let path = args
        .accounts
        .or_else(|| ctx.config.web.as_ref().and_then(|w| w.accounts.clone()))
        .unwrap_or_else(|| auth::default_accounts_path(&ctx.layout.data_dir));
    let accounts = Accounts::new(path.clone());
    match args.command {
        UserCommand::Add { name, role, password_stdin } => {
            let role = role_of(role);
            // Checked before asking for a password.
            if accounts.read()?.iter().any(|a| a.name == name) {
                bail!("account {name:?} exists: use `audit-trail user passwd {name}`");
            }
            accounts.set(&name, Some(role), &password(password_stdin)?, false)?;
            crate::outln!("added {name} ({}) to {}", role.as_str(), path.display())?;
        }
        UserCommand::Passwd { name, role, password_stdin } => {
            let role = role.map(role_of);
            if !accounts.read()?.iter().any(|a| a.name == name) {
                bail!("no account {name:?} in {}", path.display());
            }
            accounts.set(&name, role, &password(password_stdin)?, true)?;
            crate::outln!("changed {name} in {}", path.display())?;
        }
        UserCommand::Del { name } => {
            accounts.delete(&name)?;
            crate::outln!("deleted {name} from {}", path.display())?;
        }
        UserCommand::List => {
            for a in accounts.read()? {
                crate::outln!("{}\t{}", a.name, a.role.as_str())?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
