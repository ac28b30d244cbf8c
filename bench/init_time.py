"""The init time section: each function's spawn to its first `GET /invocation/next`, the
functions interleaved (`measure_init`); what the Rust init spends on the TLS root store
(`init_breakdown`); where the Python baseline's init goes (`python_init_breakdown`).
"""

import json
import os
import random
import subprocess
import sys
import time

from functions import Functions
from measure import loadavg, log, stats


def measure_init(fns: Functions, runs: int) -> dict:
    samples = {n: {"init_ms": [], "cpu_ms": [], "vmhwm_kib": []} for n in fns.names()}
    load = [loadavg()]
    rng = random.Random(5)
    for r in range(runs):
        order = fns.names()
        rng.shuffle(order)
        for name in order:
            session = fns.start(name, host_name=f"init:{name}")
            try:
                ms = session.wait_ready(60)
                hwm = session.status().get("VmHWM")
            finally:
                session.kill()
            samples[name]["init_ms"].append(ms)
            samples[name]["vmhwm_kib"].append(hwm)
            if session.rusage is not None:
                # (ru_maxrss is useless here: it keeps the forking parent's high-water mark.)
                samples[name]["cpu_ms"].append((session.rusage.ru_utime + session.rusage.ru_stime) * 1000)
        if r % 10 == 9:
            log(f"  init: {r + 1}/{runs} rounds")
            load.append(loadavg())
    load.append(loadavg())
    return {
        "runs": runs,
        "functions": {n: {k: stats(v) for k, v in s.items()} for n, s in samples.items()},
        "raw_init_ms": {n: s["init_ms"] for n, s in samples.items()},
        "loadavg": load,
    }


def init_breakdown(fns: Functions, runs: int, work: str) -> dict:
    """What the Rust init spends on the TLS root store: poll-result's init with the system
    roots (as in production), with only the bundle file (no per-certificate directory), and
    with a single root certificate (`SSL_CERT_FILE` / `SSL_CERT_DIR`, which the SDK's rustls
    native-roots loader honours)."""
    empty = os.path.join(work, "no-certs")
    os.makedirs(empty, exist_ok=True)
    bundle = next((p for p in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt") if os.path.isfile(p)), None)
    if bundle is None:
        return {}
    one = os.path.join(work, "one-root.pem")
    with open(bundle) as f, open(one, "w") as o:
        text = f.read()
        start = text.index("-----BEGIN CERTIFICATE-----")
        end = text.index("-----END CERTIFICATE-----", start) + len("-----END CERTIFICATE-----")
        o.write(text[start:end] + "\n")
    cert_dir = "/etc/ssl/certs"
    variants = {
        "system root store (production)": {},
        "bundle file only": {"SSL_CERT_FILE": bundle, "SSL_CERT_DIR": empty},
        "one root certificate": {"SSL_CERT_FILE": one, "SSL_CERT_DIR": empty},
    }
    samples = {k: {"init_ms": [], "cpu_ms": []} for k in variants}
    base = fns.base_env
    for _ in range(runs):
        for k, extra in variants.items():
            fns.base_env = {**base, **extra}
            try:
                session = fns.start("poll-result", host_name="init-breakdown")
                try:
                    samples[k]["init_ms"].append(session.wait_ready(60))
                finally:
                    session.kill()
            finally:
                fns.base_env = base
            if session.rusage is not None:
                samples[k]["cpu_ms"].append((session.rusage.ru_utime + session.rusage.ru_stime) * 1000)
    return {
        "function": "poll-result",
        "runs": runs,
        "bundle": bundle,
        "bundle_certificates": text.count("BEGIN CERTIFICATE"),
        "cert_dir_files": len(os.listdir(cert_dir)) if os.path.isdir(cert_dir) else 0,
        "variants": {k: {m: stats(v) for m, v in s.items()} for k, s in samples.items()},
    }


def python_init_breakdown(runs: int) -> dict:
    """Where the Python baseline's init goes: interpreter start, `import boto3`, and the
    three clients (each timed in a fresh interpreter)."""
    code = (
        "import time; t0 = time.perf_counter()\n"
        "import boto3; t1 = time.perf_counter()\n"
        "import json; out = {'import_boto3_ms': (t1 - t0) * 1000}\n"
        "for name in ('ssm', 'ec2', 's3'):\n"
        "    t = time.perf_counter(); boto3.client(name, region_name='us-east-1'); out[name + '_client_ms'] = (time.perf_counter() - t) * 1000\n"
        "print(json.dumps(out))\n"
    )
    rows = []
    for _ in range(runs):
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", "pass"], capture_output=True)
        bare = (time.perf_counter() - t) * 1000
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={"PATH": os.environ.get("PATH", ""), "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"})
        row = json.loads(done.stdout)
        row["interpreter_start_ms"] = bare
        rows.append(row)
    return {k: stats([r[k] for r in rows]) for k in rows[0]}
