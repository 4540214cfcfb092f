#!/usr/bin/env bash
# Measures `imgferry validate` on 40 GiB images made by qemu-img (sparse files): wall time of the
# whole process (startup included) and the bytes the validator read, from its JSON report.
#
#   scripts/bench-validate.sh [RUNS]        (default 20 runs per image)
#
# Targets: under 50 ms and under 1 MiB read per image.
set -euo pipefail
runs=${1:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
command -v qemu-img >/dev/null || { echo "qemu-img is required (apt-get install qemu-utils)" >&2; exit 2; }
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin="$root/target/release/imgferry"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

qemu-img create -q -f vpc -o subformat=dynamic "$work/dynamic-40G.vhd" 40G
qemu-img create -q -f vpc -o subformat=fixed "$work/fixed-40G.vhd" 40G

printf '%-18s %16s %14s %8s %10s %10s %10s %8s\n' image file_bytes virtual_bytes reads bytes_read median_ms max_ms verdict
for name in dynamic-40G fixed-40G; do
    file="$work/$name.vhd"
    json=$("$bin" --output json validate "$file" || true)
    strict=$("$bin" --output json validate --max-virtual-size 40GiB "$file" || true)
    times=()
    for _ in $(seq "$runs"); do
        start=$(date +%s%N)
        "$bin" --output json validate "$file" >/dev/null || true
        end=$(date +%s%N)
        times+=($(( (end - start) / 1000 )))
    done
    python3 - "$json" "$strict" "${times[@]}" <<'PY'
import json, statistics, sys
r = json.loads(sys.argv[1]); s = json.loads(sys.argv[2]); us = sorted(int(t) for t in sys.argv[3:])
v = lambda x: "pass" if x["verdict"]["accepted"] else str(x["verdict"]["code"])
verdict = f'{v(r)}/{v(s)}'
print(f'{r["file"].rsplit("/",1)[-1]:<18} {r["file_size"]:>16} {r["virtual_size"]["bytes"]:>14} '
      f'{r["io"]["reads"]:>8} {r["io"]["bytes_read"]:>10} {statistics.median(us)/1000:>10.2f} '
      f'{us[-1]/1000:>10.2f} {verdict:>8}')
PY
done
echo "(verdict: default 160 GiB limit / --max-virtual-size 40GiB; qemu-img's 40G is 42,951,106,560"
echo " bytes, just over 40 GiB, so the second is 413; see docs/vhd.md)"
