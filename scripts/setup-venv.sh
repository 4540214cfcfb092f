#!/usr/bin/env bash
# Creates .venv with the real OpenStack clients the tests drive against the simulator:
# python-swiftclient (the `swift` CLI) and python-glanceclient (the `glance` CLI).
#   scripts/setup-venv.sh            (idempotent; the tests find .venv/bin/swift and .venv/bin/glance)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
if [ ! -x "$venv/bin/swift" ] || [ ! -x "$venv/bin/glance" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check python-swiftclient python-glanceclient
fi
"$venv/bin/swift" --version
"$venv/bin/glance" --version
