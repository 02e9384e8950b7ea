//! Export formats (SPEC §8): CSV (RFC 4180, header row), JSON Lines (the
//! field names of §2 plus `id`), XML (the file format, without a seal) and
//! HTML (a self-contained page for browsers, see [`crate::export::html`]), with the
//! record filters.
//!
//! CSV files are opened in spreadsheets, which run a cell that starts with
//! `=`, `+`, `-` or `@` (and, in some, tab or CR) as a formula: a user name
//! such as `=HYPERLINK(…)` from a failed login would become a live link. So,
//! by default ([`CsvCells::Safe`], following OWASP's CSV-injection guidance),
//! such a cell is written with a leading `'` (spreadsheets show it as text)
//! and every cell but a number (the id) is quoted, so a spreadsheet that
//! splits on `;` or tab cannot start a new cell inside a value. [`CsvCells::Raw`] (`--csv-raw`)
//! writes the exact values; JSON and XML are always exact. Records stream through, read and formatted on
//! several cores and written in order: memory does not grow with the history.

pub mod html;

use std::io::Write;

use anyhow::Result;

use crate::record::{FIELDS, Field, Record};
use crate::store::layout::Layout;
use crate::store::reader::{LogFile, Records};
use crate::store::xml::write as xml_write;
use crate::timestamp;

pub use crate::export::html::Head;

/// The output formats of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
    Xml,
    /// One self-contained HTML page (table, sorting, filters, print layout).
    Html,
}

/// Which records to keep. Text filters match the whole value, ignoring case.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    from: Option<i64>,
    to: Option<i64>,
    text: Vec<(Field, String)>,
}

impl Filter {
    /// Records from `from` to `to` (inclusive; RFC 3339, "YYYY-MM-DD
    /// HH:MM:SS" local, or a date, which `to` takes through the end of that
    /// day) whose `text` fields all equal the given values, ignoring case.
    pub fn new(from: Option<&str>, to: Option<&str>, text: Vec<(Field, String)>) -> Result<Filter> {
        let bound = |v: Option<&str>, end: bool, flag: &str| -> Result<Option<i64>> {
            v.map(|s| timestamp::parse_bound(s, end).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))).transpose()
        };
        let from = bound(from, false, "from")?;
        let to = bound(to, true, "to")?;
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            anyhow::bail!("--from is after --to: no record can match");
        }
        Ok(Filter { from, to, text })
    }

    /// The event-time range asked for (milliseconds since the epoch, inclusive).
    pub fn time_range(&self) -> (Option<i64>, Option<i64>) {
        (self.from, self.to)
    }

    pub fn matches(&self, r: &Record<'_>) -> bool {
        for (f, want) in &self.text {
            if !r.get(*f).is_some_and(|v| v.eq_ignore_ascii_case(want)) {
                return false;
            }
        }
        if self.from.is_some() || self.to.is_some() {
            let Some(t) = r.get(Field::Timestamp).and_then(timestamp::millis) else { return false };
            if self.from.is_some_and(|f| t < f) || self.to.is_some_and(|to| t > to) {
                return false;
            }
        }
        true
    }
}

/// How CSV cells are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CsvCells {
    /// Safe to open in a spreadsheet (see the module documentation).
    #[default]
    Safe,
    /// The exact values, quoted only where RFC 4180 needs it.
    Raw,
}

/// Whether a spreadsheet may take a cell starting with `v` for a formula:
/// `=`, `+`, `-`, `@`, tab, CR (OWASP), and their full-width forms, which
/// some spreadsheets convert.
pub fn formula_start(v: &str) -> bool {
    v.chars().next().is_some_and(|c| {
        matches!(c, '=' | '+' | '-' | '@' | '\t' | '\r' | '\u{ff1d}' | '\u{ff0b}' | '\u{ff0d}' | '\u{ff20}')
    })
}

/// A CSV cell for `v` that no spreadsheet runs: a leading `'` when it could
/// start a formula.
pub fn spreadsheet_cell(v: &str) -> std::borrow::Cow<'_, str> {
    if formula_start(v) { format!("'{v}").into() } else { v.into() }
}

fn csv_writer<W: Write>(out: W, cells: CsvCells, capacity: usize) -> csv::Writer<W> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(if cells == CsvCells::Raw { csv::QuoteStyle::Necessary } else { csv::QuoteStyle::NonNumeric })
        .buffer_capacity(capacity)
        .from_writer(out)
}

