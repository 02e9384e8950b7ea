//! `verify`: proves a set of files intact (SPEC §8, §9) and names the first
//! bad file and record, and the kind of damage.
//!
//! # What is checked
//!
//! * Each file is well-formed XML 1.0, every byte of it (see
//!   [`crate::store::xml::wellformed`]), with nothing the schema of its format has no room
//!   for (a file of a newer format than this version knows fails: nothing
//!   in it can be vouched for); its
//!   records have the required fields, and ids run without a gap from the
//!   header's `first-id` to the seal's `last-id`.
//! * A `.gz` file is its gzip data and nothing more: bytes after it are
//!   damage of their own kind, told apart from data cut short
//!   ([`crate::store::gzread`]).
//! * The hash chain (see [`crate::store::chain`]): every record's `<Chain>` value is
//!   recomputed from its content and the value before it, starting from the
//!   header's `chain-start` (from format 3, from the hash of the whole
//!   header), and the seal's `chain-end` must follow from the last one (from
//!   format 3, with the seal's own attributes).
//! * No downgrade: once the set is chained, a file without chain data is
//!   `unchained` damage, and so is an unchained file that a format-3 file
//!   continues a chain from; an anchor needs every file up to it chained.
//! * Across files, in id order: each file starts right after the previous
//!   one ends, and from the chain value it ended with.
//! * With keys (`verify --key`): every sealed file carries a seal MAC made
//!   with one of them.
//! * With anchors (`verify --anchor ID:VALUE`): the set holds record ID and
//!   its chain value is VALUE.
//!
//! # What it proves, and what it cannot
//!
//! * Without a key, a change to any record, a swap, an insertion or a
//!   removal inside the set is found, *unless* whoever made it also
//!   recomputed the chain from that point to the newest file (the algorithm
//!   is public). Any earlier chain value held elsewhere (an anchor: the SIEM,
//!   `status --json`, a successor file kept offboard) exposes that.
//! * With the key, a file whose records or chain were rewritten fails its
//!   MAC; so does a file that another archiver sealed. The MAC covers a file,
//!   so it says *which file* was rewritten, not which record.
//! * Records and files removed from the *newest* end leave a shorter set
//!   that is consistent in itself. Only an anchor taken earlier (newer than
//!   what remains) reveals it; without one, verify cannot tell.
//! * A gap before the oldest file is normal (retention purges old files) and
//!   is not reported.
//! * The active file is chained but has no seal yet, so no MAC.
//! * Files written before the chain existed (format 1) are checked for ids
//!   and seals only, and are reported as unauthenticated when a key is given.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::record::{Field, Record};
use crate::store::chain::{self, Digest, MacKey, SealStatement};
use crate::store::gzread;
use crate::store::layout::{FileKind, kind_of};
use crate::store::reader::{self, open_any};
use crate::store::xml::read::{Header, XmlError, XmlReader};
use crate::store::xml::write::FORMAT_VERSION;

/// One file to check.
#[derive(Debug, Clone)]
pub struct Target {
    pub path: PathBuf,
    pub kind: FileKind,
}

/// The kinds of damage verify names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// A record's content no longer matches its chain value, or a seal was changed.
    Edited,
    /// Records or files are missing from inside the set.
    Missing,
    /// Records are out of order.
    Reordered,
    /// A record or file is there that was not written in that place.
    Inserted,
    /// A file, or the set, ends before its seal or an anchor says it should.
    Truncated,
    /// A file does not belong to this chain: another archiver's, or another key's.
    Foreign,
    /// A seal MAC does not match: the file was rewritten and its chain recomputed.
    Forged,
    /// A key was given, but the file carries no seal MAC.
    Unauthenticated,
    /// Not well-formed XML, not what the schema of its format allows, or not
    /// an audit-trail file at all.
    Malformed,
    /// A file without a hash chain where the set is chained: its chain data
    /// was removed (a downgrade), or an anchor covers records it cannot vouch for.
    Unchained,
    /// Bytes after the end of a `.gz` file's gzip data (padding, a copy
    /// tool's or someone's addition): the records before them are intact.
    Trailing,
}

