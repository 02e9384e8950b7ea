//! Reading the XML file format back, record by record, with flat memory.
//!
//! The reader is strict about what makes a document: every byte must be
//! well-formed XML 1.0 (see [`crate::store::xml::wellformed`] for what is checked beyond the
//! parser), the root an `AuditTrail` element, then `Record` elements with
//! numeric ids and each field at most once, then at most one empty `Seal`,
//! then nothing but comments, processing instructions and white space. It is
//! lenient about what it does not know: unknown attributes, and unknown
//! elements in a record or at the top level, are skipped so the format can
//! grow. The first such thing, or fields out of the schema's order, is kept as
//! a [`Misfit`]; `verify` refuses misfits in files of a format this version
//! knows, where the schema has no room for them.
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
use quick_xml::events::Event;

use crate::record::{Field, NFIELDS, Record};
use crate::store::chain::{self, Digest};
use crate::store::xml::wellformed;
use crate::store::xml::write::SealInfo;

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
    /// `chain-origin="new"`: the file starts a chain (format 3).
    pub chain_origin: bool,
}

impl Header {
    /// The chain value the first record continues from: the header's
    /// [`chain::header_value`] from format 3 on, the bare `chain-start`
    /// before; `None` for a file without a chain.
    pub fn chain_value(&self) -> Option<Digest> {
        let start = self.chain_start.as_ref()?;
        if self.format.unwrap_or(1) < 3 {
            return Some(*start);
        }
        Some(chain::header_value(&chain::HeaderFacts {
            format: self.format.unwrap_or(1),
            host: &self.host,
            created: &self.created,
            first_id: self.first_id.unwrap_or(0),
            previous: self.previous.as_deref(),
            origin: self.chain_origin,
            chain_start: start,
        }))
    }
}

/// Why a document cannot be read; `offset` is the byte where it went wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[error("at byte {offset}: {reason}")]
pub struct XmlError {
    pub offset: u64,
    pub reason: String,
    /// The record being read, once its start tag was.
    pub record: Option<u64>,
    /// The input ended where the document goes on (inside a record or an
    /// element): what a file cut short looks like, as against bytes that
    /// are not well-formed.
    pub cut: bool,
}

/// Something well-formed that the schema of the formats this version knows
/// has no room for: an unknown element or attribute, fields out of order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Misfit {
    pub offset: u64,
    pub record: Option<u64>,
    pub what: String,
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
/// parser. It accepts only that layout, checking every byte of each record it
/// reads; at the first thing it does not expect (the seal, an unknown
/// element, CDATA, an unusual reference or character, a torn tail) it hands
/// the rest of the stream, from the start of that record, to the full parser,
/// behind a synthetic root start tag; byte offsets are translated back, so
/// results and error positions are the same as if the full parser had read it
/// all.
pub struct XmlReader<R: BufRead> {
    mode: Mode<R>,
    header: Option<Header>,
    /// A misfit in the root start tag.
    misfit: Option<Misfit>,
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

const BOM: &[u8] = b"\xEF\xBB\xBF";

impl<R: BufRead> XmlReader<R> {
    pub fn new(input: R) -> Self {
        let fast =
            Fast { src: input, buf: Vec::new(), pos: 0, base: 0, eof: false, good_end: 0, searched: 0, examined: 0 };
        XmlReader { mode: Mode::Fast(fast), header: None, misfit: None }
    }

    /// The root element's attributes; reads up to the root start tag if needed.
    pub fn header(&mut self) -> Result<&Header, XmlError> {
        if self.header.is_none() {
            self.read_header()?;
        }
        self.header.as_ref().ok_or_else(|| XmlError {
            offset: 0,
            reason: "no <AuditTrail> element".into(),
            record: None,
            cut: false,
        })
    }

