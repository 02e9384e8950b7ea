//! Reading the XML file format back, record by record, with flat memory.
//!
//! The reader is strict about what it needs (a well-formed `AuditTrail`
//! document, `Record` elements with numeric ids, known fields) and lenient
//! about what it does not know: unknown attributes, and unknown elements in a
//! record or at the top level, are skipped so the format can grow.
//!
//! Time is linear in the input and memory bounded by the longest record: no
//! byte is searched again while a long record arrives.
//!
//! It also serves recovery: [`XmlReader::good_end`] is the byte offset just
//! past the last complete record (or the root start tag), where a torn tail
//! is cut.

use std::borrow::Cow;
use std::io::{BufRead, Read};

use base64::Engine;
use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};

use crate::chain::{self, Digest};
use crate::record::{Field, Record};
use crate::xml_write::SealInfo;

/// The attributes of the root element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub host: String,
    pub created: String,
    pub first_id: Option<u64>,
    pub format: Option<u32>,
    /// The chain value the file continues from (format 2).
    pub chain_start: Option<Digest>,
    /// The name of the file before this one (format 2).
    pub previous: Option<String>,
}

/// Why a document cannot be read; `offset` is the byte where it went wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[error("at byte {offset}: {reason}")]
pub struct XmlError {
    pub offset: u64,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    BeforeRoot,
    InRoot,
    Closed,
}

/// Streams the records of one document.
///
/// Files written by audit-trail have a fixed layout, and a scanner that
/// expects exactly that layout reads them several times faster than a general
/// parser. At the first thing it does not expect (the seal, an unknown
/// element, CDATA, an unusual reference, a torn tail) it hands the rest of
/// the stream, from the start of that record, to the full parser, behind a
/// synthetic root start tag; byte offsets are translated back, so results and
/// error positions are the same as if the full parser had read it all.
pub struct XmlReader<R: BufRead> {
    mode: Mode<R>,
    header: Option<Header>,
}

type Replay<R> = std::io::Chain<std::io::Cursor<Vec<u8>>, R>;

enum Mode<R: BufRead> {
    Fast(Fast<R>),
    /// `delta` is added to the parser's offsets to give offsets in the file.
    Slow {
        rd: Box<SlowReader<Replay<R>>>,
        delta: i64,
    },
    /// Transient, while switching modes.
    Switching,
}

/// Bytes read ahead by the fast scanner.
const FAST_READ: usize = 256 * 1024;

struct Fast<R> {
    src: R,
    buf: Vec<u8>,
    pos: usize,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
    good_end: u64,
    /// Bytes from `pos` already searched for the end of the record there:
    /// a record longer than what is read ahead is searched once, not again
    /// from its start after each read.
    searched: usize,
    /// Bytes looked at, in all (tests check that it stays linear).
    examined: u64,
}