impl Damage {
    pub fn label(self) -> &'static str {
        match self {
            Damage::Edited => "edited",
            Damage::Missing => "missing",
            Damage::Reordered => "reordered",
            Damage::Inserted => "inserted",
            Damage::Truncated => "truncated",
            Damage::Foreign => "foreign",
            Damage::Forged => "forged",
            Damage::Unauthenticated => "unauthenticated",
            Damage::Malformed => "malformed",
            Damage::Unchained => "unchained",
            Damage::Trailing => "trailing",
        }
    }
}

/// What was found wrong, where.
#[derive(Debug, Clone)]
pub struct Problem {
    pub path: PathBuf,
    pub record: Option<u64>,
    pub kind: Damage,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(id) = self.record {
            write!(f, ": record {id}")?;
        }
        write!(f, ": {}: {}", self.kind.label(), self.what)
    }
}

/// A chain value an auditor kept: `ID:VALUE`, or a bare VALUE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    pub id: Option<u64>,
    pub value: Digest,
}

impl std::str::FromStr for Anchor {
    type Err = String;

    fn from_str(s: &str) -> Result<Anchor, String> {
        let bad = || format!("anchor {s:?} is not ID:VALUE (VALUE being 64 hex digits, as in `status --json`)");
        let (id, value) = match s.split_once(':') {
            Some((id, v)) => (Some(id.trim().parse::<u64>().map_err(|_| bad())?), v),
            None => (None, s),
        };
        Ok(Anchor { id, value: chain::parse_hex(value).ok_or_else(bad)? })
    }
}

/// Keys and anchors to check against.
#[derive(Debug, Default, Clone)]
pub struct Options {
    pub keys: Vec<MacKey>,
    pub anchors: Vec<Anchor>,
}

/// The outcome of a check.
#[derive(Debug, Default)]
pub struct Report {
    pub files: usize,
    pub records: u64,
    pub first_id: Option<u64>,
    pub last_id: Option<u64>,
    /// The newest record whose chain value was verified, and that value.
    pub chain_head: Option<(u64, Digest)>,
    /// Sealed files whose MAC was checked.
    pub authenticated: usize,
    pub problems: Vec<Problem>,
    /// Not damage: e.g. the torn tail of an active file, repaired at next start.
    pub notes: Vec<String>,
}

/// What a file that checked out states about its place in the set.
#[derive(Debug, Clone)]
struct Span {
    path: PathBuf,
    first: u64,
    last: u64,
    chain_start: Option<Digest>,
    chain_end: Option<Digest>,
    previous: Option<String>,
    /// Format 3 and later: the header says whether the file starts a chain
    /// (`chain-origin="new"`) or continues one.
    says_origin: Option<bool>,
    /// Ids a `restore --force` recorded as handed out by the directory it
    /// replaced (its first record is the archiver's `Integrity` record saying
    /// so): a gap before this file that is not damage.
    declared_gap: Option<(u64, u64)>,
}

/// The ids an archiver `Integrity` record says the directory a restore
/// replaced had handed out: "ids A..B were handed out by the data directory
/// this restore replaced …".
fn declared_gap(r: &Record<'_>) -> Option<(u64, u64)> {
    if r.get(Field::AppName) != Some(crate::record::SELF_APP_NAME) || r.get(Field::ActionType) != Some("Integrity") {
        return None;
    }
    let rest = r.get(Field::ActionData)?.strip_prefix("ids ")?;
    let (range, tail) = rest.split_once(' ')?;
    if !tail.starts_with(crate::store::writer::GAP_REPLACED) {
        return None;
    }
    let (a, b) = range.split_once("..")?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Chain values the anchors ask about, filled in while records are checked
/// (with the file that holds the record).
struct Wanted {
    ids: HashMap<u64, Option<(Digest, PathBuf)>>,
    values: HashMap<Digest, bool>,
}

impl Wanted {
    fn new(anchors: &[Anchor]) -> Wanted {
        Wanted {
            ids: anchors.iter().filter_map(|a| a.id).map(|id| (id, None)).collect(),
            values: anchors.iter().filter(|a| a.id.is_none()).map(|a| (a.value, false)).collect(),
        }
    }

    fn see(&mut self, id: u64, value: &Digest, path: &Path) {
        if let Some(slot) = self.ids.get_mut(&id) {
            *slot = Some((*value, path.to_path_buf()));
        }
        if let Some(seen) = self.values.get_mut(value) {
            *seen = true;
        }
    }
}

/// Checks one file alone.
struct FileCheck<'a> {
    t: &'a Target,
    opts: &'a Options,
    rd: XmlReader<Box<dyn std::io::BufRead + Send>>,
    header: Header,
    /// Damage to a `.gz` file's compressed data, as its reader found it.
    gz: Option<gzread::Watch>,
}