    fn read_header(&mut self) -> Result<(), XmlError> {
        if let Mode::Fast(f) = &mut self.mode {
            // The header is small: parse it from the first block with the full parser.
            loop {
                // A byte-order mark is not counted in the parser's offsets.
                if f.buf.starts_with(BOM) {
                    break;
                }
                let mut probe = SlowReader::new(&f.buf[..]);
                if let Ok(h) = probe.header() {
                    let h = h.clone();
                    let end = probe.good_end() as usize;
                    if end < f.buf.len() || f.eof {
                        f.pos = end;
                        f.good_end = end as u64;
                        self.header = Some(h);
                        self.misfit = probe.misfit.take();
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
            // The synthetic tag is not the file's: its header was read already.
            rd.misfit = None;
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

    /// The first thing read so far that the schema has no room for.
    pub fn misfit(&self) -> Option<Misfit> {
        if let Some(m) = &self.misfit {
            return Some(m.clone());
        }
        match &self.mode {
            Mode::Slow { rd, delta } => rd.misfit.clone().map(|mut m| {
                m.offset = (m.offset as i64 + delta).max(0) as u64;
                m
            }),
            _ => None,
        }
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
    XmlError { offset: 0, reason: format!("read error: {e}"), record: None, cut: false }
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
    // Fields come in the schema's order, each once, the chain value last.
    let mut next = 0;
    loop {
        rest = rest.trim_start_matches([' ', '\n', '\t']);
        if rest == "</Record>" {
            return Some(rec);
        }
        rest = rest.strip_prefix('<')?;
        if let Some(after) = rest.strip_prefix("Chain>") {
            if next > NFIELDS || after.len() < 72 || &after[64..72] != "</Chain>" {
                return None;
            }
            rec.chain = Some(chain::parse_hex(&after[..64])?);
            next = NFIELDS + 1;
            rest = &after[72..];
            continue;
        }
        let name_end = rest.find(['>', ' '])?;
        let field = Field::from_xml(&rest.as_bytes()[..name_end])?;
        if (field as usize) < next {
            return None;
        }
        next = field as usize + 1;
        let name = &rest[..name_end];
        let after = &rest[name_end..];
        let (base64, after) = match after.strip_prefix('>') {
            Some(a) => (false, a),
            None => (true, after.strip_prefix(" encoding=\"base64\">")?),
        };
        let lt = memchr::memchr(b'<', after.as_bytes())?;
        let text = &after[..lt];
        rest = after[lt..].strip_prefix("</")?.strip_prefix(name)?.strip_prefix('>')?;
        let mut value = fast_text(text)?;
        if base64 {
            value = decode_base64(&value).ok()?;
        }
        rec.fields[field as usize] = Some(Cow::Owned(value));
    }
}

/// Bytes of text the fast scanner copies as they are: everything but the
/// markup characters, CR (parsers turn a raw one into LF), the control
/// characters XML 1.0 does not allow, and the lead byte of U+FFFE / U+FFFF.
const fn plain_table() -> [bool; 256] {
    let mut t = [true; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b == b'\t' as usize || b == b'\n' as usize;
        b += 1;
    }
    t[b'<' as usize] = false;
    t[b'>' as usize] = false;
    t[b'&' as usize] = false;
    t[0xEF] = false;
    t
}
static PLAIN: [bool; 256] = plain_table();

/// The value of a field's text as audit-trail writes it (the references it
/// writes, no `>`, no raw CR, only characters XML allows); anything else is
/// left to the full parser.
fn fast_text(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut out: Option<String> = None;
    let (mut i, mut copied) = (0, 0);
    while i < b.len() {
        if PLAIN[b[i] as usize] {
            i += 1;
            continue;
        }
        match b[i] {
            0xEF => {
                if b.get(i + 1) == Some(&0xBF) && matches!(b.get(i + 2), Some(0xBE | 0xBF)) {
                    return None;
                }
                i += 1;
            }
            b'&' => {
                // The longest reference written is `&quot;`.
                let window = &b[i + 1..b.len().min(i + 6)];
                let semi = memchr::memchr(b';', window)?;
                let rep = match &window[..semi] {
                    b"lt" => "<",
                    b"gt" => ">",
                    b"amp" => "&",
                    b"quot" => "\"",
                    b"apos" => "'",
                    b"#13" => "\r",
                    b"#10" => "\n",
                    b"#9" => "\t",
                    _ => return None,
                };
                let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
                o.push_str(&text[copied..i]);
                o.push_str(rep);
                i += semi + 2;
                copied = i;
            }
            _ => return None,
        }
    }
    Some(match out {
        Some(mut o) => {
            o.push_str(&text[copied..]);
            o
        }
        None => text.to_owned(),
    })
}

/// A start tag, checked and with its values normalised.
struct OwnedTag {
    name: String,
    attrs: Vec<(String, String)>,
}

impl OwnedTag {
    fn from(t: wellformed::Tag<'_>) -> OwnedTag {
        OwnedTag {
            name: t.name.to_owned(),
            attrs: t.attrs.into_iter().map(|(n, v)| (n.to_owned(), v.into_owned())).collect(),
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The first attribute not in `known`.
    fn unknown_attr(&self, known: &[&str]) -> Option<&str> {
        self.attrs.iter().map(|(n, _)| n.as_str()).find(|n| !known.contains(n))
    }
}

/// One piece of the document, checked.
enum Piece {
    Start(OwnedTag),
    Empty(OwnedTag),
    End,
    /// Character data (text, references, CDATA); `blank` when it is only
    /// white space.
    Chars {
        blank: bool,
    },
    /// A comment, a processing instruction or the XML declaration.
    Misc,
    Eof,
}

const ROOT_ATTRS: &[&str] = &["format", "host", "created", "first-id", "chain-start", "previous", "chain-origin"];
const SEAL_ATTRS: &[&str] = &["first-id", "last-id", "records", "sealed", "chain-end", "key-id", "mac"];

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
    /// Pieces read so far: the XML declaration may only be the first.
    pieces: u64,
    misfit: Option<Misfit>,
}

impl<R: BufRead> SlowReader<R> {
    fn new(input: R) -> Self {
        let mut reader = quick_xml::Reader::from_reader(input);
        let cfg = reader.config_mut();
        cfg.trim_text(false);
        cfg.check_end_names = true;
        cfg.expand_empty_elements = false;
        cfg.allow_unmatched_ends = false;
        cfg.allow_dangling_amp = false;
        SlowReader {
            reader,
            buf: Vec::with_capacity(4096),
            text: String::new(),
            state: State::BeforeRoot,
            header: None,
            seal: None,
            good_end: 0,
            seal_end: None,
            pieces: 0,
            misfit: None,
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

    /// The input ended inside the document.
    fn cut_err(&self, reason: impl Into<String>) -> XmlError {
        XmlError { cut: true, ..self.err(reason) }
    }

    fn err(&self, reason: impl Into<String>) -> XmlError {
        XmlError { offset: self.reader.buffer_position(), reason: reason.into(), record: None, cut: false }
    }

    /// Keeps the first misfit.
    fn note(&mut self, record: Option<u64>, what: impl FnOnce() -> String) {
        if self.misfit.is_none() {
            self.misfit = Some(Misfit { offset: self.reader.buffer_position(), record, what: what() });
        }
    }

    /// Reads the next piece and checks it. Character data is appended to
    /// `self.text` when `collect` is set.
    fn piece(&mut self, collect: bool) -> Result<Piece, XmlError> {
        let at = self.reader.buffer_position();
        let first = self.pieces == 0 && at == 0;
        self.pieces += 1;
        self.buf.clear();
        let ev = match self.reader.read_event_into(&mut self.buf) {
            Ok(ev) => ev,
            Err(e) => {
                return Err(XmlError {
                    offset: self.reader.error_position(),
                    reason: e.to_string(),
                    record: None,
                    cut: false,
                });
            }
        };
        let bad = |reason: String| XmlError { offset: at, reason, record: None, cut: false };
        Ok(match ev {
            Event::Start(s) => Piece::Start(OwnedTag::from(wellformed::parse_tag(&s).map_err(bad)?)),
            Event::Empty(s) => Piece::Empty(OwnedTag::from(wellformed::parse_tag(&s).map_err(bad)?)),
            // quick-xml checks that it closes the element open, and allows
            // only white space after the name.
            Event::End(_) => Piece::End,
            Event::Text(t) => {
                wellformed::check_text(&t).map_err(bad)?;
                if collect {
                    self.text.push_str(&t.xml10_content());
                }
                Piece::Chars { blank: wellformed::all_space(&t) }
            }
            Event::CData(c) => {
                wellformed::check_cdata(&c).map_err(bad)?;
                if collect {
                    self.text.push_str(&c.xml10_content());
                }
                Piece::Chars { blank: false }
            }
            Event::GeneralRef(r) => {
                let v = wellformed::resolve_ref(&r).map_err(bad)?;
                if collect {
                    v.push_to(&mut self.text);
                }
                Piece::Chars { blank: false }
            }
            Event::Comment(c) => {
                wellformed::check_comment(&c).map_err(bad)?;
                Piece::Misc
            }
            Event::PI(p) => {
                wellformed::check_pi(&p).map_err(bad)?;
                Piece::Misc
            }
            Event::Decl(d) => {
                if !first {
                    return Err(bad("an XML declaration is only allowed at the very start of the document".into()));
                }
                wellformed::check_decl(&d).map_err(bad)?;
                Piece::Misc
            }
            Event::DocType(_) => return Err(bad("a DOCTYPE is not allowed in an audit-trail file".into())),
            Event::Eof => Piece::Eof,
        })
    }

    fn advance_to_root(&mut self) -> Result<(), XmlError> {
        while self.state == State::BeforeRoot {
            match self.piece(false)? {
                Piece::Misc | Piece::Chars { blank: true } => {}
                Piece::Start(t) if t.name == "AuditTrail" => {
                    let h = self.parse_header(&t).map_err(|r| self.err(r))?;
                    self.header = Some(h);
                    self.state = State::InRoot;
                    self.good_end = self.reader.buffer_position();
                }
                Piece::Eof => return Err(self.err("no <AuditTrail> element (empty or truncated file)")),
                other => {
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
            let piece = self.piece(false)?;
            let closed = self.state == State::Closed;
            match piece {
                Piece::Eof => return Ok(None),
                Piece::Misc | Piece::Chars { blank: true } => {}
                Piece::Chars { .. } if closed => return Err(self.err("text after </AuditTrail>")),
                Piece::Chars { .. } => return Err(self.err("unexpected text between records")),
                p @ (Piece::Start(_) | Piece::Empty(_)) if closed => {
                    let what = describe(&p);
                    return Err(self.err(format!("{what} after </AuditTrail>")));
                }
                Piece::Start(t) if t.name == "Record" => {
                    let id = self.record_start(&t)?;
                    let rec = self.read_record(id).map_err(|mut e| {
                        e.record = Some(id);
                        e
                    })?;
                    self.good_end = self.reader.buffer_position();
                    return Ok(Some(rec));
                }
                Piece::Empty(t) if t.name == "Record" => {
                    let id = self.record_start(&t)?;
                    self.good_end = self.reader.buffer_position();
                    return Ok(Some(Record { id, ..Default::default() }));
                }
                Piece::Empty(t) if t.name == "Seal" => {
                    if self.seal.is_some() {
                        return Err(self.err("more than one <Seal>"));
                    }
                    if let Some(a) = t.unknown_attr(SEAL_ATTRS) {
                        let a = a.to_owned();
                        self.note(None, || format!("<Seal> has an unknown attribute {a}"));
                    }
                    if t.get("sealed").is_none() {
                        self.note(None, || "<Seal> has no sealed attribute".into());
                    }
                    self.seal = Some(parse_seal(&t).map_err(|r| self.err(r))?);
                    self.seal_end = Some(self.reader.buffer_position());
                }
                Piece::Start(t) if t.name == "Seal" => return Err(self.err("<Seal> must be an empty element")),
                Piece::Start(t) => {
                    // An element this version does not know: skip it whole.
                    self.note(None, || format!("unknown element <{}>", t.name));
                    self.skip()?;
                }
                Piece::Empty(t) => self.note(None, || format!("unknown element <{}/>", t.name)),
                Piece::End => self.state = State::Closed,
            }
        }
    }

    /// Checks a record's start tag, returns its id.
    fn record_start(&mut self, t: &OwnedTag) -> Result<u64, XmlError> {
        if self.seal.is_some() {
            return Err(self.err("a <Record> after the <Seal>"));
        }
        let id = parse_id(t).map_err(|r| self.err(r))?;
        if let Some(a) = t.unknown_attr(&["id"]) {
            let a = a.to_owned();
            self.note(Some(id), || format!("record {id}: <Record> has an unknown attribute {a}"));
        }
        Ok(id)
    }

    /// Skips the rest of an element whose start tag was read.
    fn skip(&mut self) -> Result<(), XmlError> {
        let mut depth = 1usize;
        loop {
            match self.piece(false)? {
                Piece::Start(_) => depth += 1,
                Piece::End => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                Piece::Eof => return Err(self.cut_err("the file is cut off inside an element")),
                _ => {}
            }
        }
    }

    fn read_record(&mut self, id: u64) -> Result<Record<'static>, XmlError> {
        let mut rec = Record { id, ..Default::default() };
        // Where the schema's order of fields is (the chain value comes last).
        let mut next = 0;
        loop {
            match self.piece(false)? {
                Piece::Eof => return Err(self.cut_err(format!("record {id} is cut off"))),
                Piece::Misc | Piece::Chars { blank: true } => {}
                Piece::Chars { .. } => return Err(self.err(format!("record {id}: unexpected text"))),
                Piece::End => return Ok(rec), // end names are checked by the parser
                Piece::Empty(t) | Piece::Start(t) if t.name == "Chain" && rec.chain.is_some() => {
                    return Err(self.err(format!("record {id}: <Chain> is given twice")));
                }
                Piece::Start(t) if t.name == "Chain" => {
                    if let Some(a) = t.unknown_attr(&[]) {
                        let a = a.to_owned();
                        self.note(Some(id), || format!("record {id}: <Chain> has an unknown attribute {a}"));
                    }
                    self.read_text(id, "Chain")?;
                    let c = chain::parse_hex(&self.text)
                        .ok_or_else(|| self.err(format!("record {id}: <Chain> is not 64 hex digits")))?;
                    rec.chain = Some(c);
                    next = NFIELDS + 1;
                }
                Piece::Empty(t) if t.name == "Chain" => {
                    return Err(self.err(format!("record {id}: <Chain> is not 64 hex digits")));
                }
                piece @ (Piece::Start(_) | Piece::Empty(_)) => {
                    let (t, empty) = match piece {
                        Piece::Start(t) => (t, false),
                        Piece::Empty(t) => (t, true),
                        _ => unreachable!("matched above"),
                    };
                    let Some(f) = Field::from_xml(t.name.as_bytes()) else {
                        self.note(Some(id), || format!("record {id}: unknown element <{}>", t.name));
                        if !empty {
                            self.skip()?;
                        }
                        continue;
                    };
                    if rec.fields[f as usize].is_some() {
                        return Err(self.err(format!("record {id}: <{}> is given twice", t.name)));
                    }
                    if (f as usize) < next {
                        self.note(Some(id), || format!("record {id}: <{}> is out of the schema's order", t.name));
                    }
                    next = next.max(f as usize + 1);
                    let base64 = match t.get("encoding") {
                        Some("base64") => true,
                        Some(other) => {
                            let msg = format!("record {id}: <{}> has unknown encoding {other:?}", t.name);
                            return Err(self.err(msg));
                        }
                        None => false,
                    };
                    let plain_only = matches!(f, Field::Timestamp | Field::SourceIp | Field::Outcome);
                    let known: &[&str] = if plain_only { &[] } else { &["encoding"] };
                    if let Some(a) = t.unknown_attr(known) {
                        let a = a.to_owned();
                        self.note(Some(id), || format!("record {id}: <{}> has an unknown attribute {a}", t.name));
                    }
                    if empty {
                        rec.fields[f as usize] = Some(Cow::Owned(String::new()));
                        continue;
                    }
                    self.read_text(id, &t.name)?;
                    let value = if base64 {
                        decode_base64(&self.text).map_err(|r| self.err(format!("record {id}: <{}>: {r}", t.name)))?
                    } else {
                        std::mem::take(&mut self.text)
                    };
                    rec.fields[f as usize] = Some(Cow::Owned(value));
                }
            }
        }
    }

    /// Reads the text content of a field element up to its end tag into `self.text`.
    fn read_text(&mut self, id: u64, name: &str) -> Result<(), XmlError> {
        self.text.clear();
        loop {
            match self.piece(true)? {
                Piece::Chars { .. } | Piece::Misc => {}
                Piece::End => return Ok(()),
                Piece::Eof => return Err(self.cut_err(format!("record {id} is cut off inside <{name}>"))),
                other => {
                    let what = describe(&other);
                    return Err(self.err(format!("record {id}: unexpected {what} inside <{name}>")));
                }
            }
        }
    }

    fn parse_header(&mut self, t: &OwnedTag) -> Result<Header, String> {
        if let Some(a) = t.unknown_attr(ROOT_ATTRS) {
            let a = a.to_owned();
            self.note(None, || format!("<AuditTrail> has an unknown attribute {a}"));
        }
        if let Some(a) = ["host", "created"].into_iter().find(|a| t.get(a).is_none()) {
            self.note(None, || format!("<AuditTrail> has no {a} attribute"));
        }
        Ok(Header {
            host: t.get("host").unwrap_or_default().to_owned(),
            created: t.get("created").unwrap_or_default().to_owned(),
            first_id: num_attr(t, "first-id")?,
            format: format_attr(t)?,
            chain_start: digest_attr(t, "chain-start")?,
            previous: t.get("previous").map(str::to_owned),
            chain_origin: match t.get("chain-origin") {
                None => false,
                Some("new") => true,
                Some(v) => return Err(format!("<AuditTrail> attribute chain-origin={v:?} is not \"new\"")),
            },
        })
    }
}

fn describe(p: &Piece) -> String {
    match p {
        Piece::Start(t) => format!("<{}>", t.name),
        Piece::Empty(t) => format!("<{}/>", t.name),
        Piece::End => "an end tag".into(),
        Piece::Chars { .. } => "text".into(),
        Piece::Misc => "markup".into(),
        Piece::Eof => "end of file".into(),
    }
}

/// The root's `format`, written as the writer writes it (digits, no sign,
/// no leading zero): the format number is bound into the chain as a number,
/// and a reader that compares the text ("3") must read what verify read.
fn format_attr(t: &OwnedTag) -> Result<Option<u32>, String> {
    match t.get("format") {
        None => Ok(None),
        Some(v) if !v.starts_with('0') && !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            v.parse::<u32>().map(Some).map_err(|_| format!("<AuditTrail> attribute format={v:?} is out of range"))
        }
        Some(v) => Err(format!("<AuditTrail> attribute format={v:?} is not a format number such as \"3\"")),
    }
}

fn num_attr(t: &OwnedTag, name: &str) -> Result<Option<u64>, String> {
    match t.get(name) {
        None => Ok(None),
        Some(v) => {
            v.parse::<u64>().map(Some).map_err(|_| format!("<{}> attribute {name}={v:?} is not a number", t.name))
        }
    }
}

fn parse_id(t: &OwnedTag) -> Result<u64, String> {
    match num_attr(t, "id")? {
        Some(0) => Err("<Record id=\"0\">: ids start at 1".into()),
        Some(id) => Ok(id),
        None => Err("<Record> without an id attribute".into()),
    }
}

fn parse_seal(t: &OwnedTag) -> Result<SealInfo, String> {
    let need = |name: &str| num_attr(t, name)?.ok_or_else(|| format!("<Seal> without {name}"));
    Ok(SealInfo {
        first_id: need("first-id")?,
        last_id: need("last-id")?,
        records: need("records")?,
        sealed: t.get("sealed").unwrap_or_default().to_owned(),
        chain_end: digest_attr(t, "chain-end")?,
        mac: match (t.get("key-id"), digest_attr(t, "mac")?) {
            (Some(id), Some(mac)) => Some((id.to_owned(), mac)),
            (None, None) => None,
            _ => return Err("<Seal> has only one of key-id and mac".into()),
        },
    })
}

fn digest_attr(t: &OwnedTag, name: &str) -> Result<Option<Digest>, String> {
    match t.get(name) {
        None => Ok(None),
        Some(v) => {
            chain::parse_hex(v).map(Some).ok_or_else(|| format!("<{}> attribute {name} is not 64 hex digits", t.name))
        }
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
    use crate::store::xml::write;

    fn doc(records: &[Record<'_>], sealed: bool) -> Vec<u8> {
        let start = [0u8; 32];
        let at = records.first().map(|r| write::FileStart {
            first_id: r.id,
            chain_start: &start,
            previous: None,
            origin: true,
        });
        let mut out = write::header("pbx01", "2026-11-22T09:45:37.120+01:00", at);
        for r in records {
            write::record(&mut out, r);
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
            out.extend(write::seal(&info));
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
        let m = rd.misfit().expect("the first unknown element is kept");
        assert_eq!((m.record, m.what.as_str()), (None, "unknown element <Future>"));
    }

    /// Reads a whole document; the first error, if any.
    fn read_all(doc: &[u8]) -> Result<(Vec<Record<'static>>, Option<Misfit>), XmlError> {
        let mut rd = XmlReader::new(doc);
        let mut out = Vec::new();
        while let Some(r) = rd.next_record()? {
            out.push(r);
        }
        Ok((out, rd.misfit()))
    }

    fn sealed_doc() -> String {
        let mut a = Record { id: 1, ..Default::default() };
        a.set(Field::AppName, "x > y");
        a.set(Field::UserName, "u");
        let mut b = a.clone();
        b.id = 2;
        String::from_utf8(doc(&[a, b], true)).unwrap()
    }

    /// What audit-trail writes reads without a misfit; each edit below makes
    /// the document not well-formed and must be an error, wherever it is
    /// (read by the fast scanner or the full parser).
    #[test]
    fn every_byte_is_checked() {
        let good = sealed_doc();
        let (recs, misfit) = read_all(good.as_bytes()).unwrap();
        assert_eq!((recs.len(), misfit), (2, None));
        // A raw '>' and U+FFFD are well-formed (the scanner hands them over, the parser reads them).
        let raw = good.replacen("x &gt; y", "x > y \u{fffd}", 1);
        assert_eq!(read_all(raw.as_bytes()).unwrap().0[0].get(Field::AppName), Some("x > y \u{fffd}"));
        let edits: &[(&str, &str)] = &[
            (" created=", " junk\"<<<&&&\" created="),
            (" created=", " created=\"x\" created="),
            (" created=", "created="),
            ("<Record id=\"1\">", "<Record id=\"1\" junk>"),
            ("<Record id=\"2\">", "<Record id=\"2\" id=\"3\">"),
            ("<UserName>", "<UserName x>"),
            ("<UserName>u", "<UserName>u\u{1}"),
            ("<UserName>u", "<UserName>u\u{ffff}"),
            ("<UserName>u", "<UserName>u]]>"),
            ("<UserName>u", "<UserName>&#1;"),
            ("<UserName>u", "<UserName>&#X75;"),
            ("<UserName>u", "<UserName><![CDATA[\u{b}]]>"),
            ("<UserName>", "\u{c}<UserName>"),
            ("  <Record id=\"2\">", "<!-- a -- b -->  <Record id=\"2\">"),
            ("</Record>", "</Record junk>"),
            ("<Seal ", "<Seal junk "),
            ("<?xml version=\"1.0\"", "<?xml encoding=\"UTF-8\""),
            ("<?xml", " <?xml"),
            ("<AuditTrail", "<?xml version=\"1.0\"?><AuditTrail"),
            ("<AuditTrail", "<!DOCTYPE AuditTrail><AuditTrail"),
            ("</AuditTrail>\n", "</AuditTrail>\n\u{0}"),
            ("</AuditTrail>\n", "</AuditTrail>\n<!-- \u{1} -->"),
        ];
        for (from, to) in edits {
            let bad = good.replacen(from, to, 1);
            assert_ne!(bad, good, "{from:?} not found");
            assert!(read_all(bad.as_bytes()).is_err(), "accepted: {to:?}");
        }
    }

    /// Well-formed, but not what the schema of a known format has room for.
    #[test]
    fn misfits_are_kept_not_refused() {
        let good = sealed_doc();
        for (from, to, what) in [
            (
                "<Record id=\"2\">",
                "<Record id=\"2\" approved=\"yes\">",
                "record 2: <Record> has an unknown attribute approved",
            ),
            ("<AppName>", "<Colour>red</Colour><AppName>", "record 1: unknown element <Colour>"),
            (" created=\"2026-11-22T09:45:37.120+01:00\"", "", "<AuditTrail> has no created attribute"),
            ("<Seal ", "<Note/><Seal ", "unknown element <Note/>"),
        ] {
            let edited = good.replacen(from, to, 1);
            let (recs, misfit) = read_all(edited.as_bytes()).unwrap();
            assert_eq!(recs.len(), 2);
            assert_eq!(misfit.map(|m| m.what).as_deref(), Some(what));
        }
        // Out of the schema's order: the same values, and a misfit.
        let moved = good.replacen("\n    <UserName>u</UserName>", "", 1).replacen(
            "</AppName>",
            "</AppName><UserName>u</UserName>",
            1,
        );
        let (recs, misfit) = read_all(moved.as_bytes()).unwrap();
        assert_eq!(recs, read_all(good.as_bytes()).unwrap().0);
        assert_eq!(misfit.map(|m| m.what).as_deref(), Some("record 1: <UserName> is out of the schema's order"));
        // A field twice is an error: which value would count?
        let twice = good.replacen("</AppName>", "</AppName><AppName>y</AppName>", 1);
        let e = read_all(twice.as_bytes()).unwrap_err();
        assert_eq!(e.record, Some(1));
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
        write::record(&mut bytes, &next);
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
            b"<AuditTrail host='h' created='c' junk\"<<<&&&\"><Record id='1'/></AuditTrail>",
            b"<AuditTrail host='h' created='c'><Record id='1' id='2'/></AuditTrail>",
            b"<AuditTrail host='h' created='c'><Record id='1'/></AuditTrail><x/>",
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
