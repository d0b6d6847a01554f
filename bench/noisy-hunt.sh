#!/usr/bin/env bash
# Benchmark: a noisy hunt, where one rule matches every event of a large IIS log (as a
# broad community rule does on a busy web server). Every match becomes a detection, a
# finding, part of the incident pass and a line of output, so this measures everything
# after scanning, and detections spilled past --detection-memory against detections held.
# Printed next to the parse-only pass, with peak memory.
#
#   bench/noisy-hunt.sh [MILLIONS] [RUNS]      (default 1 million events, best of 2)
set -euo pipefail
source "$(dirname "$0")/common.sh"
millions=${1:-1}; runs=${2:-2}
release_binary
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cat > "$work/rule.yml" <<'YAML'
title: Any IIS request
id: 6c0e1b0e-1d57-4c55-9a3e-5a1f0b1c0001
level: low
logsource: {category: webserver}
detection: {sel: {cs-method: [GET, POST]}, condition: sel}
YAML
python3 - "$millions" "$work/u_ex.log" <<'PY'
import sys, random, time
n = int(float(sys.argv[1]) * 1_000_000); out = open(sys.argv[2], "w"); r = random.Random(7)
out.write("#Software: Microsoft Internet Information Services 10.0\n#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) sc-status sc-substatus sc-win32-status time-taken\n")
base = 1609459200
for i in range(n):
    tm = time.gmtime(base + i // 20)
    out.write("%04d-%02d-%02d %02d:%02d:%02d 10.0.0.5 GET /owa/%d - 443 - 10.%d.%d.%d Mozilla/5.0 200 0 0 5\n" % (
        tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, r.randrange(40), (i % 2000) // 250, i % 250, r.randrange(4)))
PY
mib=$(du -m "$work/u_ex.log" | cut -f1)
# Best wall seconds and its peak RSS (MiB) of `runs` runs.
measure() {
  for _ in $(seq "$runs"); do
    /usr/bin/time -f "%e %M" -o "$work/t" "$@" >/dev/null
    cat "$work/t"
  done | sort -g | head -1
}
read -r parse parse_rss < <(measure "$bin" events --count -q "$work/u_ex.log")
# jsonl and csv with the default --detection-memory (256 MiB: a million detections spill to
# temporary files), and jsonl with every detection held in memory, for comparison.
for run in "jsonl 256" "csv 256" "jsonl 65536"; do
  read -r format memory <<< "$run"
  read -r secs rss < <(measure "$bin" hunt "$work/u_ex.log" --no-builtin --sigma "$work/rule.yml" --format "$format" -q -o "$work/out" --detection-memory "$memory")
  detections=$( [ "$format" = jsonl ] && tail -1 "$work/out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["detections"])' || echo "$(( $(wc -l < "$work/out") - 1 ))")
  python3 - "$format" "$mib" "$parse" "$parse_rss" "$secs" "$rss" "$detections" "$memory" <<'PY'
import sys
fmt, mib, parse, prss, secs, rss, det, mem = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8])
print(f"{fmt:5} --detection-memory {mem:>5} MiB: {mib} MiB, {det:,} detections: hunt {secs:.2f}s ({det/secs/1e3:.0f}k detections/s), "
      f"peak {rss/1024:.0f} MiB; parse-only {parse:.2f}s, peak {prss/1024:.0f} MiB; {secs/parse:.1f}x parse-only")
PY
done
