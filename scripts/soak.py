#!/usr/bin/env python3
"""Soak test: N migrations of a 256 MiB image, each against a fresh simulated cloud with a random
(seeded) mix of faults, SIGKILLed at a random moment and resumed until done.

For every run it checks, independently of imgferry:
  - completion: the migration ends Done after at most 6 resumes;
  - integrity: the MD5 of the exported VHD, read back from the source Cloud Files by this script,
    equals the MD5 the simulator computed over the imported image's stored bytes;
  - duplicates: the simulator created exactly one snapshot, export task, import task, imported
    image and booted server.

With --fleet, each run is a fleet instead: 8 servers moved by one `migrate --all-servers
--parallel 4 --concurrency 8`, the same random faults, one SIGKILL of the fleet process, then
`resume FLEET_ID` until done; the checks apply to every member (exactly one resource of each kind
per member, every imported image identical to its own export).

Usage: scripts/soak.py [--runs 20] [--seed 1] [--binary target/release/imgferry] [--fleet]
Prints one line per run and a summary; exits 1 if any run fails a check.
"""

import argparse
import re
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

FAULTS = [
    # (description, rule template); "nth" is randomised per run.
    ("503 burst on segment GETs", {"service": "files", "region": "DFW", "method": "GET", "path_contains": ".vhd-0000", "times": 3, "action": {"kind": "fail", "status": 503}}),
    ("reset mid-segment", {"service": "files", "region": "DFW", "method": "GET", "path_contains": ".vhd-0000", "action": {"kind": "reset_after", "bytes": 1048576}}),
    ("flipped byte in a segment", {"service": "files", "region": "DFW", "method": "GET", "path_contains": ".vhd-0000", "action": {"kind": "flip_byte", "offset": 77777}}),
    ("422 on a segment PUT", {"service": "files", "region": "IAD", "method": "PUT", "path_contains": ".segments/", "times": 2, "action": {"kind": "fail", "status": 422}}),
    ("429 with Retry-After", {"service": "files", "region": "IAD", "method": "PUT", "path_contains": ".segments/", "action": {"kind": "fail", "status": 429, "retry_after_secs": 1}}),
    ("token expiry mid-transfer", {"service": "files", "region": "IAD", "method": "PUT", "path_contains": ".segments/", "action": {"kind": "expire_tokens"}}),
    ("stalled segment answer", {"service": "files", "region": "DFW", "method": "GET", "path_contains": ".vhd-0000", "action": {"kind": "delay", "ms": 4000}}),
    ("500 on createImage", {"service": "compute", "region": "DFW", "method": "POST", "path_contains": "/action", "times": 2, "action": {"kind": "fail", "status": 500}}),
    ("413 overLimit on compute", {"service": "compute", "method": "POST", "action": {"kind": "fail", "status": 413}}),
    ("lost answer to the export POST", {"service": "images", "region": "DFW", "method": "POST", "path_contains": "/tasks", "action": {"kind": "reset_after", "bytes": 5}}),
    ("lost answer to the import POST", {"service": "images", "region": "IAD", "method": "POST", "path_contains": "/tasks", "action": {"kind": "delay_response", "ms": 3000}}),
    ("503 on task polling", {"service": "images", "method": "GET", "path_contains": "/tasks/", "times": 3, "action": {"kind": "fail", "status": 503}}),
    ("listing missing a segment", {"service": "files", "region": "DFW", "method": "GET", "path_suffix": "/imgferry-exports", "times": 3, "action": {"kind": "drop_listing_entry", "name_contains": ".vhd-00003"}}),
    ("reset on the boot POST", {"service": "compute", "region": "IAD", "method": "POST", "path_suffix": "/servers", "action": {"kind": "reset_after", "bytes": 10}}),
    ("identity 503", {"service": "identity", "times": 2, "action": {"kind": "fail", "status": 503}}),
]


def start_sim(binary, fault_file, data_dir, servers=("soak-1:320MiB:0.8",)):
    args = [binary, "sim", "serve", "--step-seconds", "0.3", "--export-segment-size", "16MiB",
            "--faults", fault_file, "--data-dir", data_dir]
    for spec in servers:
        args += ["--server", spec]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    env, server = {}, None
    for line in proc.stdout:
        line = line.strip()
        if line.startswith("export "):
            k, v = line[len("export "):].split("=", 1)
            env[k] = v
        if line.startswith("server in DFW:"):
            server = line.rsplit("(", 1)[1].rstrip(")")
        if line.startswith("# stats:"):
            base = line.split("curl ", 1)[1].split("/_sim/stats")[0]
            break
    return proc, env, server, base


def get_json(url, token=None, data=None):
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    if token:
        req.add_header("X-Auth-Token", token)
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.load(r)


