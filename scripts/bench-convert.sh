#!/usr/bin/env bash
# Measures the streaming VHD → qcow2 converter (`imgferry convert`, hidden) on a dynamic VHD made
# by qemu-img from a raw disk with SIZE of random data in a disk twice that size, and checks the
# result with `qemu-img check` and `qemu-img compare`. Prints the converter's own CPU time (inside
# the converter, one core) and the whole command's wall time (reading and writing included).
#
#   scripts/bench-convert.sh [SIZE]     (default 2G; needs about 3 × SIZE of free disk)
#
# Target: the converter at ≥ 1 GiB/s on one core, so it is never a migration's bottleneck.
set -euo pipefail
size=${1:-2G}
root=$(cd "$(dirname "$0")/.." && pwd)
command -v qemu-img >/dev/null || { echo "qemu-img is required (apt-get install qemu-utils)" >&2; exit 2; }
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin="$root/target/release/imgferry"
work=$(mktemp -d "${TMPDIR:-/var/tmp}/bench-convert.XXXXXX")
trap 'rm -rf "$work"' EXIT
bytes=$(numfmt --from=iec "$size")
# Random data in the first and last quarters and a stripe in the middle; zeros elsewhere.
truncate -s $((bytes * 2)) "$work/disk.raw"
quarter=$((bytes / 2 / 1048576))
head -c $((quarter * 1048576)) /dev/urandom | dd of="$work/disk.raw" conv=notrunc bs=1M status=none
head -c $((quarter * 1048576)) /dev/urandom |
    dd of="$work/disk.raw" conv=notrunc bs=1M seek=$((bytes * 2 / 1048576 - quarter)) status=none
qemu-img convert -f raw -O vpc "$work/disk.raw" "$work/disk.vhd"
rm -f "$work/disk.raw"
sync
cat > "$work/show.py" <<'PY'
import json, sys
r = json.load(sys.stdin)
mib = r["vhd_bytes"] / 2**20
grow = (r["qcow2_bytes"] / r["vhd_bytes"] - 1) * 100
print(f'run {sys.argv[1]}: VHD {r["vhd_bytes"]:,} B -> qcow2 {r["qcow2_bytes"]:,} B (+{grow:.1f} %); '
      f'whole command {r["seconds"]:.2f} s = {mib / r["seconds"]:.0f} MiB/s; '
      f'converter {r["converter_seconds"]:.2f} s = {mib / r["converter_seconds"] / 1024:.2f} GiB/s on one core')
PY
for run in 1 2 3; do
    "$bin" convert "$work/disk.vhd" "$work/disk.qcow2" | python3 "$work/show.py" "$run"
done
qemu-img check -q -f qcow2 "$work/disk.qcow2" && echo "qemu-img check: no errors"
qemu-img compare -q -f vpc -F qcow2 "$work/disk.vhd" "$work/disk.qcow2" && echo "qemu-img compare: identical"
