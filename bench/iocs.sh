#!/usr/bin/env bash
# Benchmark: hunt throughput with and without 500,000 indicators on the same data
# (simulated IIS + Exchange logs; the pack and, if ../shared is present, every SigmaHQ
# rule): with no indicators at all, with the built-in ones (the default), and with the
# file's on top. Target: within 10%. Also prints the time to load the indicators.
#
#   bench/iocs.sh [SCALE] [INDICATORS] [RUNS]   (default scale 2 ≈ 450 MiB, 500000, best of 2)
set -euo pipefail
. "$(dirname "$0")/common.sh"
scale=${1:-2}; n=${2:-500000}; runs=${3:-2}
release_binary
work=${BENCH_DIR:-$(mktemp -d)}
[ -z "${BENCH_DIR:-}" ] && trap 'rm -rf "$work"' EXIT
[ -d "$work/sim" ] || "$bin" simulate electoral-commission --out "$work/sim" --scale "$scale" --seed 1 >/dev/null
inputs=("$work/sim/EXCH01/inetpub" "$work/sim/EXCH01/Exchange")
mib=$(du -sm "${inputs[@]}" | awk '{s+=$1} END {print s}')
python3 - "$work/iocs.csv" "$n" <<'PY'
import random, sys
path, n = sys.argv[1], int(sys.argv[2])
r = random.Random(7)
with open(path, "w") as f:
    f.write("type,value,context\n")
    for i in range(n):
        k = i % 100
        if k < 60:
            f.write(f"ipv4,{r.randrange(1,224)}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(256)},feed\n")
        elif k < 64:
            f.write(f"cidr,{r.randrange(1,224)}.{r.randrange(256)}.{r.randrange(256)}.0/{r.choice([16,20,24,28])},feed\n")
        elif k < 88:
            f.write(f"domain,{''.join(r.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(r.randrange(5,14)))}.{r.choice(['com','net','org','ru','cn','info','xyz'])},feed\n")
        elif k < 96:
            f.write(f"url,http://{''.join(r.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(8))}.com/{r.randrange(10**6)}/x.php,feed\n")
        elif k < 98:
            f.write(f"email,{''.join(r.choice('abcdefghij') for _ in range(8))}@{''.join(r.choice('klmnopqrst') for _ in range(7))}.com,feed\n")
        else:
            f.write(f"sha256,{r.getrandbits(256):064x},feed\n")
PY
rules=("${every_sigma_rule[@]}")
best() {
  local b=999999
  for _ in $(seq "$runs"); do
    "$bin" hunt "${inputs[@]}" "${rules[@]}" -q --format jsonl -o "$work/out.jsonl" "$@"
    local t; t=$(tail -1 "$work/out.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["hunt_seconds"])')
    if (( $(echo "$t < $b" | bc) )); then b=$t; fi
  done
  echo "$b"
}
without=$(best --no-builtin-intel)
builtin=$(best)
builtin_n=$(tail -1 "$work/out.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["iocs_loaded"])')
with=$(best --iocs "$work/iocs.csv")
loaded=$(tail -1 "$work/out.jsonl" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["iocs_loaded"], s["elapsed_seconds"]-s["hunt_seconds"])')
pct() { echo "($1/$2 - 1)*100" | bc -l; }
printf 'input: %s MiB of simulated IIS + Exchange logs (scale %s), %s cores, %s rule dirs\n' "$mib" "$scale" "$(nproc)" "$(( ${#rules[@]} / 2 ))"
printf 'hunt, no indicators (--no-builtin-intel): %6.2fs  %6.1f MiB/s\n' "$without" "$(echo "$mib/$without" | bc -l)"
printf 'hunt, %s built-in indicators (default):   %6.2fs  %6.1f MiB/s  (%+.1f%% over none)\n' "$builtin_n" "$builtin" "$(echo "$mib/$builtin" | bc -l)" "$(pct "$builtin" "$without")"
printf 'hunt, %s indicators (default + --iocs):   %6.2fs  %6.1f MiB/s  (%+.1f%% over the default, %+.1f%% over none)\n' \
  "$(echo "$loaded" | awk '{print $1}')" "$with" "$(echo "$mib/$with" | bc -l)" "$(pct "$with" "$builtin")" "$(pct "$with" "$without")"
printf 'loading rules + indicators (outside the hunt time): %.2fs\n' "$(echo "$loaded" | awk '{print $2}')"
