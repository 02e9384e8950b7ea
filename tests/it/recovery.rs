//! Recovery at open: a torn tail is repaired, and said so (SPEC §4).

use std::io::Write;

use crate::support::fixtures::*;
use crate::support::harness::*;

// A torn tail is repaired, and said so

#[test]
fn torn_tail_is_repaired_on_next_append() {
    let env = Env::new();
    env.run_with_input(&["append", "--json", "-"], &json_records(5)).success();
    let active = env.active_files();
    assert_eq!(active.len(), 1);
    let good = std::fs::read(&active[0]).unwrap();
    let garbage = b"\n  <Record id=\"6\">\n    <TimeStamp>2026-11-22T09:45:37.120+01:00</TimeStamp>\n    <AppName>x";
    std::fs::OpenOptions::new().append(true).open(&active[0]).unwrap().write_all(garbage).unwrap();

    // Readers cope with the torn tail.
    env.run(&["status"]).success();
    let st = status(&env);
    assert_eq!(st["next_id"], 6, "{st}");
    assert_eq!(export_ids(&env, &["--all"]), range(1, 5));

    let run = env.run(&["append", "--app", "A", "--action", "Login"]).success();
    assert_eq!(run.stdout.trim(), "6", "the next id follows the last complete record");
    let err = messages(&env, &run.stderr);
    assert!(err.contains("repaired"), "append should say it repaired the file: {err}");
    assert!(
        has_token(&err, &garbage.len().to_string()) && err.contains("bytes"),
        "the note should say {} bytes were removed: {err}",
        garbage.len()
    );
    assert!(err.contains(&file_name(&active[0])), "the note should name the file: {err}");

    let after = std::fs::read(&active[0]).unwrap();
    assert!(after.starts_with(&good), "records before the torn tail must be kept byte for byte");
    let doc = active_doc(&active[0]);
    assert_eq!(doc.ids(), range(1, 6));
    assert_eq!(doc.records[5].field("AppName").map(|f| f.text.as_str()), Some("A"));
    let v = env.run(&["verify"]).success();
    assert!(v.stdout.contains("6 records"), "{}", v.stdout);
    assert_eq!(export_ids(&env, &["--all"]), range(1, 6));

    // Repaired once: the next append has nothing to say.
    let run = env.run(&["append", "--app", "A", "--action", "Login"]).success();
    assert_eq!(run.stdout.trim(), "7");
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

/// A complete record whose id does not follow on (not something this archiver
/// writes) at the end of the active file is cut by the next writer like a torn
/// tail, with a note, and the ids continue from the last good record.
#[test]
fn out_of_sequence_record_at_end_of_active_file_is_cut() {
    let env = Env::new();
    env.run_with_input(&["append", "--json", "-"], &json_records(2)).success();
    let active = env.active_files();
    let good = std::fs::read(&active[0]).unwrap();
    let stray = b"\n  <Record id=\"99\">\n    <TimeStamp>2026-11-22T09:45:37.120+01:00</TimeStamp>\n    \
                  <DetailLevel>Low</DetailLevel>\n    <Node>pbx01</Node>\n    <AppName>x</AppName>\n    \
                  <ActionType>y</ActionType>\n  </Record>";
    std::fs::OpenOptions::new().append(true).open(&active[0]).unwrap().write_all(stray).unwrap();

    let run = env.run(&["append", "--app", "A", "--action", "Login"]).success();
    assert_eq!(run.stdout.trim(), "3");
    let err = messages(&env, &run.stderr);
    assert!(
        err.contains("repaired") && has_token(&err, &stray.len().to_string()),
        "a note should say what was cut: {err}"
    );
    let after = std::fs::read(&active[0]).unwrap();
    assert!(after.starts_with(&good));
    assert_eq!(active_doc(&active[0]).ids(), [1, 2, 3]);
    assert_eq!(export_ids(&env, &["--all"]), [1, 2, 3]);
    env.run(&["verify"]).success();
}
