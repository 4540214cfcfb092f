#!/usr/bin/env bash
# Benchmarks the transfer engine against curl, python-swiftclient and rclone on the simulated cloud
# (loopback only). Installs what it needs (rclone from Debian, the client venv), builds the release
# binary, then runs scripts/bench_transfer.py. Prints markdown tables; raw JSON goes to
# target/bench-transfer.json.
#   scripts/bench-transfer.sh [--only clean,wan,memory,resume] [--clean-size 4GiB] ...
# Needs about 30 GB of free disk for the default sizes and takes 10-15 minutes on 2 cores.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
command -v rclone >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rclone >/dev/null; }
[ -x /usr/bin/time ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null; }
"$root/scripts/setup-venv.sh" >/dev/null
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
exec python3 "$root/scripts/bench_transfer.py" --binary "$root/target/release/imgferry" --venv "$root/.venv" \
    --json "$root/target/bench-transfer.json" "$@"
