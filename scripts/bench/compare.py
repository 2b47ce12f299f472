#!/usr/bin/env python3
"""Side-by-side speed comparison of faceauth and the straightforward Python baseline
(issue 9). Run from anywhere; paths are relative to the repository root.

    python3 scripts/bench/compare.py                      # concurrency 4, 12 s per case
    python3 scripts/bench/compare.py --concurrency 8 --duration 20 --cases small,phone

What it does, in one run:
1. Starts `target/release/faceauth serve --listen 127.0.0.1:P --data-dir TMP --workers 2`
   (from the repo root; start-up = spawn -> GET /health answering, measured
   --startup-runs times) and the Python baseline (bench/python_baseline, gunicorn,
   2 sync workers; its virtualenv bench/.venv is created from its requirements.txt
   when missing).
2. Enrolls one user per case on both servers and checks the JSON answers
   (faceauth must answer APPROVED, else it stops), then checks that both answer
   APPROVED for each case's genuine upload and REJECTED for an impostor (a warning
   otherwise).
3. Drives both servers, one after the other, with the same file at the same
   concurrency with wrk (bench/post_file.lua: -t = -c, every response logged with its
   status and latency), while a sampler reads /proc every 100 ms for the RSS (and
   PSS) summed over each server's process tree.
4. Saturation check: the small photo at the saturation concurrency (workers +
   --max-queued, the most requests faceauth admits at once) and at twice that: p99,
   share and latency of 503s.
5. Prints the tables; results.json and the logs go to bench/results/<time>/.
"""

import argparse
import glob
import hashlib
import json
import math
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

# The bench data (post_file.lua, the Python baseline) stays in bench/.
BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench")
REPO = os.path.dirname(BENCH)
SHARED = os.path.join(os.path.dirname(REPO), "shared")
LUA = os.path.join(BENCH, "post_file.lua")
PAGE = os.sysconf("SC_PAGE_SIZE")

SEL = "faces/selfies"
VID = "videos"
DEFAULTS = {
    # case: (label, enroll file, authentication file); paths relative to ../shared
    "small": ("250x250 JPEG face photo (LFW)",
              "faces/lfw-train/Aaron_Peirsol/Aaron_Peirsol_0001.jpg",
              "faces/lfw-train/Aaron_Peirsol/Aaron_Peirsol_0002.jpg"),
    "phone": ("3648x2052 phone selfie (7.5 MP JPEG)",
              SEL + "/tdp-67cae596e594481cf81f5cc5e248f3d0/0001d815c0--61dc1bc5404d193dcf1d1c92__1.jpg",
              SEL + "/tdp-67cae596e594481cf81f5cc5e248f3d0/0001d815c0--61dc1bc5404d193dcf1d1c92__2.jpg"),
    "phone8": ("3264x2448 phone selfie (8.0 MP JPEG)",
               SEL + "/tdp-9b52a68b91c578365139ffd0850e879a/0001d815c0--61db424b95b7c503d532314e__1.jpg",
               SEL + "/tdp-9b52a68b91c578365139ffd0850e879a/0001d815c0--61db424b95b7c503d532314e__2.jpg"),
    "video": ("9.6 s selfie video (640x480 H.264 MP4)",
              VID + "/tdp-9958b1e9cb13d1381b21ebaa74af4546/0001d815c0--61dc1afaeae6cc347caa18b2__5.jpg",
              VID + "/tdp-9958b1e9cb13d1381b21ebaa74af4546/0001d815c0--61dc1afaeae6cc347caa18b2__8.mp4"),
    # made at run time from the "video" clip (no 1080p clip in ../shared)
    "video1080": ("same 9.6 s video upscaled to 1440x1080",
                  VID + "/tdp-9958b1e9cb13d1381b21ebaa74af4546/0001d815c0--61dc1afaeae6cc347caa18b2__5.jpg",
                  None),
}
IMPOSTOR = "faces/lfw-train/Aaron_Sorkin/Aaron_Sorkin_0001.jpg"  # against the "phone" user


# ----------------------------------------------------------------------------- http


