#!/usr/bin/env bash
# Installs the peers into benches/peers (ignored by git), idempotently:
# - .env: uvicorn with uvloop and httptools, Starlette, FastAPI and BustAPI, from PyPI;
# - node_modules: Bun (uWebSockets inside), from npm.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -x "$here/.env/bin/uvicorn" ]; then
  python3 -m venv "$here/.env"
fi
"$here/.env/bin/pip" install -q --disable-pip-version-check 'uvicorn[standard]' starlette fastapi bustapi
if [ ! -x "$here/node_modules/.bin/bun" ]; then
  (cd "$here" && npm install --silent --no-save --no-package-lock bun)
fi
"$here/.env/bin/python" -c "import uvicorn, starlette, importlib.metadata as m; print('peers: uvicorn', uvicorn.__version__, 'starlette', starlette.__version__, 'bustapi', m.version('bustapi'))"
echo "peers: bun $("$here/node_modules/.bin/bun" --version)"
