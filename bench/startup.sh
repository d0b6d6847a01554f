#!/usr/bin/env bash
# Benchmark: start-up of a hunt with every SigmaHQ rule (rules, rules-emerging-threats,
# rules-threat-hunting, rules-compliance), on a one-event input so that loading the rules
# is the whole run. Next to it, the process alone (`events --count` on the same input).
#
#   bench/startup.sh [RUNS]
#
# Three ways, RUNS (default 7) runs each, best and median wall seconds and peak memory:
#   no cache    --no-rule-cache: every rule file parsed (what every run did before the cache)
#   cold cache  an empty cache directory: parse, then write the cache
#   warm cache  the cache from the run before: unchanged files are not parsed
# Target (issue 18): warm ≤ 0.1 s; cold no slower than no cache.
set -euo pipefail
. "$(dirname "$0")/common.sh"
runs=${1:-7}
[ -d "$shared/sigma/rules" ] || { echo "needs $shared/sigma (set PORTCULLIS_SHARED)"; exit 1; }
release_binary
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo '{"EventID": 4624, "Channel": "Security", "TargetUserName": "x"}' > "$work/one.json"
rules=("${every_sigma_rule[@]}")

# Prints "seconds kib" for one run of the command.
one() {
  /usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null 2>&1 || true
  cat "$work/time"
}
stats() { # label, then lines of "seconds kib" on stdin
  sort -g | awk -v label="$1" '{ s[NR] = $1; if ($2 > m) m = $2 } END {
    printf "%-12s best %.3fs  median %.3fs  peak %.0f MiB\n", label, s[1], s[int((NR + 1) / 2)], m / 1024 }'
}
hunt=("$bin" hunt "$work/one.json" "${rules[@]}" --format jsonl -q -o "$work/out.jsonl")

for _ in $(seq "$runs"); do one "$bin" events --count -q "$work/one.json"; done | stats "process"
for _ in $(seq "$runs"); do one "${hunt[@]}" --no-rule-cache; done | stats "no cache"
for i in $(seq "$runs"); do PORTCULLIS_CACHE_DIR="$work/cold$i" one "${hunt[@]}"; done | stats "cold cache"
export PORTCULLIS_CACHE_DIR="$work/warm"
"${hunt[@]}"
for _ in $(seq "$runs"); do one "${hunt[@]}"; done | stats "warm cache"
python3 - "$work/out.jsonl" <<'PY'
import json, sys
s = [json.loads(l) for l in open(sys.argv[1])][-1]
print(f"last warm run: {s['rules_loaded']} rules, {s['rules_files_cached']} files from the cache "
      f"({s['rules_files_unread']} of them unread), "
      f"parse {s['rules_parse_seconds']:.3f}s, compile {s['rules_compile_seconds']:.3f}s")
PY
