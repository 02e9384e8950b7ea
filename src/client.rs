//! The CLI's side of a running service: records go through the ingest
//! socket and `rotate`/`reload` through the control socket, because the
//! service holds the log. With no service running, commands work on the data
//! directory directly.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};

use crate::app::Ctx;
use crate::error::{Kind, ServiceLink, failure};
use crate::protocol::{Answer, parse_answer};
use crate::service;

/// How long to wait for a service that is starting to open its socket.
const STARTING: Duration = Duration::from_secs(5);

/// The ingest socket of the running service, or `None` when no service runs.
pub fn ingest(ctx: &Ctx) -> Result<Option<UnixStream>> {
    let path = service::ingest_socket_path(&ctx.layout, &ctx.config);
    let deadline = Instant::now() + STARTING;
    loop {
        match UnixStream::connect(&path) {
            Ok(s) => return Ok(Some(s)),
            Err(e) => {
                let Some(pid) = service::running_pid(&ctx.layout) else { return Ok(None) };
                if Instant::now() >= deadline {
                    return Err(failure(
                        Kind::Temporary,
                        format!(
                            "audit-trail serve (pid {pid}) runs on {} but its socket {} cannot be reached: {e}; \
                             nothing was stored, try again later",
                            ctx.layout.data_dir.display(),
                            path.display()
                        ),
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Sends a control command to the running service. `None` when no service
/// runs; an error when it runs and the command failed.
pub fn control(ctx: &Ctx, command: &str) -> Result<Option<String>> {
    control_request(ctx, &serde_json::json!({ "command": command }))
}

/// Sends a control request (a JSON object with `command`) to the running
/// service; `None` when no service runs.
pub fn control_request(ctx: &Ctx, request: &serde_json::Value) -> Result<Option<String>> {
    let Some(pid) = service::running_pid(&ctx.layout) else { return Ok(None) };
    let path = service::control_socket_path(&ctx.layout);
    let deadline = Instant::now() + STARTING;
    let stream = loop {
        match UnixStream::connect(&path) {
            Ok(s) => break s,
            Err(e) if Instant::now() >= deadline => {
                bail!(
                    "audit-trail serve (pid {pid}) runs but its control socket {} cannot be reached: {e}",
                    path.display()
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let mut w = &stream;
    writeln!(w, "{request}").map_err(|e| link(e, "cannot reach the service"))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).map_err(|e| link(e, "no answer from the service"))?;
    let v: serde_json::Value =
        serde_json::from_str(&line).map_err(|_| anyhow!("the service gave an answer that is not JSON: {line:?}"))?;
    if v.get("ok").and_then(serde_json::Value::as_bool) == Some(true) {
        Ok(Some(v.get("message").and_then(|m| m.as_str()).unwrap_or_default().to_owned()))
    } else {
        bail!("{}", v.get("error").and_then(|m| m.as_str()).unwrap_or("the service refused the command"))
    }
}

/// Sends request lines and collects one answer per non-blank line, writing
/// and reading at once so a large input never fills both socket buffers.
///
/// Fails with [`Kind::Temporary`] when the service refused the connection
/// before reading anything (every answer a retryable error, then the end), and
/// with [`Kind::Unknown`] when it stopped answering or closed the connection
/// after requests were sent: those may or may not be stored.
///
/// `timeout` bounds the wait for each answer.
pub fn submit(stream: UnixStream, input: &[u8], timeout: Duration, mut on_answer: impl FnMut(Answer)) -> Result<usize> {
    let expected = input
        .split(|&b| b == b'\n')
        .filter(|l| !l.strip_suffix(b"\r").unwrap_or(l).iter().all(u8::is_ascii_whitespace))
        .count();
    stream.set_read_timeout(Some(timeout)).map_err(|e| link(e, "cannot set a timeout on the socket"))?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| link(e, "cannot set a timeout on the socket"))?;
    let mut w = stream.try_clone().map_err(|e| link(e, "cannot use the socket"))?;
    std::thread::scope(|s| -> Result<usize> {
        let writer = s.spawn(move || -> std::io::Result<()> {
            w.write_all(input)?;
            if !input.ends_with(b"\n") && !input.is_empty() {
                w.write_all(b"\n")?;
            }
            w.shutdown(std::net::Shutdown::Write)
        });
        let mut rd = BufReader::with_capacity(256 * 1024, &stream);
        let mut line = String::new();
        let (mut n, mut refused_retry) = (0, 0);
        let mut lost = None;
        while n < expected {
            line.clear();
            match rd.read_line(&mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    lost = Some(e);
                    break;
                }
            }
            let a = parse_answer(line.trim_end());
            if matches!(a, Answer::Error { retry: true, .. }) {
                refused_retry += 1;
            }
            on_answer(a);
            n += 1;
        }
        // Once every answer is in, how the sending side ended does not matter
        // (the service may close early after refusing everything).
        let sent = writer.join().map_err(|_| anyhow!("the sending thread failed"))?;
        if n == expected {
            return Ok(n);
        }
        if n > 0 && refused_retry == n {
            // The service refused the connection ("too many clients") and closed it.
            return Err(failure(
                Kind::Temporary,
                format!(
                    "the service refused the connection; nothing of the remaining {} line(s) was stored; try again later",
                    expected - n
                ),
            ));
        }
        let why = match (lost, sent) {
            (Some(e), _) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                format!("the service gave no answer for {} s", timeout.as_secs())
            }
            (Some(e), _) => format!("lost the connection to the service: {e}"),
            (None, Err(e)) => format!("the service closed the connection: {e}"),
            (None, Ok(())) => "the service closed the connection".to_owned(),
        };
        Err(failure(
            Kind::Unknown,
            format!(
                "{why} after {n} of {expected} answers; the {} unanswered record(s) may or may not be stored \
                 (check with `audit-trail export` before sending them again)",
                expected - n
            ),
        ))
    })
}

/// An I/O error on the service's socket, never taken for a closed stdout.
fn link(e: std::io::Error, what: &str) -> anyhow::Error {
    anyhow::Error::new(e).context(ServiceLink(what.to_owned()))
}
