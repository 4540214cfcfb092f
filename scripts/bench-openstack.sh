#!/usr/bin/env bash
# Measures imgferry's moves into and between OpenStack clouds on the simulated cloud (loopback
# only): a legacy server into Glance over a 16 MiB/s-per-connection link against its bound and
# against the manual path (curl, qemu-img convert, curl), cloud → cloud and cloud → file on the
# same link, cloud → legacy (downloaded, made a VHD, imported), and the peak RSS of a 20 GiB server's move. Prints markdown for docs/benchmarks.md.
#
#   scripts/bench-openstack.sh [--size 1GiB] [--allocated 0.5] [--big-size 20GiB] [--only wan|memory] [--json FILE]
#
# Targets (docs/benchmarks.md): within 1.1× of the bound, ≥ 1.8× faster than the manual path, the
# upload stream at ≥ 0.9 of its connection's rate, peak RSS ≤ 128 MiB for 20 GiB.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
for tool in qemu-img curl /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 2; }
done
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
exec python3 "$root/scripts/bench_openstack.py" --binary "$root/target/release/imgferry" "$@"
