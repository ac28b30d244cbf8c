"""The benchmark's shared measuring helpers: its log line, the statistics of a sample, the
machine's load and description, a shell command's output, the repository's folder (`REPO`).
bench.py, coldstart.py, events.py and the modules of bench.py's parts use them; this module
imports no other bench module.
"""

import datetime
import os
import platform
import statistics
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(msg: str):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def stats(xs) -> dict:
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return {"n": 0}
    if len(xs) >= 2:
        deciles = statistics.quantiles(xs, n=10, method="inclusive")
        p10, p90 = deciles[0], deciles[-1]
    else:
        p10 = p90 = xs[0]
    return {
        "n": len(xs),
        "median": statistics.median(xs),
        "p10": p10,
        "p90": p90,
        "min": xs[0],
        "max": xs[-1],
        "mean": statistics.fmean(xs),
    }


def loadavg() -> list:
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


def sh(cmd: str) -> str:
    done = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    return (done.stdout or done.stderr).strip()


def machine_info() -> dict:
    meminfo = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            meminfo[k] = v.strip()
    import boto3

    return {
        "nproc": os.cpu_count(),
        "lscpu_head": sh("lscpu | head -12"),
        "model": sh("lscpu | sed -n 's/^Model name: *//p'"),
        "arch": platform.machine(),
        "mem_total": meminfo.get("MemTotal"),
        "kernel": platform.release(),
        "rustc": sh("rustc --version"),
        "cargo": sh("cargo --version"),
        "python": platform.python_version(),
        "boto3": boto3.__version__,
        "loadavg_start": loadavg(),
        "other_cargo_or_rustc_processes": int(sh("pgrep -c -x 'rustc|cargo' || true") or 0),
        "git_head": sh(f"git -C {REPO} rev-parse --short HEAD"),
        "git_modified_files": len([x for x in sh(f"git -C {REPO} status --porcelain").splitlines() if x.strip()]),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