impl<R: BufRead> Fast<R> {
    /// Reads more input; false at end of input.
    fn fill(&mut self) -> std::io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.pos = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + FAST_READ, 0);
        let n = loop {
            match self.src.read(&mut self.buf[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(old + n);
        if n == 0 {
            self.eof = true;
        }
        Ok(n > 0)
    }

    /// Tries to read one record, exactly as audit-trail writes it, at `pos`
    /// (after white space). Anything else is `Fallback`.
    fn step(&mut self) -> Step {
        const START: &[u8] = b"<Record id=\"";
        const END: &[u8] = b"</Record>";
        static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
            std::sync::LazyLock::new(|| memchr::memmem::Finder::new(END));
        let ws = self.buf[self.pos..].iter().take_while(|b| matches!(b, b' ' | b'\n' | b'\t')).count();
        self.pos += ws;
        self.examined += ws as u64;
        let rest = &self.buf[self.pos..];
        if rest.len() < START.len() {
            return if self.eof { Step::Fallback } else { Step::NeedMore };
        }
        if !rest.starts_with(START) {
            return Step::Fallback;
        }
        // An end tag may straddle what was searched and what was read since.
        let from = self.searched.saturating_sub(END.len() - 1);
        let Some(at) = FINDER.find(&rest[from..]) else {
            self.examined += (rest.len() - from) as u64;
            self.searched = rest.len();
            return if self.eof { Step::Fallback } else { Step::NeedMore };
        };
        let len = from + at + END.len();
        // The rest of the search, then the parse of the whole record.
        self.examined += (at + END.len() + len) as u64;
        self.searched = 0;
        match std::str::from_utf8(&rest[..len]).ok().and_then(fast_record) {
            Some(rec) => {
                self.pos += len;
                self.good_end = self.base + self.pos as u64;
                Step::Record(rec)
            }
            None => Step::Fallback,
        }
    }
}

/// What the fast scanner made of the bytes at its position. A transient
/// return value, so the record is not boxed.
#[allow(clippy::large_enum_variant)]
enum Step {
    Record(Record<'static>),
    NeedMore,
    Fallback,
}

impl<R: BufRead> XmlReader<R> {
    pub fn new(input: R) -> Self {
        let fast =
            Fast { src: input, buf: Vec::new(), pos: 0, base: 0, eof: false, good_end: 0, searched: 0, examined: 0 };
        XmlReader { mode: Mode::Fast(fast), header: None }
    }

    /// The root element's attributes; reads up to the root start tag if needed.
    pub fn header(&mut self) -> Result<&Header, XmlError> {
        if self.header.is_none() {
            self.read_header()?;
        }
        self.header.as_ref().ok_or_else(|| XmlError { offset: 0, reason: "no <AuditTrail> element".into() })
    }

    fn read_header(&mut self) -> Result<(), XmlError> {
        if let Mode::Fast(f) = &mut self.mode {
            // The header is small: parse it from the first block with the full parser.
            loop {
                let mut probe = SlowReader::new(&f.buf[..]);
                if let Ok(h) = probe.header() {
                    let h = h.clone();
                    let end = probe.good_end() as usize;
                    if end < f.buf.len() || f.eof {
                        f.pos = end;
                        f.good_end = end as u64;
                        self.header = Some(h);
                        return Ok(());
                    }
                }
                if f.buf.len() >= 64 * 1024 || !f.fill().map_err(io_err)? {
                    break;
                }
            }
            // Not what we write: let the full parser read the file from the start.
            self.fall_back(false);
        }
        if let Mode::Slow { rd, delta } = &mut self.mode {
            let h = rd.header().map_err(|e| shift(e, *delta))?.clone();
            self.header = Some(h);
        }
        Ok(())
    }

    /// Hands the rest of the input to the full parser. With `in_root`, the
    /// fast scanner had passed the root start tag, so one is put in front.
    fn fall_back(&mut self, in_root: bool) {
        let Mode::Fast(f) = std::mem::replace(&mut self.mode, Mode::Switching) else { return };
        let mut prefix = if in_root { b"<AuditTrail>".to_vec() } else { Vec::new() };
        let at = f.base + f.pos as u64;
        prefix.extend_from_slice(&f.buf[f.pos..]);
        let delta = at as i64 - if in_root { b"<AuditTrail>".len() as i64 } else { 0 };
        let mut rd = Box::new(SlowReader::new(std::io::Cursor::new(prefix).chain(f.src)));
        if in_root {
            let _ = rd.header();
            rd.good_end = f.good_end.saturating_sub(delta as u64);
        }
        self.mode = Mode::Slow { rd, delta };
    }

    /// The seal, once the reader has passed it.
    pub fn seal(&self) -> Option<&SealInfo> {
        match &self.mode {
            Mode::Slow { rd, .. } => rd.seal(),
            _ => None,
        }
    }

    /// Offset just past the last complete record (or the root start tag).
    pub fn good_end(&self) -> u64 {
        match &self.mode {
            Mode::Fast(f) => f.good_end,
            Mode::Slow { rd, delta } => (rd.good_end() as i64 + delta) as u64,
            Mode::Switching => 0,
        }
    }

    /// Offset just past the seal element, when there is one.
    pub fn seal_end(&self) -> Option<u64> {
        match &self.mode {
            Mode::Slow { rd, delta } => rd.seal_end().map(|e| (e as i64 + delta) as u64),
            _ => None,
        }
    }

    /// True once `</AuditTrail>` has been read.
    pub fn closed(&self) -> bool {
        matches!(&self.mode, Mode::Slow { rd, .. } if rd.closed())
    }

    /// Bytes the fast scanner looked at.
    #[cfg(test)]
    fn examined(&self) -> u64 {
        match &self.mode {
            Mode::Fast(f) => f.examined,
            _ => 0,
        }
    }

    /// The next record, or `None` at the end of the document. A document that
    /// stops before `</AuditTrail>` (an active file, or a truncated one) also
    /// ends with `None`; [`closed`](Self::closed) tells the two apart.
    pub fn next_record(&mut self) -> Result<Option<Record<'static>>, XmlError> {
        if self.header.is_none() {
            self.read_header()?;
        }
        loop {
            match &mut self.mode {
                Mode::Fast(f) => match f.step() {
                    Step::Record(rec) => return Ok(Some(rec)),
                    Step::NeedMore => {
                        if !f.fill().map_err(io_err)? {
                            self.fall_back(true);
                        }
                    }
                    Step::Fallback => self.fall_back(true),
                },
                Mode::Slow { rd, delta } => return rd.next_record().map_err(|e| shift(e, *delta)),
                Mode::Switching => return Ok(None),
            }
        }
    }
}

fn io_err(e: std::io::Error) -> XmlError {
    XmlError { offset: 0, reason: format!("read error: {e}") }
}

fn shift(mut e: XmlError, delta: i64) -> XmlError {
    e.offset = (e.offset as i64 + delta).max(0) as u64;
    e
}

fn fast_record(s: &str) -> Option<Record<'static>> {
    let rest = s.strip_prefix("<Record id=\"")?;
    let q = rest.find('"')?;
    let digits = &rest[..q];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let id: u64 = digits.parse().ok().filter(|&id| id > 0)?;
    let mut rest = rest[q..].strip_prefix("\">")?;
    let mut rec = Record { id, ..Default::default() };
    loop {
        rest = rest.trim_start_matches([' ', '\n', '\t']);
        if rest == "</Record>" {
            return Some(rec);
        }
        rest = rest.strip_prefix('<')?;
        if let Some(after) = rest.strip_prefix("Chain>") {
            if rec.chain.is_some() || after.len() < 72 || &after[64..72] != "</Chain>" {
                return None;
            }
            rec.chain = Some(chain::parse_hex(&after[..64])?);
            rest = &after[72..];
            continue;
        }
        let name_end = rest.find(['>', ' '])?;
        let field = Field::from_xml(&rest.as_bytes()[..name_end])?;
        let name = &rest[..name_end];
        let after = &rest[name_end..];
        let (base64, after) = match after.strip_prefix('>') {
            Some(a) => (false, a),
            None => (true, after.strip_prefix(" encoding=\"base64\">")?),
        };
        let lt = memchr::memchr(b'<', after.as_bytes())?;
        let text = &after[..lt];
        rest = after[lt..].strip_prefix("</")?.strip_prefix(name)?.strip_prefix('>')?;
        let mut value = if text.contains(['&', '\r']) { fast_unescape(text)? } else { text.to_owned() };
        if base64 {
            value = decode_base64(&value).ok()?;
        }
        let slot = &mut rec.fields[field as usize];
        if slot.is_some() {
            return None;
        }
        *slot = Some(Cow::Owned(value));
    }
}