def token_and_catalog(env):
    body = json.dumps({"auth": {"RAX-KSKEY:apiKeyCredentials": {
        "username": env["RAX_USERNAME"], "apiKey": env["RAX_API_KEY"]}}}).encode()
    for _ in range(10):
        try:
            access = get_json(env["RAX_IDENTITY_URL"] + "/tokens", data=body)["access"]
            return access["token"]["id"], access["serviceCatalog"]
        except Exception:  # the fault plan may fail identity too
            time.sleep(0.5)
    raise RuntimeError("cannot authenticate to the simulator")


def endpoint(catalog, kind, region):
    for s in catalog:
        if s["type"] == kind:
            for e in s["endpoints"]:
                if e.get("region", "").upper() == region:
                    return e["publicURL"]
    raise KeyError((kind, region))


def md5_of(url, token):
    h = hashlib.md5()
    req = urllib.request.Request(url, headers={"X-Auth-Token": token})
    with urllib.request.urlopen(req, timeout=600) as r:
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def run_imgferry(binary, args, env, kill_after=None):
    p = subprocess.Popen([binary, "--output", "json"] + args, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    killed = False
    if kill_after is not None:
        try:
            p.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGKILL)
            killed = True
    out, _ = p.communicate()
    events = [json.loads(l) for l in out.splitlines() if l.strip()]
    return p.returncode, events, killed


def one_run(binary, run, rng):
    faults, rules = random_rules(rng)
    with tempfile.TemporaryDirectory(prefix="imgferry-soak-") as tmp:
        fault_file = os.path.join(tmp, "faults.json")
        with open(fault_file, "w") as f:
            json.dump({"rules": rules}, f)
        proc, env, server, base = start_sim(binary, fault_file, os.path.join(tmp, "data"))
        try:
            full_env = dict(os.environ, **env, IMGFERRY_STATE_DIR=os.path.join(tmp, "state"))
            args = ["migrate", "--from", "DFW", "--to", "IAD", "--server", server, "--boot", "general1-2",
                    "--poll-interval", "0.2", "--segment-size", "16MiB", "--http-timeout", "2"]
            kill_at = rng.uniform(0.3, 4.0)
            code, events, killed = run_imgferry(binary, args, full_env, kill_after=kill_at)
            mid = next((e["id"] for e in events if e.get("event") == "started"), None)
            resumes = 0
            if code != 0 and mid is None:
                # Killed before it printed its id: as a user would, run the same command again.
                # It starts afresh, or is refused naming the unfinished migration to resume.
                code, events, _ = run_imgferry(binary, args, full_env)
                mid = next((e["id"] for e in events if e.get("event") == "started"), None)
                named = re.search(r"imgferry resume (m-[0-9a-f]+)", next(
                    (e.get("message", "") for e in events if e.get("event") == "error"), ""))
                mid = mid or (named.group(1) if named else None)
            while code != 0 and mid and resumes < 6:
                resumes += 1
                code, events, _ = run_imgferry(binary, ["resume", mid, "--poll-interval", "0.2", "--http-timeout", "2"], full_env)
            report = next((e["report"] for e in events if e.get("event") == "report"), None)
            stats = get_json(base + "/_sim/stats")
            created = {k: len(v) for k, v in stats["created"].items()}
            want = {"server": 1, "snapshot": 1, "export_task": 1, "import_task": 1, "imported_image": 1}
            dupes = {k: created.get(k, 0) for k in want if created.get(k, 0) != want[k]}
            identical = False
            if report:
                token, catalog = token_and_catalog(env)
                export_url = endpoint(catalog, "object-store", "DFW") + "/" + report["export"]
                source_md5 = md5_of(export_url, token)
                image = get_json(endpoint(catalog, "image", "IAD") + "/images/" + report["imported_image"], token)
                identical = image.get("checksum") == source_md5 == report["md5"]
            return {
                "run": run, "faults": [d for d, _ in faults], "killed_at": round(kill_at, 1) if killed else None,
                "resumes": resumes, "completed": code == 0 and report is not None and report["step"] == "Done",
                "identical": identical, "duplicates": dupes,
                "bytes": report["bytes_moved"] if report else None,
            }
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def random_rules(rng):
    faults = rng.sample(FAULTS, rng.randint(3, 5))
    rules = []
    for _, tmpl in faults:
        rule = dict(tmpl)
        rule["nth"] = rng.randint(1, 4)
        rules.append(rule)
    return faults, rules


