//! Property tests over every reader of outside input, driven by `proptest`
//! (stable toolchain): JSON record lines, XML log files, `.gz` files,
//! configuration and schedule files, cron expressions. Each input is either
//! generated from the grammar or a valid input mutated byte by byte.
//!
//! Properties: no reader panics or hangs; the two JSON readers agree; a
//! record accepted from JSON is written to XML and read back unchanged.
//!
//! CI runs proptest's default 256 cases per property; a long run sets
//! `PROPTEST_CASES`, e.g. `PROPTEST_CASES=1000000 cargo test --release --lib fuzz::`.

use std::io::Read;

use proptest::prelude::*;

use crate::record::{self, FIELDS, Record};

/// Text that reaches every branch of the readers: JSON and XML syntax,
/// escapes, controls, non-ASCII, and plain words.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"".to_owned()),
        Just("\\".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just(":".to_owned()),
        Just(",".to_owned()),
        Just("null".to_owned()),
        Just("\\u0000".to_owned()),
        Just("\\ud800".to_owned()),
        Just("<".to_owned()),
        Just("&".to_owned()),
        Just("]]>".to_owned()),
        Just("\u{202e}".to_owned()),
        Just("😀".to_owned()),
        (0u32..0x20).prop_map(|c| char::from_u32(c).unwrap().to_string()),
        "[a-z_ ]{0,8}",
        proptest::sample::select(FIELDS.iter().map(|f| f.json).collect::<Vec<_>>()).prop_map(|k| format!("\"{k}\"")),
    ]
}

fn json_like() -> impl Strategy<Value = String> {
    proptest::collection::vec(piece(), 0..24).prop_map(|v| v.concat())
}

/// A valid JSON record line from arbitrary field values.
fn record_line() -> impl Strategy<Value = String> {
    let value = proptest::collection::vec(piece(), 0..6).prop_map(|v| v.concat());
    proptest::collection::vec((0..FIELDS.len(), value), 1..8).prop_map(|fields| {
        let mut m = serde_json::Map::new();
        m.insert("app_name".into(), "A".into());
        m.insert("action_type".into(), "B".into());
        for (i, v) in fields {
            m.insert(FIELDS[i].json.into(), v.into());
        }
        serde_json::Value::Object(m).to_string()
    })
}

/// Applies byte mutations (flip, insert, delete, duplicate a span) to `input`.
fn mutated(input: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let n = input.len().max(1);
    proptest::collection::vec((0..4u8, 0..n, any::<u8>(), 0..64usize), 1..6).prop_map(move |ops| {
        let mut b = input.clone();
        for (op, at, byte, len) in ops {
            let at = at.min(b.len());
            match op {
                0 if at < b.len() => b[at] ^= byte | 1,
                1 => b.insert(at, byte),
                2 if at < b.len() => {
                    b.drain(at..(at + len).min(b.len()));
                }
                _ => {
                    let span: Vec<u8> = b[at..(at + len).min(b.len())].to_vec();
                    b.splice(at..at, span);
                }
            }
        }
        b
    })
}

const DEFAULTS: record::Defaults<'static> = record::Defaults { now: "2026-11-22T09:45:37.120+01:00", node: "pbx01" };

fn same_fields(a: &Record<'_>, b: &Record<'_>) -> bool {
    a.fields == b.fields
}

proptest! {
    #[test]
    fn json_readers_agree_on_any_line(line in prop_oneof![json_like(), record_line()]) {
        let fast = record::parse_json_line(line.as_bytes());
        let general = record::parse_with_serde(&line);
        match (&fast, &general) {
            (Ok(a), Ok(b)) => prop_assert!(same_fields(a, b), "{line:?}"),
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "the readers disagree on {line:?}: {fast:?} / {general:?}"),
        }
    }

    #[test]
    fn json_reader_never_panics_on_mutated_bytes(bytes in record_line().prop_flat_map(|l| mutated(l.into_bytes()))) {
        let _ = record::parse_json_line(&bytes);
    }

    #[test]
    fn an_accepted_record_reads_back_from_xml_exactly(line in record_line()) {
        let Ok(mut rec) = record::parse_json_line(line.as_bytes()) else { return Ok(()) };
        if record::validate(&mut rec, &DEFAULTS).is_err() {
            return Ok(());
        }
        rec.id = 7;
        let start = [0u8; 32];
        let head = crate::store::xml::write::FileStart { first_id: 7, chain_start: &start, previous: None, origin: true };
        let mut doc = crate::store::xml::write::header("pbx01", DEFAULTS.now, Some(head));
        crate::store::xml::write::record(&mut doc, &rec);
        doc.extend_from_slice(b"\n</AuditTrail>\n");
        let mut rd = crate::store::xml::read::XmlReader::new(&doc[..]);
        let back = rd.next_record();
        prop_assert!(matches!(&back, Ok(Some(b)) if same_fields(b, &rec)), "{line:?} came back as {back:?}");
    }

    #[test]
    fn xml_reader_never_panics_or_hangs_on_mutated_files(bytes in Just(sample_log()).prop_flat_map(mutated)) {
        let mut rd = crate::store::xml::read::XmlReader::new(&bytes[..]);
        let _ = rd.header();
        // Every call consumes input or ends: a bounded number of records.
        for _ in 0..=bytes.len() {
            match rd.next_record() {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    }

    #[test]
    fn gzip_reader_never_panics_on_mutated_archives(bytes in Just(sample_gz()).prop_flat_map(mutated)) {
        let mut out = Vec::new();
        let _ = flate2::read::MultiGzDecoder::new(&bytes[..]).take(1 << 20).read_to_end(&mut out);
    }

    #[test]
    fn cron_expressions_never_panic_and_next_fire_ends(expr in cron_like()) {
        if let Ok(cron) = crate::schedules::parse_cron(&expr) {
            let from = chrono::DateTime::parse_from_rfc3339("2026-03-29T00:30:00+01:00").unwrap();
            let _ = cron.next_after(&from, None);
        }
    }

    #[test]
    fn schedule_files_never_panic(text in schedule_like()) {
        if let Ok(s) = crate::schedules::parse_file(std::path::Path::new("schedules/x.toml"), &text) {
            let from = chrono::Local::now();
            let _ = s.next_after(&from, None);
        }
    }

    #[test]
    fn backup_bundles_are_checked_without_panicking(bytes in Just(sample_bundle()).prop_flat_map(mutated)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.tar.gz");
        std::fs::write(&path, &bytes).unwrap();
        let _ = crate::maintenance::backup::check_bundle(&path);
    }

    #[test]
    fn configuration_files_never_panic(text in toml_like()) {
        if let Ok(cfg) = toml::from_str::<crate::config::Config>(&text) {
            let _ = cfg.validate();
        }
    }
}

fn cron_like() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        Just("*".to_owned()),
        Just("*/".to_owned()),
        Just(",".to_owned()),
        Just("-".to_owned()),
        Just("/".to_owned()),
        Just(" ".to_owned()),
        Just("@daily".to_owned()),
        Just("@reboot".to_owned()),
        Just("L".to_owned()),
        Just("mon".to_owned()),
        Just("feb".to_owned()),
        (0u64..70).prop_map(|n| n.to_string()),
        Just("18446744073709551616".to_owned()),
    ];
    proptest::collection::vec(atom, 0..16).prop_map(|v| v.concat())
}

