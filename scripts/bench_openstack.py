#!/usr/bin/env python3
"""Benchmarks imgferry's moves into and between OpenStack clouds on the simulated cloud.

Run through scripts/bench-openstack.sh, which builds the release binary. Everything talks to
loopback only. Prints a markdown summary (pasted into docs/benchmarks.md) and writes the raw
figures as JSON to the path given with --json.

Settings:
  wan     a legacy server of --size (--allocated of it written), every connection of the simulator
          throttled to 16 MiB/s: `migrate --to-cloud` (export read by parallel ranges, converted to
          qcow2 as it streams, one upload) against its bound (the qcow2 bytes at one connection's
          rate, plus imgferry's own steps that move no bytes), and against the manual path on the
          same export: curl download, `qemu-img convert`, then an upload with curl, one after the
          other. Then the image moved on to another project (cloud → cloud), downloaded to a
          file (cloud → file), and moved back into the legacy region IAD as a VHD (cloud → legacy),
          on the same throttled link.
  memory  peak RSS of `migrate --to-cloud` of a --big-size server (a quarter of it written), no
          throttle.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

MIB = 1 << 20
GIB = 1 << 30
LINK = 16 * MIB


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def size_arg(v):
    m = re.fullmatch(r"(\d+)(MiB|GiB)", v)
    if not m:
        raise argparse.ArgumentTypeError("use e.g. 512MiB or 2GiB")
    return int(m.group(1)) * (MIB if m.group(2) == "MiB" else GIB)


class Sim:
    """An `imgferry sim serve` with one DFW server, and logins to its Rackspace and OpenStack sides."""

    def __init__(self, binary, work, size, allocated, throttle):
        self.data = tempfile.mkdtemp(prefix="sim-", dir=work)
        args = [binary, "sim", "serve", "--data-dir", self.data, "--server",
                f"big:{size}:{allocated}", "--step-seconds", "1", "--export-segment-size", "64MiB"]
        if throttle:
            plan = os.path.join(work, "faults.json")
            with open(plan, "w") as f:
                json.dump({"throttle_bytes_per_sec": throttle, "rules": []}, f)
            args += ["--faults", plan]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        lines = []
        for line in self.proc.stdout:
            lines.append(line)
            if line.startswith("# stats:"):
                break
        text = "".join(lines)
        self.base = re.search(r"listening on (\S+)", text).group(1)
        self.key = re.search(r"RAX_API_KEY=(\S+)", text).group(1)
        self.keystone = f"{self.base}/keystone/v3"
        self.clouds = os.path.join(work, "clouds.yaml")
        with open(self.clouds, "w") as f:
            for name, user, project in [("alpha", "alice", "alpha"), ("beta", "bob", "beta")]:
                f.write(f"{'clouds:' if name == 'alpha' else ''}\n  {name}:\n    auth:\n"
                        f"      auth_url: {self.keystone}\n      username: {user}\n"
                        f"      password: {user}-secret\n      project_name: {project}\n"
                        "      user_domain_name: Default\n      project_domain_id: default\n"
                        "    region_name: RegionOne\n")
        os.chmod(self.clouds, 0o600)
        self.env = dict(os.environ, RAX_IDENTITY_URL=f"{self.base}/identity/v2.0",
                        RAX_USERNAME="demo", RAX_API_KEY=self.key,
                        OS_CLIENT_CONFIG_FILE=self.clouds,
                        IMGFERRY_STATE_DIR=os.path.join(work, "state"),
                        IMGFERRY_POLL_INTERVAL="0.2")
        body = json.dumps({"auth": {"RAX-KSKEY:apiKeyCredentials": {"username": "demo", "apiKey": self.key}}}).encode()
        self.rax = call("POST", f"{self.base}/identity/v2.0/tokens", body=body)["access"]["token"]["id"]
        body = json.dumps({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "alice", "domain": {"id": "default"}, "password": "alice-secret"}}},
            "scope": {"project": {"name": "alpha", "domain": {"id": "default"}}}}}).encode()
        req = urllib.request.Request(f"{self.keystone}/auth/tokens", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req) as r:
            self.os_token = r.headers["X-Subject-Token"]
            catalog = json.load(r)["token"]["catalog"]
        self.glance = next(e["url"] for s in catalog if s["type"] == "image"
                           for e in s["endpoints"] if e["interface"] == "public"
                           and e["region_id"] == "RegionOne").rstrip("/")

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.data, ignore_errors=True)


def call(method, url, body=None, token=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    if token:
        req.add_header("X-Auth-Token", token)
    if body is not None and "Content-Type" not in (headers or {}):
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req) as r:
        data = r.read()
        return json.loads(data) if data.strip().startswith((b"{", b"[")) else data


def imgferry(binary, sim, args):
    """Runs imgferry --output json under /usr/bin/time -v: (wall seconds, peak RSS bytes, report)."""
    start = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-v", binary, "--output", "json"] + args,
                       env=sim.env, capture_output=True, text=True)
    wall = time.monotonic() - start
    if p.returncode != 0:
        raise SystemExit(f"imgferry {args} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1)) * 1024
    report = json.loads(p.stdout.strip().splitlines()[-1])["report"]
    return wall, rss, report


def run(cmd, env=None):
    start = time.monotonic()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def manual(sim, work, export):
    """The manual path: curl the export down, qemu-img convert it, create an image and curl it up."""
    vhd, qcow2 = os.path.join(work, "manual.vhd"), os.path.join(work, "manual.qcow2")
    account = f"{sim.base}/dfw/v1/MossoCloudFS_100100"
    down = run(["curl", "-sSf", "-o", vhd, "-H", f"X-Auth-Token: {sim.rax}", f"{account}/{export}"])
    conv = run(["qemu-img", "convert", "-f", "vpc", "-O", "qcow2", vhd, qcow2])
    start = time.monotonic()
    made = call("POST", f"{sim.glance}/v2/images", token=sim.os_token, body=json.dumps(
        {"name": "manual", "disk_format": "qcow2", "container_format": "bare"}).encode())
    subprocess.run(["curl", "-sSf", "-X", "PUT", "-T", qcow2, "-H", f"X-Auth-Token: {sim.os_token}",
                    "-H", "Content-Type: application/octet-stream",
                    f"{sim.glance}/v2/images/{made['id']}/file"], check=True)
    up = time.monotonic() - start
    sizes = (os.path.getsize(vhd), os.path.getsize(qcow2))
    os.remove(vhd)
    os.remove(qcow2)
    return down, conv, up, sizes


def step_seconds(report, prefix):
    return sum(t["seconds"] for t in report["timings"] if t["step"] in prefix)


def wan(binary, work, size, allocated):
    log(f"wan: {size / GIB:.2f} GiB server, {allocated:.0%} written, 16 MiB/s per connection")
    sim = Sim(binary, work, size, allocated, LINK)
    try:
        wall, rss, r = imgferry(binary, sim, ["migrate", "--from", "DFW", "--server", "big",
                                              "--to-cloud", "alpha", "--concurrency", "8"])
        qcow2 = r["glance_upload"]["bytes"]
        copy = step_seconds(r, ("Inspected", "Transferring"))
        other = wall - copy
        bound = qcow2 / LINK + other
        log(f"  imgferry: {wall:.1f} s ({copy:.1f} s copying {qcow2 / MIB:.0f} MiB of qcow2), bound {bound:.1f} s")
        down, conv, up, (vhd_bytes, manual_qcow2) = manual(sim, work, r["export"])
        manual_total = other + down + conv + up
        log(f"  manual: download {down:.1f} s, convert {conv:.1f} s, upload {up:.1f} s; with the same "
            f"imaging and export, {manual_total:.1f} s")
        image = r["imported_image"]
        c2c_wall, c2c_rss, c2c = imgferry(binary, sim, ["migrate", "--from-cloud", "alpha", "--image", image,
                                                        "--to-cloud", "beta", "--concurrency", "8"])
        out = os.path.join(work, "out")
        os.makedirs(out, exist_ok=True)
        file_wall, file_rss, _ = imgferry(binary, sim, ["migrate", "--from-cloud", "alpha", "--image", image,
                                                        "--to-file", out + "/", "--concurrency", "8"])
        shutil.rmtree(out, ignore_errors=True)
        # And back into a legacy region: downloaded, made a dynamic VHD, uploaded, imported.
        leg_wall, leg_rss, leg = imgferry(binary, sim, ["migrate", "--from-cloud", "alpha", "--image", image,
                                                        "--to", "IAD", "--concurrency", "8",
                                                        "--segment-size", "64MiB"])
        leg_vhd = leg["physical_size"]
        leg_down = step_seconds(leg, ("Exporting",))
        leg_conv = step_seconds(leg, ("Exported",))
        leg_copy = step_seconds(leg, ("Inspected", "Transferring"))
        log(f"  cloud → legacy: {leg_wall:.1f} s (download {leg_down:.1f} s, convert {leg_conv:.1f} s, "
            f"upload {leg_copy:.1f} s of {leg_vhd / MIB:.0f} MiB of VHD), peak RSS {leg_rss / MIB:.0f} MiB")
        return {
            "cloud_to_legacy_seconds": leg_wall, "cloud_to_legacy_rss": leg_rss,
            "cloud_to_legacy_download": leg_down, "cloud_to_legacy_convert": leg_conv,
            "cloud_to_legacy_upload": leg_copy, "cloud_to_legacy_vhd_bytes": leg_vhd,
            "size": size, "allocated": allocated, "vhd_bytes": vhd_bytes, "qcow2_bytes": qcow2,
            "manual_qcow2_bytes": manual_qcow2,
            "imgferry_seconds": wall, "copy_seconds": copy, "other_seconds": other, "bound_seconds": bound,
            "upload_rate_fraction": qcow2 / copy / LINK, "rss": rss,
            "manual_download": down, "manual_convert": conv, "manual_upload": up,
            "manual_seconds": manual_total, "speedup": manual_total / wall,
            "cloud_to_cloud_seconds": c2c_wall, "cloud_to_cloud_rss": c2c_rss,
            "cloud_to_cloud_rate": qcow2 / c2c_wall / MIB,
            "cloud_to_file_seconds": file_wall, "cloud_to_file_rss": file_rss,
            "cloud_to_file_rate": qcow2 / file_wall / MIB,
        }
    finally:
        sim.stop()


def memory(binary, work, size):
    log(f"memory: {size / GIB:.0f} GiB server, a quarter written, no throttle")
    sim = Sim(binary, work, size, 0.25, None)
    try:
        wall, rss, r = imgferry(binary, sim, ["migrate", "--from", "DFW", "--server", "big",
                                              "--to-cloud", "alpha", "--concurrency", "8"])
        log(f"  {wall:.1f} s, peak RSS {rss / MIB:.0f} MiB")
        return {"size": size, "seconds": wall, "rss": rss, "qcow2_bytes": r["glance_upload"]["bytes"]}
    finally:
        sim.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--size", type=size_arg, default=1 * GIB)
    ap.add_argument("--allocated", type=float, default=0.5)
    ap.add_argument("--big-size", type=size_arg, default=20 * GIB)
    ap.add_argument("--only", choices=["wan", "memory"])
    ap.add_argument("--json")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="imgferry-bench-os-")
    results = {}
    try:
        if args.only in (None, "wan"):
            results["wan"] = wan(args.binary, work, args.size, args.allocated)
        if args.only in (None, "memory"):
            results["memory"] = memory(args.binary, work, args.big_size)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    if "wan" in results:
        w = results["wan"]
        print(f"| legacy → OpenStack, {w['size'] / GIB:.0f} GiB server ({w['allocated']:.0%} written), "
              f"16 MiB/s per connection | seconds |")
        print("|---|---|")
        print(f"| imgferry `migrate --to-cloud` ({w['qcow2_bytes'] / MIB:.0f} MiB of qcow2) | {w['imgferry_seconds']:.1f} |")
        print(f"| bound: qcow2 bytes at 16 MiB/s + steps that move no bytes ({w['other_seconds']:.1f} s) | {w['bound_seconds']:.1f} |")
        print(f"| manual: curl download {w['manual_download']:.1f} + qemu-img convert {w['manual_convert']:.1f} "
              f"+ curl upload {w['manual_upload']:.1f} + the same steps | {w['manual_seconds']:.1f} |")
        print()
        print(f"imgferry / bound: {w['imgferry_seconds'] / w['bound_seconds']:.3f}; manual / imgferry: "
              f"{w['speedup']:.2f}x; upload stream at {w['upload_rate_fraction']:.3f} of the link; "
              f"peak RSS {w['rss'] / MIB:.0f} MiB")
        print(f"cloud → cloud: {w['cloud_to_cloud_seconds']:.1f} s ({w['cloud_to_cloud_rate']:.1f} MiB/s, "
              f"RSS {w['cloud_to_cloud_rss'] / MIB:.0f} MiB); cloud → file: {w['cloud_to_file_seconds']:.1f} s "
              f"({w['cloud_to_file_rate']:.1f} MiB/s, RSS {w['cloud_to_file_rss'] / MIB:.0f} MiB)")
        print(f"cloud → legacy: {w['cloud_to_legacy_seconds']:.1f} s: download {w['cloud_to_legacy_download']:.1f} s "
              f"({w['qcow2_bytes'] / w['cloud_to_legacy_download'] / MIB:.0f} MiB/s), convert "
              f"{w['cloud_to_legacy_convert']:.1f} s, upload {w['cloud_to_legacy_upload']:.1f} s "
              f"({w['cloud_to_legacy_vhd_bytes'] / w['cloud_to_legacy_upload'] / MIB:.0f} MiB/s of "
              f"{w['cloud_to_legacy_vhd_bytes'] / MIB:.0f} MiB of VHD), RSS {w['cloud_to_legacy_rss'] / MIB:.0f} MiB")
    if "memory" in results:
        m = results["memory"]
        print(f"memory: {m['size'] / GIB:.0f} GiB server, {m['qcow2_bytes'] / MIB:.0f} MiB of qcow2 in "
              f"{m['seconds']:.1f} s, peak RSS {m['rss'] / MIB:.0f} MiB")


if __name__ == "__main__":
    main()
