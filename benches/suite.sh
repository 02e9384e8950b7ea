#!/usr/bin/env bash
# The benchmark suite in one command: installs the peer tools the benchmarks
# compare against, runs each benchmark in turn (`cargo bench --bench NAME`,
# full output in target/bench/NAME.log), and prints one side-by-side table
# built from the `summary` lines the benchmarks print (also written to
# target/bench/summary.md).
#
#   benches/suite.sh [--smoke] [NAME...]
#
# NAME: log, serve, archive, upload, siem, chain, console, history. Default: all of them, but
# chain only when its baseline build is there (benches/chain-baseline.sh
# builds target/baseline/release/audit-trail; or set BASELINE_BIN), since the
# chain's cost is measured against it; and upload only as root (its vsftpd
# must run as root). Naming a benchmark runs it whatever the case.
#
# --smoke: small sizes (BENCH_SMOKE=1: 3000 records, 2 rounds and a 2 MB file
# for uploads), to check that the suite works; its figures mean nothing.
# The log benchmark runs a second time over 1,000,000 records
# (BENCH_LARGE_RECORDS; 0 skips it), for export memory over a large history.
# BENCH_RECORDS, BENCH_ROUNDS and BENCH_BIG_MB pass through to the benchmarks
# and win over both the full and the smoke sizes.
#
# Summary line format (tab separated, one per figure):
#   summary  measure  audit-trail  peer  peer-figure  ratio  aim
# ratio is how many times better audit-trail is than the peer (1.86x: better,
# 0.92x: worse); `-` where there is no peer, no ratio or no aim.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

all=(log serve archive upload siem chain console history)
smoke=0
benches=()
for arg in "$@"; do
    case "$arg" in
        --smoke) smoke=1 ;;
        -h | --help) usage; exit 0 ;;
        -*) echo "suite.sh: unknown option $arg" >&2; usage >&2; exit 2 ;;
        *)
            if [ ! -f "benches/$arg.rs" ]; then
                echo "suite.sh: no benchmark named $arg (there are: ${all[*]})" >&2
                exit 2
            fi
            benches+=("$arg")
            ;;
    esac
done

notes=()
if [ ${#benches[@]} -eq 0 ]; then
    for b in "${all[@]}"; do
        if [ "$b" = chain ] && [ -z "${BASELINE_BIN:-}" ] && [ ! -x target/baseline/release/audit-trail ]; then
            notes+=("chain not run: no baseline build (run benches/chain-baseline.sh, or benches/suite.sh chain for this build's figures alone)")
            continue
        fi
        if [ "$b" = upload ] && [ "$(id -u)" -ne 0 ]; then
            notes+=("upload not run: its vsftpd must run as root")
            continue
        fi
        benches+=("$b")
    done
fi

# Debian packages: the peers (rsyslog, gzip, pigz, xmlstarlet, xmllint,
# sha256sum, OpenSSH sftp against sshd, curl against vsftpd), GNU time for
# peak memory, what the test suite's servers need to start (ssh-keygen,
# openssl), and the OpenSSL headers the SFTP client library builds against.
need=()
test -x /usr/sbin/rsyslogd || need+=(rsyslog)
command -v gzip >/dev/null 2>&1 || need+=(gzip)
command -v pigz >/dev/null 2>&1 || need+=(pigz)
command -v xmlstarlet >/dev/null 2>&1 || need+=(xmlstarlet)
command -v xmllint >/dev/null 2>&1 || need+=(libxml2-utils)
command -v sha256sum >/dev/null 2>&1 || need+=(coreutils)
command -v curl >/dev/null 2>&1 || need+=(curl)
{ command -v ssh-keygen && command -v sftp; } >/dev/null 2>&1 || need+=(openssh-client)
test -x /usr/sbin/sshd || need+=(openssh-server)
test -x /usr/sbin/vsftpd || need+=(vsftpd)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
test -x /usr/bin/time || need+=(time)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi

if [ "$smoke" -eq 1 ]; then
    export BENCH_SMOKE=1
fi
cargo=${CARGO:-cargo}
out=target/bench
mkdir -p "$out"

# Build every selected benchmark first, so that none is timed while another builds.
build_args=()
for b in "${benches[@]}"; do
    build_args+=(--bench "$b")
done
"$cargo" bench --no-run "${build_args[@]}"

failed=()
for b in "${benches[@]}"; do
    echo
    echo "== cargo bench --bench $b"
    if ! "$cargo" bench --bench "$b" 2>&1 | tee "$out/$b.log"; then
        failed+=("$b")
    fi
done

# Export memory must stay flat however large the history: the log
# benchmark once more over a larger one (BENCH_LARGE_RECORDS, default
# 1000000; 0 skips it; not at smoke size or when BENCH_RECORDS is set).
large=${BENCH_LARGE_RECORDS:-1000000}
if [[ " ${benches[*]} " == *" log "* ]] && [ "$smoke" -eq 0 ] && [ -z "${BENCH_RECORDS:-}" ] && [ "$large" -gt 0 ]; then
    echo
    echo "== BENCH_RECORDS=$large cargo bench --bench log"
    if BENCH_RECORDS=$large "$cargo" bench --bench log 2>&1 | tee "$out/log-large.log"; then
        benches+=(log-large)
    else
        failed+=(log-large)
    fi
fi

# The machine the figures come from.
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
ram=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
tmp=${TMPDIR:-/tmp}
fs=$(df -T -- "$tmp" 2>/dev/null | awk 'NR == 2 { print $2 }')
[ -n "$fs" ] || fs=$(stat -f -c %T -- "$tmp")
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit (with uncommitted changes)"
machine="machine: ${cpu:-unknown CPU}, $(nproc) cores, $ram RAM, Linux $(uname -r), $tmp on $fs, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $commit"
[ "$smoke" -eq 0 ] || machine="$machine; smoke size (the figures only show that the suite runs)"

{
    echo "$machine"
    echo
    echo "| measure | audit-trail | peer | peer figure | ratio | aim |"
    echo "|---|---|---|---|---|---|"
    for b in "${benches[@]}"; do
        grep -h $'^summary\t' "$out/$b.log" || true
    done | awk -F '\t' '{
        line = "|"
        for (i = 2; i <= 7; i++) { f = $i; gsub(/\|/, "\\|", f); line = line " " f " |" }
        print line
    }'
    for n in "${notes[@]}"; do
        echo
        echo "$n"
    done
    for b in "${failed[@]}"; do
        echo
        echo "**$b failed**: see $out/$b.log"
    done
} >"$out/summary.md"

echo
cat "$out/summary.md"
echo
echo "table: $out/summary.md; full output: $out/NAME.log"
[ ${#failed[@]} -eq 0 ]