/// The outcome of one file: its span when it checked out, else the problem.
type FileResult = Result<Span, Problem>;

impl FileCheck<'_> {
    fn problem(&self, record: Option<u64>, kind: Damage, what: impl Into<String>) -> Problem {
        Problem { path: self.t.path.clone(), record, kind, what: what.into() }
    }

    /// The ids of the records left in the file (for telling a swap from a gap).
    fn rest_ids(&mut self) -> HashSet<u64> {
        let mut ids = HashSet::new();
        while let Ok(Some(r)) = self.rd.next_record() {
            ids.insert(r.id);
        }
        ids
    }

    fn run(&mut self, report: &mut Report, wanted: &mut Wanted) -> FileResult {
        let header_first = self.header.first_id;
        // What a newer format binds into its chain, or may add, is not known
        // here: nothing in such a file can be vouched for (it fails closed).
        if let Some(f) = self.header.format.filter(|&f| f > FORMAT_VERSION) {
            return Err(self.problem(
                None,
                Damage::Malformed,
                format!("format {f} is newer than this version of audit-trail knows ({FORMAT_VERSION}): verify it with a newer version"),
            ));
        }
        let chained = self.header.chain_start.is_some();
        if !chained && self.header.format.is_some_and(|f| f >= 2) {
            return Err(self.problem(
                None,
                Damage::Unchained,
                format!(
                    "the header says format {} but has no chain-start: the file's chain data was removed",
                    self.header.format.unwrap_or_default()
                ),
            ));
        }
        // The chain value after the previous record, and the one before it
        // (to tell an insertion from an edit).
        let mut running = self.header.chain_value();
        let mut before_prev = None;
        let mut fields = Vec::with_capacity(1024);
        let mut first = None;
        let mut prev: Option<u64> = None;
        let mut count = 0u64;
        let mut gap = None;
        loop {
            let r = match self.rd.next_record() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) if self.t.kind == FileKind::Active => {
                    let after = prev.map_or("the header".to_string(), |p| format!("record {p}"));
                    report.notes.push(format!(
                        "{}: unfinished tail after {after} ({e}); it held no acknowledged record and is cut at the next start",
                        self.t.path.display()
                    ));
                    break;
                }
                Err(e) => return Err(self.parse_problem(prev, &e)),
            };
            let expected = prev.map(|p| p + 1).or(header_first);
            if let Some(exp) = expected
                && r.id != exp
            {
                return Err(self.id_problem(&r, exp, first));
            }
            for f in [Field::Timestamp, Field::AppName, Field::ActionType] {
                if r.get(f).is_none_or(str::is_empty) {
                    return Err(self.problem(Some(r.id), Damage::Edited, format!("<{}> is missing", f.spec().xml)));
                }
            }
            if chained {
                let start = running.expect("chained files have a running value");
                fields.clear();
                chain::fields(&r, &mut fields);
                let computed = chain::next(&fields, r.id, &start);
                if r.chain != Some(computed) {
                    return Err(self.chain_problem(&r, &fields, before_prev));
                }
                wanted.see(r.id, &computed, &self.t.path);
                before_prev = running;
                running = Some(computed);
            } else if r.chain.is_some() && first.is_none() {
                report.notes.push(format!(
                    "{}: records carry chain values but the header has no chain-start; the chain is not checked",
                    self.t.path.display()
                ));
            }
            if first.is_none() {
                gap = declared_gap(&r);
            }
            first.get_or_insert(r.id);
            prev = Some(r.id);
            count += 1;
        }
        if let Some(m) = self.rd.misfit() {
            let f = self.header.format.map_or(String::new(), |f| format!(" {f}"));
            let what = format!("not what the schema of format{f} allows, at byte {}: {}", m.offset, m.what);
            return Err(self.problem(m.record, Damage::Malformed, what));
        }
        let first = first.or(header_first).unwrap_or(1);
        let last = prev.unwrap_or(first - 1);
        let mut chain_end = running;
        if self.t.kind != FileKind::Active {
            chain_end = self.check_seal(first, last, count, running)?;
        }
        report.files += 1;
        report.records += count;
        if let (Some(c), true) = (running, count > 0) {
            report.chain_head = Some((last, c));
        }
        Ok(Span {
            path: self.t.path.clone(),
            first,
            last,
            chain_start: self.header.chain_start,
            chain_end,
            previous: self.header.previous.clone(),
            says_origin: (chained && self.header.format.is_some_and(|f| f >= 3)).then_some(self.header.chain_origin),
            declared_gap: gap,
        })
    }

    /// Names what a read error means: in the record being read when there
    /// was one, else after the last record read.
    fn parse_problem(&self, prev: Option<u64>, e: &XmlError) -> Problem {
        let after = match (e.record, prev) {
            (None, Some(p)) => format!(" after record {p}"),
            _ => String::new(),
        };
        // What the gzip reader found says more than what the XML reader made of it.
        match self.gz.as_ref().and_then(|w| w.get()) {
            // A member that gave nothing, after the whole document: bytes
            // after the data that merely start like a gzip member.
            Some(
                d @ (gzread::Damage::Cut { member, yielded: 0 } | gzread::Damage::Corrupt { member, yielded: 0, .. }),
            ) if *member > 0 && self.rd.closed() => {
                return self.problem(None, Damage::Trailing, format!("after the end of the document: {d}"));
            }
            Some(d @ gzread::Damage::Cut { .. }) => return self.problem(e.record, Damage::Truncated, d.to_string()),
            Some(d @ gzread::Damage::Corrupt { .. }) => {
                return self.problem(e.record, Damage::Malformed, format!("{d}{after}"));
            }
            _ => {}
        }
        if e.cut {
            self.problem(e.record, Damage::Truncated, format!("the file is cut short{after} {e}"))
        } else {
            self.problem(e.record, Damage::Malformed, format!("not well-formed{after} {e}"))
        }
    }

    fn id_problem(&mut self, r: &Record<'_>, exp: u64, first: Option<u64>) -> Problem {
        if r.id > exp {
            let rest = self.rest_ids();
            if rest.contains(&exp) {
                return self.problem(
                    Some(r.id),
                    Damage::Reordered,
                    format!("record {} comes before record {exp}: records are out of order", r.id),
                );
            }
            let what = format!("{} missing before it", id_range(exp, r.id - 1));
            return self.problem(Some(r.id), Damage::Missing, what);
        }
        if first.is_some_and(|f| r.id >= f) {
            return self.problem(
                Some(r.id),
                Damage::Inserted,
                format!("id {} appears a second time (expected {exp}): a record was inserted", r.id),
            );
        }
        self.problem(
            Some(r.id),
            Damage::Reordered,
            format!("id {} where {exp} was expected: records are out of order", r.id),
        )
    }

    /// Names what a chain value that does not follow means.
    fn chain_problem(&mut self, r: &Record<'_>, fields: &[u8], before_prev: Option<Digest>) -> Problem {
        let Some(stored) = r.chain else {
            return self.problem(Some(r.id), Damage::Edited, "the record has no <Chain> value");
        };
        // What comes next confirms the stored value or not.
        let next = self.rd.next_record();
        let confirmed = match &next {
            Ok(Some(n)) => n.chain == Some(chain::next(&fields_of(n), n.id, &stored)),
            Ok(None) => self.rd.seal().and_then(|s| s.chain_end) == Some(stored),
            Err(_) => false,
        };
        if confirmed {
            return self.problem(
                Some(r.id),
                Damage::Edited,
                "the record's content does not match its chain value: it was changed after it was written",
            );
        }
        // The record continues the chain from two records back, with the id
        // before its own: the record before it was inserted (later ids renumbered).
        if let Some(two_back) = before_prev
            && chain::next(fields, r.id - 1, &two_back) == stored
        {
            return self.problem(
                Some(r.id - 1),
                Damage::Inserted,
                format!("record {} was inserted: record {} continues the chain from before it", r.id - 1, r.id),
            );
        }
        if let Ok(Some(n)) = &next
            && n.chain == Some(chain::next(&fields_of(n), n.id + 1, &stored))
        {
            return self.problem(
                Some(r.id),
                Damage::Missing,
                "a record was removed before this one and the later ids renumbered",
            );
        }
        self.problem(
            Some(r.id),
            Damage::Edited,
            "the chain breaks here: this record does not follow from the one before \
             (records before it were removed, inserted or rewritten)",
        )
    }

    /// Checks the seal against the records read; returns its `chain-end`,
    /// where the next file continues from.
    fn check_seal(
        &self,
        first: u64,
        last: u64,
        count: u64,
        running: Option<Digest>,
    ) -> Result<Option<Digest>, Problem> {
        let (seal, closed) = (self.rd.seal(), self.rd.closed());
        let Some(seal) = seal.filter(|_| closed) else {
            let after = if count == 0 { "its header".to_string() } else { format!("record {last}") };
            return Err(self.problem(
                (count > 0).then_some(last),
                Damage::Truncated,
                format!("the file ends after {after} without its seal: it was cut short"),
            ));
        };
        if (seal.first_id, seal.last_id, seal.records) != (first, last, count) {
            let kind = if count < seal.records { Damage::Missing } else { Damage::Inserted };
            // The ids read ran without a gap, so the difference is at the end:
            // name the first record missing there, or the first one too many.
            let record =
                (first == seal.first_id).then(|| if count < seal.records { last + 1 } else { seal.last_id + 1 });
            return Err(self.problem(
                record,
                kind,
                format!(
                    "the seal says ids {}..{} ({} records) but the file holds {first}..{last} ({count} records)",
                    seal.first_id, seal.last_id, seal.records
                ),
            ));
        }
        // From format 3 the seal's chain-end covers the seal's own fields too.
        let chain_end = match running {
            Some(last_value) if self.header.format.is_some_and(|f| f >= 3) => {
                Some(chain::seal_value(seal.first_id, seal.last_id, seal.records, &seal.sealed, &last_value))
            }
            other => other,
        };
        if chain_end.is_some() && seal.chain_end != chain_end {
            return Err(self.problem(
                None,
                Damage::Edited,
                "the seal's chain-end does not follow from the last record and the seal: the seal was changed",
            ));
        }
        if self.opts.keys.is_empty() {
            return Ok(chain_end);
        }
        let (Some(start), Some(end)) = (self.header.chain_start, running) else {
            return Err(self.problem(
                None,
                Damage::Unauthenticated,
                "a key was given but the file has no hash chain (written before format 2)",
            ));
        };
        let Some((key_id, mac)) = &seal.mac else {
            return Err(self.problem(
                None,
                Damage::Unauthenticated,
                "a key was given but the seal carries no MAC (sealed without hmac_key_file, or the MAC was removed)",
            ));
        };
        let Some(key) = self.opts.keys.iter().find(|k| k.id() == key_id) else {
            return Err(self.problem(
                None,
                Damage::Foreign,
                format!("sealed with another key (key id {key_id}); not by this archiver, or with a key not given"),
            ));
        };
        let statement = SealStatement {
            host: &self.header.host,
            created: &self.header.created,
            sealed: &seal.sealed,
            first_id: seal.first_id,
            last_id: seal.last_id,
            records: seal.records,
            chain_start: &start,
            chain_end: &end,
        };
        if !key.check(&statement, mac) {
            return Err(self.problem(
                None,
                Damage::Forged,
                "the seal MAC does not match: the file was altered and its chain recomputed",
            ));
        }
        Ok(chain_end)
    }
}