fn toml_like() -> impl Strategy<Value = String> {
    let key = proptest::sample::select(vec![
        "capacity",
        "retention_days",
        "event_mask",
        "socket_mode",
        "host_name",
        "hmac_key_file",
        "protocol",
        "port",
        "host",
        "format",
        "framing",
        "timeout_secs",
        "retries",
        "enabled",
        "anchor_interval_secs",
        "max_udp_bytes",
    ]);
    let value = prop_oneof![
        (-5i64..100_000).prop_map(|n| n.to_string()),
        Just("18446744073709551615".to_owned()),
        Just("\"0660\"".to_owned()),
        Just("\"all\"".to_owned()),
        Just("\"udp\"".to_owned()),
        Just("\"tcp\"".to_owned()),
        Just("\"cef\"".to_owned()),
        Just("true".to_owned()),
        Just("\"\"".to_owned()),
        "\"[a-z0-9!-]{0,6}\"",
    ];
    let section = proptest::sample::select(vec!["", "[siem]\n", "[targets.t]\n", "[web]\n"]);
    proptest::collection::vec((section, key, value), 0..10)
        .prop_map(|v| v.into_iter().map(|(s, k, val)| format!("{s}{k} = {val}\n")).collect())
}

fn schedule_like() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        cron_like().prop_map(|c| format!("cron = \"{c}\"\n")),
        proptest::sample::select(vec!["rotate", "archive", "purge", "backup", "upload", "reboot", ""])
            .prop_map(|j| format!("job = \"{j}\"\n")),
        Just("target = \"t\"\n".to_owned()),
        Just("keep = 3\n".to_owned()),
        Just("keep = -1\n".to_owned()),
        Just("out = \"/tmp\"\n".to_owned()),
        Just("enabled = false\n".to_owned()),
        Just("description = \"x\"\n".to_owned()),
        Just("[x]\n".to_owned()),
        Just("cron = 5\n".to_owned()),
    ];
    proptest::collection::vec(line, 0..8).prop_map(|v| v.concat())
}

/// A backup bundle of the shape `backup` writes: a sealed file and state.
fn sample_bundle() -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (name, data) in [
        ("audit_trail/pbx01_20260101000000.xml", sample_log()),
        ("state/next-id", b"4\n".to_vec()),
        ("archive/manifest.jsonl", b"".to_vec()),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o640);
        h.set_cksum();
        tar.append_data(&mut h, name, &data[..]).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// A small sealed log file as the writer makes it.
fn sample_log() -> Vec<u8> {
    let start = [7u8; 32];
    let head = crate::store::xml::write::FileStart {
        first_id: 1,
        chain_start: &start,
        previous: Some("pbx01_x"),
        origin: false,
    };
    let mut doc = crate::store::xml::write::header("pbx01", DEFAULTS.now, Some(head));
    for id in 1..=3 {
        let mut r = Record { id, ..Default::default() };
        for (i, spec) in FIELDS.iter().enumerate() {
            r.set(spec.field, format!("v{i} <&> \u{1} é"));
        }
        r.set(crate::record::Field::Timestamp, DEFAULTS.now);
        r.chain = Some([id as u8; 32]);
        crate::store::xml::write::record(&mut doc, &r);
    }
    let info = crate::store::xml::write::SealInfo {
        first_id: 1,
        last_id: 3,
        records: 3,
        sealed: DEFAULTS.now.into(),
        chain_end: Some([9; 32]),
        mac: None,
    };
    doc.extend(crate::store::xml::write::seal(&info));
    doc
}

fn sample_gz() -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(&sample_log()).unwrap();
    let mut one = e.finish().unwrap();
    // Two members, as older archives are.
    let again = one.clone();
    one.extend(again);
    one
}
