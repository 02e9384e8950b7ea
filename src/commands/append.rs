//! `append`: one record from flags, or JSON Lines from a file or stdin.
//!
//! JSON input is checked completely before anything is written: if any line
//! is bad, every bad line is reported and nothing is appended. The check runs
//! on all cores; the input is then parsed again while writing, so memory stays
//! at the size of the input however many records it holds.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use super::Ctx;
use crate::cli::AppendArgs;
use crate::log::Log;
use crate::record::{self, Defaults, FieldError, Record};
use crate::timestamp;
use crate::xml_write;

pub fn run(ctx: &Ctx, args: AppendArgs) -> Result<ExitCode> {
    let now = timestamp::format(&ctx.clock.now());
    let defaults = Defaults { now: &now, node: &ctx.host };
    match &args.json {
        Some(path) => append_json(ctx, path, &defaults),
        None => append_one(ctx, &args, &defaults),
    }
}

fn append_one(ctx: &Ctx, args: &AppendArgs, defaults: &Defaults<'_>) -> Result<ExitCode> {
    let mut rec = Record::default();
    for (slot, value) in rec.fields.iter_mut().zip(args.fields.values()) {
        *slot = value.map(Cow::Borrowed);
    }
    if let Err(errors) = record::validate(&mut rec, defaults) {
        for e in &errors {
            eprintln!("audit-trail: {}", flag_message(e));
        }
        bail!("record not appended");
    }
    let mut log = ctx.open_log()?;
    let (id, _) = log.append([rec])?.context("nothing appended")?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

/// Names the flag rather than the JSON field in single-record errors.
fn flag_message(e: &FieldError) -> String {
    let flag = e.field.and_then(|name| {
        let i = record::FIELDS.iter().position(|s| s.json == name)?;
        Some(crate::cli::FIELD_FLAG_NAMES[i])
    });
    match flag {
        Some(f) => format!("--{f}: {}", e.reason),
        None => e.to_string(),
    }
}

fn read_input(path: &std::path::Path) -> Result<Vec<u8>> {
    let mut input = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin().lock().read_to_end(&mut input).context("cannot read standard input")?;
    } else {
        input = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    }
    Ok(input)
}

/// The lines of the input with their 1-based numbers, skipping blank ones.
fn lines(input: &[u8], first_line: usize) -> impl Iterator<Item = (usize, &[u8])> {
    input.split(|&b| b == b'\n').enumerate().filter_map(move |(i, line)| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) { None } else { Some((first_line + i, line)) }
    })
}

fn parse_valid<'a>(line: &'a [u8], defaults: &Defaults<'_>) -> Result<Record<'a>, Vec<FieldError>> {
    let mut rec = record::parse_json_line(line).map_err(|e| vec![e])?;
    record::validate(&mut rec, defaults)?;
    Ok(rec)
}

/// Checks a chunk of the input; returns its record count and its errors.
fn check(chunk: &[u8], first_line: usize, defaults: &Defaults<'_>) -> (u64, Vec<(usize, FieldError)>) {
    let mut count = 0;
    let mut errors = Vec::new();
    for (n, line) in lines(chunk, first_line) {
        match parse_valid(line, defaults) {
            Ok(_) => count += 1,
            Err(es) => errors.extend(es.into_iter().map(|e| (n, e))),
        }
    }
    (count, errors)
}

/// Splits the input at line boundaries into chunks of about `size` bytes,
/// each with the number of its first line.
fn chunks(input: &[u8], size: usize) -> Vec<(&[u8], usize)> {
    let mut out = Vec::new();
    let (mut start, mut line) = (0, 1);
    while start < input.len() {
        let mut end = (start + size.max(1)).min(input.len());
        end = match memchr::memchr(b'\n', &input[end - 1..]) {
            Some(nl) => end + nl,
            None => input.len(),
        };
        out.push((&input[start..end], line));
        line += memchr::memchr_iter(b'\n', &input[start..end]).count();
        start = end;
    }
    out
}

/// Record bodies rendered from one chunk of input, ready for ids.
struct Rendered {
    bodies: Vec<u8>,
    ends: Vec<usize>,
}

