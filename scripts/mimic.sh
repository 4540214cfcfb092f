#!/usr/bin/env bash
# Runs rackerlabs/mimic, Rackspace's own mock of Identity v2.0, the catalog, Nova, Glance and
# Swift, on loopback: a second model of the legacy cloud that nobody here wrote. Installed from
# PyPI into .mimic/venv.
#
#   scripts/mimic.sh start [PORT]   start (default 8900); prints the identity URL when it answers
#   scripts/mimic.sh stop           stop it
#
# Log: .mimic/mimic.log.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
base="$root/.mimic"
cmd=${1:-start}
port=${2:-8900}

stop() {
    if [ -f "$base/pid" ]; then
        kill "$(cat "$base/pid")" 2>/dev/null || true
        rm -f "$base/pid"
    fi
}

if [ "$cmd" = stop ]; then stop; exit 0; fi
stop

if [ ! -x "$base/venv/bin/twistd" ]; then
    mkdir -p "$base"
    python3 -m venv "$base/venv"
    "$base/venv/bin/pip" install --quiet --disable-pip-version-check mimic
fi
cd "$base"
"$base/venv/bin/twistd" -n --pidfile= mimic --listen "tcp:$port:interface=127.0.0.1" \
    > "$base/mimic.log" 2>&1 &
echo $! > "$base/pid"
url="http://localhost:$port/identity/v2.0"
for _ in $(seq 1 100); do
    # A login answers once mimic is up (python3 is there on every machine; curl may not be).
    if python3 - "$url/tokens" 2>/dev/null <<'PY'
import sys, urllib.request
body = b'{"auth":{"RAX-KSKEY:apiKeyCredentials":{"username":"probe","apiKey":"probe"}}}'
req = urllib.request.Request(sys.argv[1], data=body, headers={"Content-Type": "application/json"})
urllib.request.urlopen(req, timeout=2)
PY
    then
        echo "$url"
        exit 0
    fi
    sleep 0.2
done
echo "mimic did not answer at $url; see $base/mimic.log" >&2
exit 1