fn fields_of(r: &Record<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    chain::fields(r, &mut out);
    out
}

/// Checks one file; also returns the bytes after a `.gz` file's gzip data,
/// damage of its own beside whatever else is wrong.
fn check_file(t: &Target, opts: &Options, report: &mut Report, wanted: &mut Wanted) -> (FileResult, Option<Problem>) {
    let problem = |kind, what: String| Problem { path: t.path.clone(), record: None, kind, what };
    let (input, gz) = match reader::open_watched(&t.path, true) {
        Ok(opened) => opened,
        Err(e) => return (Err(problem(Damage::Malformed, format!("cannot open: {e}"))), None),
    };
    let mut rd = XmlReader::new(input);
    let header = match rd.header() {
        Ok(h) => h.clone(),
        Err(e) => {
            let (kind, what) = match gz.as_ref().and_then(|w| w.get()) {
                Some(d @ gzread::Damage::Cut { .. }) => (Damage::Truncated, d.to_string()),
                Some(d) => (Damage::Malformed, format!("cannot read it: {d}")),
                None if e.reason.starts_with("no <AuditTrail>") || e.reason.starts_with("expected <AuditTrail>") => {
                    (Damage::Foreign, format!("not an audit-trail file: {e}"))
                }
                None => (Damage::Malformed, format!("not well-formed {e}")),
            };
            return (Err(problem(kind, what)), None);
        }
    };
    let mut check = FileCheck { t, opts, rd, header, gz };
    let result = check.run(report, wanted);
    let trailing = match check.gz.as_ref().and_then(|w| w.get()) {
        Some(d @ gzread::Damage::Trailing { .. }) => Some(problem(Damage::Trailing, d.to_string())),
        _ => None,
    };
    if result.is_ok() && trailing.is_none() && t.kind != FileKind::Active && !opts.keys.is_empty() {
        report.authenticated += 1;
    }
    (result, trailing)
}

