#!/usr/bin/env bash
# The Python wheel as a user gets it: maturin builds it (bindings = "bin", pyproject.toml), pip
# installs it into a fresh virtualenv, and the `ringstream` on that virtualenv's PATH answers
# `--version` and checks the reference config.
set -euo pipefail
cd "$(dirname "$0")/.."
work=target/wheel-check

# maturin's own virtualenv, kept between runs like the rest of target/.
if [ ! -x "$work/maturin/bin/maturin" ]; then
  python3 -m venv "$work/maturin"
  "$work/maturin/bin/pip" install -q --disable-pip-version-check 'maturin>=1.5,<2'
fi

# --profile dev, not a release build (minutes of thin LTO on 2 cores): this checks the
# packaging, not the binary's speed. Cargo under maturin compiles the binary without the
# dev-dependencies' features that the test step's builds unify in; that is the build the
# autobahn step's `cargo build --bin ringstream` needs anyway, and it then finds it done (the
# wheel's binary differs by `-C strip=symbols` only, so that step compiles the binary crate
# alone again).
rm -rf "$work/wheels" "$work/venv"
"$work/maturin/bin/maturin" build --quiet --profile dev --out "$work/wheels"

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check --no-index "$work"/wheels/ringstream-*.whl

# The virtualenv's bin/ first on PATH, as `source venv/bin/activate` does.
export PATH="$PWD/$work/venv/bin:$PATH"
[ "$(command -v ringstream)" = "$PWD/$work/venv/bin/ringstream" ]
version=$(ringstream --version)
echo "wheel: $(basename "$work"/wheels/ringstream-*.whl): $version"
case "$version" in
  "ringstream $(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"*) ;;
  *) echo "wheel.sh: unexpected version line: $version" >&2; exit 1 ;;
esac
ringstream check-config bin/default.toml
