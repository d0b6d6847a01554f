#!/usr/bin/env bash
# Benchmark `watch`: (1) catching up on a simulated institution with `watch --once` next to
# `events --count` (parse-only) and a batch `hunt` of the same files; (2) end-to-end latency
# from a log line written to its alert (committed to the case first) while lines arrive at
# a steady rate into a followed IIS log, p50 and p99, at the default poll interval and at 0.1 s.
#
#   bench/watch.sh [SCALE] [LINES_PER_SECOND] [SECONDS]     (defaults: 0.2, 200, 20)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
scale=${1:-0.2}; rate=${2:-200}; secs=${3:-20}
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
bin=$here/target/release/portcullis
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
"$bin" simulate electoral-commission --out "$work/sim" --scale "$scale" --seed 1 >/dev/null
rm -f "$work/sim/truth.json"
mib=$(du -sm "$work/sim" | cut -f1)
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1 || true; e=$(date +%s.%N); echo "$e - $s" | bc; }
parse=$(t "$bin" events --count -q "$work/sim")
hunt=$(t "$bin" hunt "$work/sim" -q --case "$work/batch.sqlite" -o "$work/h.txt")
once=$(t "$bin" watch --once -q --case "$work/live.sqlite" "$work/sim")
events=$("$bin" events --count -q "$work/sim" 2>/dev/null | tail -1 | tr -dc '0-9')
same=$(python3 - "$work/batch.sqlite" "$work/live.sqlite" <<'PY'
import sqlite3, sys
a, b = ({r[0] for r in sqlite3.connect(p).execute("select id from findings")} for p in sys.argv[1:])
print(f"{len(b)} findings, {'the same ids as' if a == b else 'DIFFERENT from'} the batch hunt ({len(a)})")
PY
)
printf 'catch-up: %s MiB, %s events (simulated institution, scale %s), %s cores\n' "$mib" "$events" "$scale" "$(nproc)"
printf '  parse-only (events --count, all cores): %6.2fs  %8.0f events/s\n' "$parse" "$(echo "$events/$parse" | bc -l)"
printf '  hunt (batch, all cores):                %6.2fs  %8.0f events/s\n' "$hunt" "$(echo "$events/$hunt" | bc -l)"
printf '  watch --once (one thread, checkpoints): %6.2fs  %8.0f events/s; %s\n' "$once" "$(echo "$events/$once" | bc -l)" "$same"

# Latency: an IIS log written line by line; every 10th line is an exploit request (a finding).
python3 - "$bin" "$work" "$rate" "$secs" <<'PY'
import os, subprocess, sys, threading, time, json
binary, work, rate, secs = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
def run(interval):
    d = os.path.join(work, f"lat{interval}")
    os.makedirs(d)
    log = os.path.join(d, "u_ex.log")
    with open(log, "w") as f:
        f.write("#Software: Microsoft Internet Information Services 10.0\n#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) sc-status\n")
    p = subprocess.Popen([binary, "watch", "-q", "--interval", str(interval), "--case", os.path.join(d, "c.sqlite"), d],
                         stdout=subprocess.PIPE, text=True)
    time.sleep(2.0)  # rules loaded
    written, seen = {}, {}
    def reader():
        for line in p.stdout:
            a = json.loads(line)
            if a.get("record") is not None and a["record"] not in seen:
                seen[a["record"]] = time.monotonic()
    threading.Thread(target=reader, daemon=True).start()
    n, line_no, start = 0, 2, time.monotonic()
    with open(log, "a") as f:
        while time.monotonic() - start < secs:
            n += 1; line_no += 1
            ts = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
            if n % 10 == 0:
                f.write(f"{ts} 10.0.0.5 POST /autodiscover/autodiscover.json @evil.corp/powershell/?X-Rps-CAT=x&Email=autodiscover/autodiscover.json%3F@evil.corp 443 - 203.0.113.{n % 250} python-requests/2.25.1 200\n")
                f.flush(); written[line_no] = time.monotonic()
            else:
                f.write(f"{ts} 10.0.0.5 GET /owa/ - 443 - 10.1.1.{n % 250} Mozilla/5.0 200\n")
            time.sleep(1.0 / rate)
    time.sleep(max(3.0, 2 * interval + 1))
    p.terminate(); p.wait()
    lat = sorted(seen[k] - written[k] for k in written if k in seen)
    if not lat:
        print(f"  interval {interval}s: no alerts"); return
    q = lambda x: lat[min(len(lat) - 1, int(x * len(lat)))] * 1000
    print(f"  poll interval {interval:>4}s: {len(lat)}/{len(written)} findings alerted; line written -> finding committed and alerted: p50 {q(0.5):.0f} ms, p99 {q(0.99):.0f} ms")
print(f"latency: {rate:.0f} lines/s into a followed IIS log for {secs:.0f} s, every 10th line a finding")
for interval in (1.0, 0.1):
    run(interval)
PY
