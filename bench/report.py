"""Renders bench/results.json: the console summary, the sanity checks, and BENCHMARKS.md.

    .local/emu/bin/python bench/report.py [bench/results.json]   # regenerate BENCHMARKS.md

Every number in BENCHMARKS.md comes from the results file, so a rerun regenerates the
whole page, including which targets are met.
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PY = "python-poll-result"


def rust(r: dict) -> list:
    """The Rust functions of a results record, in the order the benchmark ran them."""
    return [n for n in r["init"]["functions"] if n != PY]


TARGETS = {
    "init_ms": 20.0,
    "init_ratio": 5.0,
    "zip_mib": 6.0,
    "memory_mib": 40.0,
    "cost_ratio": 0.01,
    "detection_s": 30.0,
}


def mib(kib):
    return kib / 1024 if kib is not None else None


def f1(x, unit=""):
    return "–" if x is None else f"{x:.1f}{unit}"


def f2(x, unit=""):
    return "–" if x is None else f"{x:.2f}{unit}"


def spread(s: dict, fmt=f1) -> str:
    if not s or not s.get("n"):
        return "–"
    return f"{fmt(s['median'])} ({fmt(s['p10'])}–{fmt(s['p90'])})"


def usd(x: float) -> str:
    if x >= 0.01:
        return f"${x:.3f}"
    if x >= 0.0001:
        return f"${x:.5f}"
    return f"${x:.7f}"


def main_build(r: dict) -> dict:
    """The build whose sizes are reported: arm64 (cargo lambda) when there, else the first."""
    builds = r["sizes"]["builds"]
    arm = [b for b in builds if b["arch"] == ["arm64"]]
    return arm[0] if arm else builds[0]


def verdicts(r: dict) -> list:
    """(target, measured, met) rows."""
    init = r["init"]["functions"]
    py_init = init[PY]["init_ms"]["median"]
    worst_init = max(rust(r), key=lambda n: init[n]["init_ms"]["median"])
    worst_ratio = min(py_init / init[n]["init_ms"]["median"] for n in rust(r))
    build = main_build(r)
    biggest = max(rust(r), key=lambda n: build["functions"][n]["zip_bytes"])
    zip_mib = build["functions"][biggest]["zip_bytes"] / 2**20
    mem = r["memory"]["functions"]
    heaviest = max(rust(r), key=lambda n: mem[n]["vmhwm_kib"]["max"])
    mem_mib = mib(mem[heaviest]["vmhwm_kib"]["max"])
    warm_mem = max((r["latency"]["warm_vmhwm_kib"].get(n) or 0) for n in ("send-step", "poll-result"))
    whole = max(v or 0 for v in r.get("whole_run_vmhwm_kib", {}).values())
    cost = r["cost"]
    local_det = [d["detection_seconds"] for ex in r["executions"].values() for d in ex["detection"]]
    prod_worst = max(s["policy"]["cap"] for s in cost["steps"])
    prod_modeled = max(s["detection_lag_seconds"] for s in cost["steps"])
    return [
        {
            "target": f"init < {TARGETS['init_ms']:.0f} ms (every function, local)",
            "measured": f"slowest median: {worst_init} {f1(init[worst_init]['init_ms']['median'])} ms (p90 {f1(init[worst_init]['init_ms']['p90'])} ms, machine shared)",
            "met": init[worst_init]["init_ms"]["median"] < TARGETS["init_ms"],
        },
        {
            "target": f"init ≥ {TARGETS['init_ratio']:.0f}x faster than the Python baseline",
            "measured": f"Python {f1(py_init)} ms; smallest ratio {worst_ratio:.1f}x",
            "met": worst_ratio >= TARGETS["init_ratio"],
        },
        {
            "target": f"each zip < {TARGETS['zip_mib']:.0f} MB ({'/'.join(build['arch'])})",
            "measured": f"largest: {biggest} {zip_mib:.2f} MiB",
            "met": zip_mib < TARGETS["zip_mib"],
        },
        {
            "target": f"peak memory < {TARGETS['memory_mib']:.0f} MB (128 MB functions suffice)",
            "measured": f"heaviest first invocation: {heaviest} {f1(mem_mib)} MiB; after {r['latency']['n']}+ warm invocations {f1(mib(warm_mem))} MiB; whole local runs {f1(mib(whole))} MiB",
            "met": max(mem_mib, mib(warm_mem), mib(whole)) < TARGETS["memory_mib"],
        },
        {
            "target": "orchestration cost < 1% of the instance (data-weekly run)",
            "measured": f"{usd(cost['usd']['orchestration'])} vs {usd(cost['usd']['spot_instance'])} = {cost['orchestration_over_instance'] * 100:.1f}%",
            "met": cost["orchestration_over_instance"] < TARGETS["cost_ratio"],
        },
        {
            "target": "detection latency < 30 s (local)",
            "measured": f"max {f1(max(local_det))} s over {len(local_det)} steps (1-2 s poll interval)",
            "met": max(local_det) < TARGETS["detection_s"],
        },
        {
            "target": "detection latency < 30 s (production poll policy)",
            "measured": f"worst case {prod_worst} s (MaxDelaySeconds); data-weekly steps as modeled: up to {f1(prod_modeled)} s",
            "met": prod_worst < TARGETS["detection_s"],
        },
    ]


def sanity(r: dict) -> list:
    """Checks that assert nothing about absolute time: the measurements exist and agree."""
    problems = []
    for name in rust(r) + [PY]:
        if r["init"]["functions"][name]["init_ms"]["n"] != r["init"]["runs"]:
            problems.append(f"{name}: not every init run reached GET /invocation/next")
    for name, m in r["memory"]["functions"].items():
        if m["errors"]:
            problems.append(f"{name}: replayed invocation failed: {m['errors']}")
    for key, e in r["latency"]["equivalence"].items():
        if not e["same"]:
            problems.append(f"poll-result {key}: Rust and Python answers differ: {json.dumps(e)[:400]}")
    for name, ex in r["executions"].items():
        if ex["status"] != "SUCCEEDED":
            problems.append(f"{name} execution {ex['status']}")
        if not ex["detection"]:
            problems.append(f"{name}: no detection latency sample")
    for b in r["sizes"]["builds"]:
        for name, f in b["functions"].items():
            if r["profile"] == "release" and not f["zip_bytes"]:
                problems.append(f"{name}: empty zip")
    return problems


def summary(r: dict) -> str:
    init = r["init"]["functions"]
    lines = ["", f"spotstep benchmark ({r['profile']} binaries{', quick' if r['quick'] else ''}), {r['machine']['nproc']} CPUs, load {r['machine']['loadavg_start']}"]
    lines.append("init ms median (p10-p90):  " + "; ".join(f"{n} {spread(init[n]['init_ms'])}" for n in rust(r) + [PY]))
    for key, sc in r["latency"]["scenarios"].items():
        py = f", python {spread(sc['python'])}" if "python" in sc else ""
        lines.append(f"warm {key} ms: rust {spread(sc['rust'])}{py}")
    lines.append("peak memory MiB (VmHWM, first invocation): " + "; ".join(
        f"{n} {f1(mib(m['vmhwm_kib']['max']))}" for n, m in r["memory"]["functions"].items()))
    b = main_build(r)
    lines.append(f"bootstrap / zip MiB ({'/'.join(b['arch'])}): " + "; ".join(
        f"{n} {b['functions'][n]['bootstrap_bytes'] / 2**20:.2f} / {f2((b['functions'][n]['zip_bytes'] or 0) / 2**20 or None)}" for n in rust(r)))
    c = r["cost"]
    lines.append(
        f"data-weekly: {c['state_transitions']} transitions, {c['lambda_invocations']} invocations, orchestration "
        f"{usd(c['usd']['orchestration'])} vs spot {usd(c['usd']['spot_instance'])} ({c['orchestration_over_instance'] * 100:.1f}%)"
    )
    for name, ex in r["executions"].items():
        lines.append(f"detection {name}: " + ", ".join(f"{d['step']} {d['detection_seconds']:.1f}s" for d in ex["detection"]))
    if not r["quick"]:
        for v in verdicts(r):
            lines.append(f"[{'met' if v['met'] else 'MISSED'}] {v['target']}: {v['measured']}")
    lines.append(f"elapsed {r['elapsed_seconds']:.0f}s")
    return "\n".join(lines)


def events_summary(e: dict) -> str:
    """The console summary of bench/events.json (bench/events.py)."""
    se, rc, c = e["step_end_detection"]["all"], e["reclaim_detection"], e["cost"]
    t, p = c["token"], c["polling"]
    lines = ["", f"spotstep event-path benchmark ({e['profile']} binaries{', quick' if e['quick'] else ''}), {len(e['runs'])} local runs"]
    lines.append(f"step-end detection s over {se['n']} step ends: p50 {f2(se.get('p50'))}, p95 {f2(se.get('p95'))}, max {f2(se.get('max'))}")
    for key, label in (("to_resume_here", "resume here"), ("to_relaunch_clean_up", "Relaunch: clean up")):
        x = rc[key]
        lines.append(f"reclaim detection s (warning -> {label}) over {x['n']}: p50 {f2(x.get('p50'))}, p95 {f2(x.get('p95'))}, max {f2(x.get('max'))}")
    lines.append(f"data-weekly full run, token design: {t['state_transitions']} transitions, {t['lambda_invocations']} invocations "
                 f"({t['told_events']} events + {t['reconciler_ticks']} reconciler ticks), orchestration {usd(t['usd']['orchestration'])} "
                 f"= {t['orchestration_over_instance'] * 100:.2f}% of the instance")
    lines.append(f"data-weekly full run, polling design: {p['state_transitions']} transitions, {p['lambda_invocations']} invocations, "
                 f"orchestration {usd(p['usd']['orchestration'])} = {p['orchestration_over_instance'] * 100:.2f}% of the instance")
    lines.append(f"elapsed {e['elapsed_seconds']:.0f}s")
    return "\n".join(lines)


def sam_build() -> dict:
    """bench/sam-build.json (`scripts/bench-sam-build.sh`), or {} where it was not measured."""
    path = os.path.join(HERE, "sam-build.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def markdown(r: dict) -> str:
    m = r["machine"]
    init = r["init"]["functions"]
    lat = r["latency"]
    mem = r["memory"]["functions"]
    cost = r["cost"]
    a = r["assumptions"]
    prices = r["prices"]
    py_init = init[PY]["init_ms"]["median"]
    build = main_build(r)
    arch = "/".join(build["arch"])
    v = verdicts(r)
    out = []
    w = out.append

    w("# Benchmarks\n")
    w("How fast the spotstep functions start, how much memory they take, how big they are, what a weekly")
    w("run costs, and how quickly a finished step is noticed, measured against a Python/boto3 baseline of")
    w("poll-result in the same run by the same harness.\n")
    w("**Rerun everything with one command** (installs the emulator, builds the release binaries, runs all,")
    w(f"writes `bench/results.json` and regenerates this page; the measurements take ~{r['elapsed_seconds'] / 60:.0f} minutes, a first release")
    w("build 10–45 minutes on 2 cores depending on what else runs):\n")
    w("```sh\nscripts/bench.sh            # full: the numbers on this page\nscripts/bench.sh --quick    # smoke version: debug binaries, few runs, no absolute-time asserts\n```\n")
    w(f"This page was generated by `{r['command']}` on {m['date_utc']}. All of it, the targets' verdicts included,")
    w("is produced by `bench/report.py` from `bench/results.json`: edit the generator, not this page.\n")

    w("## Targets\n")
    w("| target | measured | |")
    w("|---|---|---|")
    for row in v:
        w(f"| {row['target']} | {row['measured']} | {'met' if row['met'] else '**missed**'} |")
    w("")
    missed = [row for row in v if not row["met"]]
    if missed:
        w("Where a target is missed, [Misses: what dominates and what would fix it](#misses-what-dominates-and-what-would-fix-it) says why.\n")

    w("## Machine\n")
    mem_gib = int(m["mem_total"].split()[0]) / 2**20 if m.get("mem_total", "").endswith("kB") else None
    w(f"- {m['nproc']} vCPUs, {m['model']} ({m['arch']}, KVM guest), {f1(mem_gib)} GiB RAM, Linux {m['kernel']}")
    w(f"- {m['rustc']}; Python {m['python']}, boto3 {m['boto3']}")
    w(f"- release profile: opt-level \"s\", lto, codegen-units 1, strip, panic abort; binaries: `target/{r['profile']}`,")
    built = sorted({f["built"] for b in r["sizes"]["builds"] for f in b["functions"].values()})
    w(f"  built {built[0]}{' to ' + built[-1] if len(built) > 1 else ''}; the repository was at commit {m.get('git_head')} when the benchmark ran")
    w(f"  ({m.get('git_modified_files')} files modified or untracked)")
    w(f"- load average at start {m['loadavg_start']}, at end {m.get('loadavg_end')}; this machine is shared with other")
    w("  engineers' cargo builds and test runs, so the spread (p10–p90) includes their noise; medians are robust to it,")
    w("  the maxima are not.\n")
    w("```\n" + m["lscpu_head"] + "\n```\n")

    # -- init
    w("## 1. Init time\n")
    w(f"From process start to the function's first `GET /2018-06-01/runtime/invocation/next` on a minimal local")
    w(f"Runtime API endpoint (`local/spotstep_local/lambdas.py`): `perf_counter_ns` right before `Popen`, and again when the")
    w(f"request arrives. {r['init']['runs']} runs of each function, the functions interleaved in a shuffled order each round.")
    w("The environment is production's: `AWS_REGION`, `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`,")
    w("`SPOTSTEP_*` settings, the `AWS_LAMBDA_*` variables, plus `AWS_ENDPOINT_URL` pointing at the running local stack;")
    w("each Rust function builds its EC2, S3, SSM and Step Functions clients (`Env::from_environment`) before it asks for")
    w("work, and the Python baseline creates its boto3 clients at import, as a Python Lambda does. CPU is user+system time")
    w("of the process (from `wait4`).\n")
    w("| function | init ms, median (p10–p90) | min–max | CPU ms (median) | VmHWM at init, MiB | Python ÷ this |")
    w("|---|---|---|---|---|---|")
    for n in rust(r) + [PY]:
        s = init[n]["init_ms"]
        ratio = "1.0x" if n == PY else f"**{py_init / s['median']:.1f}x**"
        w(f"| {n} | {spread(s)} | {f1(s['min'])}–{f1(s['max'])} | {f1(init[n]['cpu_ms']['median'])} | {f1(mib(init[n]['vmhwm_kib']['median']))} | {ratio} |")
    w("")
    bd = r.get("init_breakdown") or {}
    if bd:
        w(f"**Where the Rust init goes.** Nearly all of it is CPU. The largest single part is loading the TLS root store:")
        w(f"the SDK's default HTTPS client (rustls with aws-lc) reads the system's trusted roots when the clients are built,")
        w(f"here both the bundle `{bd['bundle']}` ({bd['bundle_certificates']} certificates) and the {bd['cert_dir_files']} files of")
        w(f"`/etc/ssl/certs`. {bd['function']} with the roots narrowed through `SSL_CERT_FILE`/`SSL_CERT_DIR`")
        w(f"({bd['runs']} runs each, interleaved):\n")
        w("| root store | init ms, median (p10–p90) | CPU ms, median |")
        w("|---|---|---|")
        for k, vv in bd["variants"].items():
            w(f"| {k} | {spread(vv['init_ms'])} | {f1(vv['cpu_ms']['median'])} |")
        w("")
        full = bd["variants"]["system root store (production)"]["init_ms"]["median"]
        least = bd["variants"]["one root certificate"]["init_ms"]["median"]
        w(f"So about {full - least:.0f} ms of the {full:.0f} ms is the root store; the rest is exec and dynamic loading, the")
        w("SDK config and client construction, the log subscriber and the runtime's first request. On Lambda's")
        w("`provided.al2023` the cost depends on which files that image keeps in its certificate directory (not measured")
        w("here). If init ever matters more: compiled-in roots (`webpki-roots`) through a custom HTTPS client, or building")
        w("the HTTP client lazily on the first AWS call.\n")
    rust_cpu = max(init[n]["cpu_ms"]["median"] for n in rust(r))
    py_cpu = init[PY]["cpu_ms"]["median"]
    pb = r.get("python_init_breakdown")
    if pb:
        w("**Where the Python init goes** (each part timed inside a fresh interpreter, "
          f"{pb['import_boto3_ms']['n']} runs, medians): interpreter start {f1(pb['interpreter_start_ms']['median'])} ms,")
        w(f"`import boto3` {f1(pb['import_boto3_ms']['median'])} ms, the first client (ssm, which also loads botocore's shared")
        w(f"endpoint and partition data) {f1(pb['ssm_client_ms']['median'])} ms, ec2 {f1(pb['ec2_client_ms']['median'])} ms (the")
        w(f"largest service model), s3 {f1(pb['s3_client_ms']['median'])} ms. A Python hello world starts in ~75–100 ms on")
        w("Lambda (`aws-facts.md`); it is boto3 and its JSON service models that make this baseline slow, and a leaner")
        w("Python function (clients created on first use, or only the one client a call needs) would narrow the ratio.\n")
    w(f"At 128 MB Lambda gives a function about 128/1769 of a vCPU, so CPU-bound init stretches there: the Rust init's")
    w(f"~{f1(rust_cpu)} ms of CPU stays small, the Python baseline's ~{f1(py_cpu)} ms of CPU is the part that grows.\n")

    # -- latency
    w("## 2. Handler latency (warm)\n")
    w(f"Warm processes on the benchmark's Runtime API endpoint, against the local emulated AWS (moto + the SSM agent")
    w(f"emulation, `local/spotstep_local`), on a real launched instance with real commands. {lat['n']} invocations per")
    w("scenario after 3 warm-up calls; Rust and Python poll-result alternate call by call on the same events. Time is")
    w("from handing the event to the waiting `GET /next` to the function's `POST .../response|error`.\n")
    w("| scenario | AWS calls | Rust ms, median (p10–p90) | Python ms, median (p10–p90) | Python ÷ Rust | CPU ms/call Rust / Python |")
    w("|---|---|---|---|---|---|")
    for key, sc in lat["scenarios"].items():
        py = sc.get("python")
        ratio = f"{py['median'] / sc['rust']['median']:.1f}x" if py else "–"
        cpu = f"{f2(sc['rust_cpu_ms_per_invocation'])} / {f2(sc.get('python_cpu_ms_per_invocation'))}"
        w(f"| {key} | {sc['calls']} | {spread(sc['rust'])} | {spread(py) if py else '–'} | {ratio} | {cpu} |")
    w("")
    eq = lat["equivalence"]
    w("Both poll-results gave the same answers on every scenario (error name, the success record, the failure's 40-line")
    w(f"tail): {', '.join(f'{k}: ' + ('same' if e['same'] else '**differs**') for k, e in eq.items())}.")
    w("Much of the wall time is the emulator's (a Python HTTP front door in front of moto, in the benchmark's process):")
    w("calls that reach moto's EC2 (`DescribeInstances`) or S3 take several ms there, which both clients wait on and which")
    w("narrows the ratio; the succeeded case (one `GetCommandInvocation`, answered by the agent emulation) is closest to")
    w("the clients' own cost. CPU per call (from `/proc/<pid>/stat`, 10 ms ticks averaged over the calls) is the client's")
    w("own work, which a 128 MB Lambda (a fraction of a vCPU) stretches. In AWS the in-region API round trips (~10–50 ms)")
    w("dominate either way.")
    if r.get("emulator_tcp_nodelay"):
        w("The benchmark turns on `TCP_NODELAY` on the local stack's front door: it writes a response's headers and body")
        w("apart on keep-alive connections, so the body waits (Nagle) for the client's delayed ACK, ~40 ms on some calls and")
        w("not others, which buried these differences (`--emulator-as-is` measures it unchanged). The same one-line fix in")
        w("`local/spotstep_local/stack.py` (`disable_nagle_algorithm = True` on the front door's handler) would speed up the")
        w("local runs and tests too.\n")
    else:
        w("(Measured with the emulator as is: its front door's ~40 ms delayed-ACK stalls are in these numbers.)\n")

    # -- memory
    w("## 3. Peak memory\n")
    w(f"Each function in a fresh process, one invocation replaying a real input from the local data-weekly execution's")
    w(f"history, chained like a run (launch → wait-online → send-step → poll-result → cleanup end-of-run);")
    w(f"`VmHWM` from `/proc/<pid>/status` right after the invocation; {r['memory']['reps']} repetitions.\n")
    w("| function | peak MiB (VmHWM), median (min–max) | cold first invocation ms, median | result |")
    w("|---|---|---|---|")
    for n in rust(r) + [PY]:
        s = mem[n]["vmhwm_kib"]
        res = mem[n]["example_result"]
        kind = "error " + ", ".join(mem[n]["errors"]) if mem[n]["errors"] else "ok"
        w(f"| {n} | {f1(mib(s['median']))} ({f1(mib(s['min']))}–{f1(mib(s['max']))}) | {f1(mem[n]['first_invocation_ms']['median'])} | {kind} |")
    w("")
    warm = lat["warm_vmhwm_kib"]
    whole = r.get("whole_run_vmhwm_kib", {})
    w("Longer-lived processes: after all warm invocations of section 2, VmHWM was " +
      ", ".join(f"{k} {f1(mib(val))} MiB" for k, val in warm.items()) + "; the stack's own (warm, reused) processes over the whole")
    w("local executions (demo and data-weekly): " + ", ".join(f"{k} {f1(mib(val))} MiB" for k, val in whole.items() if val) + ".\n")

    # -- sizes
    w("## 4. Sizes\n")
    w("The release `bootstrap` of each function and its deployment zip (`bootstrap` at the root, deflate level 9).\n")
    for b in r["sizes"]["builds"]:
        w(f"**{'/'.join(b['arch'])}** (`{b['how']}`):\n")
        w("| function | bootstrap MiB | zip MiB |")
        w("|---|---|---|")
        for n in rust(r):
            f = b["functions"][n]
            w(f"| {n} | {f['bootstrap_bytes'] / 2**20:.2f} | {f['zip_bytes'] / 2**20:.2f} |")
        w("")
    sam = sam_build()
    if sam:
        minutes, seconds = divmod(round(sam["wall_seconds"]), 60)
        w(f"**arm64, as deployed** (`sam build` on a fresh clone at {sam['commit']}, {sam['machine']['cpus']} cores "
          f"{sam['machine']['arch']}: one `cargo lambda build --release --arm64 --workspace` for all five functions, "
          f"**{minutes} min {seconds} s** wall; `scripts/bench-sam-build.sh`)"
          + (f"; measured while {sam['conditions']}" if sam.get("conditions") else "") + ":\n")
        w("| function | ELF machine | bootstrap MiB | zip MiB |")
        w("|---|---|---|---|")
        for logical, f in sam["functions"].items():
            w(f"| {logical} | {f['arch']} | {f['bootstrap_bytes'] / 2**20:.2f} | {f['zip_bytes'] / 2**20:.2f} |")
        w("")
    elif not any(b["arch"] == ["arm64"] for b in r["sizes"]["builds"]):
        w("These are **x86_64** builds (this machine). arm64 (what the template deploys, `cargo lambda build --release")
        w("--arm64`) was not built in this run; expect sizes within ~10–20% of these (the same code and dependencies).\n")
    w(f"The Python baseline's own zip is {r['sizes']['python_zip_bytes'] / 1024:.1f} KiB, because boto3 (~{'10'}+ MB unpacked)")
    w("comes with Lambda's Python runtime; it is not a like-for-like size comparison.\n")

    # -- cost
    ex = r["executions"]
    sim = ex["data-weekly"]
    w("## 5. Cost per data-weekly run\n")
    w("**Counted from real local executions.** State transitions = states entered + retries (each retry is billed as a")
    w("transition); Lambda invocations = `LambdaFunctionScheduled` events.\n")
    w("| local execution | status | wall s | history events | states entered | retries | state transitions | Lambda invocations |")
    w("|---|---|---|---|---|---|---|---|")
    for name, e in ex.items():
        w(f"| {name} (mode {e['mode']}) | {e['status']} | {e['wall_seconds']:.0f} | {e['history_events']} | {e['states_entered']} | {e['retries']} | {e['state_transitions']} | {e['lambda_invocations']} |")
    w("")
    w(f"The data-weekly execution ran the real generated state machine (`spotstep asl jobs/data-weekly --local`) with each")
    w(f"step script replaced by a `sleep` of its stated production duration scaled down ({sim['wall_seconds']:.0f} s for the whole")
    w("run). Its path is the production path (same definition shape); only the number of polls differs, so the production")
    w("model keeps every counted state and replaces the poll retries with those of the **production** poll policy")
    w("(`spotstep asl jobs/data-weekly`: each `<step>: poll` retries `StillRunning` with IntervalSeconds/BackoffRate/")
    w("MaxDelaySeconds) for the stated durations, and the agent-wait retries with those for the assumed agent start-up.\n")
    check = r.get("local_poll_model_check", [])
    if check:
        w("The poll model checked against the local run (local policy, each command's real duration): " + ", ".join(
            f"{c['step']} {c['observed_polls']} observed / {c['predicted_polls']} predicted" for c in check) + ".\n")
    w("| step | stated duration | poll policy (interval, rate, cap) | polls | detection lag as modeled |")
    w("|---|---|---|---|---|")
    for s in cost["steps"]:
        p = s["policy"]
        w(f"| {s['step']} | {s['minutes']} min | {p['interval']} s, ×{p['rate']}, ≤{p['cap']} s | {s['polls']} | {s['detection_lag_seconds']:.0f} s |")
    w("")
    u = cost["usd"]
    w(f"| production data-weekly run ({cost['run_seconds'] / 3600:.2f} h of instance) | count | USD |")
    w("|---|---|---|")
    w(f"| Step Functions Standard state transitions | {cost['state_transitions']} | {usd(u['step_functions'])} |")
    w(f"| Lambda requests | {cost['lambda_invocations']} | {usd(u['lambda_requests'])} |")
    w(f"| Lambda duration (arm64, {a['lambda_memory_mb']} MB, {a['lambda_billed_ms_per_invocation']} ms billed per invocation + {a['lambda_cold_starts_per_run']} cold inits) | | {usd(u['lambda_duration'])} |")
    w(f"| **orchestration total** | | **{usd(u['orchestration'])}** |")
    w(f"| spot {a['spot_instance_type']} at ${a['spot_price_per_hour']}/h (assumed) | {cost['run_seconds'] / 3600:.2f} h | **{usd(u['spot_instance'])}** |")
    w(f"| (for scale) root volume {a['root_volume_gb']} GB gp3 | | {usd(u['root_volume'])} |")
    w(f"| (for scale) the same hours on demand at ${a['on_demand_price_per_hour']}/h | | {usd(u['on_demand_instance'])} |")
    w(f"| **orchestration ÷ spot instance** | | **{cost['orchestration_over_instance'] * 100:.1f}%** |")
    w("")
    sfn_share = u["step_functions"] / u["orchestration"] * 100
    w(f"Step Functions transitions are {sfn_share:.0f}% of the orchestration cost; Lambda is small because each call is short")
    w(f"and the functions fit in {a['lambda_memory_mb']} MB. Prices (us-east-1, published): Step Functions Standard "
      f"${prices['sfn_standard_per_transition'] * 1000:.3f} per 1,000 transitions")
    w(f"(aws.amazon.com/step-functions/pricing); Lambda arm64 ${prices['lambda_arm64_per_gb_second']:.10f} per GB-s and "
      f"${prices['lambda_per_request'] * 1e6:.2f} per 1M requests (aws.amazon.com/lambda/pricing); free tiers ignored.")
    w(f"Assumptions: spot {a['spot_instance_type']} ${a['spot_price_per_hour']}/h (about 40% of its ${a['on_demand_price_per_hour']}/h on-demand price, the usual")
    w("us-east-1 level in the EC2 spot price history; rerun with `--spot-price` for today's); launch "
      f"{a['launch_seconds']} s and agent online {a['agent_online_seconds']} s after launch; {a['lambda_billed_ms_per_invocation']} ms billed per invocation (in-region API")
    w("calls; the local handler latencies above are lower), and init billed on one cold start per function.\n")
    w("**The same run under other polling policies**, and with event-driven completion:\n")
    w("| policy | transitions | invocations | orchestration | ÷ spot instance | worst-case detection | data-weekly steps' detection as modeled |")
    w("|---|---|---|---|---|---|---|")
    for alt in cost["alternatives"]:
        worst = f"{alt['worst_detection_seconds']} s" if alt["worst_detection_seconds"] else "seconds (event delivery)"
        modeled = ", ".join(f"{x:.0f}" for x in alt["modeled_detection_seconds"]) + " s" if alt["modeled_detection_seconds"] else "–"
        w(f"| {alt['policy']} | {alt['transitions']} | {alt['invocations']} | {usd(alt['orchestration_usd'])} | {alt['ratio'] * 100:.1f}% | {worst} | {modeled} |")
    w("")

    # -- detection
    w("## 6. Detection latency\n")
    w("From the SSM agent emulation's end of a step's command (`CommandRun.ended`) to the `<step>: poll` state's exit in the")
    w("execution history (the state machine moving on), in the local executions (local policy: polls 1 s, ×1.5, ≤2 s):\n")
    w("| execution | step | command s | polls | detection s |")
    w("|---|---|---|---|---|")
    for name, e in ex.items():
        for d in e["detection"]:
            w(f"| {name} | {d['step']} | {d['command_seconds']:.1f} | {d['polls']} | {d['detection_seconds']:.2f} |")
    w("")
    worst = max(s["policy"]["cap"] for s in cost["steps"])
    w(f"In production the poll interval grows from {cost['steps'][0]['policy']['interval']} s by ×{cost['steps'][0]['policy']['rate']} to its cap of {worst} s,")
    w(f"so a step that ends just after a poll is noticed up to **{worst} s** later (about {worst / 2:.0f} s on average once")
    w("the cap is reached); the modeled lags of the data-weekly steps are in the step table above.\n")

    # -- misses
    w("## Misses: what dominates and what would fix it\n")
    if not missed:
        w("Every target is met.\n")
    for row in missed:
        t = row["target"]
        w(f"**{t}** — {row['measured']}.\n")
        if t.startswith("init <"):
            slow = max(rust(r), key=lambda n: init[n]["init_ms"]["median"])
            w(f"The Rust init is CPU-bound ({slow}: {f1(init[slow]['cpu_ms']['median'])} ms of CPU): exec and dynamic loading, the")
            w("SDK config and clients, and above all the TLS root store the default HTTPS client loads (section 1's breakdown).")
            w("Under this machine's load (other builds) wall time exceeds CPU time. Fixes: compiled-in roots (`webpki-roots`)")
            w("through a custom HTTPS client, or `SSL_CERT_DIR` narrowed to the bundle, or building the HTTP client lazily on")
            w("the first AWS call.\n")
        elif t.startswith("init ≥"):
            w("The Python baseline is measured with the same harness; a ratio below target means either the Rust init is")
            w("slow (see above) or the baseline is fast on this machine (warm page cache, precompiled .pyc).\n")
        elif t.startswith("each zip"):
            w("The zip is dominated by the four AWS SDK crates and the TLS stack (aws-lc). Fixes: `opt-level = \"z\"`, fewer")
            w("SDK features per function (each function links only the clients it uses), or a shared Lambda layer.\n")
        elif t.startswith("peak memory"):
            w("Memory is dominated by the SDK clients' connection pools and the TLS state; 128 MB still suffices if peak")
            w("stays under it. Fix: build only the clients a function uses.\n")
        elif t.startswith("orchestration cost"):
            polls = sum(s["polls"] for s in cost["steps"])
            w(f"**Polling dominates.** {polls} of the {cost['state_transitions']} transitions are polls of the five long steps: Step")
            w(f"Functions bills every retry as a transition, and the poll cap keeps them coming every {worst // 60 if worst >= 60 else worst} {'minutes' if worst >= 120 else ('minute' if worst == 60 else 's')} through {sum(st['minutes'] for st in cost['steps'])} minutes")
            w(f"of steps. The instance itself is cheap (~{usd(u['spot_instance'])} for the run), so 1% is only "
              f"~{usd(u['spot_instance'] / 100)}, about {int(u['spot_instance'] / 100 / prices['sfn_standard_per_transition'])} transitions. A longer cap trades cost")
            longest = cost["alternatives"][-2]
            w(f"against detection latency (table above) and cannot meet both targets: even at {longest['worst_detection_seconds']} s the ratio is still")
            w(f"{longest['ratio'] * 100:.1f}% and detection takes up to {longest['worst_detection_seconds'] // 60} minutes. **What fixes both: event-driven completion.** `<step>: send` becomes a")
            w("`.waitForTaskToken` task (send-step keeps the token with the command, e.g. an S3 object keyed by the command id), and an")
            w("EventBridge rule on `EC2 Command Invocation Status-change Notification` (source `aws.ssm`) invokes a small")
            w("function that calls `SendTaskSuccess`/`SendTaskFailure` (poll-result's classification, reused). A long step then")
            ev = cost["alternatives"][-1]
            w(f"costs ~2 transitions instead of ~{max(st['polls'] for st in cost['steps'])}, and is noticed within seconds: the whole run {ev['transitions']} transitions,")
            w(f"{ev['ratio'] * 100:.1f}% of the instance (last row of the policy table). The safety nets need no polling: the waiting")
            w("state's `TimeoutSeconds` (the step's timeout plus a margin) and an EventBridge rule on the instance's state change")
            w("(terminated: fail the token with `InstanceLost`/`InstanceReclaimed`); a slow poll every 15 minutes on top would")
            w("add ~12 transitions (~0.3%).\n")
        elif t.startswith("detection latency < 30 s (production"):
            c30 = next((x for x in cost["alternatives"] if x["worst_detection_seconds"] == 30), None)
            if c30:
                w(f"The production poll cap ({worst} s) bounds detection. Capping it at 30 s would meet this target but cost")
                w(f"{c30['transitions']} transitions instead of {cost['state_transitions']} ({c30['ratio'] * 100:.1f}% of the instance, policy table).")
            w("The event-driven completion described above meets both targets.\n")
        elif t.startswith("detection latency"):
            w("Local detection is bounded by the local poll cap (2 s) plus the emulator's Lambda round trips.\n")

    # -- notes
    w("## Method notes\n")
    w("- Everything runs in one process tree on this machine: the local stack (moto's server in a thread, the SSM agent")
    w("  emulation, a front door), the benchmark's own Runtime API endpoints (Python `http.server`, HTTP/1.1 keep-alive),")
    w("  the functions under test. The endpoint's own overhead (a thread hand-off, ~0.1 ms) is in every number, Rust and")
    w("  Python alike.")
    w("- The Python baseline (`bench/python_poll_result/`) is poll-result's behaviour in boto3 — the same calls, the same")
    w("  classification, errors, success record and 40-line S3 tail — run under `bootstrap.py`, a Runtime API client that")
    w("  does what the AWS Python runtime client does (import the handler at init, then `next`/`response`/`error`).")
    w(f"  It runs on this machine's Python {m['python']} with boto3 {m['boto3']}.")
    w("- The data-weekly execution uses a copy of `jobs/data-weekly/job.toml` in a temporary folder whose step scripts")
    w("  are `sleep`s; the repository's job is not touched. Both executions run on the stack's own Lambda service")
    w("  (`local/spotstep_local/lambdas.py`) with the release binaries.")
    w("- Peak memory is the process's resident high-water mark; Lambda's `Max Memory Used` also counts the runtime's own")
    w("  share, so allow a few MB.")
    w("- Cold starts in AWS add the sandbox and code download (not measured here; a larger zip costs more there).")
    w(f"- Raw samples: `bench/results.json` (init samples per function, per-state counts of each execution).\n")

    w("## CI\n")
    w("`scripts/bench.sh --quick` (debug binaries, 5 runs each, a data-weekly execution with 0.05 s per production")
    w("minute, no demo run) checks that every measurement runs and that the Rust and Python poll-results answer alike;")
    w("it asserts nothing about absolute time. It is not wired into CI yet.\n")
    return "\n".join(out)


if __name__ == "__main__":
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "results.json")
    with open(path) as f:
        results = json.load(f)
    with open(os.path.join(REPO, "BENCHMARKS.md"), "w") as f:
        f.write(markdown(results))
    print(summary(results))
