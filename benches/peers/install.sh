#!/usr/bin/env bash
# Installs the Python peers into benches/peers/.env (ignored by git): uvicorn with uvloop and
# httptools, and Starlette, from PyPI. Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -x "$here/.env/bin/uvicorn" ]; then
  python3 -m venv "$here/.env"
  "$here/.env/bin/pip" install -q --disable-pip-version-check 'uvicorn[standard]' starlette
fi
"$here/.env/bin/python" -c "import uvicorn, starlette; print('peers: uvicorn', uvicorn.__version__, 'starlette', starlette.__version__)"
