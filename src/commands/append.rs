//! `append`: one record from flags, or JSON Lines from a file or stdin.
//!
//! JSON input is checked completely before anything is written: if any line
//! is bad, every bad line is reported and nothing is appended. The check runs
//! on all cores, block by block, while the input is copied into a spool file
//! in `state/tmp/`; the spool is then parsed again while writing. Neither pass
//! holds more than a few blocks, so memory does not grow with the input.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use std::collections::BTreeMap;

use crate::app::Ctx;
use crate::cli::AppendArgs;
use crate::client;
use crate::config::mask::{self, EventMask};
use crate::error::{Kind, failure};
use crate::protocol::Answer;
use crate::record::{self, Defaults, Field, FieldError, Record};
use crate::store::writer::Log;
use crate::timestamp;

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
    let reserved = rec.get(Field::AppName).is_some_and(record::is_reserved_app);
    if let Err(errors) = record::validate(&mut rec, defaults)
        .and_then(|()| if reserved { Err(vec![record::reserved_app_error()]) } else { Ok(()) })
    {
        for e in &errors {
            tracing::error!("{}", flag_message(e));
        }
        return Err(failure(Kind::Invalid, "record not appended"));
    }
    if let Some(stream) = client::ingest(ctx)? {
        let mut line = Vec::new();
        crate::export::json_line(&mut line, &rec);
        // The id is the archiver's to give: drop the placeholder.
        let line =
            [b"{".as_slice(), &line[line.iter().position(|&b| b == b',').map_or(line.len() - 2, |p| p + 1)..]].concat();
        let mut answer = None;
        client::submit(stream, &line, ctx.timeout, |a| answer = Some(a))?;
        return match answer.context("no answer from the service")? {
            Answer::Id(id) => {
                crate::outln!("{id}")?;
                Ok(ExitCode::SUCCESS)
            }
            Answer::Dropped(why) => {
                tracing::warn!("dropped: {why}");
                Ok(ExitCode::SUCCESS)
            }
            Answer::Error { message, retry } => {
                let kind = if retry { Kind::Temporary } else { Kind::Invalid };
                Err(failure(kind, format!("record not appended: {message}")))
            }
        };
    }
    let mut log = ctx.open_log_for_append()?;
    let mask = ctx.config.mask();
    if !mask.admits(rec.get(Field::Category)) {
        let c = rec.get(Field::Category).unwrap_or_default();
        mask::add_dropped(&ctx.layout, &BTreeMap::from([(c.trim().to_ascii_lowercase(), 1)]))?;
        tracing::warn!("dropped: {}", EventMask::reason(c));
        return Ok(ExitCode::SUCCESS);
    }
    let (id, _) = log.append([rec])?.context("nothing appended")?;
    crate::outln!("{id}")?;
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

/// Input bytes read at a time: a block ends at a line end.
const BLOCK: usize = 2 << 20;
/// A line longer than this cannot be a record: 1 MiB of `action_data` and
/// 4 KiB in each other field come to under 6.5 MiB even with every byte
/// written as a `\u` escape (`record::MAX_ACTION_DATA`, `record::MAX_FIELD`).
const MAX_LINE: usize = 8 << 20;
const _: () = assert!(MAX_LINE > 6 * (record::MAX_ACTION_DATA + record::NFIELDS * record::MAX_FIELD) + 64 * 1024);
/// Buffers larger than this (a window holding a very long line) are freed
/// rather than used again, so the few kept stay small.
const KEEP_BUFFER: usize = 4 * WINDOW;

/// The input in blocks of about [`BLOCK`] bytes, each ending at a line end
/// (or at the end of the input), read into one buffer that is used again
/// for every block, so memory does not grow with the input's size.
struct Blocks {
    src: Box<dyn Read + Send>,
    buf: Vec<u8>,
    /// Bytes at the start of `buf` handed out as the last block.
    handed: usize,
    eof: bool,
    /// Where the input comes from, for errors.
    name: String,
}

impl Blocks {
    fn open(path: &std::path::Path) -> Result<Blocks> {
        let (src, name): (Box<dyn Read + Send>, String) = if path.as_os_str() == "-" {
            (Box::new(std::io::stdin()), "standard input".into())
        } else {
            let f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
            (Box::new(f), path.display().to_string())
        };
        Ok(Blocks { src, buf: Vec::new(), handed: 0, eof: false, name })
    }