def one_fleet_run(binary, run, rng, members=8):
    faults, rules = random_rules(rng)
    with tempfile.TemporaryDirectory(prefix="imgferry-soak-fleet-") as tmp:
        fault_file = os.path.join(tmp, "faults.json")
        with open(fault_file, "w") as f:
            json.dump({"rules": rules}, f)
        servers = [f"node-{i}:96MiB:0.7" for i in range(1, members + 1)]
        proc, env, _, base = start_sim(binary, fault_file, os.path.join(tmp, "data"), servers)
        try:
            full_env = dict(os.environ, **env, IMGFERRY_STATE_DIR=os.path.join(tmp, "state"))
            opts = ["--poll-interval", "0.2", "--http-timeout", "2"]
            args = ["migrate", "--from", "DFW", "--to", "IAD", "--all-servers", "--parallel", "4",
                    "--concurrency", "8", "--boot", "general1-2", "--segment-size", "16MiB"] + opts
            kill_at = rng.uniform(1.0, 6.0)
            code, events, killed = run_imgferry(binary, args, full_env, kill_after=kill_at)
            fleet = next((e["fleet"] for e in events if e.get("event") == "fleet_started"), None)
            resumes = 0
            if code != 0 and fleet is None:
                # Killed before it printed the fleet's id: run the same command again, as a user
                # would; it starts afresh or names the fleet (or member) to resume.
                code, events, _ = run_imgferry(binary, args, full_env)
                fleet = next((e["fleet"] for e in events if e.get("event") == "fleet_started"), None)
                named = re.search(r"imgferry resume (f-[0-9a-f]+)", next(
                    (e.get("message", "") for e in events if e.get("event") == "error"), ""))
                fleet = fleet or (named.group(1) if named else None)
            while code != 0 and fleet and resumes < 6:
                resumes += 1
                code, events, _ = run_imgferry(binary, ["resume", fleet] + opts, full_env)
            report = next((e["report"] for e in events if e.get("event") == "fleet_report"), None)
            stats = get_json(base + "/_sim/stats")
            created = {k: len(v) for k, v in stats["created"].items()}
            want = {"server": members, "snapshot": members, "export_task": members,
                    "import_task": members, "imported_image": members}
            dupes = {k: created.get(k, 0) for k in want if created.get(k, 0) != want[k]}
            snapshots = stats["created"].get("snapshot", [])
            if len({s.split("imgferry-")[1].split("-snapshot")[0] for s in snapshots}) != len(snapshots):
                dupes["snapshot_per_member"] = len(snapshots)
            identical = 0
            if report:
                token, catalog = token_and_catalog(env)
                for m in report["members"]:
                    _, ev, _ = run_imgferry(binary, ["status", m["migration"]], full_env)
                    mig = ev[0]["migration"] if ev else {}
                    facts = mig.get("facts", {})
                    export = facts.get("export") or {}
                    transfer = facts.get("transfer") or {}
                    if not export or not facts.get("imported_image"):
                        continue
                    url = endpoint(catalog, "object-store", "DFW") + f"/{export['container']}/{export['object']}"
                    image = get_json(endpoint(catalog, "image", "IAD") + "/images/" + facts["imported_image"], token)
                    identical += image.get("checksum") == md5_of(url, token) == transfer.get("md5")
            done = report["done"] if report else 0
            return {
                "run": run, "faults": [d for d, _ in faults], "killed_at": round(kill_at, 1) if killed else None,
                "resumes": resumes, "completed": code == 0 and done == members, "members_done": done,
                "identical": identical == members, "members_identical": identical, "duplicates": dupes,
                "bytes": report["bytes"] if report else None,
            }
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fleet", action="store_true", help="each run is an 8-server fleet")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--binary", default="target/release/imgferry")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    results = []
    started = time.time()
    for run in range(1, a.runs + 1):
        t = time.time()
        r = one_fleet_run(a.binary, run, rng) if a.fleet else one_run(a.binary, run, rng)
        r["seconds"] = round(time.time() - t, 1)
        results.append(r)
        print(json.dumps(r), flush=True)
    n = len(results)
    completed = sum(r["completed"] for r in results)
    identical = sum(r["identical"] for r in results)
    dupes = sum(1 for r in results if r["duplicates"])
    killed = sum(1 for r in results if r["killed_at"] is not None)
    what = "fleets of 8 servers" if a.fleet else "migrations of a 256 MiB image"
    print(f"\nsoak: {n} {what} (seed {a.seed}) in {time.time() - started:.0f} s")
    print(f"  completed            {completed}/{n} ({100 * completed / n:.0f}%)")
    print(f"  byte-identical       {identical}/{n} ({100 * identical / n:.0f}%)")
    print(f"  runs with duplicates {dupes}")
    print(f"  SIGKILLed mid-run    {killed}/{n}; resumes {sum(r['resumes'] for r in results)}")
    sys.exit(0 if completed == n and identical == n and dupes == 0 else 1)


if __name__ == "__main__":
    main()
