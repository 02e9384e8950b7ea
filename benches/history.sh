#!/usr/bin/env bash
# `status` and `show` over a long history, with hyperfine: a history of
# FILES sealed files (default 10000) written by the archiver itself with
# two records a file (`capacity = 2`, so the chain holds across all of
# them), then the same history archived (`archive`), against one of 10 files.
#
#   benches/history.sh [BIN]        (BIN: default target/release/audit-trail)
#
# FILES=N sets the size; RUNS=N hyperfine's runs (default 30).
set -euo pipefail
bin=${1:-${CARGO_TARGET_DIR:-target}/release/audit-trail}
files=${FILES:-10000}
runs=${RUNS:-30}
command -v hyperfine >/dev/null || { echo "history.sh: hyperfine is needed (apt-get install -y hyperfine)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/none"
python3 - "$tmp/in.jsonl" $((2 * files)) <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(int(sys.argv[2])):
        f.write(json.dumps({"app_name": "Desktop Tool", "action_type": "Login", "user_name": f"user{i % 500}",
                            "source_ip": f"10.1.{i % 256}.{1 + i % 254}", "category": "presence"}) + "\n")
PY
head -n 20 "$tmp/in.jsonl" > "$tmp/small.jsonl"
for name in small large; do
    mkdir -p "$tmp/$name"
    printf 'host_name = "bench"\nevent_mask = "all"\ncapacity = 2\n' > "$tmp/$name/audit-trail.toml"
done
"$bin" --data-dir "$tmp/small" append --json "$tmp/small.jsonl" > /dev/null
"$bin" --data-dir "$tmp/large" append --json "$tmp/in.jsonl" > /dev/null
cmds=()
for name in small large; do
    for c in status show; do
        cmds+=("$bin --data-dir $tmp/$name --schedules $tmp/none $c")
    done
done
echo "status and show: 10 files against $(ls "$tmp/large/audit_trail" | grep -c '\.xml$') sealed files"
hyperfine -N --warmup 3 --runs "$runs" "${cmds[@]}"
cp -a "$tmp/large" "$tmp/archived"
"$bin" --data-dir "$tmp/archived" archive > /dev/null
echo "the same history archived: $(ls "$tmp/archived/archive" | grep -c '\.xml\.gz$') archived files"
hyperfine -N --warmup 3 --runs "$runs" "$bin --data-dir $tmp/archived --schedules $tmp/none status" "$bin --data-dir $tmp/archived --schedules $tmp/none show"