/// Resolves the references audit-trail writes; anything else (or a raw CR,
/// which parsers normalise) is left to the full parser.
fn fast_unescape(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(['&', '\r']) {
        out.push_str(&rest[..i]);
        if rest.as_bytes()[i] == b'\r' {
            return None;
        }
        let semi = rest[i..].find(';')?;
        out.push_str(match &rest[i + 1..i + semi] {
            "lt" => "<",
            "gt" => ">",
            "amp" => "&",
            "quot" => "\"",
            "apos" => "'",
            "#13" => "\r",
            "#10" => "\n",
            "#9" => "\t",
            _ => return None,
        });
        rest = &rest[i + semi + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Streams the records of one document with a full XML parser.
struct SlowReader<R: BufRead> {
    reader: quick_xml::Reader<R>,
    buf: Vec<u8>,
    text: String,
    state: State,
    header: Option<Header>,
    seal: Option<SealInfo>,
    good_end: u64,
    seal_end: Option<u64>,
}

impl<R: BufRead> SlowReader<R> {
    fn new(input: R) -> Self {
        let mut reader = quick_xml::Reader::from_reader(input);
        let cfg = reader.config_mut();
        cfg.trim_text(false);
        cfg.check_end_names = true;
        cfg.expand_empty_elements = false;
        SlowReader {
            reader,
            buf: Vec::with_capacity(4096),
            text: String::new(),
            state: State::BeforeRoot,
            header: None,
            seal: None,
            good_end: 0,
            seal_end: None,
        }
    }

    /// The root element's attributes; reads up to the root start tag if needed.
    pub fn header(&mut self) -> Result<&Header, XmlError> {
        if self.header.is_none() {
            self.advance_to_root()?;
        }
        self.header.as_ref().ok_or_else(|| self.err("no <AuditTrail> element"))
    }

    /// The seal, once the reader has passed it.
    pub fn seal(&self) -> Option<&SealInfo> {
        self.seal.as_ref()
    }

    /// Offset just past the last complete record (or the root start tag).
    pub fn good_end(&self) -> u64 {
        self.good_end
    }

    /// Offset just past the seal element, when there is one.
    pub fn seal_end(&self) -> Option<u64> {
        self.seal_end
    }

    /// True once `</AuditTrail>` has been read.
    pub fn closed(&self) -> bool {
        self.state == State::Closed
    }

    fn err(&self, reason: impl Into<String>) -> XmlError {
        XmlError { offset: self.reader.buffer_position(), reason: reason.into() }
    }

    fn xml_err(&self, e: quick_xml::Error) -> XmlError {
        XmlError { offset: self.reader.error_position(), reason: e.to_string() }
    }

    fn advance_to_root(&mut self) -> Result<(), XmlError> {
        while self.state == State::BeforeRoot {
            self.buf.clear();
            let ev = self.reader.read_event_into(&mut self.buf);
            match ev {
                Err(e) => return Err(self.xml_err(e)),
                Ok(Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_)) => {}
                Ok(Event::Text(t)) if t.trim().is_empty() => {}
                Ok(Event::Start(s)) if s.name().as_ref() == "AuditTrail" => {
                    let h = parse_header(&s).map_err(|r| self.err(r))?;
                    self.header = Some(h);
                    self.state = State::InRoot;
                    self.good_end = self.reader.buffer_position();
                }
                Ok(Event::Eof) => return Err(self.err("no <AuditTrail> element (empty or truncated file)")),
                Ok(other) => {
                    let what = describe(&other);
                    return Err(self.err(format!("expected <AuditTrail>, found {what}")));
                }
            }
        }
        Ok(())
    }

    /// The next record, or `None` at the end of the document. A document that
    /// stops before `</AuditTrail>` (an active file, or a truncated one) also
    /// ends with `None`; [`closed`](Self::closed) tells the two apart.
    pub fn next_record(&mut self) -> Result<Option<Record<'static>>, XmlError> {
        self.advance_to_root()?;
        loop {
            self.buf.clear();
            let ev = self.reader.read_event_into(&mut self.buf);
            match ev {
                Err(e) => return Err(self.xml_err(e)),
                Ok(Event::Eof) => return Ok(None),
                Ok(Event::Text(t)) => {
                    if !t.trim().is_empty() {
                        let msg = format!("unexpected text {:?}", t.as_ref());
                        return Err(self.err(msg));
                    }
                }
                Ok(Event::Comment(_) | Event::PI(_)) => {}
                Ok(ev @ (Event::Start(_) | Event::Empty(_))) if self.state == State::Closed => {
                    let what = describe(&ev);
                    return Err(self.err(format!("{what} after </AuditTrail>")));
                }
                Ok(Event::Start(s)) if s.name().as_ref() == "Record" => {
                    let id = parse_id(&s).map_err(|r| self.err(r))?;
                    let rec = self.read_record(id)?;
                    self.good_end = self.reader.buffer_position();
                    return Ok(Some(rec));
                }
                Ok(Event::Empty(s)) if s.name().as_ref() == "Record" => {
                    let id = parse_id(&s).map_err(|r| self.err(r))?;
                    self.good_end = self.reader.buffer_position();
                    return Ok(Some(Record { id, ..Default::default() }));
                }
                Ok(Event::Empty(s)) if s.name().as_ref() == "Seal" => {
                    if self.seal.is_some() {
                        return Err(self.err("more than one <Seal>"));
                    }
                    self.seal = Some(parse_seal(&s).map_err(|r| self.err(r))?);
                    self.seal_end = Some(self.reader.buffer_position());
                }
                Ok(Event::Start(s)) => {
                    // An element this version does not know: skip it whole.
                    let name = s.name().as_ref().to_owned();
                    let mut skip = Vec::new();
                    self.reader
                        .read_to_end_into(quick_xml::name::QName(&name), &mut skip)
                        .map_err(|e| XmlError { offset: self.reader.buffer_position(), reason: e.to_string() })?;
                }
                Ok(Event::Empty(_)) => {}
                Ok(Event::End(e)) if e.name().as_ref() == "AuditTrail" => {
                    self.state = State::Closed;
                }
                Ok(other) => {
                    let what = describe(&other);
                    return Err(self.err(format!("unexpected {what}")));
                }
            }
        }
    }

    fn read_record(&mut self, id: u64) -> Result<Record<'static>, XmlError> {
        let mut rec = Record { id, ..Default::default() };
        loop {
            self.buf.clear();
            let ev = self.reader.read_event_into(&mut self.buf);
            match ev {
                Err(e) => return Err(self.xml_err(e)),
                Ok(Event::Eof) => return Err(self.err(format!("record {id} is cut off"))),
                Ok(Event::Text(t)) => {
                    if !t.trim().is_empty() {
                        let msg = format!("record {id}: unexpected text {:?}", t.as_ref());
                        return Err(self.err(msg));
                    }
                }
                Ok(Event::Comment(_) | Event::PI(_)) => {}
                Ok(Event::End(_)) => return Ok(rec), // end names are checked by the parser
                Ok(Event::Empty(s)) => {
                    if let Some(f) = Field::from_xml(s.name().as_ref().as_bytes()) {
                        rec.fields[f as usize] = Some(Cow::Owned(String::new()));
                    }
                }
                Ok(Event::Start(s)) => {
                    let name = s.name().as_ref().to_owned();
                    let base64 = match s.try_get_attribute("encoding") {
                        Ok(Some(a)) if a.value == "base64" => true,
                        Ok(Some(a)) => {
                            let msg = format!("record {id}: <{name}> has unknown encoding {:?}", a.value);
                            return Err(self.err(msg));
                        }
                        Ok(None) => false,
                        Err(e) => return Err(self.err(format!("record {id}: <{name}>: {e}"))),
                    };
                    if name.as_bytes() == b"Chain" && !base64 {
                        self.read_text(id, &name)?;
                        let c = chain::parse_hex(&self.text)
                            .ok_or_else(|| self.err(format!("record {id}: <Chain> is not 64 hex digits")))?;
                        rec.chain = Some(c);
                        continue;
                    }
                    match Field::from_xml(name.as_bytes()) {
                        Some(f) => {
                            self.read_text(id, &name)?;
                            let value = if base64 {
                                decode_base64(&self.text)
                                    .map_err(|r| self.err(format!("record {id}: <{name}>: {r}")))?
                            } else {
                                std::mem::take(&mut self.text)
                            };
                            rec.fields[f as usize] = Some(Cow::Owned(value));
                        }
                        None => {
                            let mut skip = Vec::new();
                            self.reader
                                .read_to_end_into(quick_xml::name::QName(&name), &mut skip)
                                .map_err(|e| self.err(format!("record {id}: {e}")))?;
                        }
                    }
                }
                Ok(other) => {
                    let what = describe(&other);
                    return Err(self.err(format!("record {id}: unexpected {what}")));
                }
            }
        }
    }

    /// Reads the text content of a field element up to its end tag into `self.text`.
    fn read_text(&mut self, id: u64, name: &str) -> Result<(), XmlError> {
        self.text.clear();
        loop {
            self.buf.clear();
            let ev = self.reader.read_event_into(&mut self.buf);
            match ev {
                Err(e) => return Err(self.xml_err(e)),
                Ok(Event::Text(t)) => self.text.push_str(&t.xml10_content()),
                Ok(Event::CData(c)) => self.text.push_str(&c.xml10_content()),
                Ok(Event::GeneralRef(r)) => {
                    if r.is_char_ref() {
                        match r.resolve_char_ref() {
                            Ok(Some(c)) => self.text.push(c),
                            _ => {
                                let bad = format!("record {id}: <{name}>: invalid character reference &{};", &*r);
                                return Err(self.err(bad));
                            }
                        }
                    } else {
                        match quick_xml::escape::resolve_xml_entity(&r) {
                            Some(s) => self.text.push_str(s),
                            None => {
                                let bad = format!("record {id}: <{name}>: unknown entity &{};", &*r);
                                return Err(self.err(bad));
                            }
                        }
                    }
                }
                Ok(Event::Comment(_) | Event::PI(_)) => {}
                Ok(Event::End(_)) => return Ok(()),
                Ok(Event::Eof) => return Err(self.err(format!("record {id} is cut off inside <{name}>"))),
                Ok(other) => {
                    let what = describe(&other);
                    return Err(self.err(format!("record {id}: unexpected {what} inside <{name}>")));
                }
            }
        }
    }
}

