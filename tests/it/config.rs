//! Configuration errors: what each command does with a file it cannot use.

use crate::support::fixtures::*;
use crate::support::harness::*;

// Configuration errors

#[test]
fn config_errors_are_named() {
    let env = Env::with_config("host_name = \"pbx01\"\ncolour = \"red\"\n");
    for args in [&["status"][..], &["append", "--app", "A", "--action", "B"]] {
        let run = env.run(args).failure();
        assert!(run.stderr.contains("colour"), "{args:?}: should name the unknown key: {}", run.stderr);
    }
    let run = env.run_with_input(&["append", "--json", "-"], &json_records(2)).failure();
    assert!(run.stderr.contains("colour"), "{}", run.stderr);
    let names: Vec<_> = std::fs::read_dir(&env.data).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["audit-trail.toml"], "nothing may be written under a bad configuration");

    let env = Env::with_config("host_name = \"pbx01\"\ncapacity = 0\n");
    let run = env.run(&["append", "--app", "A", "--action", "B"]).failure();
    assert!(run.stderr.contains("capacity"), "{}", run.stderr);
    let run = env.run(&["status"]).failure();
    assert!(run.stderr.contains("capacity"), "{}", run.stderr);

    let env = Env::with_config("capacity = \"ten\"\n");
    let run = env.run(&["status"]).failure();
    assert!(run.stderr.contains("capacity"), "{}", run.stderr);
}

/// A crash right after a new active file was created can leave its header
/// cut short: readers skip it, and the next writer removes it and says so.
#[test]
fn active_file_with_torn_header_is_skipped_then_removed() {
    let env = Env::with_capacity(3);
    env.run_with_input(&["append", "--json", "-"], &json_records(3)).success();
    env.run(&["rotate"]).success();
    let active = env.active_files();
    assert_eq!(active.len(), 1);
    // Replace the fresh active file by one whose header was torn.
    std::fs::remove_file(&active[0]).unwrap();
    let torn = env.data.join("state/active/pbx01_20991231235959.xml.open");
    std::fs::write(&torn, b"<?xml version=\"1.0\" encod").unwrap();

    assert_eq!(export_ids(&env, &["--all"]), vec![1, 2, 3]);
    env.run(&["show"]).success();
    let run = env.run(&["append", "--app", "a", "--action", "b"]).success();
    assert_eq!(run.stdout.trim(), "4", "ids continue from the sealed file");
    assert!(run.stderr.contains("removed") && run.stderr.contains("header"), "note: {}", run.stderr);
    assert!(!torn.exists());
    env.run(&["verify"]).success();
}