/// Writes records in one export format.
pub enum Writer<W: Write> {
    Csv(Box<csv::Writer<W>>, CsvCells),
    Json(W, Vec<u8>),
    Xml(W, Vec<u8>),
    Html(W, Vec<u8>),
}

impl<W: Write> Writer<W> {
    /// Starts a document (CSV header row, XML header, HTML page head).
    pub fn new(format: Format, cells: CsvCells, mut out: W, head: &Head<'_>) -> Result<Self> {
        Ok(match format {
            Format::Csv => {
                let mut w = csv_writer(out, cells, 256 * 1024);
                let mut header = vec!["id"];
                header.extend(FIELDS.iter().map(|s| s.json));
                w.write_record(&header)?;
                Writer::Csv(Box::new(w), cells)
            }
            Format::Json => Writer::Json(out, Vec::with_capacity(4096)),
            Format::Xml => {
                out.write_all(&xml_write::header(head.host, head.created, None))?;
                Writer::Xml(out, Vec::with_capacity(4096))
            }
            Format::Html => {
                let mut buf = Vec::with_capacity(16 * 1024);
                html::header(&mut buf, head);
                out.write_all(&buf)?;
                buf.clear();
                Writer::Html(out, buf)
            }
        })
    }

    pub fn write(&mut self, r: &Record<'_>) -> Result<()> {
        match self {
            Writer::Csv(w, cells) => {
                let mut id = itoa::Buffer::new();
                w.write_field(id.format(r.id))?;
                for v in &r.fields {
                    let v = v.as_deref().unwrap_or("");
                    match cells {
                        CsvCells::Safe => w.write_field(spreadsheet_cell(v).as_bytes())?,
                        CsvCells::Raw => w.write_field(v)?,
                    }
                }
                w.write_record(None::<&[u8]>)?;
            }
            Writer::Json(out, buf) => {
                buf.clear();
                json_line(buf, r);
                out.write_all(buf)?;
            }
            Writer::Xml(out, buf) => {
                buf.clear();
                xml_write::record(buf, r);
                out.write_all(buf)?;
            }
            Writer::Html(out, buf) => {
                buf.clear();
                html::record(buf, r);
                out.write_all(buf)?;
            }
        }
        Ok(())
    }

    /// A writer for a run of records in the middle of a document: no header.
    pub fn body(format: Format, cells: CsvCells, out: W) -> Self {
        match format {
            Format::Csv => Writer::Csv(Box::new(csv_writer(out, cells, 64 * 1024)), cells),
            Format::Json => Writer::Json(out, Vec::with_capacity(4096)),
            Format::Xml => Writer::Xml(out, Vec::with_capacity(4096)),
            Format::Html => Writer::Html(out, Vec::with_capacity(4096)),
        }
    }

    /// What was written so far, without ending the document.
    pub fn into_body(self) -> Result<W> {
        Ok(match self {
            Writer::Csv(w, _) => w.into_inner().map_err(|e| e.into_error())?,
            Writer::Json(out, _) | Writer::Xml(out, _) | Writer::Html(out, _) => out,
        })
    }

    /// Ends the document and flushes.
    pub fn finish(self) -> Result<W> {
        Ok(match self {
            Writer::Csv(w, _) => w.into_inner().map_err(|e| e.into_error())?,
            Writer::Json(mut out, _) => {
                out.flush()?;
                out
            }
            Writer::Xml(mut out, _) => {
                out.write_all(xml_write::EXPORT_END)?;
                out.flush()?;
                out
            }
            Writer::Html(mut out, mut buf) => {
                buf.clear();
                html::end(&mut buf, &html::Summary::default());
                out.write_all(&buf)?;
                out.flush()?;
                out
            }
        })
    }
}

/// One JSON object on one line, fields in the order of §2, absent ones left out.
pub fn json_line(buf: &mut Vec<u8>, r: &Record<'_>) {
    buf.extend_from_slice(b"{\"id\":");
    buf.extend_from_slice(itoa::Buffer::new().format(r.id).as_bytes());
    json_fields(buf, r, true);
}

fn json_fields(buf: &mut Vec<u8>, r: &Record<'_>, mut comma: bool) {
    for spec in &FIELDS {
        if let Some(v) = &r.fields[spec.field as usize] {
            if comma {
                buf.push(b',');
            }
            comma = true;
            buf.extend_from_slice(b"\"");
            buf.extend_from_slice(spec.json.as_bytes());
            buf.extend_from_slice(b"\":");
            // Writing a str into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *buf, v.as_ref());
        }
    }
    buf.extend_from_slice(b"}\n");
}

