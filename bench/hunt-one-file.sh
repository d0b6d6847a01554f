#!/usr/bin/env bash
# Benchmark: one large IIS log (the simulated server's daily logs joined into one file, as
# a month's u_ex log or a SIEM export would be), read by one thread and cut across every
# core; parse-only and hunt (Portcullis's pack and, if ../shared is present, every SigmaHQ
# rule), with a check that both give the same finding ids.
#
#   bench/hunt-one-file.sh [SCALE] [RUNS]      (default scale 3 ≈ 600 MiB in one file)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=${PORTCULLIS_SHARED:-$here/../shared}
scale=${1:-3}; runs=${2:-2}
cargo build --release --quiet --manifest-path "$here/Cargo.toml" -p portcullis-cli
bin=${CARGO_TARGET_DIR:-$here/target}/release/portcullis
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
"$bin" simulate electoral-commission --out "$work/sim" --scale "$scale" --seed 1 >/dev/null
big=$work/u_ex-all.log
find "$work/sim" -path '*inetpub*' -name '*.log' | sort | xargs cat > "$big"
rm -rf "$work/sim"
mib=$(du -m "$big" | cut -f1)
rules=()
if [ -d "$shared/sigma/rules" ]; then
  for d in rules rules-emerging-threats rules-threat-hunting; do rules+=(--sigma "$shared/sigma/$d"); done
fi
cores=$(nproc)
best() { sort -g | head -1; }
timed() { for _ in $(seq "$runs"); do s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; done | best; }
parse1=$(timed "$bin" events --count -q --threads 1 "$big")
parse=$(timed "$bin" events --count -q "$big")
hunt1=$(timed "$bin" hunt "$big" "${rules[@]}" --threads 1 --format jsonl -q -o "$work/one.jsonl")
hunt=$(timed "$bin" hunt "$big" "${rules[@]}" --format jsonl -q -o "$work/all.jsonl")
ids() { python3 -c 'import json,sys; print(sorted(json.loads(l).get("id","") for l in open(sys.argv[1]) if json.loads(l)["kind"] in ("detection","correlation")))' "$1" | md5sum; }
same=$([ "$(ids "$work/one.jsonl")" = "$(ids "$work/all.jsonl")" ] && echo "same finding ids" || echo "FINDING IDS DIFFER")
read -r events nrules dets <<< "$(tail -1 "$work/all.jsonl" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["events"], s["rules_loaded"], s["detections"])')"
printf 'input: one IIS log of %s MiB, %s events, %s cores, %s rules\n' "$mib" "$events" "$cores" "$nrules"
printf 'parse-only, 1 thread:      %6.2fs  %6.1f MiB/s\n' "$parse1" "$(echo "$mib/$parse1" | bc -l)"
printf 'parse-only, cut (%s):       %6.2fs  %6.1f MiB/s  (%.2fx)\n' "$cores" "$parse" "$(echo "$mib/$parse" | bc -l)" "$(echo "$parse1/$parse" | bc -l)"
printf 'hunt, 1 thread:            %6.2fs  %6.1f MiB/s\n' "$hunt1" "$(echo "$mib/$hunt1" | bc -l)"
printf 'hunt, cut (%s):             %6.2fs  %6.1f MiB/s  (%.2fx; %.2fx parse-only), %s detections, %s\n' "$cores" "$hunt" \
  "$(echo "$mib/$hunt" | bc -l)" "$(echo "$hunt1/$hunt" | bc -l)" "$(echo "$hunt/$parse" | bc -l)" "$dets" "$same"
