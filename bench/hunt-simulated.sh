#!/usr/bin/env bash
# Benchmark: hunt over >= 1 GB of simulated IIS and Exchange logs (HttpProxy, Rps_Http,
# message tracking) with Portcullis's pack and, if ../shared is present, every SigmaHQ
# rule; next to the parse-only baseline on the same files.
#
#   bench/hunt-simulated.sh [SCALE] [RUNS]      (default scale 5 ≈ 1.1 GB of IIS+Exchange logs)
set -euo pipefail
. "$(dirname "$0")/common.sh"
scale=${1:-5}; runs=${2:-2}
release_binary
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
"$bin" simulate electoral-commission --out "$work/sim" --scale "$scale" --seed 1 >/dev/null
inputs=("$work/sim/EXCH01/inetpub" "$work/sim/EXCH01/Exchange")
mib=$(du -sm "${inputs[@]}" | awk '{s+=$1} END {print s}')
rules=("${every_sigma_rule[@]}")
cores=$(nproc)
best() { sort -g | head -1; }
parse=$(for _ in $(seq "$runs"); do s=$(date +%s.%N); "$bin" events --count -q "${inputs[@]}" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; done | best)
hunt=$(for _ in $(seq "$runs"); do s=$(date +%s.%N); "$bin" hunt "${inputs[@]}" "${rules[@]}" --format jsonl -q -o "$work/out.jsonl"; e=$(date +%s.%N); echo "$e - $s" | bc; done | best)
scan=$(tail -1 "$work/out.jsonl" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["hunt_seconds"], s["events"], s["rules_loaded"], s["detections"])')
read -r hunt_only events nrules dets <<< "$scan"
printf 'input: %s MiB of simulated IIS + Exchange logs (scale %s), %s events, %s cores, %s rules\n' "$mib" "$scale" "$events" "$cores" "$nrules"
printf 'parse-only (events --count): %6.2fs  %6.1f MiB/s  %6.1f MiB/s per core\n' "$parse" "$(echo "$mib/$parse" | bc -l)" "$(echo "$mib/$parse/$cores" | bc -l)"
printf 'hunt (wall, incl. rule load): %6.2fs  %6.1f MiB/s  %6.1f MiB/s per core, %s detections\n' "$hunt" "$(echo "$mib/$hunt" | bc -l)" "$(echo "$mib/$hunt/$cores" | bc -l)" "$dets"
printf 'hunt (read+scan only):       %6.2fs  %6.1f MiB/s per core\n' "$hunt_only" "$(echo "$mib/$hunt_only/$cores" | bc -l)"
printf 'ratio hunt/parse-only: %.2fx wall, %.2fx read+scan\n' "$(echo "$hunt/$parse" | bc -l)" "$(echo "$hunt_only/$parse" | bc -l)"
