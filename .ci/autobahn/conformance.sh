#!/usr/bin/env bash
# Autobahn conformance of ringstream's echo route on both drivers.
#   .ci/autobahn/conformance.sh path/to/ringstream
# Starts the server on a loopback port with .ci/autobahn/ringstream.toml, runs the suite,
# stops the server by its PID; fails if any case in 1.*-10.* fails on either driver.
set -euo pipefail
binary=$1
here=$(cd "$(dirname "$0")" && pwd)
"$here/install.sh" >/dev/null
status=0
for driver in uring poll; do
  out=$(mktemp)
  "$binary" serve --config "$here/ringstream.toml" --io-driver "$driver" --log-level warn >"$out" &
  pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$out" && break; sleep 0.1; done
  addr=$(sed -n 's/^listening on //p' "$out")
  if [ -z "$addr" ]; then
    echo "autobahn: ringstream ($driver) did not start" >&2
    kill "$pid" 2>/dev/null || true
    exit 1
  fi
  "$here/run.sh" "ws://$addr/ws/echo" "ringstream-$driver" || status=1
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  rm -f "$out"
done
exit $status