fn render(chunk: &[u8], defaults: &Defaults<'_>) -> Result<Rendered, String> {
    let mut r = Rendered { bodies: Vec::with_capacity(chunk.len() * 2), ends: Vec::new() };
    for (n, line) in lines(chunk, 1) {
        let rec = parse_valid(line, defaults).map_err(|e| format!("line {n} changed between checks: {e:?}"))?;
        xml_write::record_body(&mut r.bodies, &rec);
        r.ends.push(r.bodies.len());
    }
    Ok(r)
}

/// Renders the input on `threads` workers, in windows, and appends the
/// records in input order. Each worker keeps at most two windows ahead, so
/// memory stays bounded whatever the input size.
fn append_parallel(log: &mut Log, input: &[u8], defaults: &Defaults<'_>, threads: usize) -> Result<Option<(u64, u64)>> {
    let windows = chunks(input, WINDOW);
    let mut app = log.begin()?;
    std::thread::scope(|s| -> Result<()> {
        let mut receivers = Vec::new();
        for k in 0..threads {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Rendered, String>>(2);
            receivers.push(rx);
            let mine: Vec<&[u8]> = windows.iter().skip(k).step_by(threads).map(|(c, _)| *c).collect();
            s.spawn(move || {
                for chunk in mine {
                    if tx.send(render(chunk, defaults)).is_err() {
                        return;
                    }
                }
            });
        }
        for i in 0..windows.len() {
            let rendered = receivers[i % threads]
                .recv()
                .map_err(|_| anyhow::anyhow!("a render worker stopped"))?
                .map_err(|e| anyhow::anyhow!(e))?;
            let mut start = 0;
            for &end in &rendered.ends {
                app.push_body(&rendered.bodies[start..end])?;
                start = end;
            }
        }
        Ok(())
    })?;
    app.commit()
}

/// Input bytes per rendering window.
const WINDOW: usize = 1 << 20;

fn append_json(ctx: &Ctx, path: &std::path::Path, defaults: &Defaults<'_>) -> Result<ExitCode> {
    let input = read_input(path)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let part = if input.len() < WINDOW { input.len() } else { input.len() / threads + 1 };
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks(&input, part)
            .into_iter()
            .map(|(chunk, first)| s.spawn(move || check(chunk, first, defaults)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| (0, Vec::new()))).collect()
    });
    let total: u64 = results.iter().map(|r| r.0).sum();
    let errors: Vec<_> = results.into_iter().flat_map(|r| r.1).collect();
    if !errors.is_empty() {
        let stderr = std::io::stderr();
        let mut err = stderr.lock();
        let mut bad_lines = 0;
        let mut last = 0;
        for (n, e) in &errors {
            if *n != last {
                bad_lines += 1;
                last = *n;
            }
            writeln!(err, "audit-trail: line {n}: {e}")?;
        }
        bail!("{bad_lines} invalid line(s) in the input; nothing was appended");
    }
    if total == 0 {
        println!("appended 0 records");
        return Ok(ExitCode::SUCCESS);
    }
    let mut log = ctx.open_log()?;
    let (first, last) = append_parallel(&mut log, &input, defaults, threads)?.context("nothing appended")?;
    if last - first + 1 != total {
        bail!("appended ids {first}..{last}, but the input held {total} records");
    }
    println!("appended {total} records: ids {first}..{last}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_input_at_line_boundaries() {
        let input = b"a\nbb\nccc\ndddd\ne";
        for size in 1..20 {
            let cs = chunks(input, size);
            let joined: Vec<u8> = cs.iter().flat_map(|(c, _)| c.iter().copied()).collect();
            assert_eq!(joined, input);
            for (c, first) in &cs {
                let expect =
                    1 + memchr::memchr_iter(b'\n', &input[..c.as_ptr() as usize - input.as_ptr() as usize]).count();
                assert_eq!(*first, expect);
            }
        }
    }

    #[test]
    fn blank_and_crlf_lines() {
        let got: Vec<_> = lines(b"x\r\n\n  \ny", 1).collect();
        assert_eq!(got, vec![(1, &b"x"[..]), (4, &b"y"[..])]);
    }
}
