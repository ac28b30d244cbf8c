"""spotstep benchmark: init time, handler latency, peak memory, sizes, cost and detection
latency of the five Rust Lambdas, with a Python/boto3 poll-result as the baseline, all
measured in one run by one harness.

    .local/emu/bin/python bench/bench.py [--quick] [--profile release|debug]

(`scripts/bench.sh` sets everything up and runs this.) Writes `bench/results.json`
(`bench/results-quick.json` with --quick) and, unless --no-markdown, regenerates
BENCHMARKS.md from it (bench/report.py).

What runs:
1. sizes: each function's `bootstrap` and its deployment zip (`bootstrap` at the root,
   deflate -9, as `cargo lambda build --output-format zip` packs it);
2. the local emulated AWS (local/spotstep_local: moto + SSM agent emulation + the real
   binaries), then real executions: the demo job, and the data-weekly job with its step
   scripts replaced by `sleep`s scaled from the stated production durations;
   their histories give the state transitions, the Lambda invocations (plain tasks'
   `LambdaFunctionScheduled`, waiting send states' `TaskScheduled`) and the step-end
   detection (agent's command end -> the next state entered); the events delivered to
   poll-result about their instances are counted for the cost model;
3. peak memory: each function in a fresh process on the benchmark's own Runtime API
   endpoint (the stage's Runtime API server, local/spotstep_local/lambdas.py), one invocation replaying a real input from that
   history (a mini run: launch -> wait-online -> send-step with a benchmark task token ->
   poll-result told by the command's end event -> poll-result as the fallback poll state,
   Rust and Python -> cleanup), VmHWM read right after the invocation;
4. init time: process spawn -> first `GET /invocation/next`, many runs, the functions
   interleaved, with the production environment (credentials, region, endpoint, settings);
5. warm handler latency against the local stack, on a real instance and real commands:
   send-step; poll-result told by a command's end (Rust only: the Python baseline has only
   the poll entry); poll-result as the fallback `<step>: poll` state (running, succeeded,
   failed), Rust and the Python baseline on the same inputs, and a check that both answer
   alike;
6. the cost model of a data-weekly run, the token and the polling designs, priced with
   published prices (bench/cost.py); BENCHMARKS.md takes its cost and detection rows from
   `bench/events.json` (scripts/bench-events.sh) when that file is there.
"""

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "local"))

from cost import ASSUMPTIONS, DATA_WEEKLY_MINUTES, PRICES, check_schedule, cost_model  # noqa: E402
from spotstep_local import contract  # noqa: E402
from spotstep_local.events import matches  # noqa: E402
from spotstep_local.harness import Harness  # noqa: E402
from spotstep_local.lambdas import RuntimeHost, lambda_env  # noqa: E402
from spotstep_local.stack import LocalStack  # noqa: E402

PY_BASELINE = os.path.join(HERE, "python_poll_result")

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


def parse_ts(value) -> datetime.datetime:
    if isinstance(value, datetime.datetime):
        return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)
    return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


# ---------------------------------------------------------------------------------- machine


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


# ------------------------------------------------------------------------------------ sizes


def elf_arch(path: str) -> str:
    with open(path, "rb") as f:
        head = f.read(20)
    if head[:4] != b"\x7fELF":
        return "not ELF"
    machine = int.from_bytes(head[18:20], "little")
    return {0x3E: "x86_64", 0xB7: "arm64"}.get(machine, hex(machine))


def zip_bootstrap(binary: str, out: str, level: int = 9) -> int:
    info = zipfile.ZipInfo("bootstrap", date_time=(2020, 1, 1, 0, 0, 0))
    info.external_attr = 0o100755 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    with open(binary, "rb") as f, zipfile.ZipFile(out, "w") as z:
        z.writestr(info, f.read(), compresslevel=level)
    return os.path.getsize(out)


