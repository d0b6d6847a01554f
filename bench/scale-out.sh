#!/usr/bin/env bash
# Benchmark: the scale-out path on a real NATS JetStream server (scripts/nats-server.sh):
# events/s per worker and end-to-end latency (server receives an event → its detection is
# committed in the case) at p50/p99, with 1 and 2 workers, next to the single-core
# parse-only and batch-hunt baselines on the same simulated institution.
#
#   bench/scale-out.sh [SCALE] [RATE]   (default scale 0.2 ≈ 200,000 events; the latency runs
#                                        publish at RATE events/s, default 5000)
#
# Throughput: the agent stores every event first, then the workers drain the stream (so a
# worker's events/s is its own, not the agent's). Latency: workers, correlators and the
# collector are running and the agent publishes at RATE, below the workers' capacity.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
scale=${1:-0.2}; rate=${2:-5000}
target=${CARGO_TARGET_DIR:-$here/target}
cargo build --release --quiet -p portcullis-cli --manifest-path "$here/Cargo.toml"
bin=$target/release/portcullis
work=$(mktemp -d)
servers=()
cleanup() { for d in "${servers[@]}"; do "$here/scripts/nats-server.sh" stop "$d"; done; rm -rf "$work"; }
trap cleanup EXIT
"$here/scripts/nats-server.sh" bin >/dev/null
"$bin" simulate electoral-commission --out "$work/sim" --scale "$scale" --seed 1 >/dev/null
j() { python3 -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print($1)"; }
now() { date +%s.%N; }

s=$(now); events=$("$bin" events --count -q --threads 1 "$work/sim" 2>/dev/null | tail -1 | grep -o '[0-9]*' | tail -1); e=$(now)
parse=$(echo "$e - $s" | bc)
"$bin" hunt "$work/sim" --threads 1 -q --format jsonl -o "$work/batch.jsonl" --case "$work/batch.sqlite" || true
read -r hunt_s hunt_events dets corrs <<< "$(tail -1 "$work/batch.jsonl" | j 'd["hunt_seconds"], d["events"], d["detections"], d["correlation_findings"]')"
printf 'input: simulated electoral commission, scale %s: %s events, %s detections + %s correlation findings (batch hunt), %s cores\n' \
  "$scale" "$hunt_events" "$dets" "$corrs" "$(nproc)"
printf 'baseline parse-only (events --count, 1 thread): %8.0f events/s\n' "$(echo "$hunt_events/$parse" | bc -l)"
printf 'baseline batch hunt (read+scan, 1 thread):      %8.0f events/s\n' "$(echo "$hunt_events/$hunt_s" | bc -l)"

port=24222
server() { local d="$work/nats-$port"; servers+=("$d"); url=$("$here/scripts/nats-server.sh" start "$port" "$d"); port=$((port + 1)); }
stack() { # URL WORKERS CASE COLLECTOR-IDLE: start correlators, the collector and the workers
  local url=$1 n=$2 case=$3 idle=$4
  for k in 0 1; do "$bin" correlator --nats "$url" --partition "$k" --partitions 2 --lateness 1000000000 --exit-when-idle "$idle" >"$work/corr-$k.json" 2>/dev/null & done
  "$bin" collector --nats "$url" --case "$case" --exit-when-idle "$idle" >"$work/collector.json" 2>/dev/null &
  collector=$!
  pids=()
  for i in $(seq "$n"); do "$bin" worker --nats "$url" --partitions 2 --exit-when-idle 3 >"$work/worker-$i.json" 2>/dev/null & pids+=($!); done
}
for n in 1 2; do
  # Throughput: events stored first, then drained.
  server
  agent=$("$bin" agent "$work/sim" --nats "$url" --host sim 2>/dev/null)
  s=$(now); stack "$url" "$n" "$work/drain-$n.sqlite" 8; for p in "${pids[@]}"; do wait "$p"; done; e=$(now); wait
  total=$(echo "$e - $s - 3" | bc)
  per=$(for i in $(seq "$n"); do j 'round(d["events"]/max(d["busy_seconds"],1e-9))' < "$work/worker-$i.json"; done | paste -sd/)
  printf '%s worker(s): agent %s events/s; drained %s events in %.1fs = %.0f events/s total; per worker %s events/s\n' "$n" \
    "$(echo "$agent" | j 'round(d["events_per_second"])')" "$hunt_events" "$total" "$(echo "$hunt_events/$total" | bc -l)" "$per"
  # Latency: everything running, events paced below capacity.
  server
  # Detections are sparse in time: the collector waits 30 s without findings before it ends.
  stack "$url" "$n" "$work/paced-$n.sqlite" 30; sleep 1
  "$bin" agent "$work/sim" --nats "$url" --host sim --max-rate "$rate" >/dev/null 2>&1
  wait
  printf '%s worker(s): latency at %s events/s: %s; case has %s findings (batch %s)\n' "$n" "$rate" \
    "$(j '"p50 %.0f ms, p99 %.0f ms over %d findings" % (d["latency_p50"]*1000, d["latency_p99"]*1000, d["findings"])' < "$work/collector.json")" \
    "$(python3 -c "import sqlite3;print(sqlite3.connect('$work/paced-$n.sqlite').execute('select count(*) from findings').fetchone()[0])")" \
    "$(python3 -c "import sqlite3;print(sqlite3.connect('$work/batch.sqlite').execute('select count(*) from findings').fetchone()[0])")"
done