fn describe(ev: &Event<'_>) -> String {
    match ev {
        Event::Start(s) => format!("<{}>", s.name().as_ref()),
        Event::Empty(s) => format!("<{}/>", s.name().as_ref()),
        Event::End(e) => format!("</{}>", e.name().as_ref()),
        Event::Text(_) | Event::GeneralRef(_) => "text".into(),
        Event::CData(_) => "CDATA".into(),
        Event::Eof => "end of file".into(),
        _ => "markup".into(),
    }
}

fn attr(s: &BytesStart<'_>, name: &str) -> Result<Option<String>, String> {
    match s.try_get_attribute(name) {
        Ok(Some(a)) => a
            .normalized_value(XmlVersion::Implicit1_0)
            .map(|v| Some(v.into_owned()))
            .map_err(|e| format!("attribute {name}: {e}")),
        Ok(None) => Ok(None),
        Err(e) => Err(format!("<{}>: {e}", s.name().as_ref())),
    }
}

fn num_attr(s: &BytesStart<'_>, name: &str) -> Result<Option<u64>, String> {
    match attr(s, name)? {
        None => Ok(None),
        Some(v) => v
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("<{}> attribute {name}={v:?} is not a number", s.name().as_ref())),
    }
}

fn parse_header(s: &BytesStart<'_>) -> Result<Header, String> {
    Ok(Header {
        host: attr(s, "host")?.unwrap_or_default(),
        created: attr(s, "created")?.unwrap_or_default(),
        first_id: num_attr(s, "first-id")?,
        format: num_attr(s, "format")?.map(|v| v as u32),
        chain_start: digest_attr(s, "chain-start")?,
        previous: attr(s, "previous")?,
    })
}

