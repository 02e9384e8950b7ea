//! Bulk `append --json` streams its input through a spool file: inputs of
//! several blocks are appended whole and in order, and one bad line anywhere
//! (even in the last block) means nothing is appended and no spool is left.

use crate::support::harness::{Env, json_records};

fn spool_files(env: &Env) -> Vec<String> {
    std::fs::read_dir(env.data.join("state/tmp"))
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default()
}

#[test]
fn a_bulk_append_of_many_blocks_is_whole_in_order_or_nothing() {
    let env = Env::with_capacity(5000);
    // About 6 MiB: several blocks and windows.
    let n = 30_000;
    let input = json_records(n);
    assert!(input.len() > 5 << 20, "{} bytes", input.len());

    // A bad last line: nothing appended, from a file and from standard input.
    let mut bad = input.clone();
    bad.extend_from_slice(b"{\"app_name\":\"x\"}\n");
    let path = env.dir.path().join("bad.jsonl");
    std::fs::write(&path, &bad).unwrap();
    let run = env.run(&["append", "--json", path.to_str().unwrap()]).failure();
    assert!(run.stderr.contains(&format!("line {}:", n + 1)), "{}", run.stderr);
    env.run_with_input(&["append", "--json", "-"], &bad).failure();
    assert!(env.try_export_all_lines().unwrap_or_default().is_empty(), "nothing was appended");
    assert!(spool_files(&env).is_empty(), "{:?}", spool_files(&env));

    // Good input from standard input: every record, in input order.
    let run = env.run_with_input(&["append", "--json", "-"], &input).success();
    assert!(run.stdout.contains(&format!("appended {n} records: ids 1..{n}")), "{}", run.stdout);
    let lines = env.export_all_lines();
    assert_eq!(lines.len(), n);
    for (i, (id, line)) in lines.iter().enumerate() {
        assert_eq!(*id, i as u64 + 1);
        assert!(line.contains(&format!("\"record {i}\"")), "{line}");
    }
    assert!(spool_files(&env).is_empty(), "{:?}", spool_files(&env));
    env.run(&["verify"]).success();
}
