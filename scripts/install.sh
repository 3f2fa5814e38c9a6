#!/usr/bin/env bash
# Create .venv and install the whole locked stack into it. Idempotent: when requirements.lock and
# pyproject.toml are unchanged since the last successful install, it returns at once.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3.11}
stamp=.venv/.installed
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "install: .venv is up to date (requirements.lock unchanged)"
  exit 0
fi
if ! command -v "$python" >/dev/null; then
  echo "install: $python not found; set PYTHON to a Python 3.11 interpreter" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
echo "install: installing the locked stack into .venv (first run takes a few minutes)"
.venv/bin/python -m pip install --quiet -c requirements.lock setuptools
# The lock is a constraints file: every package, direct or transitive, gets its locked version.
.venv/bin/python -m pip install --quiet -c requirements.lock --no-build-isolation -e ".[dev]"
echo "$want" > "$stamp"
echo "install: done ($(.venv/bin/python -m pip freeze | wc -l) packages)"