def multipart(field, path):
    boundary = "----faceauth-bench-py-3b9d"
    with open(path, "rb") as f:
        data = f.read()
    head = ('--%s\r\nContent-Disposition: form-data; name="%s"; filename="%s"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n" % (boundary, field, os.path.basename(path)))
    body = head.encode() + data + ("\r\n--%s--\r\n" % boundary).encode()
    return body, "multipart/form-data; boundary=" + boundary


def post(url, field=None, path=None, timeout=120):
    """(status, parsed JSON or raw text, seconds)."""
    body, ctype = multipart(field, path) if path else (b"", "application/octet-stream")
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": ctype})
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, text = r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode("utf-8", "replace")
    dt = time.monotonic() - t0
    try:
        return status, json.loads(text), dt
    except ValueError:
        return status, text, dt


def health_ok(base):
    try:
        with urllib.request.urlopen(base + "/health", timeout=1) as r:
            return r.status == 200
    except (OSError, urllib.error.URLError):
        return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- servers


class Server:
    def __init__(self, name, cmd, port, log_path, env=None):
        self.name, self.cmd, self.port, self.log_path = name, cmd, port, log_path
        self.env = dict(os.environ, **(env or {}))
        self.base = "http://127.0.0.1:%d" % port
        self.proc = None

    def start(self, timeout=60):
        """Spawns the server and returns the seconds until /health answers."""
        log = open(self.log_path, "ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise SystemExit("%s exited with %s at start-up; see %s" % (self.name, self.proc.returncode,
                                                                             self.log_path))
            if health_ok(self.base):
                return time.monotonic() - t0
            time.sleep(0.005)
        self.stop()
        raise SystemExit("%s did not answer /health within %d s; see %s" % (self.name, timeout, self.log_path))

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = self.proc.pid  # its own session: the group holds only what it started
        try:
            os.killpg(pgid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass


def process_tree(root):
    children = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                s = f.read()
        except OSError:
            continue
        pid = int(s[:s.index(" ")])
        ppid = int(s[s.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(pid)
    tree, todo = [], [root]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def memory_of(pids):
    """(RSS bytes, PSS bytes) summed over pids."""
    rss = pss = 0
    for p in pids:
        try:
            with open("/proc/%d/statm" % p) as f:
                rss += int(f.read().split()[1]) * PAGE
            with open("/proc/%d/smaps_rollup" % p) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError, IndexError):
            pass
    return rss, pss


TICK = os.sysconf("SC_CLK_TCK")


def system_busy_s():
    """CPU-seconds spent busy by the whole machine (all cores) since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / TICK  # user nice system (idle iowait) irq softirq steal


def tree_cpu_s(root):
    """CPU-seconds of a process tree (utime + stime + reaped children's)."""
    total = 0
    for p in process_tree(root):
        try:
            with open("/proc/%d/stat" % p) as f:
                s = f.read()
            v = s[s.rindex(")") + 2:].split()
            total += sum(int(x) for x in v[11:15])
        except (OSError, ValueError, IndexError):
            pass
    return total / TICK


def own_cpu_s():
    """CPU-seconds of this script and of its reaped children (wrk, ffmpeg)."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


class Sampler(threading.Thread):
    """Every `period` s: RSS and PSS of each server's process tree."""

    def __init__(self, servers, period=0.1):
        super().__init__(daemon=True)
        self.servers, self.period = servers, period
        self.samples = []  # (t, name, rss, pss, n_processes)
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            t = time.monotonic()
            for s in self.servers:
                if s.proc is not None and s.proc.poll() is None:
                    pids = process_tree(s.proc.pid)
                    rss, pss = memory_of(pids)
                    self.samples.append((t, s.name, rss, pss, len(pids)))
            self.halt.wait(max(0.0, self.period - (time.monotonic() - t)))

    def peak(self, name, t0, t1):
        xs = [x for x in self.samples if x[1] == name and t0 <= x[0] <= t1]
        if not xs:
            return None
        return {"rss": max(x[2] for x in xs), "pss": max(x[3] for x in xs), "processes": max(x[4] for x in xs),
                "samples": len(xs)}


# ----------------------------------------------------------------------------- load


def pct(sorted_xs, p):
    if not sorted_xs:
        return None
    k = max(0, min(len(sorted_xs) - 1, int(math.ceil(p / 100.0 * len(sorted_xs))) - 1))
    return sorted_xs[k]


def run_wrk(url, path, field, conc, duration, prefix):
    cmd = ["wrk", "-t", str(conc), "-c", str(conc), "-d", "%ds" % duration, "--timeout", "60s", "-s", LUA, url,
           "--", path, field, prefix]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    with open(prefix + ".wrk.txt", "w") as f:
        f.write(" ".join(cmd) + "\n\n" + out.stdout + out.stderr)
    if out.returncode != 0:
        raise SystemExit("wrk failed (%d): %s" % (out.returncode, out.stderr[-2000:]))
    summary = None
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_SUMMARY "):
            summary = json.loads(line[len("BENCH_SUMMARY "):])
    rows = []
    for log in sorted(glob.glob(prefix + ".*.log")):
        with open(log) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3:
                    rows.append((int(parts[0]), float(parts[1]) / 1000.0, parts[2]))
        os.remove(log)
    dur = summary["duration_us"] / 1e6
    ok = sorted(ms for st, ms, _ in rows if st == 200)
    allv = sorted(ms for _, ms, _ in rows)
    busy = sorted(ms for st, ms, _ in rows if st == 503)
    statuses = {}
    for st, _, _ in rows:
        statuses[str(st)] = statuses.get(str(st), 0) + 1
    return {
        "concurrency": conc,
        "duration_s": dur,
        "responses": len(rows),
        "statuses": statuses,
        "ok": len(ok),
        "approved": sum(1 for st, _, d in rows if st == 200 and d == "A"),
        "non_2xx": sum(1 for st, _, _ in rows if not 200 <= st < 300),
        "socket_errors": {k: summary[k] for k in ("connect", "read", "write", "timeout")},
        "rps_ok": len(ok) / dur if dur else 0.0,
        "p50_ms": pct(ok, 50), "p99_ms": pct(ok, 99), "max_ms": ok[-1] if ok else None,
        "all_p50_ms": pct(allv, 50), "all_p99_ms": pct(allv, 99),
        "n503": len(busy), "p50_503_ms": pct(busy, 50), "p99_503_ms": pct(busy, 99),
    }


def drain(server, max_wait=60.0, window=0.5):
    """Waits until the server's process tree is idle: requests of the connections that
    wrk closed at the end of a run may still be in work (gunicorn's backlog, faceauth's
    queue) and would otherwise run into the next run. Returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < max_wait:
        c0 = tree_cpu_s(server.proc.pid)
        time.sleep(window)
        if (tree_cpu_s(server.proc.pid) - c0) / window < 0.05:
            break
    return time.monotonic() - t0


def measured_run(sampler, servers, name, url, path, conc, duration, prefix):
    """run_wrk on servers[name] plus its peak memory, its CPU-seconds per answer, and
    the CPU used meanwhile by anything else on the machine (other load skews a run)."""
    roots = {n: s.proc.pid for n, s in servers.items()}
    t0, busy0, own0 = time.monotonic(), system_busy_s(), own_cpu_s()
    cpu0 = {n: tree_cpu_s(pid) for n, pid in roots.items()}
    r = run_wrk(url, path, "auth_video", conc, duration, prefix)
    t1, busy1, own1 = time.monotonic(), system_busy_s(), own_cpu_s()
    cpu = {n: tree_cpu_s(pid) - cpu0[n] for n, pid in roots.items()}
    r["peak"] = sampler.peak(name, t0, t1)
    r["server_cpu_s"] = cpu[name]
    r["cpu_ms_per_ok"] = 1000 * cpu[name] / r["ok"] if r["ok"] else None
    r["server_cores"] = cpu[name] / (t1 - t0)
    r["other_cores"] = max(0.0, (busy1 - busy0) - sum(cpu.values()) - (own1 - own0)) / (t1 - t0)
    r["client_cores"] = (own1 - own0) / (t1 - t0)  # wrk and this script
    with open("/proc/loadavg") as f:
        r["loadavg"] = f.read().split()[:3]
    r["drain_s"] = drain(servers[name])
    return r


# ----------------------------------------------------------------------------- set-up


OTHER_LOAD_MAX = 0.25  # cores


class QuietWaiter:
    """Waits for other processes to leave the CPUs idle before a timed run, within one
    budget of seconds for the whole run (a machine that stays busy costs it once)."""

    def __init__(self, budget, window=3.0):
        self.left, self.window = float(budget), window

    def other_cores(self, exclude_roots):
        b0, o0 = system_busy_s(), own_cpu_s()
        c0 = sum(tree_cpu_s(p) for p in exclude_roots)
        time.sleep(self.window)
        used = (system_busy_s() - b0) - (own_cpu_s() - o0) - (sum(tree_cpu_s(p) for p in exclude_roots) - c0)
        return max(0.0, used) / self.window

    def wait(self, exclude_roots=()):
        """True when the machine is quiet (or the budget is spent and it is not)."""
        if self.left <= 0:
            return False
        t0 = time.monotonic()
        said = False
        while True:
            other = self.other_cores(exclude_roots)
            if other <= OTHER_LOAD_MAX:
                self.left -= time.monotonic() - t0
                return True
            if time.monotonic() - t0 >= self.left:
                self.left = 0
                print("  machine still busy (other processes use %.2f cores); waiting budget spent, going on"
                      % other, flush=True)
                return False
            if not said:
                print("  waiting for a quiet machine (other processes use %.2f cores; %.0f s of waiting left) ..."
                      % (other, self.left - (time.monotonic() - t0)), flush=True)
                said = True


def check_load(r, what, warnings):
    """Prints a run's CPU figures; warns when other processes loaded the machine."""
    print("  %d answers 200 (%d non-2xx), %.1f req/s; server %.2f cores, %s CPU ms per answer 200; other load "
          "%.2f cores" % (r["ok"], r["non_2xx"], r["rps_ok"], r["server_cores"], fmt(r["cpu_ms_per_ok"], 1),
                          r["other_cores"]), flush=True)
    if r["non_2xx"] or any(r["socket_errors"].values()):
        print("  statuses %s, socket errors %s" % (r["statuses"], r["socket_errors"]), flush=True)
    if r["other_cores"] > OTHER_LOAD_MAX:
        w = "%s: other processes used %.2f cores during the run: its figures are skewed" % (what, r["other_cores"])
        warnings.append(w)
        print("WARNING: " + w, flush=True)


def ensure_venv(venv):
    gunicorn = os.path.join(venv, "bin", "gunicorn")
    if os.path.exists(gunicorn):
        return gunicorn
    print("creating %s from bench/python_baseline/requirements.txt (PyPI) ..." % venv, flush=True)
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "-r",
                    os.path.join(BENCH, "python_baseline", "requirements.txt")], check=True)
    return gunicorn


def ensure_wrk():
    if shutil.which("wrk"):
        return
    print("wrk missing: apt-get install -y wrk", flush=True)
    if os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=False, stdout=subprocess.DEVNULL)
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian package `wrk`)")


