#!/usr/bin/env python3
"""Benchmarks imgferry's transfer engine against what users use today, on the simulated cloud.

Run through scripts/bench-transfer.sh, which builds the release binary and provides the tools.
Everything talks to loopback only. Prints markdown tables (pasted into docs/benchmarks.md) and
writes the raw figures as JSON to the path given with --json.

Settings (each with a fresh simulator whose DFW server has a fully allocated disk of random data,
exported by the simulator's image service as a DLO of 64 MiB segments):
  clean   4 GiB, no throttle: imgferry, curl (GET to file, then PUT as one object),
          python-swiftclient (download, then upload --use-slo -S 128M), rclone copyto.
  wan     1 GiB, every connection throttled to 16 MiB/s in both regions; imgferry --concurrency 8.
  memory  imgferry's peak RSS on a 1 GiB and an 8 GiB image.
  resume  10 SIGKILLs at random moments during a 1 GiB transfer, each followed by a resume:
          bytes re-sent (from the simulator's stats) and byte-identity of the result.
"""

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

MIB = 1 << 20
GIB = 1 << 30
SEGMENT = 64 * MIB


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Sim:
    """An `imgferry sim serve` process and a token for it."""

    def __init__(self, binary, work, size, throttle=None):
        self.data = os.path.join(work, f"sim-{size}-{throttle}")
        args = [binary, "sim", "serve", "--data-dir", self.data, "--server", f"big:{size}:1.0",
                "--step-seconds", "0", "--export-segment-size", f"{SEGMENT}"]
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
        key = re.search(r"RAX_API_KEY=(\S+)", text).group(1)
        body = json.dumps({"auth": {"RAX-KSKEY:apiKeyCredentials": {"username": "demo", "apiKey": key}}}).encode()
        self.token = self.call("POST", f"{self.base}/identity/v2.0/tokens", body)["access"]["token"]["id"]
        self.dfw = f"{self.base}/dfw/v1/MossoCloudFS_100100"
        self.iad = f"{self.base}/iad/v1/MossoCloudFS_100100"

    def call(self, method, url, body=None, headers=None):
        req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        if hasattr(self, "token"):
            req.add_header("X-Auth-Token", self.token)
        if body is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req) as r:
            data = r.read()
            return json.loads(data) if data.strip().startswith((b"{", b"[")) else data

    def export(self):
        images = f"{self.base}/dfw/images/v2"
        image = self.call("GET", f"{images}/images")["images"][0]["id"]
        self.call("PUT", f"{self.dfw}/exports", b"")
        self.call("PUT", f"{self.iad}/bench", b"")
        task = self.call("POST", f"{images}/tasks", json.dumps(
            {"type": "export", "input": {"image_uuid": image, "receiving_swift_container": "exports"}}).encode())
        while True:
            t = self.call("GET", f"{images}/tasks/{task['id']}")
            if t["status"] == "success":
                return f"{image}.vhd"
            if t["status"] == "failure":
                raise SystemExit(f"export failed: {t['message']}")
            time.sleep(0.2)

    def stats(self):
        return self.call("GET", f"{self.base}/_sim/stats")

    def object_digest(self, account, path):
        """sha256 and length of an object, streamed."""
        req = urllib.request.Request(f"{account}/{path}", headers={"X-Auth-Token": self.token})
        h, n = hashlib.sha256(), 0
        with urllib.request.urlopen(req) as r:
            while chunk := r.read(4 * MIB):
                h.update(chunk)
                n += len(chunk)
        return h.hexdigest(), n

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.data, ignore_errors=True)


def timed(cmd, env=None, watch_dir=None):
    """Runs cmd under /usr/bin/time -v; returns wall, user+sys CPU, CPU %, peak RSS and peak spill."""
    peak = [0]
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            total = 0
            for root, _, files in os.walk(watch_dir):
                for f in files:
                    try:
                        total += os.path.getsize(os.path.join(root, f))
                    except OSError:
                        pass
            peak[0] = max(peak[0], total)
            time.sleep(0.05)

    if watch_dir:
        os.makedirs(watch_dir, exist_ok=True)
        t = threading.Thread(target=watch, daemon=True)
        t.start()
    start = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - start
    stop.set()
    if p.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    field = lambda name: re.search(rf"{re.escape(name)}: (.+)", p.stderr).group(1).strip()
    cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
    return {"wall": wall, "cpu": cpu, "cpu_pct": field("Percent of CPU this job got"),
            "rss_mib": int(field("Maximum resident set size (kbytes)")) / 1024, "spill_peak": peak[0],
            "stdout": p.stdout}


