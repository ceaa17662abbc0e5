#!/usr/bin/env bash
# Installs, idempotently, what tests/dashboard.rs drives the dashboard with: Debian's chromium
# (through sudo unless run as root) and playwright-core at the version package-lock.json
# pins, into node_modules here (ignored by git). No browser is downloaded: check.mjs runs
# /usr/bin/chromium (or $CHROMIUM).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "tests/dashboard/install.sh: Node.js and npm are needed (the machine's own)" >&2
  exit 1
fi

if [ ! -x /usr/bin/chromium ]; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq chromium >/dev/null
fi

if [ ! -f "$here/node_modules/playwright-core/package.json" ]; then
  (cd "$here" && npm ci --silent --no-audit --no-fund)
fi

# Debian's launcher script prints a shell warning on stderr on some machines; the version is
# on stdout.
echo "dashboard check: $(/usr/bin/chromium --version 2>/dev/null)," \
  "playwright-core $(node -p "require('$here/node_modules/playwright-core/package.json').version")"