fn parse_id(s: &BytesStart<'_>) -> Result<u64, String> {
    match num_attr(s, "id")? {
        Some(0) => Err("<Record id=\"0\">: ids start at 1".into()),
        Some(id) => Ok(id),
        None => Err("<Record> without an id attribute".into()),
    }
}

fn parse_seal(s: &BytesStart<'_>) -> Result<SealInfo, String> {
    let need = |name: &str| num_attr(s, name)?.ok_or_else(|| format!("<Seal> without {name}"));
    Ok(SealInfo {
        first_id: need("first-id")?,
        last_id: need("last-id")?,
        records: need("records")?,
        sealed: attr(s, "sealed")?.unwrap_or_default(),
        chain_end: digest_attr(s, "chain-end")?,
        mac: match (attr(s, "key-id")?, digest_attr(s, "mac")?) {
            (Some(id), Some(mac)) => Some((id, mac)),
            (None, None) => None,
            _ => return Err("<Seal> has only one of key-id and mac".into()),
        },
    })
}

fn digest_attr(s: &BytesStart<'_>, name: &str) -> Result<Option<Digest>, String> {
    match attr(s, name)? {
        None => Ok(None),
        Some(v) => chain::parse_hex(&v)
            .map(Some)
            .ok_or_else(|| format!("<{}> attribute {name} is not 64 hex digits", s.name().as_ref())),
    }
}