/// The host a file's header names ("" when it cannot be read: the file's
/// own check then names the damage).
fn host_of(path: &Path) -> String {
    open_any(path).ok().and_then(|r| XmlReader::new(r).header().ok().map(|h| h.host.clone())).unwrap_or_default()
}

/// Checks the files of each host on their own (each host has its own ids
/// and chain); returns one report per host, by host name.
pub fn verify_by_host(targets: Vec<(u64, Target)>, opts: &Options) -> Vec<(String, Report)> {
    let mut groups: std::collections::BTreeMap<String, Vec<(u64, Target)>> = std::collections::BTreeMap::new();
    for t in targets {
        groups.entry(host_of(&t.1.path)).or_default().push(t);
    }
    groups.into_iter().map(|(host, ts)| (host, verify(ts, opts))).collect()
}

/// Checks files in id order, each alone and each against the one before.
pub fn verify(mut targets: Vec<(u64, Target)>, opts: &Options) -> Report {
    // Of twins (one file plain and archived), the plain one first: it is
    // what readers take, and a differing archived copy is named as the damage.
    targets.sort_by_key(|(first, t)| (*first, t.kind == FileKind::Archived, t.kind));
    let mut report = Report::default();
    let mut wanted = Wanted::new(&opts.anchors);
    let mut prev: Option<Span> = None;
    // The first chained file of the set: every file after it must be chained.
    let mut chained_since: Option<PathBuf> = None;
    let mut unchained: Vec<Span> = Vec::new();
    for (_, t) in &targets {
        let (result, trailing) = check_file(t, opts, &mut report, &mut wanted);
        let span = match result {
            Ok(s) => {
                report.problems.extend(trailing);
                s
            }
            Err(p) => {
                report.problems.push(p);
                report.problems.extend(trailing);
                // Already reported; do not blame the next file for its damage.
                prev = None;
                continue;
            }
        };
        if span.chain_start.is_none() {
            if let Some(since) = &chained_since {
                report.problems.push(Problem {
                    path: span.path.clone(),
                    record: None,
                    kind: Damage::Unchained,
                    what: format!(
                        "has no hash chain, but the set is chained from {} on: the file's chain data was removed",
                        since.display()
                    ),
                });
                prev = None;
                continue;
            }
            unchained.push(span.clone());
        } else {
            chained_since.get_or_insert_with(|| span.path.clone());
        }
        if let (Some(p), Some(false)) = (&prev, span.says_origin)
            && p.chain_start.is_none()
        {
            report.problems.push(Problem {
                path: p.path.clone(),
                record: None,
                kind: Damage::Unchained,
                what: format!(
                    "has no hash chain, but {} continues a chain from it: the file's chain data was removed",
                    span.path.display()
                ),
            });
        }
        if let Some(p) = &prev {
            if span.first == p.first && span.last == p.last && span.chain_end == p.chain_end {
                report.notes.push(format!("{} holds the same records as {}", t.path.display(), p.path.display()));
                // Counted once: the copy adds no file or record to the set.
                report.files -= 1;
                report.records -= (span.last + 1).saturating_sub(span.first);
                continue;
            }
            if file_stem(&span.path).is_some() && file_stem(&span.path) == file_stem(&p.path) {
                report.problems.push(Problem {
                    path: span.path.clone(),
                    record: None,
                    kind: Damage::Edited,
                    what: format!(
                        "is a copy of {} under the same name, but holds other records or another chain: one of \
                         the two was changed",
                        p.path.display()
                    ),
                });
                continue;
            }
            if span.declared_gap.is_some_and(|(a, b)| a == p.last + 1 && b + 1 == span.first) {
                report.notes.push(format!(
                    "{}: {} were handed out by the data directory a restore replaced (record {} says so)",
                    span.path.display(),
                    id_range(p.last + 1, span.first - 1),
                    span.first
                ));
                // The ids jump, but the chain still links the two files.
                if let (Some(end), Some(start)) = (p.chain_end, span.chain_start)
                    && end != start
                {
                    report.problems.push(Problem {
                        path: span.path.clone(),
                        record: None,
                        kind: Damage::Foreign,
                        what: format!(
                            "does not continue the chain of {} across the ids a restore replaced: it starts from {} \
                             but that file ends with {}",
                            p.path.display(),
                            chain::hex(&start),
                            chain::hex(&end)
                        ),
                    });
                }
            } else if let Some(problem) = continuity(p, &span) {
                report.problems.push(problem);
            }
        }
        if span.last >= span.first {
            report.first_id.get_or_insert(span.first);
            report.last_id = Some(span.last);
        }
        prev = Some(span);
    }
    check_anchors(opts, &wanted, &mut report, targets.last().map(|(_, t)| t.path.as_path()));
    // An anchor vouches for every record before it only through the chain.
    if let Some(newest_anchor) = opts.anchors.iter().filter_map(|a| a.id).max() {
        for s in unchained.iter().filter(|s| s.first <= newest_anchor && s.last >= s.first) {
            report.problems.push(Problem {
                path: s.path.clone(),
                record: None,
                kind: Damage::Unchained,
                what: format!(
                    "the anchor for record {newest_anchor} covers {} but this file has no hash chain, so nothing \
                     vouches for them (a file written before format 2, or one whose chain data was removed)",
                    id_range(s.first, s.last).trim_end_matches(" is").trim_end_matches(" are")
                ),
            });
        }
    }
    report
}