    fn next_block(&mut self) -> Result<Option<&[u8]>> {
        // What followed the last line end of the previous block comes first.
        self.buf.drain(..self.handed);
        self.handed = 0;
        loop {
            if self.eof {
                self.handed = self.buf.len();
                self.first_line_fits()?;
                return Ok((self.handed > 0).then_some(&self.buf[..]));
            }
            let old = self.buf.len();
            self.buf.resize(old + BLOCK, 0);
            let mut got = 0;
            while got < BLOCK {
                match self.src.read(&mut self.buf[old + got..]) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e).with_context(|| format!("cannot read {}", self.name)),
                }
            }
            self.buf.truncate(old + got);
            if got < BLOCK {
                self.eof = true;
                continue;
            }
            if let Some(nl) = memchr::memrchr(b'\n', &self.buf[old..]) {
                self.handed = old + nl + 1;
                self.first_line_fits()?;
                return Ok(Some(&self.buf[..self.handed]));
            }
            if self.buf.len() > MAX_LINE {
                return Err(self.too_long());
            }
        }
    }

    /// Only a block's first line can be longer than [`BLOCK`] (the buffer
    /// starts at a line start and grows until a line end arrives), so the
    /// limit is checked on it, wherever the line sits in the input.
    fn first_line_fits(&self) -> Result<()> {
        let block = &self.buf[..self.handed];
        let first = memchr::memchr(b'\n', block).unwrap_or(block.len());
        if first > MAX_LINE { Err(self.too_long()) } else { Ok(()) }
    }

    fn too_long(&self) -> anyhow::Error {
        failure(
            Kind::Invalid,
            format!("{}: a line longer than {} MiB; nothing was appended", self.name, MAX_LINE >> 20),
        )
    }
}

/// The lines of the input with their 1-based numbers, skipping blank ones.
fn lines(input: &[u8], first_line: usize) -> impl Iterator<Item = (usize, &[u8])> {
    input.split(|&b| b == b'\n').enumerate().filter_map(move |(i, line)| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) { None } else { Some((first_line + i, line)) }
    })
}

fn parse_valid<'a>(line: &'a [u8], defaults: &Defaults<'a>) -> Result<Record<'a>, Vec<FieldError>> {
    let mut rec = record::parse_json_line(line).map_err(|e| vec![e])?;
    record::validate(&mut rec, defaults)?;
    if rec.get(Field::AppName).is_some_and(record::is_reserved_app) {
        return Err(vec![record::reserved_app_error()]);
    }
    Ok(rec)
}

/// What checking a chunk of input found.
#[derive(Default)]
struct Checked {
    /// Records the event mask admits.
    admitted: u64,
    /// Records the event mask drops, per category.
    dropped: BTreeMap<String, u64>,
    errors: Vec<(usize, FieldError)>,
}

