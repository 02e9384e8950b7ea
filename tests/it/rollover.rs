//! Rollover and sealing: a large batch fills sealed files and the active one,
//! small capacities, `rotate` (SPEC §3, §8).

use crate::support::fixtures::*;
use crate::support::harness::*;

// A large batch: rollover, names, exports, verify, show

#[test]
fn batch_of_12345_fills_two_sealed_files_and_the_active_one() {
    let env = Env::new();
    let run = env.run_with_input(&["append", "--json", "-"], &json_records(12_345)).success();
    assert!(run.stdout.contains("12345"), "append should report the count: {}", run.stdout);

    // Two sealed files of 5000 records each, one active file with the rest.
    let sealed = env.sealed_files();
    assert_eq!(sealed.len(), 2, "sealed files: {sealed:?}");
    let active = env.active_files();
    assert_eq!(active.len(), 1, "active files: {active:?}");
    let mut stamps = Vec::new();
    for (k, path) in sealed.iter().enumerate() {
        assert_well_formed(path);
        assert_schema_valid(path);
        let doc = xml_doc(path);
        assert_eq!(doc.tag, "AuditTrail");
        assert!(doc.other.is_empty(), "unexpected top-level elements {:?}", doc.other);
        let first = k as u64 * 5000 + 1;
        assert_eq!(doc.ids(), range(first, first + 4999), "{}", path.display());
        assert_eq!(doc.root.get("host").map(String::as_str), Some("pbx01"));
        assert_eq!(
            (doc.seal_attr("first-id"), doc.seal_attr("last-id"), doc.seal_attr("records")),
            (first, first + 4999, 5000)
        );
        // The records carry what was submitted, in input order.
        let r = &doc.records[1234];
        let i = r.id() - 1;
        assert_eq!(r.field("ActionData").map(|f| f.text.as_str()), Some(format!("record {i}").as_str()));
        assert_eq!(r.field("UserName").map(|f| f.text.as_str()), Some(format!("user{i}").as_str()));
        stamps.push(stamp_of(path, ".xml"));
    }
    // Names unique and in id order (the list is sorted by name).
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "stamps not increasing: {stamps:?}");
    let active_stamp = stamp_of(&active[0], ".xml.open");
    assert!(active_stamp > stamps[1], "active file {} sorts before the sealed ones", active[0].display());
    let act = active_doc(&active[0]);
    assert_eq!(act.ids(), range(10_001, 12_345));
    assert!(act.seal.is_none());

    let st = status(&env);
    assert_eq!(st["next_id"], 12_346, "{st}");
    assert_eq!(st["active_file"]["records"], 2345, "{st}");
    assert_eq!(st["sealed_files"], 2, "{st}");

    // The circular log is the newest 5000 records.
    let circular = export_json(&env, &[]);
    assert_eq!(ids(&circular), range(7346, 12_345));
    let all = export_json(&env, &["--all"]);
    assert_eq!(ids(&all), range(1, 12_345));
    for r in &all {
        let i = r["id"].as_u64().unwrap() - 1;
        assert_eq!(r["action_data"], format!("record {i}"), "{r:?}");
        assert_eq!(r["source_ip"], format!("10.0.{}.{}", (i / 256) % 256, i % 256), "{r:?}");
        assert_eq!(r["app_name"], "System Admin Tool");
        assert_eq!(r["node"], "pbx01", "node defaults to the host name");
        assert_eq!(r["detail_level"], "Low", "detail_level defaults to Low");
    }

    // CSV (RFC 4180) read back by Python's csv module.
    let csv = env.run(&["export", "--all", "--format", "csv"]).success();
    let csv_path = env.dir.path().join("all.csv");
    std::fs::write(&csv_path, &csv.stdout).unwrap();
    let rows = csv_rows(&csv_path);
    assert_eq!(rows.len(), 12_346, "header plus one row per record");
    assert_eq!(rows[0], csv_header());
    for (k, row) in rows[1..].iter().enumerate() {
        assert_eq!(row.len(), 17, "row {k}: {row:?}");
        assert_eq!(row[0], (k + 1).to_string());
        assert_eq!(row[12], format!("record {k}"), "action_data column");
    }

    let v = env.run(&["verify"]).success();
    assert!(v.stdout.contains("12345 records"), "verify should report 12345 records: {}", v.stdout);

    // `show`: a header line, then the circular log.
    let show = env.run(&["show"]).success();
    let lines: Vec<&str> = show.stdout.lines().collect();
    assert_eq!(lines.len(), 5001, "header plus 5000 rows");
    assert!(lines[0].starts_with("ID"), "header: {}", lines[0]);
    for h in ["Time Stamp", "User Name", "Source IP", "App Name", "App Context", "Action Type", "Action Data"] {
        assert!(lines[0].contains(h), "column {h} missing from {}", lines[0]);
    }
    let shown: Vec<u64> = lines[1..].iter().map(|l| l.split_whitespace().next().unwrap().parse().unwrap()).collect();
    assert_eq!(shown, range(7346, 12_345));
    let show3 = env.run(&["show", "-n", "3"]).success();
    let lines: Vec<&str> = show3.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", show3.stdout);
    let shown: Vec<u64> = lines[1..].iter().map(|l| l.split_whitespace().next().unwrap().parse().unwrap()).collect();
    assert_eq!(shown, [12_343, 12_344, 12_345]);
    assert!(lines[3].contains("record 12344"), "{}", lines[3]);
}