def sizes(profile_dir: str, work: str, level=9) -> dict:
    """`level` None: bootstrap sizes only, no zips."""
    out = {"builds": []}
    candidates = [("cargo build --release", {n: os.path.join(profile_dir, n) for n in contract.functions()})]
    lambda_dir = os.path.join(REPO, "target", "lambda")
    if os.path.isdir(lambda_dir):
        candidates.append(
            ("cargo lambda build --release", {n: os.path.join(lambda_dir, n, "bootstrap") for n in contract.functions()})
        )
    for how, binaries in candidates:
        if not all(os.path.isfile(p) for p in binaries.values()):
            continue
        build = {"how": how, "functions": {}}
        for name, path in binaries.items():
            z = os.path.join(work, f"{name}-{elf_arch(path)}.zip")
            build["functions"][name] = {
                "arch": elf_arch(path),
                "bootstrap_bytes": os.path.getsize(path),
                "zip_bytes": zip_bootstrap(path, z, level) if level is not None else None,
                "built": datetime.datetime.fromtimestamp(os.path.getmtime(path), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            }
        build["arch"] = sorted({f["arch"] for f in build["functions"].values()})
        out["builds"].append(build)
    # The baseline: the two .py files (boto3 comes with Lambda's Python runtime).
    z = os.path.join(work, "python-poll-result.zip")
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in ("handler.py", "bootstrap.py"):
            zf.write(os.path.join(PY_BASELINE, f), f)
    out["python_zip_bytes"] = os.path.getsize(z)
    return out


# ------------------------------------------------------------------------ local executions


def put_job_secrets(stack, manifest_path: str):
    """Puts a stand-in value for each of the job's `[secrets]` parameters into the local stack:
    the runner reads them on the instance before the step starts, as in a deployment."""
    with open(manifest_path, "rb") as f:
        secrets = tomllib.load(f).get("secrets", {})
    ssm = stack.client("ssm")
    for name, parameter in secrets.items():
        ssm.put_parameter(Name=parameter, Value=f"bench-stand-in-{name.lower()}", Type="SecureString", Overwrite=True)


def sim_jobs_dir(work: str, seconds_per_minute: float) -> str:
    """jobs/data-weekly with every step script replaced by a `sleep` of the step's stated
    production duration, scaled to `seconds_per_minute` seconds per minute."""
    root = os.path.join(work, "sim-jobs")
    src = os.path.join(REPO, "jobs", "data-weekly")
    dst = os.path.join(root, "data-weekly")
    os.makedirs(os.path.join(dst, "steps"), exist_ok=True)
    shutil.copy(os.path.join(src, "job.toml"), os.path.join(dst, "job.toml"))
    with open(os.path.join(src, "job.toml"), "rb") as f:
        manifest = tomllib.load(f)
    for step in manifest["steps"]:
        minutes = DATA_WEEKLY_MINUTES.get(step["name"], 1)
        secs = round(minutes * seconds_per_minute, 3)
        with open(os.path.join(dst, step["script"]), "w") as f:
            f.write(
                f'echo "sim {step["name"]}: {minutes} min of production work, {secs}s here"\n'
                f"sleep {secs}\n"
                f'echo "sim {step["name"]}: done"\n'
            )
    return root


def run_execution(harness: Harness, stack: LocalStack, job: str, mode: str, timeout: float) -> dict:
    name = f"bench-{job}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{random.randrange(1000):03d}"
    definition = json.loads(harness.definition(job))
    stack.put_config(definition["States"][contract.state("name_the_run")]["Parameters"]["job"]["config_source"], "# bench\n")
    started = time.time()
    arn = harness.start(job, name, {"mode": mode} if mode else {})
    outcome = harness.wait(arn, timeout=timeout)
    wall = time.time() - started
    runs = stack.agent.runs(run_id=name)
    return {
        "job": job,
        "mode": mode,
        "name": name,
        "arn": arn,
        "status": outcome.status,
        "error": outcome.error,
        "wall_seconds": wall,
        "events": outcome.events,
        "runs": runs,
        "definition": definition,
    }


def scheduled_invocation(event: dict):
    """(function name, its input) of a history event that schedules a Lambda invocation: a
    plain task (`LambdaFunctionScheduled`) or a waiting one (`TaskScheduled` of a
    `lambda:invoke.waitForTaskToken` state, its `parameters` holding `FunctionName` and
    `Payload`); None for any other event."""
    if event["type"] == "LambdaFunctionScheduled":
        details = event.get("lambdaFunctionScheduledEventDetails", {})
        return details.get("resource", "").rsplit(":", 1)[-1], json.loads(details.get("input") or "null")
    if event["type"] == "TaskScheduled":
        details = event.get("taskScheduledEventDetails", {})
        if details.get("resourceType") != "lambda":
            raise ValueError(f"a task of resource type {details.get('resourceType')!r}: the benchmark counts only Lambda tasks")
        parameters = json.loads(details.get("parameters") or "{}")
        if "FunctionName" not in parameters or "Payload" not in parameters:
            raise ValueError(f"a waiting Lambda task without FunctionName and Payload: {sorted(parameters)}")
        return parameters["FunctionName"].rsplit(":", 1)[-1], parameters["Payload"]
    return None


def step_end_detection(execution: dict) -> list:
    """For each command of the run that ended (`CommandRun.ended`, the agent emulation's clock):
    the next state the execution entered after it (history timestamps), and how long after."""
    entered = [(parse_ts(e["timestamp"]), e["stateEnteredEventDetails"]["name"]) for e in execution["events"] if "stateEnteredEventDetails" in e]
    out = []
    for run in execution["runs"]:
        if not run.ended:
            continue  # a command lost with its instance never ends
        ended = parse_ts(run.ended)
        nxt = next(((t, name) for t, name in entered if t >= ended), None)
        if nxt is None:
            raise RuntimeError(f"{execution['name']}: no state entered after step {run.step} ended at {run.ended}")
        out.append({
            "execution": execution["name"],
            "step": run.step,
            "status": run.status,
            "command_seconds": (ended - parse_ts(run.started)).total_seconds() if run.started else None,
            "next_state": nxt[1],
            "detection_seconds": (nxt[0] - ended).total_seconds(),
        })
    return out


def analyse(execution: dict) -> dict:
    """State transitions and Lambda invocations from a history, the inputs each function was
    invoked with, and the step-end detection (`step_end_detection`)."""
    per_state = {}
    current = None
    scheduled_inputs = {}
    for e in execution["events"]:
        if "stateEnteredEventDetails" in e:
            current = e["stateEnteredEventDetails"]["name"]
            s = per_state.setdefault(current, {"type": e["type"].replace("StateEntered", ""), "entered": 0, "invocations": 0})
            s["entered"] += 1
            continue
        scheduled = scheduled_invocation(e)
        if scheduled:
            fn, payload = scheduled
            per_state[current]["invocations"] += 1
            scheduled_inputs.setdefault(fn, []).append({"state": current, "input": payload})
    for s in per_state.values():
        s["retries"] = max(s["invocations"] - s["entered"], 0) if s["invocations"] else 0
    entered = sum(s["entered"] for s in per_state.values())
    retries = sum(s["retries"] for s in per_state.values())
    return {
        "job": execution["job"],
        "mode": execution["mode"],
        "name": execution["name"],
        "status": execution["status"],
        "wall_seconds": execution["wall_seconds"],
        "history_events": len(execution["events"]),
        "states_entered": entered,
        "retries": retries,
        "state_transitions": entered + retries,
        "lambda_invocations": sum(s["invocations"] for s in per_state.values()),
        "per_state": per_state,
        "detection": step_end_detection(execution),
        "inputs": scheduled_inputs,
    }


def instance_ids(stack: LocalStack, run_id: str) -> set:
    return {i.id for i in stack.instances(run_id=run_id)}


def matched(event: dict) -> bool:
    return any(matches(rule["pattern"], event) for rule in contract.event_rules())


def settle_deliveries(stack: LocalStack, ids: set, timeout: float = 15.0) -> list:
    """The deliveries to poll-result of events about `ids`, once every matched event sent about
    them was delivered (they run on threads, and the instance's last state changes come after
    the execution ended)."""
    def about(event):
        return event.get("detail", {}).get("instance-id") in ids

    deadline = time.time() + timeout
    while True:
        with stack.events.lock:
            sent = [e for _, _, e in stack.events.sent if about(e) and matched(e)]
            delivered = [d for d in stack.events.delivered if about(d[1])]
            dropped = [e for e in stack.events.dropped if about(e)]
        if len(delivered) >= len(sent) - len(dropped) or time.time() > deadline:
            return delivered
        time.sleep(0.1)


# ---------------------------------------------------------------------------- functions


class Functions:
    """The benchmark's own Runtime API hosts, one per function, and how to start each."""

    def __init__(self, binaries: dict, base_env: dict, logs: str):
        self.binaries = binaries
        self.base_env = base_env
        self.logs = logs
        self.hosts = {}

    def names(self):
        return list(self.binaries) + ["python-poll-result"]

    def host(self, name: str) -> RuntimeHost:
        if name not in self.hosts:
            self.hosts[name] = RuntimeHost()
        return self.hosts[name]

    def start(self, name: str, host_name: str = None):
        host = self.host(host_name or name)
        function = "poll-result" if name == "python-poll-result" else name
        env = lambda_env(self.base_env, host, function, stream="bench")
        env["AWS_SESSION_TOKEN"] = "bench-session-token"
        if name == "python-poll-result":
            env.update(
                {
                    "_HANDLER": "handler.lambda_handler",
                    "LAMBDA_TASK_ROOT": PY_BASELINE,
                    "PYTHONUNBUFFERED": "1",
                    "SPOTSTEP_STEP_LOG_PREFIX_TEMPLATE": contract.fmt("step_log_prefix").template,
                    "SPOTSTEP_SSM_OUTPUT_KEY_TEMPLATE": contract.fmt("ssm_output_key").template,
                    "SPOTSTEP_SEND_MARKER_KEY_TEMPLATE": contract.fmt("send_marker_key").template,
                }
            )
            argv = [sys.executable, os.path.join(PY_BASELINE, "bootstrap.py")]
        else:
            argv = [self.binaries[name]]
        return host.session(function).start(argv, env, os.path.join(self.logs, f"{name}.log"))

    def stop(self):
        for h in self.hosts.values():
            h.stop()


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


def vmhwm(process):
    """VmHWM (KiB) of a live process, or None."""
    if process is None or process.poll() is not None:
        return None
    with open(f"/proc/{process.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


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


def with_run(template: dict, run: dict) -> dict:
    out = json.loads(json.dumps(template))
    out["run"] = run
    return out


def wait_command(stack: LocalStack, command_id: str, timeout: float = 60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        run = stack.agent.commands.get(command_id)
        if run is not None and run.status in ("Success", "Failed", "TimedOut", "Cancelled"):
            time.sleep(0.05)
            return run
        time.sleep(0.1)
    raise TimeoutError(f"command {command_id} did not finish")


def first_invocation(fns: Functions, name: str, payload: dict, host_name: str) -> dict:
    session = fns.start(name, host_name=host_name)
    try:
        init_ms = session.wait_ready(60)
        ms, body, error = session.invoke(payload, timeout=120)
        status = session.status()
    finally:
        session.kill()
    result = json.loads(body or b"null")
    return {
        "init_ms": init_ms,
        "invocation_ms": ms,
        "error": error,
        "result": result,
        "vmhwm_kib": status.get("VmHWM"),
        "vmrss_kib": status.get("VmRSS"),
    }


def bench_token(tag: str) -> str:
    """A task token no execution waits on: poll-result's SendTaskSuccess/Failure with it is
    answered `InvalidToken`, which it treats as a token already answered (nothing recorded)."""
    return f"bench-token-{tag}-{random.randrange(10**9):09d}"


def command_ended_event(command: dict, status: str) -> dict:
    """SSM's `EC2 Command Invocation Status-change Notification` for a command of ours, as
    EventBridge delivers it to poll-result (the stage's EventBus makes the same shape)."""
    instance_id = command["instance_id"]
    return {
        "version": "0",
        "id": f"bench-{random.randrange(10**12):012d}",
        "detail-type": contract.detail_type("command_invocation"),
        "source": "aws.ssm",
        "account": "123456789012",
        "time": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": [f"arn:aws:ec2:us-east-1:123456789012:instance/{instance_id}"],
        "detail": {
            "command-id": command["command_id"],
            "document-name": "AWS-RunShellScript",
            "instance-id": instance_id,
            "requested-date-time": command["sent_at"],
            "status": status,
        },
    }


class QuietStage:
    """While the benchmark replays the functions by itself: the stage's own EventBridge
    deliveries and reconciler off, so that the stack's poll-result does not answer the
    benchmark's send markers beside it (it could only get `InvalidToken`, but its calls would
    load the emulator under the measurement)."""

    def __init__(self, stack: LocalStack):
        self.faults = stack.faults

    def __enter__(self):
        self.faults.drop_events = {k: None for k in ("command_invocation", "spot_warning", "instance_state")}
        self.faults.reconcile = False
        return self

    def __exit__(self, *exc):
        self.faults.drop_events = {}
        self.faults.reconcile = True


def poll_state_input(send: dict) -> dict:
    """The `<step>: poll` state's input for a send-step input: {run, job, instance, step}, the
    step without its script."""
    return {"run": send["run"], "job": send["job"], "instance": send["instance"],
            "step": {k: v for k, v in send["step"].items() if k != "script"}}


def replay_mini_runs(fns: Functions, stack: LocalStack, inputs: dict, machine_arn: str, reps: int) -> dict:
    """Each function in a fresh process, one invocation with a real input from the history,
    chained like a run: launch -> wait-online -> send-step (with a benchmark token) ->
    poll-result told by the command's end event (Rust), poll-result as the fallback
    `<step>: poll` state (Rust, then the Python baseline on the same input) -> cleanup
    end-of-run. Memory read after it."""
    samples = {n: [] for n in fns.names() + ["poll-result (poll state)"]}
    template_run = inputs["launch"][0]["input"]["run"]
    finish = next(i["input"] for i in inputs["cleanup"] if i["input"].get("action") == "end-of-run")
    with QuietStage(stack):
        for rep in range(reps):
            run_id = f"bench-replay-{rep}-{int(time.time())}"
            run = dict(template_run, run_id=run_id, execution=machine_arn.replace(":stateMachine:", ":execution:") + f":{run_id}")
            launch = first_invocation(fns, "launch", with_run(inputs["launch"][0]["input"], run), "mem:launch")
            if launch["error"]:
                raise RuntimeError(f"launch replay failed: {launch['result']}")
            samples["launch"].append(launch)
            instance = launch["result"]
            time.sleep(stack.agent.registration_delay + 0.3)
            wo = with_run(inputs["wait-online"][0]["input"], run)
            wo["instance"] = instance
            samples["wait-online"].append(first_invocation(fns, "wait-online", wo, "mem:wait-online"))
            send = with_run(inputs["send-step"][0]["input"], run)
            send["instance"] = instance
            send["task_token"] = bench_token(f"replay-{rep}")
            sent = first_invocation(fns, "send-step", send, "mem:send-step")
            if sent["error"]:
                raise RuntimeError(f"send-step replay failed: {sent['result']}")
            samples["send-step"].append(sent)
            command = sent["result"]
            ended = wait_command(stack, command["command_id"])
            time.sleep(stack.agent.invocation_visible_after)
            told = first_invocation(fns, "poll-result", command_ended_event(command, ended.status), "mem:poll-result")
            answered = (told["result"] or {}).get("answered") if isinstance(told["result"], dict) else None
            if told["error"] or not answered or answered[0]["step"] != send["step"]["name"]:
                raise RuntimeError(f"poll-result told by the event did not answer step {send['step']['name']}: {told['error']} {told['result']}")
            samples["poll-result"].append(told)
            poll = poll_state_input(send)
            samples["poll-result (poll state)"].append(first_invocation(fns, "poll-result", poll, "mem:poll-result-poll"))
            samples["python-poll-result"].append(first_invocation(fns, "python-poll-result", poll, "mem:python-poll-result"))
            samples["cleanup"].append(first_invocation(fns, "cleanup", with_run(finish, run), "mem:cleanup"))
    out = {}
    for name, rows in samples.items():
        out[name] = {
            "vmhwm_kib": stats([r["vmhwm_kib"] for r in rows]),
            "first_invocation_ms": stats([r["invocation_ms"] for r in rows]),
            "cold_init_ms": stats([r["init_ms"] for r in rows]),
            "errors": [r["error"] for r in rows if r["error"]],
            "example_result": rows[0]["result"] if rows else None,
        }
    return {"reps": reps, "functions": out}


def measure_latency(fns: Functions, stack: LocalStack, harness: Harness, inputs: dict, machine_arn: str, n: int) -> dict:
    """Warm invocations against the local stack with a real instance and real commands:
    send-step; poll-result told by a command's end event (Rust only: the Python baseline has
    only the poll entry); poll-result as the fallback `<step>: poll` state, Rust and the Python
    baseline alternating on the same inputs (running, succeeded, failed)."""
    run_id = f"bench-latency-{int(time.time())}"
    run = dict(inputs["launch"][0]["input"]["run"], run_id=run_id,
               execution=machine_arn.replace(":stateMachine:", ":execution:") + f":{run_id}")
    instance = harness.invoke("launch", with_run(inputs["launch"][0]["input"], run))
    time.sleep(stack.agent.registration_delay + 0.3)
    send_template = with_run(inputs["send-step"][0]["input"], run)
    send_template["instance"] = instance

    rust_send = fns.start("send-step", host_name="warm:send-step")
    rust_poll = fns.start("poll-result", host_name="warm:poll-result")
    py_poll = fns.start("python-poll-result", host_name="warm:python-poll-result")
    sessions = {"send-step": rust_send, "poll-result": rust_poll, "python-poll-result": py_poll}
    quiet = QuietStage(stack)
    quiet.__enter__()
    try:
        for s in sessions.values():
            s.wait_ready(60)

        def send(step: dict, round_: int):
            event = dict(send_template, step=step, redrive_count=round_, task_token=bench_token(f"{step['name']}-{round_}"))
            return rust_send.invoke(event)

        # Commands to poll: one that keeps running, one that succeeds, one that fails. Each is
        # the only send of its step in this run, so the fallback poll finds it as the latest.
        scripts = {
            "running": {"name": "morning-enrich", "kind": "workload", "timeout_seconds": 7200, "script": "sleep 3600"},
            "succeeded": {"name": "data-phase1", "kind": "workload", "timeout_seconds": 7200,
                          "heartbeats": ["data-phase1", "universe-prune"], "script": "echo phase1 done"},
            "failed": {"name": "rag-ingestion", "kind": "workload", "timeout_seconds": 3600,
                       "script": 'for i in $(seq 1 200); do echo "rag: line $i"; done; echo "rag: about to fail"; exit 3'},
        }
        commands, ended = {}, {}
        for key, step in scripts.items():
            ms, body, err = send(step, 0)
            if err:
                raise RuntimeError(f"send-step {key} failed: {body[:300]}")
            commands[key] = json.loads(body)
        for key in ("succeeded", "failed"):
            ended[key] = wait_command(stack, commands[key]["command_id"]).status
        time.sleep(stack.agent.invocation_visible_after)

        poll_inputs = {}
        for key, step in scripts.items():
            poll_inputs[key] = poll_state_input(dict(send_template, step=step))
        told_events = {key: command_ended_event(commands[key], ended[key]) for key in ("succeeded", "failed")}
        # Warm-up (not recorded): the first calls open the connections.
        for s in (rust_poll, py_poll):
            for ev in poll_inputs.values():
                s.invoke(ev)
        for ev in told_events.values():
            rust_poll.invoke(ev)

        out = {"n": n, "scenarios": {}, "loadavg": [loadavg()]}
        expected = {"running": "StillRunning", "succeeded": None, "failed": "StepFailed"}
        calls = {
            "running": "S3 List + Get markers, GetCommandInvocation + DescribeInstances",
            "succeeded": "S3 List + Get markers, GetCommandInvocation",
            "failed": "S3 List + Get markers, GetCommandInvocation + DescribeInstances + S3 GetObject (range)",
        }
        equivalence = {}
        for key, ev in poll_inputs.items():
            t = {"rust": [], "python": []}
            cpu = {"rust": rust_poll.cpu_seconds(), "python": py_poll.cpu_seconds()}
            answers = {}
            for i in range(n):
                pair = [("rust", rust_poll), ("python", py_poll)]
                if i % 2:
                    pair.reverse()
                for who, s in pair:
                    ms, body, err = s.invoke(ev)
                    if err != expected[key]:
                        raise RuntimeError(f"{who} poll-result (poll state) {key}: expected {expected[key]}, got {err}: {body[:300]}")
                    t[who].append(ms)
                    answers[who] = json.loads(body)
            cpu = {w: (sessions["poll-result" if w == "rust" else "python-poll-result"].cpu_seconds() - cpu[w]) * 1000 / n for w in cpu}
            out["scenarios"][f"poll-result poll state, {key}"] = {
                "rust": stats(t["rust"]),
                "python": stats(t["python"]),
                "rust_cpu_ms_per_invocation": cpu["rust"],
                "python_cpu_ms_per_invocation": cpu["python"],
                "calls": calls[key],
            }
            equivalence[key] = same_answer(key, answers["rust"], answers["python"])

        # Told by the command's end: the benchmark's token is no live one, so SendTaskSuccess /
        # SendTaskFailure is answered InvalidToken and the marker is not rewritten (a live
        # token adds one S3 PutObject).
        told_calls = {
            "succeeded": "DescribeInstances (tags), S3 List + Get markers, GetCommandInvocation, SendTaskSuccess",
            "failed": "DescribeInstances (tags), S3 List + Get markers, GetCommandInvocation + DescribeInstances + S3 GetObject (range), SendTaskFailure",
        }
        for key, ev in told_events.items():
            times = []
            cpu0 = rust_poll.cpu_seconds()
            for i in range(n):
                ms, body, err = rust_poll.invoke(ev)
                answered = json.loads(body).get("answered") if not err else None
                want = "Succeeded" if key == "succeeded" else "StepFailed"
                if err or not answered or answered[0]["answer"] != want:
                    raise RuntimeError(f"poll-result told {key}: expected the answer {want}, got {err}: {body[:300]}")
                times.append(ms)
            out["scenarios"][f"poll-result told, {key}"] = {
                "rust": stats(times),
                "rust_cpu_ms_per_invocation": (rust_poll.cpu_seconds() - cpu0) * 1000 / n,
                "calls": told_calls[key],
            }

        # send-step: each call really sends (a new redrive round: its marker read and written
        # twice, SendCommand). Paced: the emulated agent runs each sent script and uploads its
        # output (in this same Python process); the next send waits for that, outside the timed
        # call. Last, so that its markers do not add to the polls' listings above.
        warm_send = {"name": "smoke", "kind": "workload", "timeout_seconds": 900, "script": "true"}
        for i in range(3):
            send(warm_send, 100 + i)
        cpu_total = 0.0
        times = []
        for i in range(n):
            cpu0 = rust_send.cpu_seconds()
            ms, body, err = send(warm_send, 1000 + i)
            cpu_total += rust_send.cpu_seconds() - cpu0
            if err:
                raise RuntimeError(f"send-step failed: {body[:300]}")
            times.append(ms)
            wait_command(stack, json.loads(body)["command_id"])
        out["scenarios"]["send-step"] = {
            "rust": stats(times),
            "rust_cpu_ms_per_invocation": cpu_total * 1000 / n,
            "calls": "S3 GetObject (marker) + PutObject, SendCommand, S3 PutObject (marker completed)",
        }
        out["equivalence"] = equivalence
        out["warm_vmhwm_kib"] = {k: s.status().get("VmHWM") for k, s in sessions.items()}
        out["loadavg"].append(loadavg())
        return out
    finally:
        for s in sessions.values():
            s.kill()
        quiet.__exit__(None, None, None)
        harness.invoke("cleanup", {"action": "end-of-run", "run": run})


def same_answer(key: str, rust, python) -> dict:
    if key == "succeeded":
        same = rust == python
        return {"same": same, "rust": rust, "python": python} if not same else {"same": True}
    tail = lambda a: (a.get("errorMessage") or "").split("--- last 40 lines of output ---")[-1]  # noqa: E731
    head = lambda a: (a.get("errorMessage") or "").split(" is ")[0].split(":")[0]  # noqa: E731
    same = rust.get("errorType") == python.get("errorType") and tail(rust) == tail(python) and head(rust) == head(python)
    return {"same": same} if same else {"same": False, "rust": rust, "python": python}


# ------------------------------------------------------------------------------------ main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a short smoke version (few runs, no demo run)")
    p.add_argument("--profile", default=None, help="release (default) or debug binaries")
    p.add_argument("--init-runs", type=int, default=None)
    p.add_argument("--latency-runs", type=int, default=None)
    p.add_argument("--memory-reps", type=int, default=None)
    p.add_argument("--spot-price", type=float, default=None, help=f"USD/hour of the spot instance (default {ASSUMPTIONS['spot_price_per_hour']})")
    p.add_argument("--out", default=None)
    p.add_argument("--no-markdown", action="store_true")
    p.add_argument("--emulator-as-is", action="store_true",
                   help="keep the stack's front door without TCP_NODELAY (its ~40 ms delayed-ACK stalls included)")
    p.add_argument("--command", default=None, help="the command line to record (scripts/bench.sh passes its own)")
    args = p.parse_args()
    quick = args.quick
    profile = args.profile or ("debug" if quick else "release")
    init_runs = args.init_runs or (5 if quick else 40)
    latency_runs = args.latency_runs or (5 if quick else 40)
    memory_reps = args.memory_reps or (1 if quick else 5)
    if args.spot_price:
        ASSUMPTIONS["spot_price_per_hour"] = args.spot_price
    out_path = args.out or os.path.join(HERE, "results-quick.json" if quick else "results.json")
    profile_dir = os.path.join(REPO, "target", profile)
    # The contract (names, formats, poll schedules) of the binaries under test.
    os.environ["SPOTSTEP_TARGET_DIR"] = profile_dir
    cli = os.path.join(profile_dir, "spotstep")
    binaries = Harness.binaries(REPO, profile_dir) if os.path.isfile(cli) else {}
    missing = [b for b in list(binaries.values()) + [cli] if not os.path.isfile(b)]
    if missing:
        print(f"missing binaries: {missing}; build first (scripts/bench.sh does)", file=sys.stderr)
        return 2
    for timing in ("production", "local"):
        check_schedule(contract.timing(timing))

    t_start = time.time()
    results = {
        "command": args.command or " ".join([os.path.relpath(sys.executable, REPO)] + sys.argv),
        "quick": quick,
        "profile": profile,
        "machine": machine_info(),
        "prices": PRICES,
        "assumptions": ASSUMPTIONS,
        "data_weekly_minutes": DATA_WEEKLY_MINUTES,
    }
    work = tempfile.mkdtemp(prefix="spotstep-bench-")
    log(f"work folder {work}; {profile} binaries; machine load {results['machine']['loadavg_start']}")

    log("sizes")
    # Debug binaries are ~800 MB each: not zipped (their sizes mean nothing).
    results["sizes"] = sizes(profile_dir, work, 9 if profile == "release" else None)

    stack = LocalStack(os.path.join(work, "stack"), binaries)
    if not args.emulator_as_is:
        # The stack's front door writes a response's headers and body apart on a keep-alive
        # connection: the body then waits (Nagle) for the client's delayed ACK, ~40 ms on some
        # calls and not others. TCP_NODELAY removes that emulator artifact from the latencies.
        stack.front.RequestHandlerClass.disable_nagle_algorithm = True
    results["emulator_tcp_nodelay"] = not args.emulator_as_is
    seconds_per_minute = 0.05 if quick else 0.25
    put_job_secrets(stack, os.path.join(REPO, "jobs", "data-weekly", "job.toml"))
    harness = Harness(stack, REPO, target_dir=profile_dir, jobs_dirs=[sim_jobs_dir(work, seconds_per_minute), os.path.join(REPO, "jobs")])
    fns = Functions(binaries, stack.lambdas.functions["poll-result"].env, os.path.join(work, "logs"))
    os.makedirs(fns.logs, exist_ok=True)
    try:
        executions = {}
        if not quick:
            log("demo job, mode all, on the local stack")
            executions["demo"] = run_execution(harness, stack, "demo", "all", timeout=600)
            log(f"  {executions['demo']['status']} in {executions['demo']['wall_seconds']:.0f}s")
        log(f"data-weekly (mode full) with step scripts sleeping {seconds_per_minute}s per production minute")
        executions["data-weekly"] = run_execution(harness, stack, "data-weekly", "full", timeout=900)
        log(f"  {executions['data-weekly']['status']} in {executions['data-weekly']['wall_seconds']:.0f}s")
        for name, ex in executions.items():
            if ex["status"] != "SUCCEEDED":
                raise RuntimeError(f"{name} execution {ex['status']}: {ex['error']}")
        # The events EventBridge delivered to poll-result about each execution's instances
        # (the instance's last state changes come after the execution ended).
        told = {name: len([d for d in settle_deliveries(stack, instance_ids(stack, ex["name"])) if d[3] is None])
                for name, ex in executions.items()}
        analyses = {name: analyse(ex) for name, ex in executions.items()}
        results["executions"] = {name: {k: v for k, v in a.items() if k != "inputs"} for name, a in analyses.items()}
        for name, n in told.items():
            results["executions"][name]["told_events"] = n
        results["whole_run_vmhwm_kib"] = {name: vmhwm(f.process) for name, f in stack.lambdas.functions.items()}
        sim = analyses["data-weekly"]
        machine_arn = harness.machines["data-weekly"]

        log(f"peak memory: {memory_reps} replayed mini run(s), each function in a fresh process")
        results["memory"] = replay_mini_runs(fns, stack, sim["inputs"], machine_arn, memory_reps)

        log(f"init: {init_runs} runs of each function, interleaved")
        results["init"] = measure_init(fns, init_runs)

        log("init breakdown: the TLS root store")
        results["init_breakdown"] = init_breakdown(fns, max(init_runs // 2, 3), work)

        results["python_init_breakdown"] = python_init_breakdown(3 if quick else 10)

        log(f"warm handler latency: {latency_runs} invocations per scenario")
        results["latency"] = measure_latency(fns, stack, harness, sim["inputs"], machine_arn, latency_runs)

        log("cost model")
        prod_definition = json.loads(
            subprocess.run([os.path.join(profile_dir, "spotstep"), "asl", os.path.join(REPO, "jobs", "data-weekly")],
                           capture_output=True, text=True, check=True).stdout
        )
        rust_init = max(results["init"]["functions"][n]["init_ms"]["median"] for n in contract.functions())
        results["cost"] = cost_model(sim, prod_definition, rust_init, told["data-weekly"])
    finally:
        fns.stop()
        stack.stop()
    results["machine"]["loadavg_end"] = loadavg()
    results["elapsed_seconds"] = time.time() - t_start
    with open(out_path, "w") as f:
        json.dump(results, f, indent=1, default=str)
    log(f"wrote {os.path.relpath(out_path, REPO)} in {results['elapsed_seconds']:.0f}s")

    import report

    print(report.summary(results))
    problems = report.sanity(results)
    if not args.no_markdown and not quick:
        # The cost and detection rows come from the event benchmark's file when there is one
        # (scripts/bench-events.sh); else from this run's cost model, without detection rows.
        report.regenerate(results)
        log("regenerated BENCHMARKS.md")
    shutil.rmtree(work, ignore_errors=True)
    if problems:
        print("\n".join(["sanity check FAILED:"] + [f"  - {p}" for p in problems]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