/// How `next` fails to continue `prev`, if it does.
fn continuity(prev: &Span, next: &Span) -> Option<Problem> {
    let problem = |record, kind, what| Some(Problem { path: next.path.clone(), record, kind, what });
    let prev_name = prev.path.display();
    if next.first > prev.last + 1 {
        let lost = match &next.previous {
            Some(name) if file_stem(&prev.path).is_none_or(|s| s != name) => {
                format!(" (the file before this one was {name})")
            }
            _ => String::new(),
        };
        return problem(
            Some(next.first),
            Damage::Missing,
            format!("{} missing between {prev_name} and this file{lost}", id_range(prev.last + 1, next.first - 1)),
        );
    }
    if next.first <= prev.last {
        return problem(
            Some(next.first),
            Damage::Inserted,
            format!("starts at id {} but {prev_name} already ends at {}", next.first, prev.last),
        );
    }
    match (prev.chain_end, next.chain_start) {
        (Some(end), Some(start)) if end != start => problem(
            None,
            Damage::Foreign,
            format!(
                "does not continue the chain of {prev_name}: it starts from {} but that file ends with {} \
                 (a file of another archiver, or one of the two was rewritten)",
                chain::hex(&start),
                chain::hex(&end)
            ),
        ),
        _ => None,
    }
}

