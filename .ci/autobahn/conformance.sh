#!/usr/bin/env bash
# Autobahn conformance of ringstream's echo route on both drivers, served directly (with
# permessage-deflate) and through a proxy route (another ringstream in front of it,
# .ci/autobahn/proxy.toml; a proxy forwards no extension).
#   .ci/autobahn/conformance.sh path/to/ringstream
# Starts the servers on loopback ports, runs the suite, stops the servers by their PIDs; fails
# if any case in 1.*-13.* fails on either driver directly, or in 1.*-10.* through the proxy.
set -euo pipefail
binary=$1
here=$(cd "$(dirname "$0")" && pwd)
"$here/install.sh" >/dev/null
status=0
pids=()
files=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -f "${files[@]}"' EXIT

# Starts `ringstream serve --config $1 --io-driver $2`; sets $addr, or exits if it never listens.
start() {
  local out
  out=$(mktemp)
  files+=("$out")
  "$binary" serve --config "$1" --io-driver "$2" --log-level warn >"$out" &
  pids+=($!)
  for _ in $(seq 100); do grep -q "listening on" "$out" && break; sleep 0.1; done
  addr=$(sed -n 's/^listening on //p' "$out")
  if [ -z "$addr" ]; then
    echo "autobahn: ringstream ($2, $1) did not start" >&2
    exit 1
  fi
}

for driver in uring poll; do
  start "$here/ringstream.toml" "$driver"
  upstream=$addr
  "$here/run.sh" "ws://$upstream/ws/echo" "ringstream-$driver" deflate || status=1
  proxy_config=$(mktemp --suffix=.toml)
  files+=("$proxy_config")
  sed "s/UPSTREAM/$upstream/" "$here/proxy.toml" >"$proxy_config"
  start "$proxy_config" "$driver"
  "$here/run.sh" "ws://$addr/ws/echo" "ringstream-proxy-$driver" || status=1
  kill "${pids[@]}"
  wait "${pids[@]}" 2>/dev/null || true
  pids=()
done
exit $status
