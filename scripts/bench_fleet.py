#!/usr/bin/env python3
"""Fleet and pipelining benchmarks (issue 13; figures in docs/benchmarks.md).

  fleet     8 servers of 256 MiB allocated, every connection throttled to 16 MiB/s:
            one fleet (--parallel 4 --concurrency 8) against the same 8 migrations one after
            another (--concurrency 8 each), and against the model
            total bytes / (8 x 16 MiB/s) + one migration's non-transfer steps.
            Peak RSS of the fleet process (GNU time) and its largest spill directory.
  pipeline  1 GiB image, the export writing at 16 MiB/s, every connection at 16 MiB/s,
            --concurrency 8: migration wall with the export pipelined into the transfer and
            with --no-pipeline, and the transfer step of each.
  tofile    4 GiB server, 16 MiB/s per connection, --concurrency 8: `migrate --to-file`, SIGKILLed
            when half the pieces are written, then `resume`: the file's SHA-256 against the
            export's (read back over HTTP), bytes the resume fetched against what was left, the
            file's apparent and allocated size.

Usage: scripts/bench_fleet.py --binary target/release/imgferry [--only fleet,pipeline,tofile]
Prints one JSON document on stdout; progress on stderr. Needs /usr/bin/time.
"""
import argparse
import hashlib
import json
import os
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


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Sim:
    def __init__(self, binary, work, servers, throttle, step, export_rate=None, seg="64MiB"):
        os.makedirs(work, exist_ok=True)
        self.data = os.path.join(work, "sim-data")
        args = [binary, "sim", "serve", "--data-dir", self.data, "--step-seconds", str(step),
                "--export-segment-size", seg]
        for s in servers:
            args += ["--server", s]
        if throttle:
            plan = os.path.join(work, "faults.json")
            with open(plan, "w") as f:
                json.dump({"throttle_bytes_per_sec": throttle, "rules": []}, f)
            args += ["--faults", plan]
        if export_rate:
            args += ["--export-rate", str(export_rate)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        text = ""
        for line in self.proc.stdout:
            text += line
            if line.startswith("# stats:"):
                break
        self.env = dict(os.environ)
        for k in ["RAX_IDENTITY_URL", "RAX_USERNAME", "RAX_API_KEY"]:
            self.env[k] = re.search(rf"{k}=(\S+)", text).group(1)
        self.servers = re.findall(r"server in DFW: (\S+) \((\S+)\)", text)

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.data, ignore_errors=True)


def run(binary, args, env, state, watch=None):
    """Runs imgferry; returns (wall seconds, peak RSS MiB, JSON events, largest spill bytes)."""
    env = dict(env, IMGFERRY_STATE_DIR=state)
    peak = [0]
    stop = threading.Event()

    def watch_spill():
        while not stop.is_set():
            total = 0
            for root, _, files in os.walk(state):
                if root.endswith(".work"):
                    for f in files:
                        try:
                            total += os.path.getsize(os.path.join(root, f))
                        except OSError:
                            pass
            peak[0] = max(peak[0], total)
            time.sleep(0.05)

    t = threading.Thread(target=watch_spill, daemon=True)
    t.start()
    started = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-f", "RSS_KB=%M", binary, "--output", "json", *args],
                       env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    stop.set()
    t.join()
    if p.returncode != 0:
        log(p.stderr[-3000:])
        raise SystemExit(f"imgferry {' '.join(args)} exited {p.returncode}")
    rss = int(re.search(r"RSS_KB=(\d+)", p.stderr).group(1)) / 1024
    events = [json.loads(l) for l in p.stdout.splitlines() if l.startswith("{")]
    return wall, rss, events, peak[0]


def timing(report, step):
    return sum(t["seconds"] for t in report["timings"] if t["step"] == step)


