#!/usr/bin/env bash
# Installs the Autobahn|TestSuite (`wstest`, Python 2 only) into a private folder, without
# touching the system Python or the system's apt sources: CPython 2.7 from Debian bullseye's
# packages unpacked into the folder, pip 20.3.4 for it, and the pins autobahntestsuite 25.10.1
# declares. Idempotent: does nothing if the folder already answers `wstest --autobahnversion`.
# Prints the folder's env file path on its last line; `source` it in a subshell to use wstest.
set -euo pipefail

HOME_DIR=${AUTOBAHN_HOME:-$HOME/.cache/ringstream-autobahn}
ROOT=$HOME_DIR/root          # unpacked Debian packages
VENV=$HOME_DIR/env           # pip --prefix
ENV_FILE=$HOME_DIR/env.sh
started=$(date +%s)

log() { echo "autobahn-install: $*" >&2; }
quiet() { # run a command, show its output only if it fails
  local out
  if ! out=$("$@" 2>&1); then
    echo "$out" >&2
    log "failed: $*"
    exit 1
  fi
}

write_env() {
  cat > "$ENV_FILE" <<ENV
export LD_LIBRARY_PATH="$ROOT/usr/lib/x86_64-linux-gnu\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PATH="$VENV/bin:$ROOT/usr/bin:\$PATH"
export PYTHONPATH="$VENV/lib/python2.7/site-packages"
export CFLAGS="-I$ROOT/usr/include -I$ROOT/usr/include/python2.7"
unset PYTHONHOME VIRTUAL_ENV
ENV
}

if [ -f "$ENV_FILE" ] && (source "$ENV_FILE" && wstest --autobahnversion >/dev/null 2>&1); then
  log "already installed in $HOME_DIR"
  echo "$ENV_FILE"
  exit 0
fi

mkdir -p "$HOME_DIR"/{apt/lists/partial,apt/cache/archives/partial,apt/parts,debs,wheels} "$ROOT" "$VENV"

log "fetching CPython 2.7 from Debian bullseye"
uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
uri=${uri:-http://deb.debian.org/debian}
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri bullseye main" \
  > "$HOME_DIR/apt/sources.list"
apt_opts=(
  -o "Dir::Etc::SourceList=$HOME_DIR/apt/sources.list"
  -o "Dir::Etc::SourceParts=$HOME_DIR/apt/parts"
  -o "Dir::State::Lists=$HOME_DIR/apt/lists"
  -o "Dir::Cache=$HOME_DIR/apt/cache"
  -o "APT::Get::List-Cleanup=0"
)
quiet apt-get "${apt_opts[@]}" -q update
(cd "$HOME_DIR/debs" && quiet apt-get "${apt_opts[@]}" -q download \
  python2.7 python2.7-minimal libpython2.7-minimal libpython2.7-stdlib libpython2.7 \
  libpython2.7-dev python2.7-dev libssl1.1 libffi7)
for deb in "$HOME_DIR"/debs/*.deb; do
  dpkg-deb -x "$deb" "$ROOT"
done

log "installing pip for Python 2.7"
quiet python3 -m pip download -q --no-deps --only-binary :all: --python-version 2.7 \
  --implementation cp --abi cp27mu --platform manylinux1_x86_64 -d "$HOME_DIR/wheels" \
  pip==20.3.4 setuptools==44.1.1 wheel==0.37.1
write_env
(
  source "$ENV_FILE"
  quiet python2.7 "$HOME_DIR/wheels/pip-20.3.4-py2.py3-none-any.whl/pip" install -q \
    --no-index --find-links "$HOME_DIR/wheels" --prefix "$VENV" pip setuptools wheel
  # The zope namespace package needs its .pth files read.
  echo "import site; site.addsitedir('$VENV/lib/python2.7/site-packages')" \
    > "$VENV/lib/python2.7/site-packages/sitecustomize.py"
  log "installing autobahntestsuite 25.10.1 and its pins"
  quiet python2.7 -m pip install -q --disable-pip-version-check --prefix "$VENV" \
    txaio==2.1.0 incremental==16.10.1 pyOpenSSL==19.1.0 cryptography==3.3.2 Twisted==19.10.0 \
    zope.interface==4.6.0 jinja2==2.11.3 markupsafe==1.1.1 Werkzeug==1.0.1 klein==17.10.0 \
    service_identity==18.1.0 unittest2==1.1.0 six==1.16.0 'autobahn[accelerate,twisted]==0.10.9' \
    autobahntestsuite==25.10.1
  wstest --autobahnversion >/dev/null
)
log "installed in $(( $(date +%s) - started )) s"
echo "$ENV_FILE"
