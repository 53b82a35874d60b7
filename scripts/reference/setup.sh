#!/usr/bin/env bash
# Installs the Python reference tools (scipy, pymedphys) into .venv-reference/ at the
# repository root, from PyPI with the versions pinned in requirements.txt, and prints the
# interpreter to run the fixture generators with:
#
#   PY=$(bash scripts/reference/setup.sh)
#   "$PY" crates/evaluation/tests/fixtures/gamma_reference.py
#
# A second run with an unchanged requirements file does nothing.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
venv="$root/.venv-reference"
req="$root/scripts/reference/requirements.txt"
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
    echo "$want" >"$stamp"
fi
echo "$venv/bin/python"