def fleet(binary, work, step):
    servers = [f"s{i}:512MiB:0.5" for i in range(1, 9)]
    common = ["--from", "DFW", "--to", "IAD", "--poll-interval", "0.2"]
    log("fleet: 8 x 256 MiB allocated, 16 MiB/s per connection, --parallel 4 --concurrency 8")
    sim = Sim(binary, os.path.join(work, "fleet"), servers, 16 * MIB, step)
    try:
        wall, rss, events, spill = run(binary, ["migrate", *common, "--all-servers", "--parallel", "4",
                                                "--concurrency", "8"], sim.env, os.path.join(work, "fleet-state"))
        report = next(e for e in events if e["event"] == "fleet_report")["report"]
        assert report["done"] == 8, report
        total_bytes = report["bytes"]
    finally:
        sim.stop()
    log(f"  fleet {wall:.1f} s, RSS {rss:.1f} MiB, spill peak {spill / MIB:.0f} MiB")
    log("serial: the same 8 migrations one after another, --concurrency 8 each")
    sim = Sim(binary, os.path.join(work, "serial"), servers, 16 * MIB, step)
    serial = []
    try:
        for name, sid in sim.servers:
            w, _, ev, _ = run(binary, ["migrate", *common, "--server", sid, "--concurrency", "8"], sim.env,
                              os.path.join(work, "serial-state"))
            rep = next(e for e in ev if e["event"] == "report")["report"]
            serial.append({"server": name, "wall": w, "transfer": timing(rep, "Transferring"),
                           "total": rep["total_seconds"]})
            log(f"  {name}: {w:.1f} s")
    finally:
        sim.stop()
    serial_wall = sum(s["wall"] for s in serial)
    non_transfer = min(s["wall"] - s["transfer"] for s in serial)
    model = total_bytes / (8 * 16 * MIB) + non_transfer
    return {
        "members": 8, "bytes": total_bytes, "fleet_wall": round(wall, 1), "serial_wall": round(serial_wall, 1),
        "speedup": round(serial_wall / wall, 2), "model": round(model, 1), "fleet_over_model": round(wall / model, 2),
        "fleet_peak_rss_mib": round(rss, 1), "spill_peak_mib": round(spill / MIB, 1),
        "spill_bound_mib": (8 + 4) * 64, "serial": serial,
    }


def pipeline(binary, work, step):
    out = {}
    for mode in ["pipelined", "not_pipelined"]:
        log(f"pipeline: 1 GiB, export at 16 MiB/s, 16 MiB/s per connection, --concurrency 8, {mode}")
        sim = Sim(binary, os.path.join(work, mode), ["big:1GiB:1.0"], 16 * MIB, step, export_rate=16 * MIB)
        try:
            args = ["migrate", "--from", "DFW", "--to", "IAD", "--poll-interval", "0.2", "--concurrency", "8",
                    "--server", sim.servers[0][1]]
            if mode == "not_pipelined":
                args.append("--no-pipeline")
            wall, rss, events, _ = run(binary, args, sim.env, os.path.join(work, mode + "-state"))
            rep = next(e for e in events if e["event"] == "report")["report"]
            out[mode] = {"wall": round(wall, 1), "exporting": round(timing(rep, "Exporting"), 1),
                         "transferring": round(timing(rep, "Transferring"), 1), "rss_mib": round(rss, 1),
                         "sha256": rep["sha256"]}
            log(f"  {out[mode]}")
        finally:
            sim.stop()
    p, n = out["pipelined"], out["not_pipelined"]
    assert p["sha256"] == n["sha256"]
    out["saved"] = round(n["wall"] - p["wall"], 1)
    out["saved_of_transfer_step"] = round((n["wall"] - p["wall"]) / max(n["transferring"], 1e-9), 2)
    return out


def sim_stats(env):
    base = env["RAX_IDENTITY_URL"].split("/identity")[0]
    with urllib.request.urlopen(f"{base}/_sim/stats") as r:
        return json.load(r)


