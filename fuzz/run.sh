#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) under AFL++ for SECONDS each, one after the
# other, on the stable toolchain: installs cargo-afl and builds AFL++ if missing, builds
# the targets, seeds each corpus, and prints executions, crashes and hangs per target.
# Exits non-zero if any target found a crash or a hang. CPU seconds per target (user +
# system, the fuzzer and its targets, through fuzz/cputime.py) are in the summary.
#
#   fuzz/run.sh SECONDS [TARGET...]
#
# Environment: CARGO_TARGET_DIR (default target/ at the repository root; findings under
# $CARGO_TARGET_DIR/fuzz-out/TARGET), PORTCULLIS_SHARED (default ../shared, for EVTX and
# Sigma seeds), FUZZ_RESUME=1 to go on from the last run's queue instead of the seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=${1:-}
if ! [[ $seconds =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "usage: fuzz/run.sh SECONDS [TARGET...]" >&2
  exit 2
fi
shift
all=(evtx json w3c exchange_csv tail archive exposure mbox mime html sigma sigma_condition intel)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
shared=${PORTCULLIS_SHARED:-$root/../shared}

# cargo-afl from crates.io; it builds AFL++ (needs cc and make) for the toolchain in use.
if ! cargo afl --version >/dev/null 2>&1; then
  echo "== Installing cargo-afl"
  cargo install cargo-afl --locked --version '^0.18'
fi
# `config --build` fails, harmlessly, when AFL++ is already built for this toolchain.
if ! built=$(cargo afl config --build 2>&1); then
  grep -q "already built" <<<"$built" || { echo "$built" >&2; exit 1; }
fi

echo "== Building the fuzz targets"
(cd fuzz && cargo afl build --release --locked)
bin=$CARGO_TARGET_DIR/release/portcullis-fuzz

out_root=$CARGO_TARGET_DIR/fuzz-out
seeds_root=$CARGO_TARGET_DIR/fuzz-seeds
mkdir -p "$out_root" "$seeds_root"

# Seeds: the committed hand-made ones, plus (generated here, never committed) samples
# from the repository's own rules and intel data and from ../shared when it is there.
# A subshell without pipefail: `find | head` ends find with SIGPIPE, which is no failure.
seed() (
  set +o pipefail
  local t=$1 dir=$seeds_root/$1
  rm -rf "$dir"
  mkdir -p "$dir"
  cp fuzz/seeds/"$t"/* "$dir"/ 2>/dev/null || true
  case $t in
    evtx)
      if [ -d "$shared/evtx" ]; then
        # The smallest few recordings: AFL is faster on small inputs.
        find "$shared/evtx" -name '*.evtx' -size -200k -print0 | xargs -0 ls -S 2>/dev/null | tail -6 |
          while read -r f; do cp "$f" "$dir/$(basename "$f" | tr -c 'A-Za-z0-9._\n-' _)"; done
      fi
      ;;
    sigma)
      find rules -name '*.yml' -size -8k | head -20 | while read -r f; do cp "$f" "$dir/$(echo "$f" | tr / _)"; done
      if [ -d "$shared/sigma/rules" ]; then
        find "$shared/sigma/rules/windows/process_creation" -name '*.yml' -size -3k 2>/dev/null | head -15 |
          while read -r f; do cp "$f" "$dir/$(basename "$f")"; done
      fi
      ;;
    sigma_condition)
      find rules -name '*.yml' | head -40 | xargs grep -h '^ *condition:' 2>/dev/null | sed 's/^ *condition: *//' | sort -u | head -20 |
        awk -v d="$dir" '{ f = d "/rule-" NR ".txt"; print > f; close(f) }'
      ;;
    intel)
      cp crates/intel/data/*.stix.json "$dir"/ 2>/dev/null || true
      ;;
  esac
)

export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_QUIET=1
# Bound to one core when one is free (then compile-time thread pools use one thread too).
export AFL_TRY_AFFINITY=1 AFL_SKIP_CRASHES=1
failed=0
printf '%-16s %8s %8s %12s %8s %8s %8s %8s\n' target seconds cpu-s executions exec/s paths crashes hangs > "$out_root/summary.txt"
for t in "${targets[@]}"; do
  if [[ ! " ${all[*]} " == *" $t "* ]]; then
    echo "unknown target $t (targets: ${all[*]})" >&2
    exit 2
  fi
  out=$out_root/$t
  if [ "${FUZZ_RESUME:-0}" = 1 ] && [ -d "$out/default/queue" ]; then
    input=-
  else
    seed "$t"
    rm -rf "$out"
    input=$seeds_root/$t
  fi
  echo "== $t for ${seconds}s"
  # -V: stop after SECONDS; -t: a run over 2 s is a hang. AFL's own output goes to a log.
  python3 fuzz/cputime.py "$out_root/$t.cpu" \
    cargo afl fuzz -V "$seconds" -t 2000 -m none -i "$input" -o "$out" -- "$bin" "$t" > "$out_root/$t.log" 2>&1 || {
    echo "afl-fuzz failed for $t; see $out_root/$t.log" >&2
    tail -20 "$out_root/$t.log" >&2
    failed=1
    continue
  }
  stats=$out/default/fuzzer_stats
  get() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
  crashes=$(find "$out/default/crashes" -type f -name 'id:*' 2>/dev/null | wc -l)
  hangs=$(find "$out/default/hangs" -type f -name 'id:*' 2>/dev/null | wc -l)
  cpu=$(awk '{ printf "%.0f", $1 + $2 }' "$out_root/$t.cpu")
  printf '%-16s %8s %8s %12s %8s %8s %8s %8s\n' "$t" "$(get run_time)" "$cpu" "$(get execs_done)" "$(get execs_per_sec)" \
    "$(get corpus_count)" "$crashes" "$hangs" | tee -a "$out_root/summary.txt"
  if [ "$crashes" -gt 0 ] || [ "$hangs" -gt 0 ]; then
    echo "   findings in $out/default/crashes and hangs; replay one with: $bin $t < FILE"
    failed=1
  fi
done
echo "== Summary ($out_root/summary.txt)"
cat "$out_root/summary.txt"
exit $failed
