#!/usr/bin/env bash
# Benchmark: Sigma hunt over EVTX-ATTACK-SAMPLES with every SigmaHQ rule, next to
# the parse-only baseline (`portcullis events --count`) on the same files.
#
#   bench/hunt-evtx.sh [COPIES] [RUNS]
#
# COPIES (default 8) copies of the 277-file corpus are hunted, so that scanning,
# not start-up, dominates; RUNS (default 3) runs of each, best time reported.
# Prints: rule parse and compile time, hunt wall time, parse-only wall time, and
# their ratio (target: compile < 0.5 s, hunt within 1.5x of parse-only). A rule group's
# matchers are built when the scan first meets an event of its class, so "read+scan"
# includes building the groups the corpus reaches.
set -euo pipefail
. "$(dirname "$0")/common.sh"
copies=${1:-8}
runs=${2:-3}
[ -d "$shared/evtx/EVTX-ATTACK-SAMPLES" ] || { echo "needs $shared/evtx/EVTX-ATTACK-SAMPLES (set PORTCULLIS_SHARED)"; exit 1; }
release_binary
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The corpus has a folder of its own: the hunt's output, written beside it, must not be
# read back as input by the next run.
corpus=$work/corpus
for i in $(seq 1 "$copies"); do mkdir -p "$corpus"; cp -r "$shared/evtx/EVTX-ATTACK-SAMPLES" "$corpus/copy$i"; done
bytes=$(du -sb "$corpus" | cut -f1)
# SIGMA_SETS (default: all four SigmaHQ sets) names the rule directories to use, e.g.
# "rules rules-emerging-threats rules-threat-hunting" for the set issue 18 compares
# against Hayabusa and Chainsaw with; 2 copies stand in for hayabusa-sample-evtx
# (564 files, 25,106 events against its 593 files, 24,661 events).
rules=("${every_sigma_rule[@]}")
if [ -n "${SIGMA_SETS:-}" ]; then
  rules=(); for d in $SIGMA_SETS; do rules+=(--sigma "$shared/sigma/$d"); done
fi

best() { sort -g | head -1; }
parse_only=$(for _ in $(seq "$runs"); do
  s=$(date +%s.%N); "$bin" events --count -q "$corpus" >/dev/null; e=$(date +%s.%N)
  echo "$e - $s" | bc; done | best)
hunt_wall=""; compile=""; rparse=""; scan=""; events=""; detections=""; peak=0
for _ in $(seq "$runs"); do
  s=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$work/mem" "$bin" hunt "$corpus" "${rules[@]}" --format jsonl -q -o "$work/out.jsonl"
  e=$(date +%s.%N)
  w=$(echo "$e - $s" | bc)
  kib=$(tail -1 "$work/mem"); [ "$kib" -gt "$peak" ] && peak=$kib
  summary=$(tail -1 "$work/out.jsonl")
  if [ -z "$hunt_wall" ] || [ "$(echo "$w < $hunt_wall" | bc)" = 1 ]; then
    hunt_wall=$w
    rparse=$(echo "$summary" | python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["rules_parse_seconds"])')
    compile=$(echo "$summary" | python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["rules_compile_seconds"])')
    scan=$(echo "$summary" | python3 -c 'import json,sys; print("%.3f" % json.load(sys.stdin)["hunt_seconds"])')
    events=$(echo "$summary" | python3 -c 'import json,sys; print(json.load(sys.stdin)["events"])')
    detections=$(echo "$summary" | python3 -c 'import json,sys; print(json.load(sys.stdin)["detections"])')
  fi
done
mb=$(echo "scale=1; $bytes / 1048576" | bc)
printf 'corpus: %s copies of EVTX-ATTACK-SAMPLES, %s MiB, %s events, %s cores\n' "$copies" "$mb" "$events" "$(nproc)"
printf 'rules: parse %ss, compile %ss (%s)\n' "$rparse" "$compile" "${SIGMA_SETS:-all SigmaHQ rule sets}"
printf 'parse-only (events --count): %.3fs  %.0f events/s\n' "$parse_only" "$(echo "$events / $parse_only" | bc -l)"
printf 'hunt wall:                   %.3fs  (read+scan %ss, %s detections; peak RSS %s MiB, highest of the runs)\n' "$hunt_wall" "$scan" "$detections" "$((peak / 1024))"
printf 'ratio hunt/parse-only: %.2fx wall, %.2fx excluding rule loading\n' \
  "$(echo "$hunt_wall / $parse_only" | bc -l)" "$(echo "$scan / $parse_only" | bc -l)"
