//! Error kinds, and the exit status each one gives.
//!
//! # Rules
//!
//! * Code below the commands returns `anyhow::Result` with context that says
//!   what failed and where. Where the *kind* of a failure matters to the
//!   caller (a script deciding whether to retry, an auditor telling tampering
//!   from a missing file), the error carries a [`Failure`] with its [`Kind`].
//! * A failure whose kind is not stated is classified from its causes: an
//!   I/O error that a later attempt can get past (disk full, quota, too many
//!   open files, interrupted, timed out) is [`Kind::Temporary`]; anything else
//!   is [`Kind::Failed`].
//! * An error answer to an append always means that nothing of it was stored
//!   (the one exception, a service that stops answering after the request was
//!   sent, has its own kind: [`Kind::Unknown`]).
//! * `main` prints the error chain once, on one line, and exits with
//!   [`Kind::exit_code`]. A closed standard output (`… | head`) is success.

use std::fmt;

/// What kind of failure ended a command. The exit status tells a script which
/// one it was; see the README's "Exit status".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Anything not covered below (exit 1).
    Failed,
    /// Bad flags, a configuration file that cannot be read or is invalid
    /// (exit 2; clap uses 2 for usage errors too).
    Config,
    /// Files were altered, are missing or damaged: `verify` found problems
    /// (exit 3).
    Tampered,
    /// The input was refused (an invalid record); nothing was stored, and
    /// sending the same input again fails the same way (exit 4).
    Invalid,
    /// The service did not answer after the request was sent: the records may
    /// or may not be stored. Check with `export` before sending again (exit 5).
    Unknown,
    /// Nothing was stored, and the same request can succeed later: disk full,
    /// the service is busy or stopping, a server cannot be reached (exit 75,
    /// EX_TEMPFAIL of sysexits.h).
    Temporary,
}

impl Kind {
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Failed => 1,
            Kind::Config => 2,
            Kind::Tampered => 3,
            Kind::Invalid => 4,
            Kind::Unknown => 5,
            Kind::Temporary => 75,
        }
    }
}

/// An error with a stated kind, carried in an `anyhow::Error` chain.
#[derive(Debug)]
pub struct Failure {
    pub kind: Kind,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// An `anyhow::Error` of the given kind.
pub fn failure(kind: Kind, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Failure { kind, message: message.into() })
}

/// The kind of an error: the first stated [`Failure`] in its chain, else
/// what its I/O causes say.
pub fn kind_of(e: &anyhow::Error) -> Kind {
    // `downcast_ref` sees context layers too; `chain` sees sources.
    if let Some(f) = e.downcast_ref::<Failure>().or_else(|| e.chain().find_map(|c| c.downcast_ref::<Failure>())) {
        return f.kind;
    }
    if e.chain().filter_map(|c| c.downcast_ref::<std::io::Error>()).any(io_is_temporary) {
        return Kind::Temporary;
    }
    Kind::Failed
}

/// I/O errors that a later attempt can get past.
pub fn io_is_temporary(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::StorageFull | K::QuotaExceeded | K::Interrupted | K::TimedOut | K::WouldBlock | K::ResourceBusy
    ) || matches!(e.raw_os_error(), Some(23 | 24)) // ENFILE, EMFILE
}

/// True when an error is only a closed standard output (`audit-trail export
/// | head`). Broken pipes anywhere else (the service's socket) are failures.
pub fn is_stdout_closed(e: &anyhow::Error) -> bool {
    if e.downcast_ref::<ServiceLink>().is_some() || e.chain().any(|c| c.downcast_ref::<ServiceLink>().is_some()) {
        return false;
    }
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<csv::Error>().is_some_and(
                |ce| matches!(ce.kind(), csv::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe),
            )
    })
}

/// Marks an error as coming from the connection to the service, so a broken
/// pipe there is never taken for a closed standard output.
#[derive(Debug)]
pub struct ServiceLink(pub String);

impl fmt::Display for ServiceLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServiceLink {}

/// `println!` that returns the write error instead of panicking, so a
/// reader that closes the pipe early (`audit-trail status | head -1`) ends
/// the command quietly (see [`is_stdout_closed`]).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn stated_kind_wins_over_io_cause() {
        let io = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let e = Err::<(), _>(io).context("writing").unwrap_err();
        assert_eq!(kind_of(&e), Kind::Temporary);
        let e = e.context(Failure { kind: Kind::Invalid, message: "bad".into() });
        assert_eq!(kind_of(&e), Kind::Invalid);
    }

    #[test]
    fn broken_pipe_to_the_service_is_not_a_closed_stdout() {
        let io = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let e = Err::<(), _>(io).context("writing the table").unwrap_err();
        assert!(is_stdout_closed(&e));
        let io = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let e = Err::<(), _>(io).context(ServiceLink("cannot send to the service".into())).unwrap_err();
        assert!(!is_stdout_closed(&e));
        assert_eq!(kind_of(&e), Kind::Failed);
    }

    #[test]
    fn exit_codes_are_distinct() {
        let all = [Kind::Failed, Kind::Config, Kind::Tampered, Kind::Invalid, Kind::Unknown, Kind::Temporary];
        let mut codes: Vec<u8> = all.iter().map(|k| k.exit_code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        assert!(all.iter().all(|k| k.exit_code() != 0));
    }
}