def tools(args, sim, obj, size, work, concurrency, segment_size, only=None):
    env = dict(os.environ, IMGFERRY_SRC_TOKEN=sim.token, IMGFERRY_DST_TOKEN=sim.token)
    spill = os.path.join(work, "spill")
    results = {}

    def run_imgferry():
        r = timed([args.binary, "--output", "json", "transfer", "--src-url", sim.dfw, "--src", f"exports/{obj}",
                   "--dst-url", sim.iad, "--dst", "bench/imgferry.vhd", "--concurrency", str(concurrency),
                   "--segment-size", str(segment_size), "--work-dir", spill], env=env, watch_dir=spill)
        done = [json.loads(l) for l in r["stdout"].splitlines() if '"event":"done"' in l.replace(" ", "")]
        r["sha256"] = done[-1]["sha256"] if done else None
        return r

    local = os.path.join(work, "local.vhd")
    curl_cmd = ["bash", "-c", f"curl -fsS -H 'X-Auth-Token: {sim.token}' -o {local} {sim.dfw}/exports/{obj} && "
                f"curl -fsS -H 'X-Auth-Token: {sim.token}' -T {local} {sim.iad}/bench/curl.vhd"]
    swift = os.path.join(args.venv, "bin", "swift")
    swift_cmd = ["bash", "-c",
                 f"{swift} --os-storage-url {sim.dfw} --os-auth-token {sim.token} download exports {obj} -o {local} && "
                 f"{swift} --os-storage-url {sim.iad} --os-auth-token {sim.token} upload --use-slo -S 128M "
                 f"bench {local} --object-name swift.vhd"]
    rclone_env = dict(os.environ, RCLONE_CONFIG_SRC_TYPE="swift", RCLONE_CONFIG_SRC_STORAGE_URL=sim.dfw,
                      RCLONE_CONFIG_SRC_AUTH_TOKEN=sim.token, RCLONE_CONFIG_DST_TYPE="swift",
                      RCLONE_CONFIG_DST_STORAGE_URL=sim.iad, RCLONE_CONFIG_DST_AUTH_TOKEN=sim.token)
    rclone_cmd = ["rclone", "copyto", f"src:exports/{obj}", "dst:bench/rclone.vhd"]
    plan = [("imgferry", run_imgferry), ("curl", lambda: timed(curl_cmd)),
            ("swiftclient", lambda: timed(swift_cmd)), ("rclone", lambda: timed(rclone_cmd, env=rclone_env))]
    for name, fn in plan:
        if only and name not in only:
            continue
        log(f"  {name} ...")
        results[name] = fn()
        if os.path.exists(local):
            os.remove(local)
        log(f"  {name}: {results[name]['wall']:.1f} s, {results[name]['rss_mib']:.0f} MiB RSS")
    return results


def verify(sim, obj, results):
    """Sizes of every destination; imgferry's reported sha256 against the source's."""
    source_sha, size = sim.object_digest(sim.dfw, f"exports/{obj}")
    for name in results:
        dest = {"imgferry": "imgferry.vhd", "curl": "curl.vhd", "swiftclient": "swift.vhd", "rclone": "rclone.vhd"}[name]
        sha, n = sim.object_digest(sim.iad, f"bench/{dest}")
        results[name]["identical"] = (sha == source_sha and n == size)
    return source_sha, size


def table(title, results, size):
    base = results["imgferry"]["wall"]
    lines = [f"**{title}**", "", "| tool | wall | throughput | CPU (user+sys) | CPU % | peak RSS | vs imgferry | destination identical |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['wall']:.1f} s | {size / r['wall'] / MIB:.0f} MiB/s | {r['cpu']:.1f} s | "
                     f"{r['cpu_pct']} | {r['rss_mib']:.0f} MiB | {r['wall'] / base:.2f}× | {r.get('identical', '?')} |")
    return "\n".join(lines)


