#!/usr/bin/env bash
# Generates and serves a multi-GiB export from the simulator and reports the simulator's peak RSS.
#   scripts/sim-export-rss.sh [SIZE]      (default 4GiB; the image is fully allocated)
# Target (issue "The simulated Rackspace cloud"): a 4 GiB export generated and served within 100 MiB RSS.
set -euo pipefail
size=${1:-4GiB}
root=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin="$root/target/release/imgferry"
work=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
"$bin" sim serve --listen "127.0.0.1:$port" --data-dir "$work/data" --server "big:$size:1.0" \
    --step-seconds 0 --export-segment-size 64MiB > "$work/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do grep -q "^identity:" "$work/serve.log" 2>/dev/null && break; sleep 0.1; done
base="http://127.0.0.1:$port"
key=$(sed -n 's/^export RAX_API_KEY=//p' "$work/serve.log")
token=$(curl -fsS -X POST "$base/identity/v2.0/tokens" \
    -d "{\"auth\":{\"RAX-KSKEY:apiKeyCredentials\":{\"username\":\"demo\",\"apiKey\":\"$key\"}}}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["access"]["token"]["id"])')
H="X-Auth-Token: $token"
image=$(curl -fsS -H "$H" "$base/dfw/images/v2/images" | python3 -c 'import json,sys; print(json.load(sys.stdin)["images"][0]["id"])')
curl -fsS -X PUT -H "$H" -H "Content-Length: 0" "$base/dfw/v1/MossoCloudFS_100100/exports" >/dev/null
start=$(date +%s.%N)
task=$(curl -fsS -X POST -H "$H" "$base/dfw/images/v2/tasks" \
    -d "{\"type\":\"export\",\"input\":{\"image_uuid\":\"$image\",\"receiving_swift_container\":\"exports\"}}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
while :; do
    status=$(curl -fsS -H "$H" "$base/dfw/images/v2/tasks/$task" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
    [ "$status" = success ] && break
    [ "$status" = failure ] && { echo "export failed" >&2; exit 1; }
    sleep 0.5
done
generated=$(date +%s.%N)
bytes=$(curl -fsS -H "$H" "$base/dfw/v1/MossoCloudFS_100100/exports/$image.vhd" | wc -c)
served=$(date +%s.%N)
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
python3 - "$bytes" "$start" "$generated" "$served" "$hwm" <<'PY'
import sys
b, s, g, v, hwm = int(sys.argv[1]), *map(float, sys.argv[2:5]), int(sys.argv[5])
print(f"export bytes        {b} ({b / 2**30:.2f} GiB)")
print(f"generate (task)     {g - s:.1f} s ({b / (g - s) / 2**20:.0f} MiB/s)")
print(f"serve (GET)         {v - g:.1f} s ({b / (v - g) / 2**20:.0f} MiB/s)")
print(f"simulator peak RSS  {hwm / 1024:.1f} MiB (VmHWM)")
PY
