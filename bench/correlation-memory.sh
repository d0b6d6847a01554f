#!/usr/bin/env bash
# Benchmark: memory of a 1-hour value_count correlation grouped by source IP over
# millions of synthetic IIS events, at two sizes. Peak RSS must not grow with the
# event count beyond the live group state.
#
#   bench/correlation-memory.sh [MILLIONS_SMALL] [MILLIONS_LARGE]   (default 1 and 5)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
small=${1:-1}; large=${2:-5}
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
bin=$here/target/release/portcullis
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cat > "$work/rules.yml" <<'YAML'
title: Any IIS request
id: bench-req
name: request
level: informational
logsource: {category: webserver}
detection: {sel: {cs-method: [GET, POST]}, condition: sel}
---
title: One source, many URLs in an hour
id: bench-corr
level: medium
correlation:
    type: value_count
    rules: [request]
    group-by: [c-ip]
    timespan: 1h
    condition: {field: cs-uri-stem, gte: 20}
YAML
gen() { # $1 = millions of lines; 2,000 source IPs, one request per 50 ms of log time
python3 - "$1" "$work/iis-$1M.log" <<'PY'
import sys, random
n = int(float(sys.argv[1]) * 1_000_000); out = open(sys.argv[2], "w"); r = random.Random(7)
out.write("#Software: Microsoft Internet Information Services 10.0\n#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) sc-status sc-substatus sc-win32-status time-taken\n")
base = 1609459200  # 2021-01-01
import time
for i in range(n):
    t = base + i // 20
    tm = time.gmtime(t)
    out.write("%04d-%02d-%02d %02d:%02d:%02d 10.0.0.5 GET /owa/%d - 443 - 10.%d.%d.%d Mozilla/5.0 200 0 0 5\n" % (
        tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, r.randrange(40), (i % 2000) // 250, (i % 250), r.randrange(4)))
PY
}
for m in "$small" "$large"; do
  gen "$m"
  size=$(du -m "$work/iis-${m}M.log" | cut -f1)
  /usr/bin/time -f "%M %e" -o "$work/time" "$bin" hunt "$work/iis-${m}M.log" --no-builtin --sigma "$work/rules.yml" \
    --format jsonl -q -o "$work/out.jsonl"
  read -r rss secs < "$work/time"
  summary=$(tail -1 "$work/out.jsonl")
  python3 - "$m" "$size" "$rss" "$secs" "$summary" <<'PY'
import json, sys
m, size, rss, secs, s = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), json.loads(sys.argv[5])
print(f"{m}M events ({size} MiB): peak RSS {rss/1024:.0f} MiB, {secs:.1f}s wall, "
      f"{s['events']/secs/1e6:.2f}M events/s, {s['correlation_inputs']} correlation inputs, "
      f"{s['correlation_findings']} correlation findings")
PY
  rm -f "$work/iis-${m}M.log"
done