/// Bytes of formatted records a worker hands over at a time.
const CHUNK: usize = 1 << 20;

/// Formatted records of one file, in order; `done` marks its last chunk.
struct Chunk {
    bytes: Vec<u8>,
    records: u64,
    /// Ids of its first and last record (when it has records).
    ids: Option<(u64, u64)>,
    done: bool,
}

/// Exports the records of `files` from `from_id` on, through `filter`, as a
/// whole document into `out`; returns how many were written. Files are read
/// and formatted on up to `threads` workers (one file each at a time, in
/// chunks of about 1 MiB, at most two chunks ahead), and written in order,
/// so memory stays bounded whatever the history. `progress` gets the number
/// of records written so far.
#[allow(clippy::too_many_arguments)]
pub fn run_files<W: Write + ?Sized>(
    layout: &Layout,
    files: Vec<LogFile>,
    from_id: u64,
    filter: &Filter,
    format: Format,
    cells: CsvCells,
    head: &Head<'_>,
    threads: usize,
    out: &mut W,
    progress: &dyn Fn(u64),
) -> Result<u64> {
    let header = Writer::new(format, cells, Vec::new(), head)?.into_body()?;
    out.write_all(&header)?;
    let threads = threads.clamp(1, files.len().max(1));
    let mut n = 0;
    let mut ids: Option<(u64, u64)> = None;
    // HTML: records in the current table.
    let mut in_table = 0;
    let mut table_break = Vec::new();
    html::table_break(&mut table_break);
    std::thread::scope(|s| -> Result<()> {
        let mut receivers = Vec::new();
        for k in 0..threads {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Chunk>>(2);
            receivers.push(rx);
            let mine: Vec<LogFile> = files.iter().skip(k).step_by(threads).cloned().collect();
            s.spawn(move || {
                for f in mine {
                    if let Err(e) = format_file(layout, f, from_id, filter, (format, cells), &tx) {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            });
        }
        for i in 0..files.len() {
            loop {
                let chunk =
                    receivers[i % threads].recv().map_err(|_| anyhow::anyhow!("an export worker stopped"))??;
                if matches!(format, Format::Html) && in_table >= html::TABLE_ROWS && chunk.records > 0 {
                    out.write_all(&table_break)?;
                    in_table = 0;
                }
                in_table += chunk.records;
                out.write_all(&chunk.bytes)?;
                n += chunk.records;
                if let Some((first, last)) = chunk.ids {
                    ids = Some((ids.map_or(first, |i| i.0), last));
                }
                progress(n);
                if chunk.done {
                    break;
                }
            }
        }
        Ok(())
    })?;
    match format {
        Format::Xml => out.write_all(xml_write::EXPORT_END)?,
        Format::Html => {
            let mut end = Vec::new();
            let summary = html::Summary { records: n, first: ids.map(|i| i.0), last: ids.map(|i| i.1) };
            html::end(&mut end, &summary);
            out.write_all(&end)?;
        }
        Format::Csv | Format::Json => {}
    }
    out.flush()?;
    Ok(n)
}

/// Formats one file's records into chunks sent to `tx` (an error when the
/// receiver went away: the export stopped).
fn format_file(
    layout: &Layout,
    file: LogFile,
    from_id: u64,
    filter: &Filter,
    (format, cells): (Format, CsvCells),
    tx: &std::sync::mpsc::SyncSender<Result<Chunk>>,
) -> Result<()> {
    let send = |w: Writer<Vec<u8>>, records: u64, ids: Option<(u64, u64)>, done: bool| -> Result<()> {
        let bytes = w.into_body()?;
        tx.send(Ok(Chunk { bytes, records, ids, done })).map_err(|_| anyhow::anyhow!("export stopped"))
    };
    let mut w = Writer::body(format, cells, Vec::with_capacity(CHUNK + 64 * 1024));
    let mut count = 0;
    let mut ids: Option<(u64, u64)> = None;
    // HTML pages are cut into tables between chunks: keep chunks that short.
    let max_records = if matches!(format, Format::Html) { html::TABLE_ROWS } else { u64::MAX };
    for r in Records::new(layout, vec![file], from_id) {
        let r = r?;
        if !filter.matches(&r) {
            continue;
        }
        w.write(&r)?;
        count += 1;
        ids = Some((ids.map_or(r.id, |i| i.0), r.id));
        if (count % 256 == 0 && w.len() >= CHUNK) || count >= max_records {
            send(
                std::mem::replace(&mut w, Writer::body(format, cells, Vec::with_capacity(CHUNK + 64 * 1024))),
                count,
                ids.take(),
                false,
            )?;
            count = 0;
        }
    }
    send(w, count, ids, true)
}

impl Writer<Vec<u8>> {
    /// Bytes formatted so far (CSV rows still in its buffer not counted).
    fn len(&self) -> usize {
        match self {
            Writer::Csv(w, _) => w.get_ref().len(),
            Writer::Json(out, _) | Writer::Xml(out, _) | Writer::Html(out, _) => out.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> Head<'static> {
        Head { host: "h", created: "c", ..Default::default() }
    }

    fn rec() -> Record<'static> {
        let mut r = Record { id: 9, ..Default::default() };
        r.set(Field::Timestamp, "2026-11-22T09:45:37.120+01:00");
        r.set(Field::AppName, "Suite");
        r.set(Field::ActionType, "Login");
        r.set(Field::ActionData, "a,\"b\"\nc");
        r
    }

    #[test]
    fn csv_header_and_quoting() {
        let mut w = Writer::new(Format::Csv, CsvCells::Raw, Vec::new(), &head()).unwrap();
        w.write(&rec()).unwrap();
        let out = String::from_utf8(w.finish().unwrap()).unwrap();
        let mut lines = out.splitn(2, "\r\n");
        assert_eq!(
            lines.next().unwrap(),
            "id,timestamp,detail_level,user_name,first_name,last_name,tenant,source_ip,node,app_name,app_context,action_type,action_data,category,outcome,auth_type,session_id"
        );
        assert_eq!(
            lines.next().unwrap(),
            "9,2026-11-22T09:45:37.120+01:00,,,,,,,,Suite,,Login,\"a,\"\"b\"\"\nc\",,,,\r\n"
        );
    }

    #[test]
    fn json_line_shape() {
        let mut buf = Vec::new();
        json_line(&mut buf, &rec());
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "{\"id\":9,\"timestamp\":\"2026-11-22T09:45:37.120+01:00\",\"app_name\":\"Suite\",\"action_type\":\"Login\",\"action_data\":\"a,\\\"b\\\"\\nc\"}\n"
        );
    }

    #[test]
    fn filters() {
        let f = Filter::new(Some("2026-11-22"), None, vec![(Field::AppName, "suite".into())]).unwrap();
        assert!(f.matches(&rec()));
        assert!(!Filter::new(None, Some("2026-11-21"), vec![]).unwrap().matches(&rec()));
        let f = Filter::new(None, None, vec![(Field::UserName, "bob".into())]).unwrap();
        assert!(!f.matches(&rec()), "absent field never matches");
        assert!(Filter::new(Some("2026-11-22"), Some("2026-11-21"), vec![]).is_err(), "from after to");
    }

    #[test]
    fn csv_cells_that_could_start_a_formula_are_neutralised_by_default() {
        let mut r = rec();
        r.set(Field::UserName, "=1+1");
        r.set(Field::FirstName, "+1");
        r.set(Field::LastName, "-2");
        r.set(Field::Tenant, "@SUM(1)");
        r.set(Field::AppContext, "\tx");
        r.set(Field::SessionId, "\rx");
        r.set(Field::ActionData, "a;=cmd|' /C calc'!A0");
        let mut w = Writer::new(Format::Csv, CsvCells::Safe, Vec::new(), &head()).unwrap();
        w.write(&r).unwrap();
        let out = String::from_utf8(w.finish().unwrap()).unwrap();
        let row = out.split("\r\n").nth(1).unwrap();
        assert!(
            row.starts_with("9,\"2026-11-22T09:45:37.120+01:00\",\"\",\"'=1+1\",\"'+1\",\"'-2\",\"'@SUM(1)\""),
            "{row}"
        );
        assert!(row.contains("\"'\tx\"") && row.contains("\"'\rx"), "{row}");
        assert!(row.contains("\"a;=cmd|' /C calc'!A0\""), "{row}");
        let mut w = Writer::new(Format::Csv, CsvCells::Raw, Vec::new(), &head()).unwrap();
        w.write(&r).unwrap();
        let out = String::from_utf8(w.finish().unwrap()).unwrap();
        assert!(out.contains(",=1+1,+1,-2,@SUM(1),"), "{out}");
    }
}
