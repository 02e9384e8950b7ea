//! `verify` names the damage it finds (SPEC §9).

use std::path::PathBuf;

use crate::support::fixtures::*;
use crate::support::harness::*;

// verify catches damage

#[test]
fn verify_catches_damage() {
    let env = Env::with_capacity(5);
    env.run_with_input(&["append", "--json", "-"], &json_records(17)).success();
    let sealed = env.sealed_files();
    assert_eq!(sealed.len(), 3, "ids 1..5, 6..10, 11..15 sealed; 16, 17 active");
    let v = env.run(&["verify"]).success();
    assert!(v.stdout.contains("17 records"), "{}", v.stdout);
    let mid = &sealed[1];
    let mid_name = file_name(mid);
    let orig = std::fs::read(mid).unwrap();

    // (a) cut in the middle.
    std::fs::write(mid, &orig[..orig.len() / 2]).unwrap();
    let run = env.run(&["verify"]).failure();
    assert!(run.stderr.contains(&mid_name), "should name {mid_name}: {}", run.stderr);
    std::fs::write(mid, &orig).unwrap();
    env.run(&["verify"]).success();

    // (b) a record removed from the middle; the file stays well-formed.
    let text = String::from_utf8(orig.clone()).unwrap();
    let start = text.find("\n  <Record id=\"8\">").expect("record 8 is in the middle file");
    let end = start + text[start..].find("</Record>").unwrap() + "</Record>".len();
    let cut = format!("{}{}", &text[..start], &text[end..]);
    std::fs::write(mid, &cut).unwrap();
    assert_well_formed(mid);
    let run = env.run(&["verify"]).failure();
    let err = messages(&env, &run.stderr);
    assert!(err.contains(&mid_name), "should name {mid_name}: {err}");
    assert!(err.lines().any(|l| l.contains("missing") && has_token(l, "8")), "should say that id 8 is missing: {err}");
    std::fs::write(mid, &orig).unwrap();

    // (c) the whole middle file deleted.
    std::fs::remove_file(mid).unwrap();
    let run = env.run(&["verify"]).failure();
    let err = messages(&env, &run.stderr);
    assert!(
        err.lines().any(|l| l.contains("missing") && has_token(l, "6") && has_token(l, "10")),
        "should say that ids 6..10 are missing: {err}"
    );
    assert!(
        err.contains(&file_name(&sealed[0])) || err.contains(&file_name(&sealed[2])),
        "should name a neighbouring file: {err}"
    );
    std::fs::write(mid, &orig).unwrap();
    env.run(&["verify"]).success();

    // (d) offboard copies in another directory.
    let offboard = env.dir.path().join("offboard");
    std::fs::create_dir(&offboard).unwrap();
    let copies: Vec<PathBuf> = sealed
        .iter()
        .map(|p| {
            let c = offboard.join(file_name(p));
            std::fs::copy(p, &c).unwrap();
            c
        })
        .collect();
    let v = env.run(&["verify", offboard.to_str().unwrap()]).success();
    assert!(v.stdout.contains("15 records"), "{}", v.stdout);
    let paths: Vec<&str> = copies.iter().map(|p| p.to_str().unwrap()).collect();
    let mut args = vec!["verify"];
    args.extend(&paths);
    let v = env.run(&args).success();
    assert!(v.stdout.contains("15 records"), "{}", v.stdout);
    // Older files may have been purged: a gap before the oldest is normal...
    let v = env.run(&["verify", paths[1], paths[2]]).success();
    assert!(v.stdout.contains("10 records"), "{}", v.stdout);
    // ...but not between two files.
    let run = env.run(&["verify", paths[0], paths[2]]).failure();
    let err = messages(&env, &run.stderr);
    assert!(
        err.lines().any(|l| l.contains("missing") && has_token(l, "6") && has_token(l, "10")),
        "should say that ids 6..10 are missing: {err}"
    );

    let bytes = std::fs::read(&copies[2]).unwrap();
    std::fs::write(&copies[2], &bytes[..bytes.len() * 2 / 3]).unwrap();
    for run in [env.run(&["verify", offboard.to_str().unwrap()]), env.run(&args)] {
        let run = run.failure();
        let err = messages(&env, &run.stderr);
        assert!(err.contains("offboard") && err.contains(&file_name(&copies[2])), "should name the copy: {err}");
    }
    // The data directory itself is untouched.
    env.run(&["verify"]).success();
}

/// Offboard files of two hosts: each host's ids and chain are checked on
/// their own (both start at id 1), and damage in one is named with its host.
#[test]
fn files_of_several_hosts_are_verified_per_host() {
    let a = Env::with_config("host_name = \"pbx01\"\n");
    let b = Env::with_config("host_name = \"pbx02\"\n");
    for env in [&a, &b] {
        env.run_with_input(&["append", "--json", "-"], &json_records(30)).success();
        env.run(&["rotate"]).success();
    }
    let (fa, fb) = (a.sealed_files()[0].clone(), b.sealed_files()[0].clone());
    let run = a.run(&["verify", fa.to_str().unwrap(), fb.to_str().unwrap()]).success();
    assert!(run.stdout.contains("pbx01: OK: 1 files, 30 records, ids 1..30"), "{}", run.stdout);
    assert!(run.stdout.contains("pbx02: OK: 1 files, 30 records, ids 1..30"), "{}", run.stdout);
    let text = std::fs::read_to_string(&fb).unwrap();
    std::fs::write(&fb, text.replacen("<UserName>", "<UserName>x", 1)).unwrap();
    let run = a.run(&["verify", fa.to_str().unwrap(), fb.to_str().unwrap()]);
    assert_eq!(run.code, Some(3), "{} {}", run.stdout, run.stderr);
    assert!(run.stdout.contains("pbx01: OK"), "{}", run.stdout);
    assert!(run.stderr.contains("pbx02: verify FAILED"), "{}", run.stderr);
}
