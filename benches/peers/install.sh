#!/usr/bin/env bash
# Installs the peers, idempotently; with names (python, bun, nginx, redis), only those:
# - python: .env (ignored by git) with uvicorn, uvloop, httptools, Starlette, FastAPI and
#   BustAPI, from PyPI;
# - bun: node_modules (ignored by git) with Bun (uWebSockets inside), from npm;
# - nginx: the file-download peer, from Debian's packages (nginx-light where the release still
#   has it, else nginx), through sudo unless run as root. download_load.py runs it as the
#   current user with its own config; the package's service is not used.
# - redis: redis-server and redis-cli from Debian's packages, for the cluster's tests and
#   benchmark (each starts its own redis-server on a free loopback port; the package's service
#   is not used).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(python bun nginx redis)

want() {
  local name
  for name in "${wanted[@]}"; do [ "$name" = "$1" ] && return 0; done
  return 1
}

for name in "${wanted[@]}"; do
  case "$name" in
    python|bun|nginx|redis) ;;
    *) echo "install.sh: unknown peer '$name' (python, bun, nginx, redis)" >&2; exit 2 ;;
  esac
done

if want python; then
  if [ ! -x "$here/.env/bin/uvicorn" ]; then
    python3 -m venv "$here/.env"
  fi
  "$here/.env/bin/pip" install -q --disable-pip-version-check 'uvicorn[standard]' starlette fastapi bustapi
  "$here/.env/bin/python" -c "import uvicorn, starlette, importlib.metadata as m; print('peers: uvicorn', uvicorn.__version__, 'starlette', starlette.__version__, 'bustapi', m.version('bustapi'))"
fi

if want bun; then
  if [ ! -x "$here/node_modules/.bin/bun" ]; then
    (cd "$here" && npm install --silent --no-save --no-package-lock bun)
  fi
  echo "peers: bun $("$here/node_modules/.bin/bun" --version)"
fi

if want nginx; then
  if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    # A candidate of "(none)" means the release has no such package (nginx-light went away
    # after bookworm).
    package=nginx
    if apt-cache policy nginx-light | grep -q 'Candidate: [0-9]'; then
      package=nginx-light
    fi
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$package" >/dev/null
  fi
  echo "peers: $( (command -v nginx >/dev/null && nginx -v || /usr/sbin/nginx -v) 2>&1)"
fi

if want redis; then
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    sudo=()
    [ "$(id -u)" -eq 0 ] || sudo=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null
  fi
  echo "peers: $(redis-server --version)"
fi
