#!/usr/bin/env bash
# Runs the Autobahn fuzzing client against a WebSocket echo URL and checks the results.
#   .ci/autobahn/run.sh ws://127.0.0.1:PORT/ws/echo [AGENT] [deflate]
# With `deflate` (a route with permessage_deflate = true) the permessage-deflate cases run too:
# 12.*.1-4 and 13.*.1-4, every compression mode and window with 1,000 messages of 16 B to
# 1 KiB each (the larger sizes, .5-.18, take the suite's Python 2 client about 20 minutes per
# run: run them by hand with AUTOBAHN_ALL_DEFLATE=1), and the check covers 1.*-13.*. Without it 12.* and 13.*
# are left out (a proxy route forwards no extension).
set -euo pipefail
url=$1
agent=${2:-ringstream}
mode=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
env_file=$("$here/install.sh")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "$mode" = deflate ]; then
  last_section=13
  if [ -n "${AUTOBAHN_ALL_DEFLATE:-}" ]; then
    exclude='[]'
  else
    exclude=$(python3 -c 'import json; print(json.dumps([f"{s}.{n}" for s in
      ["12.1", "12.2", "12.3", "12.4", "12.5", "13.1", "13.2", "13.3", "13.4", "13.5", "13.6",
       "13.7"] for n in range(5, 19)]))')
  fi
else
  last_section=10
  exclude='["12.*", "13.*"]'
fi
cat > "$work/spec.json" <<JSON
{
  "outdir": "$work/reports",
  "servers": [{"agent": "$agent", "url": "$url"}],
  "cases": ["*"],
  "exclude-cases": $exclude,
  "exclude-agent-cases": {}
}
JSON
started=$(date +%s)
( source "$env_file" && cd "$work" && wstest -m fuzzingclient -s spec.json >"$work/wstest.log" 2>&1 ) || {
  tail -20 "$work/wstest.log" >&2
  echo "autobahn: wstest failed" >&2
  exit 1
}
python3 "$here/check.py" "$work/reports/index.json" "$agent" "$(( $(date +%s) - started ))" "$last_section"
