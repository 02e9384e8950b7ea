//! Reading the XML file format back, record by record, with flat memory.
//!
//! The reader is strict about what it needs (a well-formed `AuditTrail`
//! document, `Record` elements with numeric ids, known fields) and lenient
//! about what it does not know: unknown attributes, and unknown elements in a
//! record or at the top level, are skipped so the format can grow.
//!
//! It also serves recovery: [`XmlReader::good_end`] is the byte offset just
//! past the last complete record (or the root start tag), where a torn tail
//! is cut.

use std::borrow::Cow;
use std::io::BufRead;

use base64::Engine;
use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};

use crate::record::{Field, Record};
use crate::xml_write::SealInfo;

/// The attributes of the root element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub host: String,
    pub created: String,
    pub first_id: Option<u64>,
    pub format: Option<u32>,
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
pub struct XmlReader<R: BufRead> {
    reader: quick_xml::Reader<R>,
    buf: Vec<u8>,
    text: String,
    state: State,
    header: Option<Header>,
    seal: Option<SealInfo>,
    good_end: u64,
    seal_end: Option<u64>,
}

impl<R: BufRead> XmlReader<R> {
    pub fn new(input: R) -> Self {
        let mut reader = quick_xml::Reader::from_reader(input);
        let cfg = reader.config_mut();
        cfg.trim_text(false);
        cfg.check_end_names = true;
        cfg.expand_empty_elements = false;
        XmlReader {
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
    })
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
        let mut out = xml_write::header("pbx01", "2026-11-22T09:45:37.120+01:00", records.first().map(|r| r.id));
        for r in records {
            xml_write::record(&mut out, r);
        }
        if sealed {
            let info = SealInfo {
                first_id: records[0].id,
                last_id: records.last().unwrap().id,
                records: records.len() as u64,
                sealed: "2026-11-22T10:00:00.000+01:00".into(),
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

    #[test]
    fn unknown_elements_are_skipped() {
        let x = br#"<AuditTrail host="h" created="c"><Future><x/></Future><Record id="3"><AppName>a</AppName><Colour>red</Colour></Record></AuditTrail>"#;
        let mut rd = XmlReader::new(&x[..]);
        let r = rd.next_record().unwrap().unwrap();
        assert_eq!((r.id, r.get(Field::AppName)), (3, Some("a")));
        assert!(rd.next_record().unwrap().is_none());
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