fn decode_base64(text: &str) -> Result<String, String> {
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|e| format!("bad base64: {e}"))?;
    String::from_utf8(bytes).map_err(|_| "base64 content is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::FIELDS;
    use crate::xml_write;

    fn doc(records: &[Record<'_>], sealed: bool) -> Vec<u8> {
        let start = [0u8; 32];
        let at = records.first().map(|r| xml_write::FileStart { first_id: r.id, chain_start: &start, previous: None });
        let mut out = xml_write::header("pbx01", "2026-11-22T09:45:37.120+01:00", at);
        for r in records {
            xml_write::record(&mut out, r);
        }
        if sealed {
            let info = SealInfo {
                first_id: records[0].id,
                last_id: records.last().unwrap().id,
                records: records.len() as u64,
                sealed: "2026-11-22T10:00:00.000+01:00".into(),
                chain_end: None,
                mac: None,
            };
            out.extend(xml_write::seal(&info));
        }
        out
    }

    fn hostile() -> Record<'static> {
        let mut r = Record { id: 5, ..Default::default() };
        for (i, spec) in FIELDS.iter().enumerate() {
            r.set(spec.field, format!("  {i} <a & b> ]]> \"q\" 'a'\t\r\nline\r2 日本語 😀 \u{1} \u{FFFF}  "));
        }
        r
    }

    #[test]
    fn hostile_text_round_trips() {
        let r = hostile();
        let bytes = doc(std::slice::from_ref(&r), true);
        let mut rd = XmlReader::new(&bytes[..]);
        assert_eq!(rd.header().unwrap().first_id, Some(5));
        let back = rd.next_record().unwrap().unwrap();
        assert_eq!(back, r);
        assert!(rd.next_record().unwrap().is_none());
        assert!(rd.closed());
        assert_eq!(rd.seal().unwrap().records, 1);
    }

    #[test]
    fn torn_tail_stops_at_last_complete_record() {
        let mut a = Record { id: 1, ..Default::default() };
        a.set(Field::AppName, "x");
        let mut b = a.clone();
        b.id = 2;
        let full = doc(&[a.clone(), b], false);
        let mut one = doc(std::slice::from_ref(&a), false);
        let cut = &full[..full.len() - 5];
        let mut rd = XmlReader::new(cut);
        assert_eq!(rd.next_record().unwrap().unwrap().id, 1);
        assert!(rd.next_record().is_err(), "cut record is an error");
        assert_eq!(rd.good_end() as usize, one.len());
        one.truncate(rd.good_end() as usize);
        assert!(one.ends_with(b"</Record>"));
    }

    /// The fast scanner and the full parser agree on everything.
    #[test]
    fn fast_and_full_parsers_agree() {
        let mut recs = vec![hostile()];
        for i in 6..40 {
            let mut r = Record { id: i, ..Default::default() };
            r.set(Field::AppName, format!("app {i} & <x>"));
            r.set(Field::ActionData, "line1\r\nline2 \u{1}".repeat(i as usize % 3));
            recs.push(r);
        }
        let bytes = doc(&recs, true);
        let mut fast = XmlReader::new(&bytes[..]);
        let mut slow = SlowReader::new(&bytes[..]);
        loop {
            let (a, b) = (fast.next_record().unwrap(), slow.next_record().unwrap());
            assert_eq!(a, b);
            assert_eq!(fast.good_end(), slow.good_end());
            if a.is_none() {
                break;
            }
        }
        assert!(matches!(fast.mode, Mode::Slow { .. }), "the seal is read by the full parser");
        assert_eq!(fast.seal(), slow.seal());
        assert_eq!(fast.seal_end(), slow.seal_end());
        assert!(fast.closed());
        // Reading a record with a raw CR falls back mid-file and stays exact.
        let raw = String::from_utf8(bytes.clone()).unwrap().replacen("app 20 &amp;", "app\r 20 &amp;", 1);
        let mut fast = XmlReader::new(raw.as_bytes());
        let ids: Vec<_> = std::iter::from_fn(|| fast.next_record().unwrap()).map(|r| r.id).collect();
        assert_eq!(ids, (5..40).collect::<Vec<_>>());
    }

    #[test]
    fn unknown_elements_are_skipped() {
        let x = br#"<AuditTrail host="h" created="c"><Future><x/></Future><Record id="3"><AppName>a</AppName><Colour>red</Colour></Record></AuditTrail>"#;
        let mut rd = XmlReader::new(&x[..]);
        let r = rd.next_record().unwrap().unwrap();
        assert_eq!((r.id, r.get(Field::AppName)), (3, Some("a")));
        assert!(rd.next_record().unwrap().is_none());
    }

    /// A record longer than what is read ahead is searched once, not again
    /// from its start after every read: the bytes the scanner looks at stay
    /// linear in the input (a quadratic scan would look at about 30 times
    /// more here).
    #[test]
    fn a_long_text_node_is_scanned_once() {
        let mut r = Record { id: 1, ..Default::default() };
        r.set(Field::AppName, "a");
        r.set(Field::ActionData, "A".repeat(16 << 20));
        let mut bytes = doc(std::slice::from_ref(&r), false);
        // And a long run of white space after it.
        bytes.extend(std::iter::repeat_n(b' ', 8 << 20));
        let mut next = r.clone();
        next.id = 2;
        xml_write::record(&mut bytes, &next);
        let mut rd = XmlReader::new(&bytes[..]);
        assert_eq!(rd.next_record().unwrap().unwrap(), r);
        assert_eq!(rd.next_record().unwrap().unwrap(), next);
        let examined = rd.examined();
        assert!(matches!(rd.mode, Mode::Fast(_)), "read by the fast scanner");
        assert!(
            examined <= 3 * bytes.len() as u64,
            "the scanner looked at {examined} bytes for {} bytes of input",
            bytes.len()
        );
    }

    #[test]
    fn malformed_is_an_error() {
        for bad in [
            &b"<AuditTrail host='h' created='c'><Record id='1'><AppName>a</UserName></Record></AuditTrail>"[..],
            b"<AuditTrail><Record><AppName>a</AppName></Record></AuditTrail>",
            b"<AuditTrail><Record id='x'/></AuditTrail>",
            b"<AuditTrail><Record id='1'><AppName>&bogus;</AppName></Record></AuditTrail>",
            b"",
        ] {
            let mut rd = XmlReader::new(bad);
            let mut res = Ok(None);
            for _ in 0..3 {
                res = rd.next_record();
                if res.is_err() {
                    break;
                }
            }
            assert!(res.is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