def export_sha256(env, export):
    """SHA-256 of the exported object, streamed from the simulated Cloud Files in DFW."""
    body = json.dumps({"auth": {"RAX-KSKEY:apiKeyCredentials": {
        "username": env["RAX_USERNAME"], "apiKey": env["RAX_API_KEY"]}}}).encode()
    req = urllib.request.Request(env["RAX_IDENTITY_URL"] + "/tokens", body,
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        access = json.load(r)["access"]
    files = next(e["publicURL"] for s in access["serviceCatalog"] if s["type"] == "object-store"
                 for e in s["endpoints"] if e["region"] == "DFW")
    req = urllib.request.Request(f"{files}/{export}", headers={"X-Auth-Token": access["token"]["id"]})
    h = hashlib.sha256()
    with urllib.request.urlopen(req) as r:
        while chunk := r.read(4 * MIB):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MIB):
            h.update(chunk)
    return h.hexdigest()


def tofile(binary, work, step):
    log("tofile: 4 GiB, 16 MiB/s per connection, --concurrency 8, SIGKILL at half, resume")
    sim = Sim(binary, os.path.join(work, "tofile"), ["big:4GiB:1.0"], 16 * MIB, step)
    state = os.path.join(work, "tofile-state")
    path = os.path.join(work, "big.vhd")
    env = dict(sim.env, IMGFERRY_STATE_DIR=state)
    try:
        args = [binary, "--output", "json", "migrate", "--from", "DFW", "--to-file", path, "--poll-interval",
                "0.2", "--concurrency", "8", "--server", sim.servers[0][1]]
        started = time.monotonic()
        p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
        mid, pieces, total, done_bytes = None, 0, None, 0
        for line in p.stdout:
            e = json.loads(line)
            if e["event"] == "started":
                mid = e["id"]
            d = e.get("detail") or {}
            if e["event"] == "transfer" and d.get("event") == "started":
                total = d["pieces"]
            if e["event"] == "transfer" and d.get("event") == "piece_done":
                pieces += 1
                done_bytes += d["bytes"]
                if total and pieces >= total // 2:
                    break
        p.kill()
        p.wait()
        first = time.monotonic() - started
        part_exists = os.path.exists(path + ".part")
        before = sim_stats(sim.env)["bytes_out"].get("DFW", 0)
        wall, rss, events, _ = run(binary, ["resume", mid, "--poll-interval", "0.2"], sim.env, state)
        fetched = sim_stats(sim.env)["bytes_out"].get("DFW", 0) - before
        rep = next(e for e in events if e["event"] == "report")["report"]
        size = rep["bytes_moved"]
        st = os.stat(path)
        out = {
            "bytes": size, "pieces": total, "killed_after_pieces": pieces, "killed_after_s": round(first, 1),
            "part_file_at_kill": part_exists, "resume_wall": round(wall, 1), "resume_rss_mib": round(rss, 1),
            "resume_fetched": fetched, "left_at_kill": size - done_bytes,
            "refetched_beyond_left": fetched - (size - done_bytes),
            "file_sha256": sha256_file(path), "report_sha256": rep["sha256"],
            "export_sha256": export_sha256(sim.env, rep["export"]),
            "apparent_bytes": st.st_size, "allocated_bytes": st.st_blocks * 512,
            "transfer_step_s": round(timing(rep, "Transferring"), 1),
        }
        out["identical"] = out["file_sha256"] == out["export_sha256"] == out["report_sha256"]
        log(f"  {out}")
        return out
    finally:
        sim.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/imgferry")
    ap.add_argument("--only", default="fleet,pipeline")
    ap.add_argument("--step-seconds", type=float, default=2.0)
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    work = tempfile.mkdtemp(prefix="imgferry-bench-fleet-")
    report = {}
    try:
        if "fleet" in args.only:
            report["fleet"] = fleet(binary, work, args.step_seconds)
        if "pipeline" in args.only:
            report["pipeline"] = pipeline(binary, work, args.step_seconds)
        if "tofile" in args.only:
            report["tofile"] = tofile(binary, work, args.step_seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