/// "record N is" or "records A..B are".
fn id_range(from: u64, to: u64) -> String {
    if from == to { format!("record {from} is") } else { format!("records {from}..{to} are") }
}

fn file_stem(path: &Path) -> Option<&str> {
    let name = path.file_name()?.to_str()?;
    kind_of(name).map(|(_, stem)| stem)
}

fn check_anchors(opts: &Options, wanted: &Wanted, report: &mut Report, newest: Option<&Path>) {
    let at = newest.map(Path::to_path_buf).unwrap_or_default();
    for a in &opts.anchors {
        let problem = |record, kind, what| Problem { path: at.clone(), record, kind, what };
        let value = chain::hex(&a.value);
        match a.id {
            Some(id) => match wanted.ids.get(&id).cloned().flatten() {
                Some((v, _)) if v == a.value => {}
                Some((v, holder)) => {
                    let what = format!(
                        "the chain value of record {id} is {} but the anchor says {value}: \
                         the records up to it were rewritten",
                        chain::hex(&v)
                    );
                    // Named in the file that holds the record.
                    report.problems.push(Problem { path: holder, record: Some(id), kind: Damage::Forged, what });
                }
                None if report.last_id.is_some_and(|last| id > last) => {
                    let last = report.last_id.unwrap_or_default();
                    report.problems.push(problem(
                        Some(id),
                        Damage::Truncated,
                        format!(
                            "the anchor names record {id} but the newest record here is {last}: records {}..{id} \
                             (at least) were removed from the end",
                            last + 1
                        ),
                    ));
                }
                None if report.first_id.is_some_and(|first| id < first) => report
                    .notes
                    .push(format!("anchor {id}:{value} is older than the oldest file here; it was not checked")),
                None => report.notes.push(format!(
                    "anchor {id}:{value} could not be checked: the file holding record {id} is damaged or has no chain"
                )),
            },
            None => {
                if !wanted.values.get(&a.value).copied().unwrap_or(false) {
                    report.problems.push(problem(
                        None,
                        Damage::Truncated,
                        format!(
                            "no record here has the anchor's chain value {value}: the newest records were removed, \
                             or the chain was rewritten"
                        ),
                    ));
                }
            }
        }
    }
}

