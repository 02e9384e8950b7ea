#!/usr/bin/env bash
# Builds the last release before the hash chain (file format 1) into
# target/baseline/, so `cargo bench --bench chain` can measure what the
# chain costs side by side, on the same input and machine.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=75d26a0   # the last commit writing format 1 files
dir=target/baseline-src
if [ ! -d "$dir" ]; then
    git worktree add --detach "$dir" "$rev"
fi
CARGO_TARGET_DIR="$PWD/target/baseline" cargo build --release --manifest-path "$dir/Cargo.toml"
echo "baseline: target/baseline/release/audit-trail"
