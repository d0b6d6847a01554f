#!/usr/bin/env bash
# Browser tests of the HTML report and the web UI in headless Chromium (Debian's chromium,
# driven by playwright-core). Installs what is missing (chromium with apt, playwright-core
# with npm) and says clearly when it cannot. Builds a case from hostile inputs (XSS payloads
# in a user agent, a URL, a file name, a mail subject and display name, and a rule title),
# plus the demo's case, and checks that every page renders, pivots, filters, search and triage
# work, and that no payload ever runs. Screenshots go to target/browser-artifacts/.
#
#   tests/browser/run.sh            (after `cargo build --release`)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin="$root/target/release/portcullis"
out="$root/target/browser-artifacts"

[ -x "$bin" ] || { echo "browser tests: $bin not built (run cargo build --release first)" >&2; exit 1; }

chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
  echo "browser tests: installing Debian's chromium (apt-get)…"
  if ! (export DEBIAN_FRONTEND=noninteractive; { apt-get update -qq || true; } && apt-get install -y -qq chromium >/dev/null); then
    echo "browser tests: FAILED: Chromium could not be installed with apt-get (no root, or no Debian mirror)." >&2
    echo "  Install it (apt-get install chromium) or set CHROMIUM=/path/to/chromium, then run $0 again." >&2
    exit 3
  fi
fi
if [ ! -d "$here/node_modules/playwright-core" ]; then
  echo "browser tests: installing playwright-core (npm ci)…"
  if ! (cd "$here" && npm ci --no-audit --no-fund --silent); then
    echo "browser tests: FAILED: playwright-core could not be installed from the npm registry." >&2
    exit 3
  fi
fi

work=$(mktemp -d)
cleanup() { [ -n "${serve_pid:-}" ] && kill "$serve_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
rm -rf "$out" && mkdir -p "$out"

# A hostile case: every string an attacker controls carries a payload that would set
# window.__pwned if it ever ran.
mkdir -p "$work/hostile/logs" "$work/hostile/mail" "$work/hostile/rules"
payload_name='"><svg onload=window.__pwned=1>'
cat > "$work/hostile/logs/$payload_name.log" <<'LOG'
#Software: Microsoft Internet Information Services 10.0
#Version: 1.0
#Date: 2021-08-24 02:10:17
#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken
2021-08-24 02:10:17 10.0.0.5 POST /autodiscover/autodiscover.json @evil.com/mapi/nspi/?&Email=autodiscover/autodiscover.json%3F@evil.com<img+src=x+onerror=window.__pwned=1> 443 - 104.244.79.6 <script>window.__pwned=1</script> - 401 0 0 15
2021-08-24 02:13:17 10.0.0.5 POST /autodiscover/autodiscover.json @evil.com/powershell/?X-Rps-CAT=<img+src=x+onerror=window.__pwned=1>&Email=autodiscover/autodiscover.json%3F@evil.com 443 - 104.244.79.6 "><script>window.__pwned=1</script> - 200 0 0 15
2021-08-24 02:20:17 10.0.0.5 GET /aspnet_client/<img+src=x+onerror=window.__pwned=1>.aspx - 443 - 104.244.79.6 Mozilla/5.0<svg/onload=window.__pwned=1> - 200 0 0 15
LOG
cat > "$work/hostile/rules/hostile.yml" <<'RULE'
title: <script>window.__pwned=1</script> hostile rule title
id: 6f1b1c66-0000-4000-8000-00000000beef
status: test
description: "<img src=x onerror=window.__pwned=1>"
logsource:
    category: webserver
detection:
    selection:
        cs-uri-stem|contains: autodiscover
    condition: selection
level: high
tags:
    - attack.initial-access
    - attack.t1190
RULE
for i in 1 2 3 4 5 6; do
  cat > "$work/hostile/mail/m$i.eml" <<MAIL
From: "<script>window.__pwned=1</script> Reporter, BBC News" <reporter$i@bbc-news-desk.example>
To: member$i@parliament.example
Subject: <img src=x onerror=window.__pwned=1> Interview request $i
Date: Mon, 18 Jan 2021 08:0$i:00 +0000
Message-ID: <hostile-$i@bbc-news-desk.example>
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<html><body><p>Dear member, would you comment on the story?</p>
<img src="http://track.bbc-news-desk.example/o/Zk3x9Qp${i}vT7mW2aLr8/logo.gif" width="1" height="1" style="display:none">
<a href="http://bbc-news-desk.example/articles/$i/story?rid=Zk3x9Qp${i}vT7mW2aLr8">read</a></body></html>
MAIL
done
hostile_case="$work/hostile/case.sqlite"
"$bin" hunt "$work/hostile/logs" --sigma "$work/hostile/rules" --case "$hostile_case" -q >/dev/null
"$bin" mail "$work/hostile/mail" --case "$hostile_case" >/dev/null
"$bin" report "$hostile_case" -o "$work/hostile/report.html" 2>/dev/null

# The demo's case: the whole institution and parliament.
(cd "$work" && "$bin" demo >/dev/null)
demo_case="$work/portcullis-demo/case.sqlite"

# One server per case, on a free loopback port; the URL (with its token) is read from stdout.
start_serve() {
  local case=$1 log=$2
  "$bin" serve "$case" --bind 127.0.0.1:0 --author "browser-test" >"$log" 2>&1 &
  serve_pid=$!
  for _ in $(seq 1 100); do
    url=$(grep -o 'http://127.0.0.1:[0-9]*/?token=[0-9a-f]*' "$log" || true)
    [ -n "$url" ] && return 0
    sleep 0.1
  done
  echo "browser tests: serve did not start:" >&2; cat "$log" >&2; exit 1
}
start_serve "$demo_case" "$work/serve-demo.log"; demo_url=$url; demo_pid=$serve_pid
start_serve "$hostile_case" "$work/serve-hostile.log"; hostile_url=$url
trap 'kill $demo_pid $serve_pid 2>/dev/null; rm -rf "$work"' EXIT

CHROMIUM="$chromium" ARTIFACTS="$out" \
  DEMO_URL="$demo_url" HOSTILE_URL="$hostile_url" \
  DEMO_REPORT="$work/portcullis-demo/report.html" HOSTILE_REPORT="$work/hostile/report.html" \
  node "$here/ui.mjs"
