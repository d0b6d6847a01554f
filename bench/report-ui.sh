#!/usr/bin/env bash
# Benchmark: `portcullis report` over the scale-1 simulated institution, and the web UI's
# pages over a case of 1 million findings (the institution's findings repeated with new ids,
# entities and search rows, so lists, filters, pivots and search run at that size).
# Baseline: reading the same case's findings with the sqlite3 shell (a full scan).
#
#   bench/report-ui.sh [SCALE] [FINDINGS] [REQUESTS]     (default 1, 1000000, 20)
#   BIG_CASE=case.sqlite bench/report-ui.sh              (only the UI pages, over an existing case)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
scale=${1:-1}; target=${2:-1000000}; requests=${3:-20}
command -v sqlite3 >/dev/null || { echo "needs the sqlite3 shell (apt-get install sqlite3)" >&2; exit 1; }
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
bin=$here/target/release/portcullis
work=$(mktemp -d); trap 'kill ${pid:-} 2>/dev/null; rm -rf "$work"' EXIT
secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }

if [ -z "${BIG_CASE:-}" ]; then

"$bin" simulate electoral-commission --out "$work/sim" --scale "$scale" --seed 1 >/dev/null
"$bin" hunt "$work/sim" --case "$work/case.sqlite" -q --format jsonl -o /dev/null
"$bin" exposure "$work/sim" --accessed "$work/case.sqlite" --case "$work/case.sqlite" -q --format jsonl -o /dev/null
findings=$(sqlite3 "$work/case.sqlite" "SELECT COUNT(*) FROM findings")
report=$(secs "$bin" report "$work/case.sqlite" -o "$work/report.html")
printf 'report, scale %s institution (%s findings): %.2fs, %s KiB\n' "$scale" "$findings" "$report" "$(( $(stat -c %s "$work/report.html") / 1024 ))"

# Inflate to the target: copies of every finding with fresh ids (and their entities and
# search rows), all outside any incident.
copies=$(( (target + findings - 1) / findings ))
sqlite3 "$work/case.sqlite" <<SQL
PRAGMA journal_mode = WAL;
BEGIN;
CREATE TEMP TABLE copies AS
  WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $copies)
  SELECT printf('x%07d', n.i) || substr(f.id, 1, 24) AS new_id, f.id AS old_id FROM findings f, n;
INSERT INTO findings (id, kind, rule_id, rule_title, level, level_rank, first_ts, last_ts, host, sentence, path, record, tags, evidence, event, run_id, matcher, log, rule_source)
  SELECT c.new_id, kind, rule_id, rule_title, level, level_rank, first_ts, last_ts, host, sentence, path, record, tags, evidence, event, run_id, matcher, log, rule_source
  FROM copies c JOIN findings f ON f.id = c.old_id;
INSERT INTO entities (finding_id, kind, value) SELECT c.new_id, e.kind, e.value FROM copies c JOIN entities e ON e.finding_id = c.old_id;
INSERT INTO findings_fts (id, text)
  SELECT c.new_id, rule_title || ' ' || sentence || ' ' || coalesce(host, '') || ' ' || coalesce(path, '') || ' ' || coalesce(event, '')
  FROM copies c JOIN findings f ON f.id = c.old_id;
COMMIT;
SQL
big=$(sqlite3 "$work/case.sqlite" "SELECT COUNT(*) FROM findings")
mib=$(( $(stat -c %s "$work/case.sqlite") / 1048576 ))
scan=$(secs sqlite3 "$work/case.sqlite" "SELECT * FROM findings")
printf 'case: %s findings, %s MiB; baseline sqlite3 full scan of findings: %.2fs\n' "$big" "$mib" "$scan"
report=$(secs "$bin" report "$work/case.sqlite" -o "$work/report-big.html")
printf 'report over %s findings: %.2fs\n' "$big" "$report"
else
  ln "$BIG_CASE" "$work/case.sqlite" 2>/dev/null || ln -s "$(realpath "$BIG_CASE")" "$work/case.sqlite"
  printf 'case: %s findings\n' "$(sqlite3 "$work/case.sqlite" "SELECT COUNT(*) FROM findings")"
fi

"$bin" serve "$work/case.sqlite" --bind 127.0.0.1:0 >"$work/serve.log" 2>&1 & pid=$!
for _ in $(seq 100); do url=$(grep -o 'http://127.0.0.1:[0-9]*/?token=[0-9a-f]*' "$work/serve.log" || true); [ -n "$url" ] && break; sleep 0.1; done
origin=${url%%/\?*}; token=${url##*token=}
incident=$(sqlite3 "$work/case.sqlite" "SELECT id FROM incidents ORDER BY finding_count DESC LIMIT 1")
host=$(sqlite3 "$work/case.sqlite" "SELECT value FROM entities WHERE kind = 'host' GROUP BY value ORDER BY COUNT(*) DESC LIMIT 1")
printf '%-44s %8s %8s %8s\n' "UI page ($requests requests each)" p50_ms p99_ms bytes
for path in "/" "/findings" "/findings?level=critical" "/findings?host=$host" "/findings?q=certutil" "/findings?page=5000" \
            "/entity/host/$host" "/incidents/$incident" "/coverage"; do
  times=$(for _ in $(seq "$requests"); do curl -s -o "$work/page" -w '%{time_total}\n' -b "portcullis_session=$token" "$origin$path"; done | sort -g)
  p50=$(echo "$times" | awk -v n="$requests" 'NR == int((n + 1) / 2) {print $1 * 1000}')
  p99=$(echo "$times" | tail -1 | awk '{print $1 * 1000}')
  printf '%-44s %8.0f %8.0f %8s\n' "$path" "$p50" "$p99" "$(stat -c %s "$work/page")"
done
