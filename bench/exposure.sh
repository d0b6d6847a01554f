#!/usr/bin/env bash
# Benchmark: `portcullis exposure` over a synthetic national-scale register set.
# Prints rows/s, MB/s and peak RSS next to a raw read of the same bytes, and checks the
# unique-elector counts against truth.json.
#
#   bench/exposure.sh [SCALE] [MEMORY_MB]   (default scale 890 ≈ 40 million rows, 2.1 GB;
#                                            MEMORY_MB bounds fingerprints before spilling)
#
# Then one large register file (the UTF-8 CSV registers joined end to end, headers repeated
# as concatenated exports do) on one thread and on every core: one file must use them all.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
scale=${1:-890}; mem=${2:-2048}
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
bin=$here/target/release/portcullis
work=${BENCH_DIR:-$(mktemp -d)}
[ -z "${BENCH_DIR:-}" ] && trap 'rm -rf "$work"' EXIT
if [ ! -f "$work/regs/truth.json" ] || ! python3 -c "import json,sys; sys.exit(0 if json.load(open('$work/regs/truth.json'))['scale'] == float('$scale') else 1)"; then
  rm -rf "$work/regs"
  s=$(date +%s.%N)
  "$bin" simulate electoral-commission --registers-only --scale "$scale" --seed 1 --out "$work/regs" >/dev/null
  printf 'generated in %.1fs\n' "$(echo "$(date +%s.%N) - $s" | bc)"
fi
mib=$(du -sm "$work/regs" | awk '{print $1}')
cores=$(nproc)
s=$(date +%s.%N); cat "$work"/regs/FS01/Shares/Registers/*/* > /dev/null; e=$(date +%s.%N)
raw=$(echo "$e - $s" | bc)
s=$(date +%s.%N)
/usr/bin/time -f '%M' -o "$work/rss" "$bin" exposure "$work/regs" --format jsonl -q --memory-mb "$mem" -o "$work/out.jsonl"
e=$(date +%s.%N)
wall=$(echo "$e - $s" | bc)
rss=$(cat "$work/rss")
read -r rows unique spilled ok <<< "$(python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
total = [json.loads(l) for l in open(f"{w}/out.jsonl")][-1]
truth = json.load(open(f"{w}/regs/truth.json"))["exposure"]
ok = total["unique_electors"] == truth["unique_electors"] and total["by_category"] == truth["by_category"]
print(truth["rows"], total["unique_electors"], total["spilled_runs"], "exact" if ok else "MISMATCH")
PY
)"
printf 'input: %s register rows (CSV UTF-8/UTF-16/Windows-1252, TSV, XLSX, nested ZIP, MBOX), %s MiB, %s cores\n' "$rows" "$mib" "$cores"
printf 'raw read (cat):  %6.2fs  %7.1f MiB/s\n' "$raw" "$(echo "$mib/$raw" | bc -l)"
printf 'exposure:        %6.2fs  %7.1f MiB/s  %5.2f M rows/s  peak RSS %s MiB, %s spilled runs (budget %s MiB)\n' \
  "$wall" "$(echo "$mib/$wall" | bc -l)" "$(echo "$rows/$wall/1000000" | bc -l)" "$((rss / 1024))" "$spilled" "$mem"
printf 'unique electors: %s (%s against truth.json)\n' "$unique" "$ok"
one=$work/one
rm -rf "$one"; mkdir -p "$one"
cat "$work"/regs/FS01/Shares/Registers/*/LA-Northfield-register-*.csv > "$one/register.csv"
onemib=$(du -m "$one/register.csv" | awk '{print $1}')
timed() { local s e; s=$(date +%s.%N); "$@" > /dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; }
t1=$(RAYON_NUM_THREADS=1 timed "$bin" exposure "$one" --format jsonl -q --memory-mb "$mem" -o "$work/one1.jsonl")
tn=$(timed "$bin" exposure "$one" --format jsonl -q --memory-mb "$mem" -o "$work/onen.jsonl")
same=$(python3 - "$work" <<'PY'
import json, sys
w = sys.argv[1]
a, b = ([json.loads(l) for l in open(f"{w}/{n}.jsonl")] for n in ("one1", "onen"))
for r in a + b:
    r.pop("seconds", None)
print("identical" if a == b else "DIFFERENT")
PY
)
onerows=$(python3 -c "import json,sys; print([json.loads(l) for l in open('$work/onen.jsonl')][-1]['rows'])")
printf 'one file (%s MiB, %s rows): 1 thread %6.2fs (%.2f M rows/s), %s cores %6.2fs (%.2f M rows/s, %.2fx); results %s\n' \
  "$onemib" "$onerows" "$t1" "$(echo "$onerows/$t1/1000000" | bc -l)" "$cores" "$tn" "$(echo "$onerows/$tn/1000000" | bc -l)" "$(echo "$t1/$tn" | bc -l)" "$same"
