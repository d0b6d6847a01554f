#!/usr/bin/env bash
# Benchmark: loading a STIX 2.1 bundle of N indicators (default 1,000,000: IPv4, CIDR,
# domains, URLs, hashes, with an identity and `indicates` relationships for a tenth) — wall
# time and peak memory of a hunt over a tiny log with and without the bundle; the
# difference is what loading and holding the indicators costs.
#
# Target (issue 18): 1,000,000 indicators load in <= 2 s and hold <= 500 MiB. Runs
# alternate with and without the bundle; best and median of RUNS are printed. BENCH_DIR
# keeps the generated bundle between runs of the script.
#
#   bench/stix-load.sh [INDICATORS] [RUNS]   (default 1000000, 5)
set -euo pipefail
. "$(dirname "$0")/common.sh"
n=${1:-1000000}; runs=${2:-5}
release_binary
work=${BENCH_DIR:-$(mktemp -d)}
[ -z "${BENCH_DIR:-}" ] && trap 'rm -rf "$work"' EXIT
[ -f "$work/bundle-$n.json" ] || python3 - "$work/bundle-$n.json" "$n" <<'PY'
import random, sys
path, n = sys.argv[1], int(sys.argv[2])
r = random.Random(7)
letters = 'abcdefghijklmnopqrstuvwxyz'
with open(path, "w") as f:
    f.write('{"type":"bundle","id":"bundle--00000000-0000-4000-8000-000000000000","objects":[\n')
    f.write('{"type":"identity","spec_version":"2.1","id":"identity--00000000-0000-4000-8000-000000000001","name":"Partner CERT","identity_class":"organization"},\n')
    f.write('{"type":"intrusion-set","spec_version":"2.1","id":"intrusion-set--00000000-0000-4000-8000-000000000002","name":"APT31"},\n')
    for i in range(n):
        k = i % 100
        if k < 60:
            p = f"[ipv4-addr:value = '{r.randrange(1,224)}.{r.randrange(256)}.{r.randrange(256)}.{r.randrange(256)}']"
        elif k < 64:
            p = f"[ipv4-addr:value ISSUBSET '{r.randrange(1,224)}.{r.randrange(256)}.{r.randrange(256)}.0/24']"
        elif k < 88:
            p = "[domain-name:value = '" + ''.join(r.choice(letters) for _ in range(r.randrange(5, 14))) + ".com']"
        elif k < 96:
            p = "[url:value = 'http://" + ''.join(r.choice(letters) for _ in range(8)) + f".com/{r.randrange(10**6)}/x.php']"
        else:
            p = f"[file:hashes.'SHA-256' = '{r.getrandbits(256):064x}']"
        f.write(f'{{"type":"indicator","spec_version":"2.1","id":"indicator--{i:08d}-0000-4000-8000-000000000000","created":"2021-08-24T02:10:17.000Z","modified":"2021-08-24T02:10:17.000Z","created_by_ref":"identity--00000000-0000-4000-8000-000000000001","name":"Indicator {i}","pattern":"{p}","pattern_type":"stix","valid_from":"2021-08-24T02:10:17Z","indicator_types":["malicious-activity"]}},\n')
        if i % 10 == 0:
            f.write(f'{{"type":"relationship","spec_version":"2.1","id":"relationship--{i:08d}-0000-4000-8000-000000000000","relationship_type":"indicates","source_ref":"indicator--{i:08d}-0000-4000-8000-000000000000","target_ref":"intrusion-set--00000000-0000-4000-8000-000000000002"}},\n')
    f.write('{"type":"identity","spec_version":"2.1","id":"identity--00000000-0000-4000-8000-000000000009","name":"end"}\n]}\n')
PY
bundle=$work/bundle-$n.json
printf '#Fields: date time c-ip cs-uri-stem\n2021-08-24 02:10:17 10.0.0.1 /owa/\n' > "$work/tiny.log"
mib=$(du -mL "$bundle" | cut -f1)
run() { /usr/bin/time -f "%e %M" "$bin" hunt "$work/tiny.log" -q --no-builtin-intel -o /dev/null "$@" 2>&1 | tail -1; }
# Baseline: reading the bundle's bytes (and warming the page cache for the runs).
read_s=$( { /usr/bin/time -f "%e" cat "$bundle" > /dev/null; } 2>&1 | tail -1)
: > "$work/base"; : > "$work/with"
for _ in $(seq "$runs"); do
  run >> "$work/base"
  run --iocs "$bundle" >> "$work/with"
done
stats() { sort -n "$1" | awk '{t[NR]=$1; if ($2 > m) m = $2} END {printf "best %5.2fs  median %5.2fs  peak RSS %4d MiB (highest of the runs)", t[1], t[int((NR+1)/2)], m/1024}'; }
printf 'bundle: %s indicators, %s MiB; reading its bytes (cat): %.2fs\n' "$n" "$mib" "$read_s"
printf 'hunt without indicators: %s\n' "$(stats "$work/base")"
printf 'hunt with the bundle:    %s\n' "$(stats "$work/with")"
printf 'target: with the bundle <= 2 s and <= 500 MiB\n'
