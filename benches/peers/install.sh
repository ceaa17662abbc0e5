#!/usr/bin/env bash
# Installs the peers, idempotently; with names (python, bun, nginx, redis, socketio), only those:
# - python: .env (ignored by git) with uvicorn, uvloop, httptools, Starlette, FastAPI and
#   BustAPI, from PyPI;
# - bun: node_modules (ignored by git) with Bun (uWebSockets inside), from npm;
# - nginx: the file-download peer, from Debian's packages (nginx-light where the release still
#   has it, else nginx), through sudo unless run as root. download_load.py runs it as the
#   current user with its own config; the package's service is not used.
# - redis: redis-server and redis-cli from Debian's packages, for the cluster's tests and
#   benchmark (each starts its own redis-server on a free loopback port; the package's service
#   is not used);
# - socketio: node_modules with Socket.IO 4, its Redis adapter and the redis client, from npm
#   (run by the system's Node.js, 18 or later), for benches/cluster_load.py (with redis).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=(python bun nginx redis socketio)
# npm packages of each peer in node_modules. npm without a package.json removes what its
# command line does not name, so every install names the other peers' packages that are there.
bun_packages=(bun)
socketio_packages=(socket.io@4 @socket.io/redis-adapter@8 redis@4)

want() {
  local name
  for name in "${wanted[@]}"; do [ "$name" = "$1" ] && return 0; done
  return 1
}

for name in "${wanted[@]}"; do
  case "$name" in
    python|bun|nginx|redis|socketio) ;;
    *) echo "install.sh: unknown peer '$name' (python, bun, nginx, redis, socketio)" >&2; exit 2 ;;
  esac
done

# npm install of "$@" into node_modules, keeping the other peers' packages that are there.
npm_add() {
  local keep=()
  [ -x "$here/node_modules/.bin/bun" ] && keep+=("${bun_packages[@]}")
  [ -d "$here/node_modules/socket.io" ] && keep+=("${socketio_packages[@]}")
  (cd "$here" && npm install --silent --no-save --no-package-lock "${keep[@]}" "$@")
}

# apt-get install of "$@" (through sudo unless run as root).
apt_add() {
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if want python; then
  if [ ! -x "$here/.env/bin/uvicorn" ]; then
    python3 -m venv "$here/.env"
  fi
  "$here/.env/bin/pip" install -q --disable-pip-version-check 'uvicorn[standard]' starlette fastapi bustapi
  "$here/.env/bin/python" -c "import uvicorn, starlette, importlib.metadata as m; print('peers: uvicorn', uvicorn.__version__, 'starlette', starlette.__version__, 'bustapi', m.version('bustapi'))"
fi

if want bun; then
  if [ ! -x "$here/node_modules/.bin/bun" ]; then
    npm_add "${bun_packages[@]}"
  fi
  echo "peers: bun $("$here/node_modules/.bin/bun" --version)"
fi

if want nginx; then
  if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
    # A candidate of "(none)" means the release has no such package (nginx-light went away
    # after bookworm).
    package=nginx
    if apt-cache policy nginx-light | grep -q 'Candidate: [0-9]'; then
      package=nginx-light
    fi
    apt_add "$package"
  fi
  echo "peers: $( (command -v nginx >/dev/null && nginx -v || /usr/sbin/nginx -v) 2>&1)"
fi

if want redis; then
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    apt_add redis-server redis-tools
  fi
  echo "peers: $(redis-server --version)"
fi

if want socketio; then
  if [ ! -d "$here/node_modules/@socket.io/redis-adapter" ] || [ ! -d "$here/node_modules/redis" ]; then
    npm_add "${socketio_packages[@]}"
  fi
  version() { node -p "require('$here/node_modules/$1/package.json').version"; }
  echo "peers: node $(node --version), socket.io $(version socket.io)," \
    "@socket.io/redis-adapter $(version @socket.io/redis-adapter), redis $(version redis)"
fi