// Rollover with a small capacity; rotate

/// Checks the sealed files: contiguous ids from 1, seals that match, names
/// that follow the stamp rule. Returns the ids per file.
#[track_caller]
fn check_sealed_files(env: &Env) -> Vec<Vec<u64>> {
    let mut next = 1;
    let mut prev_stamp: Option<chrono::NaiveDateTime> = None;
    let mut out = Vec::new();
    for path in env.sealed_files() {
        assert_well_formed(&path);
        assert_schema_valid(&path);
        let doc = xml_doc(&path);
        let ids = doc.ids();
        assert!(!ids.is_empty(), "{} holds no record", path.display());
        assert_eq!(ids, range(next, next + ids.len() as u64 - 1), "{}", path.display());
        assert_eq!(
            (doc.seal_attr("first-id"), doc.seal_attr("last-id"), doc.seal_attr("records")),
            (ids[0], *ids.last().unwrap(), ids.len() as u64),
            "{}: seal does not match the records",
            path.display()
        );
        assert_eq!(doc.root.get("first-id"), Some(&ids[0].to_string()), "{}", path.display());
        next += ids.len() as u64;
        // The stamp is the start time, bumped past the previous file's stamp.
        let stamp = stamp_of(&path, ".xml");
        let created = created_second(&doc);
        let want = match prev_stamp {
            Some(p) if created <= p => p + chrono::Duration::seconds(1),
            _ => created,
        };
        assert_eq!(stamp, want, "{}: created {:?}", path.display(), doc.root.get("created"));
        prev_stamp = Some(stamp);
        out.push(ids);
    }
    if let Some(active) = env.active_files().first() {
        let stamp = stamp_of(active, ".xml.open");
        assert!(prev_stamp.is_none_or(|p| stamp > p), "active {} does not sort last", active.display());
    }
    out
}

#[test]
fn small_capacity_rolls_over_and_rotate_seals_early() {
    let env = Env::with_capacity(3);
    env.run_with_input(&["append", "--json", "-"], &json_records(10)).success();

    let files = check_sealed_files(&env);
    assert_eq!(files, [range(1, 3), range(4, 6), range(7, 9)]);
    let active = env.active_files();
    assert_eq!(active.len(), 1, "{active:?}");
    let doc = active_doc(&active[0]);
    assert_eq!(doc.ids(), [10]);
    assert_eq!(doc.root.get("first-id").map(String::as_str), Some("10"));
    // All written within a second or so: names still unique and increasing.
    let names: Vec<String> = env.sealed_files().iter().map(|p| file_name(p)).collect();
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(unique, names);
    assert_eq!(export_ids(&env, &[]), [8, 9, 10], "the circular log holds the newest 3");

    // rotate seals the active file early and starts the next one.
    let run = env.run(&["rotate"]).success();
    assert!(run.stdout.contains("sealed"), "{}", run.stdout);
    let files = check_sealed_files(&env);
    assert_eq!(files.len(), 4);
    assert_eq!(files[3], [10]);
    let active = env.active_files();
    assert_eq!(active.len(), 1, "a new active file is started: {active:?}");
    assert!(active_doc(&active[0]).ids().is_empty());
    assert_eq!(status(&env)["next_id"], 11);
    let v = env.run(&["verify"]).success();
    assert!(v.stdout.contains("10 records"), "{}", v.stdout);
    assert_eq!(export_ids(&env, &[]), [8, 9, 10], "an empty active file does not shift the circular log");

    // Nothing to seal the second time; nothing changes.
    let before = snapshot(&env.data);
    let run = env.run(&["rotate"]).success();
    assert!(run.stdout.contains("nothing to seal"), "{}", run.stdout);
    assert!(snapshot(&env.data) == before, "an empty rotate changed files");

    // Ids continue without a gap.
    env.run_with_input(&["append", "--json", "-"], &json_records(4)).success();
    let files = check_sealed_files(&env);
    assert_eq!(files.len(), 5);
    assert_eq!(files[4], range(11, 13));
    assert_eq!(active_doc(&env.active_files()[0]).ids(), [14]);
    assert_eq!(export_ids(&env, &["--all"]), range(1, 14));
    let v = env.run(&["verify"]).success();
    assert!(v.stdout.contains("14 records"), "{}", v.stdout);
}

/// SPEC §3: the file rolls over with the record *after* the one that fills it.
#[test]
fn rollover_happens_with_the_record_after_capacity() {
    let env = Env::with_capacity(3);
    env.run_with_input(&["append", "--json", "-"], &json_records(3)).success();
    assert!(env.sealed_files().is_empty(), "a full file is sealed only when the next record comes");
    assert_eq!(active_doc(&env.active_files()[0]).ids(), [1, 2, 3]);
    let run = env.run(&["append", "--app", "A", "--action", "Login"]).success();
    assert_eq!(run.stdout.trim(), "4");
    assert_eq!(check_sealed_files(&env), [range(1, 3)]);
    assert_eq!(active_doc(&env.active_files()[0]).ids(), [4]);
    assert_eq!(export_ids(&env, &[]), [2, 3, 4]);
}