/// Checks a chunk of the input.
fn check(chunk: &[u8], first_line: usize, defaults: &Defaults<'_>, mask: &EventMask) -> Checked {
    let mut c = Checked::default();
    for (n, line) in lines(chunk, first_line) {
        match parse_valid(line, defaults) {
            Ok(rec) if mask.admits(rec.get(Field::Category)) => c.admitted += 1,
            Ok(rec) => {
                let cat = rec.get(Field::Category).unwrap_or_default().trim().to_ascii_lowercase();
                *c.dropped.entry(cat).or_default() += 1;
            }
            Err(es) => c.errors.extend(es.into_iter().map(|e| (n, e))),
        }
    }
    c
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
#[derive(Default)]
struct Rendered {
    bodies: Vec<u8>,
    ends: Vec<usize>,
}

/// Renders `chunk` into `r`, whose buffers are used again (cleared first).
fn render(chunk: &[u8], defaults: &Defaults<'_>, mask: &EventMask, r: &mut Rendered) -> Result<(), String> {
    r.bodies.clear();
    r.ends.clear();
    // Room for the usual window at once; a window holding very long lines grows as it needs.
    r.bodies.reserve((chunk.len() * 2).min(2 * WINDOW));
    for (n, line) in lines(chunk, 1) {
        let rec = parse_valid(line, defaults).map_err(|e| format!("line {n} changed between checks: {e:?}"))?;
        if !mask.admits(rec.get(Field::Category)) {
            continue;
        }
        crate::store::writer::render_entry(&mut r.bodies, &rec);
        r.ends.push(r.bodies.len());
    }
    Ok(())
}

/// Renders the spooled input on `threads` workers, in windows, and appends
/// the records in input order. A reader thread hands the windows out; each
/// worker keeps at most one window ahead, so memory stays bounded whatever
/// the input size. The windows' and the rendered records' buffers go back
/// to where they came from and are used again: with large buffers made and
/// freed for every window, the allocator's heap grew with the input.
fn append_parallel(
    log: &mut Log,
    spool: &std::path::Path,
    defaults: &Defaults<'_>,
    mask: &EventMask,
    threads: usize,
) -> Result<Option<(u64, u64)>> {
    use std::sync::mpsc::sync_channel;
    let mut blocks = Blocks::open(spool)?;
    let mut app = log.begin()?;
    std::thread::scope(|s| -> Result<()> {
        let mut inputs = Vec::new();
        let mut results = Vec::new();
        let mut returns = Vec::new();
        let (spare_tx, spare_rx) = sync_channel::<Vec<u8>>(2 * threads);
        for _ in 0..threads {
            let (tx, rx) = sync_channel::<Vec<u8>>(1);
            let (rtx, rrx) = sync_channel::<Result<Rendered, String>>(1);
            let (back_tx, back_rx) = sync_channel::<Rendered>(2);
            inputs.push(tx);
            results.push(rrx);
            returns.push(back_tx);
            let spare_tx = spare_tx.clone();
            s.spawn(move || {
                for chunk in rx {
                    let mut r = back_rx.try_recv().unwrap_or_default();
                    let done = render(&chunk, defaults, mask, &mut r).map(|()| r);
                    if chunk.capacity() <= KEEP_BUFFER {
                        let _ = spare_tx.try_send(chunk);
                    }
                    if rtx.send(done).is_err() {
                        return;
                    }
                }
            });
        }
        drop(spare_tx);
        // The reader: windows in order, round robin; how many it handed out, or why it stopped.
        let reader = s.spawn(move || -> Result<usize> {
            let mut n = 0;
            while let Some(block) = blocks.next_block()? {
                for (w, _) in chunks(block, WINDOW) {
                    let mut window = spare_rx.try_recv().unwrap_or_default();
                    window.clear();
                    window.extend_from_slice(w);
                    if inputs[n % threads].send(window).is_err() {
                        return Ok(n);
                    }
                    n += 1;
                }
            }
            Ok(n)
        });
        let mut i = 0;
        while let Ok(rendered) = results[i % threads].recv() {
            let rendered = rendered.map_err(|e| anyhow::anyhow!(e))?;
            let mut start = 0;
            for &end in &rendered.ends {
                app.push_entry(&rendered.bodies[start..end])?;
                start = end;
            }
            if rendered.bodies.capacity() <= 2 * KEEP_BUFFER {
                let _ = returns[i % threads].try_send(rendered);
            }
            i += 1;
        }
        drop(results);
        let handed = reader.join().map_err(|_| anyhow::anyhow!("the spool reader stopped"))??;
        if handed != i {
            bail!("rendered {i} of {handed} windows of the input");
        }
        Ok(())
    })?;
    app.commit()
}

/// Input bytes per rendering window.
const WINDOW: usize = 512 << 10;

/// Removes the spool file when the append is over, whatever the outcome.
struct Spool(std::path::PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn append_json(ctx: &Ctx, path: &std::path::Path, defaults: &Defaults<'_>) -> Result<ExitCode> {
    let mask = ctx.config.mask();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    // First pass: check every line, block by block on all cores, and copy the
    // input into a spool file, so the second pass appends exactly what was
    // checked (standard input cannot be read twice, and a file may change).
    let tmp = ctx.layout.state.join("tmp");
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let (spool_path, spool_file) = crate::fsx::create_temp_exclusive(&tmp, crate::maintenance::APPEND_SPOOL)?;
    let spool = Spool(spool_path);
    let mut out = std::io::BufWriter::with_capacity(1 << 20, spool_file);
    let mut blocks = Blocks::open(path)?;
    let (mut total, mut line) = (0u64, 1usize);
    let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors = Vec::new();
    while let Some(block) = blocks.next_block()? {
        let part = if block.len() < WINDOW { block.len() } else { block.len() / threads + 1 };
        let results: Vec<Checked> = std::thread::scope(|s| {
            let mask = &mask;
            let handles: Vec<_> = chunks(block, part)
                .into_iter()
                .map(|(chunk, first)| s.spawn(move || check(chunk, line + first - 1, defaults, mask)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
        });
        line += memchr::memchr_iter(b'\n', block).count();
        for r in results {
            total += r.admitted;
            for (k, v) in r.dropped {
                *dropped.entry(k).or_default() += v;
            }
            errors.extend(r.errors);
        }
        if errors.is_empty() {
            out.write_all(block).with_context(|| format!("cannot write {}", spool.0.display()))?;
        }
    }
    if !errors.is_empty() {
        let mut bad_lines = 0;
        let mut last = 0;
        for (n, e) in &errors {
            if *n != last {
                bad_lines += 1;
                last = *n;
            }
            tracing::error!("line {n}: {e}");
        }
        return Err(failure(Kind::Invalid, format!("{bad_lines} invalid line(s) in the input; nothing was appended")));
    }
    out.flush().with_context(|| format!("cannot write {}", spool.0.display()))?;
    drop(out);
    if let Some(stream) = client::ingest(ctx)? {
        return append_via_service(ctx, stream, &spool.0, ctx.timeout);
    }
    let dropped_note = dropped_note(dropped.values().sum());
    if total == 0 {
        if !dropped.is_empty() {
            let _log = ctx.open_log_for_append()?;
            mask::add_dropped(&ctx.layout, &dropped)?;
        }
        crate::outln!("appended 0 records{dropped_note}")?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut log = ctx.open_log_for_append()?;
    let (first, last) = append_parallel(&mut log, &spool.0, defaults, &mask, threads)?.context("nothing appended")?;
    if last - first + 1 != total {
        bail!("appended ids {first}..{last}, but the input held {total} records");
    }
    mask::add_dropped(&ctx.layout, &dropped)?;
    crate::outln!("appended {total} records: ids {first}..{last}{dropped_note}")?;
    Ok(ExitCode::SUCCESS)
}

fn dropped_note(n: u64) -> String {
    if n == 0 { String::new() } else { format!("; {n} dropped by the event mask") }
}

/// Sends checked input through the running service's socket.
fn append_via_service(
    ctx: &Ctx,
    stream: std::os::unix::net::UnixStream,
    spool: &std::path::Path,
    timeout: std::time::Duration,
) -> Result<ExitCode> {
    let (mut count, mut dropped) = (0u64, 0u64);
    let (mut first, mut last) = (u64::MAX, 0);
    let mut errors = Vec::new();
    let mut retryable = 0;
    // Block by block, one connection each, in order.
    let mut blocks = Blocks::open(spool)?;
    let mut stream = Some(stream);
    let mut line = 1;
    let mut submitted = Ok(0);
    while let Some(input) = blocks.next_block()? {
        let stream = match stream.take() {
            Some(s) => s,
            None => client::ingest(ctx)?.context("the service stopped during the append")?,
        };
        let mut numbers = lines(input, line).map(|(n, _)| n);
        line += memchr::memchr_iter(b'\n', input).count();
        submitted = client::submit(stream, input, timeout, |a| {
            let n = numbers.next().unwrap_or(0);
            match a {
                Answer::Id(id) => {
                    count += 1;
                    first = first.min(id);
                    last = last.max(id);
                }
                Answer::Dropped(_) => dropped += 1,
                Answer::Error { message, retry } => {
                    retryable += usize::from(retry);
                    errors.push((n, message));
                }
            }
        });
        if submitted.is_err() {
            break;
        }
    }
    if let Err(e) = submitted {
        // Some answers may have arrived: say what is known to be stored.
        if count > 0 {
            tracing::warn!("{count} record(s) stored before the failure: ids {first}..{last}");
        }
        return Err(e);
    }
    for (n, e) in &errors {
        tracing::error!("line {n}: {e}");
    }
    let ids = if count == 0 {
        String::new()
    } else if last - first + 1 == count {
        format!(": ids {first}..{last}")
    } else {
        format!(": ids {first}..{last}, interleaved with other submitters")
    };
    crate::outln!("appended {count} records{ids}{}", dropped_note(dropped))?;
    if !errors.is_empty() {
        // Every record that got an id is stored; the refused ones are not.
        // The service commits a bulk input in groups: the lines named above
        // were not stored, every id printed was.
        let kind = if retryable == errors.len() { Kind::Temporary } else { Kind::Invalid };
        let rest = if count == 0 {
            "nothing was stored".to_owned()
        } else {
            format!("the other {count} record(s) are stored, with the ids above; send only the lines named again")
        };
        return Err(failure(
            kind,
            format!("{} record(s) were refused by the service and not stored (lines above); {rest}", errors.len()),
        ));
    }
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
    fn blocks_end_at_line_ends_and_give_back_the_whole_input() {
        let dir = tempfile::tempdir().unwrap();
        // Lines of many lengths, so that block ends fall everywhere; one without its line end.
        let mut input = Vec::new();
        for i in 0..60_000usize {
            input.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, i * 7919 % 301));
            input.push(b'\n');
        }
        input.extend_from_slice(b"last");
        let path = dir.path().join("in");
        std::fs::write(&path, &input).unwrap();
        let mut blocks = Blocks::open(&path).unwrap();
        let (mut joined, mut count) = (Vec::new(), 0);
        while let Some(b) = blocks.next_block().unwrap() {
            assert!(b.len() <= 2 * BLOCK, "a block of {} bytes", b.len());
            count += 1;
            joined.extend_from_slice(b);
            if joined.len() < input.len() {
                assert_eq!(b.last(), Some(&b'\n'), "block {count} ends inside a line");
            }
        }
        assert!(count > 2, "{count} blocks");
        assert!(joined == input, "the blocks differ from the input");
    }

    #[test]
    fn blank_and_crlf_lines() {
        let got: Vec<_> = lines(b"x\r\n\n  \ny", 1).collect();
        assert_eq!(got, vec![(1, &b"x"[..]), (4, &b"y"[..])]);
    }
}