def resume_trials(args, sim, obj, size, work, concurrency, trials, expected):
    env = dict(os.environ, IMGFERRY_SRC_TOKEN=sim.token, IMGFERRY_DST_TOKEN=sim.token)
    source_sha, _ = sim.object_digest(sim.dfw, f"exports/{obj}")
    rng = random.Random(args.seed)
    rows = []
    for i in range(trials):
        name = f"resume-{i}.vhd"
        state = os.path.join(work, f"resume-{i}.json")
        cmd = [args.binary, "--output", "json", "transfer", "--src-url", sim.dfw, "--src", f"exports/{obj}",
               "--dst-url", sim.iad, "--dst", f"bench/{name}", "--concurrency", str(concurrency),
               "--state", state, "--work-dir", os.path.join(work, f"spill-{i}")]
        before = sim.stats()["bytes_in"].get("IAD", 0)
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        delay = rng.uniform(0.1, expected * 0.9)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        mid = sim.stats()["bytes_in"].get("IAD", 0)
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        after = sim.stats()["bytes_in"].get("IAD", 0)
        sha, n = sim.object_digest(sim.iad, f"bench/{name}")
        resent = (after - before) - size
        rows.append({"trial": i, "kill_after_s": round(delay, 2), "uploaded_before_kill": mid - before,
                     "resent": resent, "bound": concurrency * SEGMENT, "within_bound": resent <= concurrency * SEGMENT,
                     "identical": sha == source_sha and n == size})
        log(f"  trial {i}: killed at {delay:.2f} s, re-sent {resent / MIB:.1f} MiB, identical={rows[-1]['identical']}")
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--venv", required=True)
    ap.add_argument("--work", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--clean-size", default="4GiB")
    ap.add_argument("--wan-size", default="1GiB")
    ap.add_argument("--big-size", default="8GiB")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--seed", type=int, default=20261127)
    ap.add_argument("--only", default="clean,wan,memory,resume")
    ap.add_argument("--tools", default="imgferry,curl,swiftclient,rclone", help="tools compared in clean and wan")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="imgferry-bench-")
    parts = set(args.only.split(","))
    report = {"machine": {"nproc": os.cpu_count()}}
    out = []

    if "clean" in parts:
        log(f"clean loopback, {args.clean_size}")
        sim = Sim(args.binary, work, args.clean_size)
        try:
            obj = sim.export()
            results = tools(args, sim, obj, None, work, args.concurrency, 128 * MIB, only=set(args.tools.split(",")))
            sha, size = verify(sim, obj, results)
            report["clean"] = {"size": size, "sha256": sha, "results": results}
            out.append(table(f"Clean loopback: {size / GIB:.2f} GiB, 64 MiB DLO segments, imgferry --concurrency {args.concurrency}", results, size))
        finally:
            sim.stop()

    if "wan" in parts:
        log(f"WAN-like, {args.wan_size}, 16 MiB/s per connection")
        sim = Sim(args.binary, work, args.wan_size, throttle=16 * MIB)
        try:
            obj = sim.export()
            results = tools(args, sim, obj, None, work, 8, 128 * MIB, only=set(args.tools.split(",")))
            sha, size = verify(sim, obj, results)
            report["wan"] = {"size": size, "results": results}
            out.append(table(f"WAN-like: {size / GIB:.2f} GiB, every connection 16 MiB/s, imgferry --concurrency 8", results, size))
        finally:
            sim.stop()

    if "memory" in parts:
        rows = []
        for size_arg in [args.wan_size, args.big_size]:
            log(f"memory, {size_arg}")
            sim = Sim(args.binary, work, size_arg)
            try:
                obj = sim.export()
                r = tools(args, sim, obj, None, work, args.concurrency, 128 * MIB, only={"imgferry"})["imgferry"]
                source_sha, size = sim.object_digest(sim.dfw, f"exports/{obj}")
                rows.append({"size": size, "rss_mib": r["rss_mib"], "wall": r["wall"], "spill_peak": r["spill_peak"],
                             "spill_bound": (args.concurrency + 1) * SEGMENT, "identical": r["sha256"] == source_sha})
            finally:
                sim.stop()
        report["memory"] = rows
        lines = ["**imgferry memory and disk** (--concurrency %d, 64 MiB segments)" % args.concurrency, "",
                 "| image | wall | peak RSS | peak spill | spill bound (c+1)×segment | sha256 = source |", "|---:|---:|---:|---:|---:|---|"]
        for r in rows:
            lines.append(f"| {r['size'] / GIB:.2f} GiB | {r['wall']:.1f} s | {r['rss_mib']:.1f} MiB | "
                         f"{r['spill_peak'] / MIB:.0f} MiB | {r['spill_bound'] / MIB:.0f} MiB | {r['identical']} |")
        out.append("\n".join(lines))

    if "resume" in parts:
        log(f"resume waste, {args.wan_size}, 10 kills")
        sim = Sim(args.binary, work, args.wan_size)
        try:
            obj = sim.export()
            t = tools(args, sim, obj, None, work, args.concurrency, 128 * MIB, only={"imgferry"})["imgferry"]
            _, size = sim.object_digest(sim.dfw, f"exports/{obj}")
            rows = resume_trials(args, sim, obj, size, work, args.concurrency, 10, t["wall"])
        finally:
            sim.stop()
        report["resume"] = rows
        lines = [f"**Resume waste**: 10 SIGKILLs during a {size / GIB:.2f} GiB transfer (--concurrency {args.concurrency}; "
                 f"bound = concurrency × segment = {args.concurrency * SEGMENT // MIB} MiB)", "",
                 "| trial | killed after | uploaded before kill | re-sent after resume | within bound | identical |", "|---:|---:|---:|---:|---|---|"]
        for r in rows:
            lines.append(f"| {r['trial']} | {r['kill_after_s']} s | {r['uploaded_before_kill'] / MIB:.0f} MiB | "
                         f"{r['resent'] / MIB:.1f} MiB | {r['within_bound']} | {r['identical']} |")
        out.append("\n".join(lines))

    print("\n\n".join(out))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)


if __name__ == "__main__":
    main()
