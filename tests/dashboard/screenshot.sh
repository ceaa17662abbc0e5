#!/usr/bin/env bash
# Takes docs/dashboard.png: a debug build of ringstream on a loopback port under a little load
# (echo, two broadcast topics, paced downloads from four loopback addresses, an upload, some
# refusals), the dashboard open in headless Chromium for half a minute, then one 1200x900
# screenshot. Needs `cargo build` and `bash tests/dashboard/install.sh`; about 45 s.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
bin="$root/target/debug/ringstream"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/public" "$work/up"
head -c 100000000 /dev/urandom > "$work/public/video.mp4"
head -c 30000000 /dev/urandom > "$work/public/dataset.tar"
head -c 60000000 /dev/urandom > "$work/upload.bin"
cat > "$work/config.toml" <<TOML
listen = "127.0.0.1:0"
workers = 2
[limits]
exempt = []
max_concurrent_connections = 200
rate_limit_requests = 1200
client_messages_per_minute = 600000
max_message_size = "16KiB"

[[routes]]
path = "/health"
kind = "health"
[routes.limits]
rate_limit_requests = 5

[[routes]]
path = "/dashboard"
kind = "dashboard"

[[routes]]
path = "/ws/echo"
kind = "echo"

[[routes]]
path = "/ws/broadcast/{topic}"
kind = "broadcast"

[[routes]]
path = "/files/"
kind = "files"
root = "$work/public"
[routes.limits]
rate_limit_bandwidth = "1MiB"

[[routes]]
path = "/upload/"
kind = "upload"
upload_dir = "$work/up"
TOML
"$bin" serve --config "$work/config.toml" > "$work/out" 2> "$work/log" &
pids+=($!)
for _ in $(seq 50); do grep -q listening "$work/out" && break; sleep 0.1; done
addr=$(sed -n 's/^listening on //p' "$work/out")

quiet() { "$@" > /dev/null 2>&1 & pids+=($!); }
quiet "$bin" bench echo --url "ws://$addr/ws/echo" --connections 12 --size 200 --seconds 60 --warmup 0
quiet "$bin" bench broadcast --url "ws://$addr/ws/broadcast/prices" --subscribers 40 --window 1 --seconds 60 --warmup 0
quiet "$bin" bench broadcast --url "ws://$addr/ws/broadcast/chat" --subscribers 9 --window 1 --seconds 60 --warmup 0
quiet curl -s -o /dev/null "http://$addr/files/video.mp4"
quiet curl -s -o /dev/null --limit-rate 600k -T "$work/upload.bin" "http://$addr/upload/upload.bin"
for host in 2 3 4; do
  quiet curl -s -o /dev/null --interface "127.0.0.$host" --limit-rate 400k "http://$addr/files/dataset.tar"
done
quiet "$bin" bench echo --url "ws://$addr/ws/echo" --connections 2 --size 20000 --seconds 2 --warmup 0
big=$(head -c 17000 /dev/zero | tr '\0' a)
for _ in 1 2 3; do curl -s -o /dev/null -H "X-Big: $big" "http://$addr/health" || true; done
for _ in $(seq 8); do curl -s -o /dev/null --interface 127.0.0.7 "http://$addr/health" || true; done

(sleep 30; echo 'LOADED {"min_connections":1}') |
  node "$root/tests/dashboard/check.mjs" "http://$addr/dashboard" --screenshot "$root/docs/dashboard.png"
