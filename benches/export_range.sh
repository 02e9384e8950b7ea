#!/usr/bin/env bash
# A one-day `export --all --from --to` against exporting everything and
# against `zcat | grep` over the same archived history, with hyperfine.
# The history (RECORDS records, default 1000000, over DAYS days, default
# 200; one in ten backdated up to 10 days) is written by the archiver itself
# with the default 5000 records a file, then archived. The issue's size:
# RECORDS=5000000 DAYS=1000.
#
#   benches/export_range.sh [BIN]   (BIN: default target/release/audit-trail)
set -euo pipefail
bin=${1:-${CARGO_TARGET_DIR:-target}/release/audit-trail}
records=${RECORDS:-1000000}
days=${DAYS:-200}
runs=${RUNS:-5}
command -v hyperfine >/dev/null || { echo "export_range.sh: hyperfine is needed" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/data" "$tmp/none"
printf 'host_name = "bench"\nevent_mask = "all"\n' > "$tmp/data/audit-trail.toml"
python3 - "$tmp/in.jsonl" "$records" "$days" <<'PY'
import datetime, json, random, sys
path, n, days = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
random.seed(7)
start = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
step = days * 86400 / n
with open(path, "w") as f:
    for i in range(n):
        t = start + datetime.timedelta(seconds=i * step)
        if random.random() < 0.1:
            t -= datetime.timedelta(seconds=random.random() * 10 * 86400)
        f.write(json.dumps({"timestamp": t.isoformat(timespec="milliseconds"), "app_name": "Desktop Tool",
                            "action_type": "Login", "user_name": f"user{i % 500}", "category": "presence",
                            "action_data": f"Session ID: {i} User Authenticated: True"}) + "\n")
PY
# In parts of 1,000,000 lines: one bulk append holds its whole input in memory.
split -l 1000000 "$tmp/in.jsonl" "$tmp/part."
rm "$tmp/in.jsonl"
for part in "$tmp"/part.*; do
    "$bin" --data-dir "$tmp/data" append --json "$part" > /dev/null
    rm "$part"
done
"$bin" --data-dir "$tmp/data" archive > /dev/null
day=$(python3 -c "import datetime; print((datetime.date(2025,1,1)+datetime.timedelta(days=$days//2)).isoformat())")
echo "$records records in $(ls "$tmp/data/archive" | grep -c '\.xml\.gz$') archived files over $days days; the day: $day"
cd "$tmp/data"
hyperfine -N --warmup 1 --runs "$runs" \
    "$bin --data-dir $tmp/data --schedules $tmp/none export --all --format csv --from ${day}T00:00:00Z --to ${day}T23:59:59.999Z --out $tmp/day.csv" \
    "$bin --data-dir $tmp/data --schedules $tmp/none export --all --format csv --out $tmp/all.csv" \
    "sh -c 'zcat $tmp/data/archive/*.xml.gz | grep -c \"<TimeStamp>${day}T\"'"
"$bin" --data-dir "$tmp/data" export --all --format csv --from "${day}T00:00:00Z" --to "${day}T23:59:59.999Z" | wc -l