def make_1080p(src, dst):
    if not os.path.exists(dst):
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", src, "-vf", "scale=1440:1080:flags=bicubic",
                        "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
                        "-c:a", "copy", dst], check=True)
    return dst


def describe(path):
    try:
        out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                              "stream=width,height,codec_name:format=duration", "-of", "json", path],
                             capture_output=True, text=True, timeout=30)
        j = json.loads(out.stdout)
        st = j["streams"][0]
        d = j.get("format", {}).get("duration")
        return "%dx%d %s%s, %.0f kB" % (st["width"], st["height"], st["codec_name"],
                                        (", %.1f s" % float(d)) if d else "", os.path.getsize(path) / 1024)
    except Exception:  # noqa: BLE001 (a description only)
        return "%.0f kB" % (os.path.getsize(path) / 1024)


# ----------------------------------------------------------------------------- output


def fmt(v, nd=1):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return ("%." + str(nd) + "f") % v


def ratio(a, b):
    return (a / b) if (a is not None and b) else None


def mb(x):
    return None if x is None else x / 1e6


def print_table(results, servers_order=("faceauth", "python")):
    hdr = ("| upload | server | req/s (200) | 200 / non-2xx | p50 ms | p99 ms | peak RSS MB | peak PSS MB "
           "| CPU ms per 200 | other load |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(hdr))
    for case in results["cases"]:
        rows = {}
        for name in servers_order:
            r = case["runs"].get(name)
            if r is None:
                continue
            if r.get("skipped"):
                print("| %s | %s | %s | | | | | | | |" % (case["label"] if name == servers_order[0] else "", name,
                                                    r["skipped"]))
                continue
            rows[name] = r
            print("| %s | %s | %.1f | %d / %d | %s | %s | %s | %s | %s | %.2f |" % (
                case["label"] if name == servers_order[0] else "", name, r["rps_ok"], r["ok"], r["non_2xx"],
                fmt(r["p50_ms"], 0), fmt(r["p99_ms"], 0), fmt(mb(r["peak"] and r["peak"]["rss"]), 0),
                fmt(mb(r["peak"] and r["peak"]["pss"]), 0), fmt(r["cpu_ms_per_ok"], 0), r["other_cores"]))
        if len(rows) == 2:
            f, p = rows["faceauth"], rows["python"]
            print("| | **faceauth/Python** | **%s** | | %s | %s | %s | %s | %s | |" % (
                fmt(ratio(f["rps_ok"], p["rps_ok"]), 2), fmt(ratio(f["p50_ms"], p["p50_ms"]), 2),
                fmt(ratio(f["p99_ms"], p["p99_ms"]), 2),
                fmt(ratio(f["peak"]["rss"], p["peak"]["rss"]), 2), fmt(ratio(f["peak"]["pss"], p["peak"]["pss"]), 2),
                fmt(ratio(f["cpu_ms_per_ok"], p["cpu_ms_per_ok"]), 2)))


# issue 18: a video should cost about what its analysed frames cost
VIDEO_COST_TARGET = {"video": 1.3, "video1080": 1.6}


def print_video_cost(results, args):
    """Each video case's CPU per answer against (frames analysed x the small photo's
    CPU per answer) of the same run."""
    runs = {c["case"]: c["runs"].get("faceauth") for c in results["cases"]}
    small = runs.get("small")
    videos = [c for c in results["cases"] if c["case"] in VIDEO_COST_TARGET and runs.get(c["case"])]
    if not videos or not small or not small.get("cpu_ms_per_ok"):
        return
    frames = args.video_frames or (24 if args.liveness else 8)
    print("\nvideo cost (faceauth, %s policy): CPU per answer / (%d frames x %.1f ms, the small photo's CPU per "
          "answer):" % ("liveness" if args.liveness else "default", frames, small["cpu_ms_per_ok"]))
    for c in videos:
        r = runs[c["case"]]
        x = ratio(r["cpu_ms_per_ok"], frames * small["cpu_ms_per_ok"])
        target = VIDEO_COST_TARGET[c["case"]]
        print("- %s: %s ms = %s x (target <= %.1f: %s); p50 %s ms, alone %s ms; peak RSS %s MB" % (
            c["case"], fmt(r["cpu_ms_per_ok"], 0), fmt(x, 2), target,
            "met" if x is not None and x <= target else "not met", fmt(r["p50_ms"], 0),
            fmt(1000 * results["single_request_s"].get(c["case"], {}).get("faceauth", 0), 0),
            fmt(mb(r["peak"] and r["peak"]["rss"]), 0)))


def other_statuses(r):
    """Non-2xx answers other than 503, with their statuses; socket errors."""
    xs = ["%s x%d" % (k, v) for k, v in sorted(r["statuses"].items()) if not k.startswith("2") and k != "503"]
    xs += ["%s errors x%d" % (k, v) for k, v in r["socket_errors"].items() if v]
    return ", ".join(xs) or "0"


def print_saturation(sat):
    print("\n| server | concurrency | req/s (200) | 503 share | p99 ms (200) | p99 ms (all) | 503 p50 / p99 ms | "
          "other non-2xx | peak RSS MB | other load |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in ("faceauth", "python"):
        for key in ("at", "at2x"):
            r = sat["runs"].get(name, {}).get(key)
            if not r:
                continue
            share = r["n503"] / r["responses"] if r["responses"] else 0.0
            print("| %s | %d | %.1f | %.1f %% (%d/%d) | %s | %s | %s / %s | %s | %s | %.2f |" % (
                name, r["concurrency"], r["rps_ok"], 100 * share, r["n503"], r["responses"], fmt(r["p99_ms"], 0),
                fmt(r["all_p99_ms"], 0), fmt(r["p50_503_ms"], 1), fmt(r["p99_503_ms"], 1),
                other_statuses(r), fmt(mb(r["peak"] and r["peak"]["rss"]), 0), r["other_cores"]))
    for name in ("faceauth", "python"):
        rr = sat["runs"].get(name, {})
        if rr.get("at") and rr.get("at2x"):
            print("%s: p99 (200) at %d / at %d = %s (target <= 2); answers 200 per s at %d / at %d = %s; "
                  "server %.2f / %.2f cores, wrk %.2f / %.2f cores" % (
                      name, rr["at2x"]["concurrency"], rr["at"]["concurrency"],
                      fmt(ratio(rr["at2x"]["p99_ms"], rr["at"]["p99_ms"]), 2), rr["at2x"]["concurrency"],
                      rr["at"]["concurrency"], fmt(ratio(rr["at2x"]["rps_ok"], rr["at"]["rps_ok"]), 2),
                      rr["at"]["server_cores"], rr["at2x"]["server_cores"], rr["at"]["client_cores"],
                      rr["at2x"]["client_cores"]))


# ----------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrency", type=int, default=4, help="connections for the cases (default 4)")
    ap.add_argument("--duration", type=int, default=12, help="seconds per case and server (default 12)")
    ap.add_argument("--cases", default="small,phone,video,video1080",
                    help="comma list of: " + ", ".join(DEFAULTS) + " (default small,phone,video,video1080)")
    ap.add_argument("--workers", type=int, default=2, help="faceauth --workers and gunicorn -w (default 2)")
    ap.add_argument("--max-queued", type=int, default=16,
                    help="faceauth's --max-queued, only to work out the saturation concurrency (default 16)")
    ap.add_argument("--sat-concurrency", type=int, default=0,
                    help="saturation concurrency (default workers + max-queued); 0 = that")
    ap.add_argument("--sat-case", default="small", help="case used for the saturation check (default small)")
    ap.add_argument("--sat-duration", type=int, default=0, help="seconds per saturation run (default --duration)")
    ap.add_argument("--no-saturation", action="store_true", help="skip the saturation check")
    ap.add_argument("--wait-quiet", type=int, default=300,
                    help="seconds the whole run may spend waiting for other processes to leave the CPUs idle "
                         "before timed runs (default 300; 0 = never wait)")
    ap.add_argument("--retries", type=int, default=2,
                    help="runs skewed by other processes are done again up to this many times while waiting "
                         "time is left (default 2)")
    ap.add_argument("--no-restart", action="store_true",
                    help="keep one process per server for the whole run (default: restart each server before "
                         "each timed run, so that each peak RSS is that run's own)")
    ap.add_argument("--startup-runs", type=int, default=3, help="faceauth start-ups timed (default 3)")
    ap.add_argument("--python-ort-threads", type=int, default=1,
                    help="ONNX Runtime intra-op threads per Python worker (default 1, as faceauth's workers; "
                         "0 = ONNX Runtime's default, one per core)")
    ap.add_argument("--faceauth", default=os.path.join(REPO, "target", "release", "faceauth"))
    ap.add_argument("--liveness", action="store_true",
                    help="faceauth runs the liveness policy (target/wasm32-wasip2/release/liveness_policy.wasm, "
                         "or --policy): videos are sampled at its 24 frames, every face also goes through the "
                         "liveness models")
    ap.add_argument("--policy", default="",
                    help="faceauth's policy component (default: its own default, or the liveness policy with "
                         "--liveness)")
    ap.add_argument("--video-frames", type=int, default=0,
                    help="frames faceauth analyses per video, for the video cost line (default 8, 24 with "
                         "--liveness: faceauth's --video-max-frames / --video-liveness-frames)")
    ap.add_argument("--no-python", action="store_true", help="do not start or time the Python baseline")
    ap.add_argument("--venv", default=os.path.join(BENCH, ".venv"), help="virtualenv of the Python baseline")
    ap.add_argument("--shared", default=SHARED, help="the shared data folder (default ../shared)")
    ap.add_argument("--file", action="append", default=[], metavar="CASE=ENROLL,AUTH",
                    help="override a case's files, e.g. phone=/a.jpg,/b.jpg")
    ap.add_argument("--out", default="", help="results folder (default bench/results/<time>)")
    args = ap.parse_args()

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for c in cases + ([args.sat_case] if not args.no_saturation else []):
        if c not in DEFAULTS:
            raise SystemExit("unknown case %r (known: %s)" % (c, ", ".join(DEFAULTS)))
    if not os.access(args.faceauth, os.X_OK):
        raise SystemExit("%s is missing: build it first (scripts/setup.sh)" % args.faceauth)
    ensure_wrk()
    gunicorn = "gunicorn" if args.no_python else ensure_venv(args.venv)

    out = args.out or os.path.join(BENCH, "results", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="faceauth-bench-")

    files = {}
    for c, (label, enr, auth) in DEFAULTS.items():
        files[c] = [label, os.path.join(args.shared, enr), auth and os.path.join(args.shared, auth)]
    for spec in args.file:
        c, _, paths = spec.partition("=")
        enr, _, auth = paths.partition(",")
        files[c][1:] = [os.path.abspath(enr), os.path.abspath(auth)]
        files[c][0] += " [%s]" % os.path.basename(auth)
    if "video1080" in cases:
        files["video1080"][2] = make_1080p(files["video"][2], os.path.join(tmp, "video_1440x1080.mp4"))
    for c in set(cases + ([args.sat_case] if not args.no_saturation else [])):
        for p in files[c][1:]:
            if not os.path.exists(p):
                raise SystemExit("missing %s (case %s): is ../shared there?" % (p, c))

    fa_port, py_port = free_port(), free_port()
    fa_data = os.path.join(tmp, "faceauth-data")
    policy = []
    if args.liveness or args.policy:
        wasm = os.path.abspath(args.policy) if args.policy else os.path.join(REPO, "target", "wasm32-wasip2",
                                                                             "release", "liveness_policy.wasm")
        if not os.path.exists(wasm):
            raise SystemExit("%s is missing: build it first (scripts/setup.sh)" % wasm)
        policy = ["--policy", wasm]
    faceauth = Server("faceauth", [os.path.join(tmp, "faceauth"), "serve", "--listen", "127.0.0.1:%d" % fa_port,
                                   "--data-dir", fa_data, "--workers", str(args.workers),
                                   "--max-queued", str(args.max_queued),
                                   # wrk's connections all come from 127.0.0.1: one client, whose
                                   # videos would otherwise be decoded 2 at a time (429 for the others)
                                   "--video-decodes-per-client", "0",
                                   # the cases enroll one person's photo under several names
                                   # (video and video1080): not a duplicate to refuse here
                                   "--duplicate-search", "false"] + policy,
                      fa_port, os.path.join(out, "faceauth.log"))
    python = Server("python", [gunicorn, "-w", str(args.workers), "-b", "127.0.0.1:%d" % py_port,
                               "--no-control-socket", "--chdir", os.path.join(BENCH, "python_baseline"), "app:app"],
                    py_port, os.path.join(out, "python.log"),
                    env={"BASELINE_DATA_DIR": os.path.join(tmp, "python-data"), "PYTHONDONTWRITEBYTECODE": "1",
                         "BASELINE_ORT_THREADS": str(args.python_ort_threads)})
    servers = {"faceauth": faceauth, "python": python}
    if args.no_python:
        del servers["python"]

    results = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "args": vars(args), "cases": []}
    try:
        git = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        results["git"] = git.stdout.strip() + (" (+ uncommitted changes)" if dirty else "")
    except OSError:
        results["git"] = "?"
    # a snapshot of the binary: the one in target/ may be rebuilt while this runs, and
    # the servers are restarted before every run (data files still come from the repo)
    st = os.stat(args.faceauth)
    binary = os.path.join(tmp, "faceauth")
    shutil.copy2(args.faceauth, binary)
    sha = hashlib.sha256()
    with open(binary, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    results["faceauth_binary"] = "%s (built %s, sha256 %s)" % (
        os.path.relpath(args.faceauth, REPO), time.strftime("%Y-%m-%d %H:%M", time.localtime(st.st_mtime)),
        sha.hexdigest()[:12])
    print("faceauth %s, binary %s; %d CPUs, %s; %s" % (results["git"], results["faceauth_binary"], os.cpu_count(),
                                                       platform.platform(), out), flush=True)

    sampler = Sampler(list(servers.values()))
    waiter = QuietWaiter(args.wait_quiet)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("terminated"))  # still stops the servers
    try:
        # ---- start-up
        starts = []
        for i in range(max(1, args.startup_runs)):
            shutil.rmtree(fa_data, ignore_errors=True)
            waiter.wait()
            starts.append(faceauth.start())
            if i + 1 < args.startup_runs:
                faceauth.stop()
        py_start = python.start() if "python" in servers else None
        results["startup_s"] = {"faceauth": starts, "python": py_start}
        sampler.start()
        time.sleep(0.3)
        idle = {n: sampler.peak(n, 0, time.monotonic()) for n in servers}
        results["idle"] = idle

        # ---- enrollment and the genuine / impostor checks
        warnings = []
        users = {}
        for c in dict.fromkeys(cases + ([args.sat_case] if not args.no_saturation else [])):
            label, enr, auth = files[c]
            users[c] = "bench_" + c
            for name, s in servers.items():
                status, j, dt = post(s.base + "/api/enroll?username=" + users[c], "cin_file", enr)
                okj = isinstance(j, dict) and j.get("EnrollStatus") == "APPROVED" and j.get("trained") == "success"
                print("enroll %-9s on %-8s: %d %s (%.0f ms)" % (c, name, status, json.dumps(j), dt * 1000), flush=True)
                if not okj:
                    if name == "faceauth":
                        raise SystemExit("faceauth did not enroll %s (%s): the timing would not run the full "
                                         "pipeline" % (enr, j))
                    warnings.append("python did not enroll case %s: %s" % (c, j))
        checks = {}
        single = {}  # case -> server -> seconds of one request alone (the second one)
        results["single_request_s"] = single
        for c in cases:
            label, enr, auth = files[c]
            field = "auth_video"
            for name, s in servers.items():
                status, j, dt = post(s.base + "/api/authentificate?username=" + users[c], field, auth)
                _, _, alone = post(s.base + "/api/authentificate?username=" + users[c], field, auth)  # warm
                checks[(c, name)] = (status, j)
                single.setdefault(c, {})[name] = alone
                print("genuine %-9s on %-8s: %d %s (%.0f ms)" % (c, name, status, json.dumps(j), dt * 1000),
                      flush=True)
                if not (status == 200 and isinstance(j, dict) and j.get("Decision") == "APPROVED"):
                    if not (name == "python" and status == 415):
                        warnings.append("%s does not APPROVE the genuine upload of case %s: %d %s" % (name, c, status,
                                                                                                   j))
        if "phone" in users:
            for name, s in servers.items():
                status, j, _ = post(s.base + "/api/authentificate?username=" + users["phone"], "auth_video",
                                    os.path.join(args.shared, IMPOSTOR))
                print("impostor (LFW face vs phone user) on %-8s: %d %s" % (name, status, json.dumps(j)), flush=True)
                if not (isinstance(j, dict) and j.get("Decision") == "REJECTED"):
                    warnings.append("%s does not REJECT the impostor: %d %s" % (name, status, j))
        for w in warnings:
            print("WARNING: " + w, flush=True)
        results["warnings"] = warnings
        restarts = []

        def fresh(name, url, field, path):
            """Restarts a server (the data dirs stay: users stay enrolled) so that each run's
            peak memory is its own, not what earlier cases left in the allocator; then two
            warm-up requests."""
            if args.no_restart:
                return
            s = servers[name]
            s.stop()
            restarts.append((name, s.start()))
            for _ in range(2):
                post(url, field, path)

        def run_quiet(run):
            """A timed run, after waiting for a quiet machine; a run that other processes
            skewed is done again (--retries times), and the least skewed one kept."""
            best = None
            for attempt in range(1 + max(0, args.retries)):
                waiter.wait([sv.proc.pid for sv in servers.values()])
                r = run()
                r["attempt"] = attempt + 1
                if best is None or r["other_cores"] < best["other_cores"]:
                    best = r
                if r["other_cores"] <= OTHER_LOAD_MAX or waiter.left <= 0:
                    break
                print("  skewed by other processes (%.2f cores)%s" % (
                    r["other_cores"], ", again" if attempt < args.retries else ""), flush=True)
            return best

        # ---- the cases
        for c in cases:
            label, enr, auth = files[c]
            entry = {"case": c, "label": label, "enroll": enr, "auth": auth, "auth_desc": describe(auth), "runs": {}}
            for name, s in servers.items():
                status, j = checks[(c, name)]
                if name == "python" and status == 415:
                    entry["runs"][name] = {"skipped": "415 %s (not timed)" % (j.get("DecisionReason")
                                                                             if isinstance(j, dict) else j)}
                    continue
                print("run %-9s on %-8s: c=%d, %d s ..." % (c, name, args.concurrency, args.duration), flush=True)
                url = s.base + "/api/authentificate?username=" + users[c]
                fresh(name, url, "auth_video", auth)
                r = run_quiet(lambda: measured_run(sampler, servers, name, url, auth, args.concurrency,
                                                   args.duration, os.path.join(out, "%s.%s" % (c, name))))
                entry["runs"][name] = r
                check_load(r, "%s case %s" % (name, c), warnings)
                if r["ok"] and r["approved"] != r["ok"]:
                    w = "%s case %s: only %d of %d answers 200 were APPROVED" % (name, c, r["approved"], r["ok"])
                    warnings.append(w)
                    print("WARNING: " + w, flush=True)
            results["cases"].append(entry)

        # ---- saturation
        if not args.no_saturation:
            satc = args.sat_concurrency or (args.workers + args.max_queued)
            label, enr, auth = files[args.sat_case]
            sat = {"case": args.sat_case, "label": label, "concurrency": satc, "runs": {}}
            for name, s in servers.items():
                sat["runs"][name] = {}
                for key, conc in (("at", satc), ("at2x", 2 * satc)):
                    print("saturation %s on %-8s: c=%d, %d s ..." % (args.sat_case, name, conc,
                                                                     args.sat_duration or args.duration), flush=True)
                    url = s.base + "/api/authentificate?username=" + users[args.sat_case]
                    fresh(name, url, "auth_video", auth)
                    r = run_quiet(lambda: measured_run(sampler, servers, name, url, auth, conc,
                                                       args.sat_duration or args.duration,
                                                       os.path.join(out, "sat%d.%s" % (conc, name))))
                    sat["runs"][name][key] = r
                    check_load(r, "%s saturation c=%d" % (name, conc), warnings)
            results["saturation"] = sat
        results["restart_startup_s"] = restarts
    finally:
        sampler.halt.set()
        for s in servers.values():
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)

    # ---- report
    print("\n## faceauth vs Python baseline: %d workers each, wrk -c %d (= -t), %d s per case and server" % (
        args.workers, args.concurrency, args.duration))
    print("%s; faceauth %s, %s; Python: gunicorn sync workers, %s ONNX Runtime thread(s) each\n" % (
        results["date"], results["git"], results["faceauth_binary"], args.python_ort_threads or "default"))
    print_table(results)
    loads = [r["other_cores"] for c in results["cases"] for r in c["runs"].values() if "other_cores" in r]
    loads += [r["other_cores"] for rr in results.get("saturation", {}).get("runs", {}).values() for r in rr.values()]
    if loads:
        print("\nCPU used by other processes during the timed runs: %.2f cores at most (warning above %.2f)" % (
            max(loads), OTHER_LOAD_MAX))
    print("\nuploads:")
    for case in results["cases"]:
        print("- %s: %s (%s); enrolled with %s" % (case["case"], os.path.relpath(case["auth"], os.path.dirname(REPO))
                                                   if case["case"] != "video1080" else
                                                   "made by ffmpeg (scale=1440:1080, libx264 crf 20)",
                                                   case["auth_desc"], os.path.relpath(case["enroll"],
                                                                                      os.path.dirname(REPO))))
    print("\none request alone (no other load, after one warm-up request), ms:")
    for case in results["cases"]:
        t = results["single_request_s"].get(case["case"], {})
        print("- %s: faceauth %s, Python %s" % (case["case"], fmt(t.get("faceauth") and 1000 * t["faceauth"], 0),
                                               fmt(t.get("python") and 1000 * t["python"], 0)
                                               if case["runs"].get("python", {}).get("skipped") is None else "-"))
    print_video_cost(results, args)
    s = results["startup_s"]
    fa = s["faceauth"] + [t for n, t in results.get("restart_startup_s", []) if n == "faceauth"]
    py = [s["python"]] + [t for n, t in results.get("restart_startup_s", []) if n == "python"]
    print("\nstart-up (spawn -> /health answering): faceauth median %.2f s, max %.2f s over %d starts (first %s)%s" % (
        sorted(fa)[len(fa) // 2], max(fa), len(fa), " / ".join("%.2f" % x for x in s["faceauth"]),
        "; Python (gunicorn, first worker answering) median %.2f s over %d" % (sorted(py)[len(py) // 2], len(py))
        if s["python"] is not None else ""))
    idle = results["idle"]
    print("idle after start-up: faceauth RSS %s MB (%d process)%s" % (
        fmt(mb(idle["faceauth"]["rss"]), 0), idle["faceauth"]["processes"],
        ", Python RSS %s MB / PSS %s MB (%d processes)" % (
            fmt(mb(idle["python"]["rss"]), 0), fmt(mb(idle["python"]["pss"]), 0), idle["python"]["processes"])
        if idle.get("python") else ""))
    if "saturation" in results:
        sat = results["saturation"]
        print("\n### saturation: %s, saturation concurrency %d (= workers %d + max-queued %d) and %d, %d s each" % (
            sat["label"], sat["concurrency"], args.workers, args.max_queued, 2 * sat["concurrency"],
            args.sat_duration or args.duration))
        print_saturation(sat)
    if results["warnings"]:
        print("\nWARNINGS:\n" + "\n".join("- " + w for w in results["warnings"]))
    print("\nresults: %s" % os.path.relpath(os.path.join(out, "results.json"), REPO))


if __name__ == "__main__":
    main()
