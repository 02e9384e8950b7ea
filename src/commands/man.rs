//! `man [--dir DIR]`: manual pages generated from the clap definitions (the
//! same text as `--help`), with the examples of each command's long help in
//! an EXAMPLES section, and on the main page the exit status, environment
//! and files an operator needs.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{ManArgs, Opts};

pub fn run(args: &ManArgs) -> Result<ExitCode> {
    let mut cmd = Opts::command().disable_help_subcommand(true);
    cmd.build();
    match &args.dir {
        None => {
            let mut page = Vec::new();
            render(&cmd, true, &mut page)?;
            std::io::stdout().lock().write_all(&page)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            write_pages(&cmd, true, dir)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the page of `cmd` and of each of its subcommands, recursively.
fn write_pages(cmd: &clap::Command, main: bool, dir: &Path) -> Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, false, dir)?;
    }
    let man = clap_mangen::Man::new(cmd.clone());
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    render(cmd, main, &mut page)?;
    std::fs::write(&path, page).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The page of `cmd`, in ASCII: characters beyond it (an ellipsis, an arrow
/// in the help text) become groff's `\[uXXXX]`, so the page renders the same
/// with or without preconv (`man -l` runs it, `groff -man` does not).
fn render(cmd: &clap::Command, main: bool, w: &mut Vec<u8>) -> Result<()> {
    let mut page = Vec::new();
    render_utf8(cmd, main, &mut page)?;
    for c in String::from_utf8(page)?.chars() {
        if c.is_ascii() {
            w.push(c as u8);
        } else {
            write!(w, "\\[u{:04X}]", u32::from(c))?;
        }
    }
    Ok(())
}

fn render_utf8(cmd: &clap::Command, main: bool, w: &mut Vec<u8>) -> Result<()> {
    let man = clap_mangen::Man::new(cmd.clone()).manual("audit-trail manual");
    man.render_title(w)?;
    man.render_name_section(w)?;
    man.render_synopsis_section(w)?;
    man.render_description_section(w)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(w)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(w)?;
    }
    if let Some(text) = cmd.get_after_long_help() {
        examples(&text.to_string(), w)?;
    }
    if main {
        w.write_all(MAIN_SECTIONS.as_bytes())?;
    }
    if cmd.get_version().is_some() || main {
        man.render_version_section(w)?;
    }
    Ok(())
}

/// The examples of a long help as an EXAMPLES section: command lines kept
/// as they are (no fill), other lines as text.
fn examples(text: &str, w: &mut Vec<u8>) -> Result<()> {
    writeln!(w, ".SH EXAMPLES")?;
    let mut in_commands = false;
    for line in text.lines().filter(|l| *l != "Examples:") {
        let command = line.starts_with("  ");
        if command != in_commands {
            writeln!(w, "{}", if command { ".PP\n.nf\n.RS 4" } else { ".RE\n.fi\n.PP" })?;
            in_commands = command;
        }
        writeln!(w, "{}", roff_escape(if command { line.trim_start() } else { line }))?;
    }
    if in_commands {
        writeln!(w, ".RE\n.fi")?;
    }
    Ok(())
}

/// Text as a roff line: backslashes escaped, hyphens as minus signs (so
/// flags can be copied), and a leading `.` or `'` made literal.
fn roff_escape(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 8);
    if line.starts_with('.') || line.starts_with('\'') {
        out.push_str("\\&");
    }
    for c in line.chars() {
        match c {
            '\\' => out.push_str("\\e"),
            '-' => out.push_str("\\-"),
            _ => out.push(c),
        }
    }
    out
}

/// Sections of the main page only.
const MAIN_SECTIONS: &str = r#".SH "EXIT STATUS"
.TP
0
success
.TP
1
failed for another reason (the message says why)
.TP
2
usage error, or the configuration cannot be read or is invalid
.TP
3
verify: files were altered, are missing or damaged
.TP
4
the input was refused; nothing of it was stored
.TP
5
the service stopped answering after the request was sent: the records may or may not be stored
.TP
75
temporary failure; nothing was stored and the same request can succeed later
.TP
10\(en14
status \-\-check: 10 service not running, 11 last verify failed, 12 uploads failing, 13 SIEM forwarding failing or lagging, 14 a schedule failed or cannot be loaded (the lowest applies)
.SH ENVIRONMENT
.TP
.B AUDIT_TRAIL_DATA
the data directory (\-\-data\-dir)
.TP
.B AUDIT_TRAIL_CONFIG
the configuration file (\-\-config)
.TP
.B AUDIT_TRAIL_TIMEOUT
seconds to wait for each answer of the service (\-\-timeout)
.SH FILES
.TP
.I /etc/audit\-trail/audit\-trail.toml
the configuration of the packaged service
.TP
.I /etc/audit\-trail/schedules/
its schedules, one TOML file each
.TP
.I /var/lib/audit\-trail/
its data directory: sealed files, archive, backups, state
.SH "SEE ALSO"
.BR systemctl (1),
.BR journalctl (1)
"#;