/// The files of a data directory, by first id.
pub fn data_dir_targets(layout: &crate::store::layout::Layout) -> Result<Vec<(u64, Target)>> {
    Ok(reader::list_with_twins(layout)?
        .into_iter()
        .map(|f| (f.first_id, Target { path: f.path, kind: f.kind }))
        .collect())
}

/// Files given on the command line (directories are searched for log files).
pub fn path_targets(paths: &[PathBuf]) -> Result<Vec<(u64, Target)>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            for entry in walkdir::WalkDir::new(p).sort_by_file_name() {
                let entry = entry.with_context(|| format!("cannot list {}", p.display()))?;
                let name = entry.file_name().to_string_lossy();
                if entry.file_type().is_file()
                    && matches!(kind_of(&name), Some((FileKind::Sealed | FileKind::Archived, _)))
                {
                    files.push(entry.into_path());
                }
            }
        } else {
            files.push(p.clone());
        }
    }
    Ok(files
        .into_iter()
        .map(|path| {
            let kind = kind_from_name(&path);
            let first = first_record_id(&path).or_else(|| reader::guess_first_id(&path)).unwrap_or(0);
            (first, Target { path, kind })
        })
        .collect())
}

fn kind_from_name(path: &Path) -> FileKind {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match kind_of(&name) {
        Some((k, _)) => k,
        None => FileKind::Sealed,
    }
}

/// The header's first-id, else the first record's id (for files not written by us).
fn first_record_id(path: &Path) -> Option<u64> {
    if let Ok(Some(id)) = reader::first_id_of(path) {
        return Some(id);
    }
    let mut rd = XmlReader::new(open_any(path).ok()?);
    rd.next_record().ok().flatten().map(|r| r.id)
}
