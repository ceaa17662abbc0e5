#!/usr/bin/env bash
# Runs the Autobahn fuzzing client against a WebSocket echo URL and checks the results.
#   .ci/autobahn/run.sh ws://127.0.0.1:PORT/ws/echo [AGENT]
# permessage-deflate cases (12.*, 13.*) are excluded: ringstream negotiates no extension.
set -euo pipefail
url=$1
agent=${2:-ringstream}
here=$(cd "$(dirname "$0")" && pwd)
env_file=$("$here/install.sh")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/spec.json" <<JSON
{
  "outdir": "$work/reports",
  "servers": [{"agent": "$agent", "url": "$url"}],
  "cases": ["*"],
  "exclude-cases": ["12.*", "13.*"],
  "exclude-agent-cases": {}
}
JSON
started=$(date +%s)
( source "$env_file" && cd "$work" && wstest -m fuzzingclient -s spec.json >"$work/wstest.log" 2>&1 ) || {
  tail -20 "$work/wstest.log" >&2
  echo "autobahn: wstest failed" >&2
  exit 1
}
python3 "$here/check.py" "$work/reports/index.json" "$agent" "$(( $(date +%s) - started ))"
