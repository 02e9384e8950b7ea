//! What the service and the commands report on stderr: one line per event,
//! with a level, through `tracing`.
//!
//! Lines read `audit-trail: MESSAGE` (info), `audit-trail: warning: MESSAGE`,
//! `audit-trail: error: MESSAGE`, `audit-trail: debug: MESSAGE`. A message
//! never spans lines: line breaks and other control characters in it (from a
//! file name, a server's answer) are written as a space, so one event is one
//! line for `grep`, `journalctl` and log shippers.
//!
//! Under systemd (stderr is the journal stream named by `JOURNAL_STREAM`)
//! every line starts with its syslog priority, `<3>` error, `<4>` warning,
//! `<6>` info, `<7>` debug (sd-daemon(3)), so `journalctl -p warning` shows
//! the warnings and errors.
//!
//! Which levels are shown: info and above by default; `-q` warnings and
//! errors, `-qq` errors only; `-v` adds debug, `-vv` trace. `RUST_LOG`
//! (tracing-subscriber's `EnvFilter` syntax, e.g. `RUST_LOG=debug`), when
//! set, takes precedence over both.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the logger; `verbosity` is the count of `-v` minus that of `-q`.
pub fn init(verbosity: i8) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(default_level(verbosity).as_str()));
    let journal = stderr_is_journal();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .event_format(Line { journal })
        .try_init();
}

fn default_level(verbosity: i8) -> Level {
    match verbosity {
        i8::MIN..=-2 => Level::ERROR,
        -1 => Level::WARN,
        0 => Level::INFO,
        1 => Level::DEBUG,
        2..=i8::MAX => Level::TRACE,
    }
}

/// Whether stderr is the journal stream systemd connected it to
/// (`JOURNAL_STREAM=DEVICE:INODE` of that stream; systemd.exec(5)).
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else { return false };
    let Some((dev, ino)) = stream.split_once(':') else { return false };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else { return false };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else { return false };
    std::fs::File::from(fd).metadata().is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// The line that ends a failed command: always written, whatever the
/// filter, since the exit status alone does not say why (README "Exit
/// status").
pub fn final_error(message: &str) {
    let prefix = if stderr_is_journal() { "<3>" } else { "" };
    eprintln!("{prefix}audit-trail: error: {}", one_line(message));
}

/// The syslog priority of a level (RFC 5424 severities).
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

fn label(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error: ",
        Level::WARN => "warning: ",
        Level::INFO => "",
        Level::DEBUG => "debug: ",
        Level::TRACE => "trace: ",
    }
}

/// `text` on one line: every control character becomes a space.
pub fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') { ' ' } else { c }).collect()
}

struct Line {
    journal: bool,
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let level = *event.metadata().level();
        let mut message = String::new();
        ctx.field_format().format_fields(Writer::new(&mut message), event)?;
        if self.journal {
            write!(writer, "<{}>", priority(level))?;
        }
        writeln!(writer, "audit-trail: {}{}", label(level), one_line(&message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_always_one_line() {
        assert_eq!(one_line("a\nb\r\nc\u{2028}d\te\u{1b}[31m"), "a b  c d e [31m");
        assert_eq!(one_line("Zürich 東京"), "Zürich 東京");
    }

    #[test]
    fn levels_map_to_syslog_priorities_and_flags() {
        assert_eq!([Level::ERROR, Level::WARN, Level::INFO, Level::DEBUG].map(priority), [3, 4, 6, 7]);
        assert_eq!(
            [-3, -2, -1, 0, 1, 2, 9].map(default_level),
            [Level::ERROR, Level::ERROR, Level::WARN, Level::INFO, Level::DEBUG, Level::TRACE, Level::TRACE]
        );
    }
}
