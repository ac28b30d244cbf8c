"""Renders the benchmark's results: the console summaries, the sanity checks, and BENCHMARKS.md.

    .local/emu/bin/python bench/report.py [bench/results.json [bench/events.json]]

BENCHMARKS.md is made from two files: `bench/results.json` (scripts/bench.sh: init, latency,
memory, sizes) and `bench/events.json` (scripts/bench-events.sh: detection on the event path
and the cost model of both designs). Every number on the page comes from them, so a rerun of
either regenerates the whole page, including which targets are met.
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
    "transitions": 30,
    "step_end_p95_s": 5.0,
    "reclaim_s": 5.0,
}


def cost_of(r: dict, ev: dict = None) -> dict:
    """The cost model of both designs (bench/cost.py): from the event benchmark when given,
    else from a results file of today's bench.py."""
    cost = (ev or {}).get("cost") or r.get("cost")
    if not cost or "token" not in cost:
        raise ValueError("no cost model of both designs: run scripts/bench-events.sh (bench/events.json)")
    return cost


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


def verdicts(r: dict, ev: dict = None) -> list:
    """(target, measured, met) rows; met None: no target, for the record."""
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
    rows = [
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
    ]
    return rows + event_verdicts(cost_of(r, ev), ev)


def event_verdicts(cost: dict, ev: dict = None) -> list:
    """The rows of the token design (the definitions today), the polling design's figure beside
    each."""
    t, p = cost["token"], cost["polling"]
    free = cost["free_tier_transitions_per_month"]
    runs = cost["runs_per_month_in_free_tier"]
    cap = max(st["policy"]["cap"] for st in cost["steps"])
    rows = [
        {
            "target": "orchestration cost < 1% of the instance (data-weekly run)",
            "measured": f"token design: {usd(t['usd']['orchestration'])} vs {usd(t['usd']['spot_instance'])} = {t['orchestration_over_instance'] * 100:.2f}% "
                        f"(polling design: {usd(p['usd']['orchestration'])} = {p['orchestration_over_instance'] * 100:.1f}%)",
            "met": t["orchestration_over_instance"] < TARGETS["cost_ratio"],
        },
        {
            "target": f"transitions per data-weekly full run ≤ {TARGETS['transitions']}",
            "measured": f"token design: {t['state_transitions']}, so {runs['token']} runs a month within the free tier of {free:,} transitions "
                        f"(polling design: {p['state_transitions']}, {runs['polling']} runs a month)",
            "met": t["state_transitions"] <= TARGETS["transitions"],
        },
        {
            "target": "Lambda invocations per data-weekly full run",
            "measured": f"token design: {t['lambda_invocations']} ({t['invocations_by_function']['states']} by states, {t['told_events']} events, "
                        f"{t['reconciler_ticks']} reconciler ticks) (polling design: {p['lambda_invocations']}, of which {p['invocations_by_function']['poll-result (poll states)']} polls)",
            "met": None,
        },
    ]
    if ev:
        se = ev["step_end_detection"]["all"]
        rc = ev["reclaim_detection"]
        worst_rc = max(rc["to_relaunch_clean_up"]["p95"], rc["to_resume_here"]["p95"])
        rows += [
            {
                "target": f"step-end detection p95 ≤ {TARGETS['step_end_p95_s']:.0f} s (local stage, production logic)",
                "measured": f"token design: p95 {f2(se['p95'])} s (p50 {f2(se['p50'])} s, max {f2(se['max'])} s) over {se['n']} step ends, "
                            "plus EventBridge's delivery in AWS (not measurable here) "
                            f"(polling design: up to {cap} s, data-weekly steps as modeled up to {max(p['detection_lag_seconds']):.0f} s)",
                "met": se["p95"] <= TARGETS["step_end_p95_s"],
            },
            {
                "target": f"reclaim detection ≤ {TARGETS['reclaim_s']:.0f} s",
                "measured": f"token design, warning → `{reclaim_state(rc, 'to_relaunch_clean_up')}`: p95 {f2(rc['to_relaunch_clean_up']['p95'])} s (max {f2(rc['to_relaunch_clean_up']['max'])} s), "
                            f"→ `{reclaim_state(rc, 'to_resume_here')}` p95 {f2(rc['to_resume_here']['p95'])} s, over {rc['to_relaunch_clean_up']['n']} reclaims "
                            f"(polling design: the next poll, up to {cap} s)",
                "met": worst_rc <= TARGETS["reclaim_s"],
            },
        ]
    return rows


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
    for design in ("token", "polling"):
        d = c[design]
        lines.append(
            f"data-weekly, {design} design: {d['state_transitions']} transitions, {d['lambda_invocations']} invocations, orchestration "
            f"{usd(d['usd']['orchestration'])} vs spot {usd(d['usd']['spot_instance'])} ({d['orchestration_over_instance'] * 100:.2f}%)"
        )
    for name, ex in r["executions"].items():
        lines.append(f"step-end detection {name}: " + ", ".join(f"{d['step']} {d['detection_seconds']:.2f}s" for d in ex["detection"]))
    if not r["quick"]:
        for v in verdicts(r):
            verdict = "----" if v["met"] is None else ("met" if v["met"] else "MISSED")
            lines.append(f"[{verdict}] {v['target']}: {v['measured']}")
    lines.append(f"elapsed {r['elapsed_seconds']:.0f}s")
    return "\n".join(lines)


def reclaim_state(rc: dict, key: str) -> str:
    """The state name a reclaim detection is measured to (recorded by bench/events.py)."""
    return rc.get("states", {}).get(key, key.replace("to_", "").replace("_", " "))


def events_summary(e: dict) -> str:
    """The console summary of bench/events.json (bench/events.py)."""
    se, rc, c = e["step_end_detection"]["all"], e["reclaim_detection"], e["cost"]
    t, p = c["token"], c["polling"]
    lines = ["", f"spotstep event-path benchmark ({e['profile']} binaries{', quick' if e['quick'] else ''}), {len(e['runs'])} local runs"]
    lines.append(f"step-end detection s over {se['n']} step ends: p50 {f2(se.get('p50'))}, p95 {f2(se.get('p95'))}, max {f2(se.get('max'))}")
    for key in ("to_resume_here", "to_relaunch_clean_up"):
        x, label = rc[key], reclaim_state(rc, key)
        lines.append(f"reclaim detection s (warning -> {label}) over {x['n']}: p50 {f2(x.get('p50'))}, p95 {f2(x.get('p95'))}, max {f2(x.get('max'))}")
    lines.append(f"data-weekly full run, token design: {t['state_transitions']} transitions, {t['lambda_invocations']} invocations "
                 f"({t['told_events']} events + {t['reconciler_ticks']} reconciler ticks), orchestration {usd(t['usd']['orchestration'])} "
                 f"= {t['orchestration_over_instance'] * 100:.2f}% of the instance")
    lines.append(f"data-weekly full run, polling design: {p['state_transitions']} transitions, {p['lambda_invocations']} invocations, "
                 f"orchestration {usd(p['usd']['orchestration'])} = {p['orchestration_over_instance'] * 100:.2f}% of the instance")
    lines.append(f"elapsed {e['elapsed_seconds']:.0f}s")
    return "\n".join(lines)


def measured(name: str):
    """bench/<name>.json, the output of the benchmark that writes it (see each module), or None
    when it was never run."""
    path = os.path.join(HERE, f"{name}.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


SAM_BUILD_MINUTES = 12


def gap(row: dict, key: str, digits: int) -> str:
    return "not measured" if row.get(key) is None else f"{row[key]:+.{digits}f}"


def profiles_table(p: dict) -> list:
    """The release profile's choices, side by side."""
    out = [f"**The release profile's choices** (`{p['command']}`, {p['machine']['date_utc']}, commit {p['machine']['git_head']},"
           f" {p['machine']['nproc']} cores {p['machine']['arch']}): each on a fresh target directory, the five deployed functions"
           " built in release (native here: the arm64 cross build does the same rustc work and links with zig), their"
           " largest bootstrap and zip, and init against hello in the same run (bench/coldstart.py, one run). The load"
           " average before and after each build says whether the cores were shared:\n",
           "| LTO | codegen units | build wall s | build CPU s | largest bootstrap MiB | largest zip MiB | largest init gap ms | init + first over hello ms | loadavg before / after |",
           "|---|---|---|---|---|---|---|---|---|"]
    for row in p["rows"]:
        boot = max(f["bootstrap_bytes"] for f in row["functions"].values()) / 2**20
        zipped = max(f["zip_bytes"] for f in row["functions"].values()) / 2**20
        out.append(f"| {row['lto']} | {row['codegen_units']} | {row['build_wall_seconds']:.0f} | {row['build_cpu_seconds']:.0f}"
                   f" | {boot:.2f} | {zipped:.2f} | {gap(row, 'init_gap_ms', 2)} | {gap(row, 'init_plus_first_gap_ms', 1)}"
                   f" | {row['loadavg_before'][0]:.1f} / {row['loadavg_after'][0]:.1f} |")
    out.append("")
    if p.get("note"):
        out.append(p["note"] + "\n")
    ref = p.get("reference")
    if ref:
        out.append(f"Before the SDK crates' own setting ({ref['what']}): {ref['build_wall_seconds']:.0f} s wall,"
                   f" {ref['build_cpu_seconds']:.0f} s CPU, of which `aws-sdk-ec2` {ref['ec2_seconds']:.0f} s alone on one core"
                   f" and the five LTO links {ref['links_seconds']:.0f} s; with it, the same build's `aws-sdk-ec2` took"
                   f" {ref['ec2_seconds_after']:.0f} s. Source: {ref['source']}.\n")
    return out


def checkpoint_targets(c: dict) -> list:
    """The work-redone targets (issue 18) of a checkpoint.json."""
    v = c["verdict"]
    return [
        {
            "target": "work redone per reclaim with the spot warning at most 10 s (jobs/train)",
            "measured": f"max {v['warned_max_s']:.1f} s ([Work redone per reclaim](#work-redone-per-reclaim))",
            "met": v["warned_ok"] and v["same_result"],
        },
        {
            "target": "work redone per reclaim without a warning at most every_seconds + one epoch",
            "measured": f"max {v['unwarned_max_s']:.1f} s (bound {v['unwarned_bound_s']:.1f} s)",
            "met": v["unwarned_ok"] and v["same_result"],
        },
    ]


def checkpoint_section(c: dict) -> list:
    """The section on work redone per reclaim."""
    from checkpoint import table

    m = c["machine"]
    return [
        "## Work redone per reclaim\n",
        f"`{c['command']}` on {m['date_utc']} at commit {m.get('git_head')}: the `{c['job']}` job's state machine on the"
        f" local stage (checkpoint uploads every {c['every_seconds']} s, grace capped at 3 s, the metadata notice polled"
        f" every 1 s; epochs of {c['epoch_seconds']:.1f} s), its `train` step reclaimed once per run at"
        f" {', '.join(sorted({str(r['reclaim_after_s']) for r in c['runs']}))} s after its send. With the warning the"
        f" notice appears in the instance's metadata {c['reclaim_lead_seconds']:.0f} s before the termination; without it"
        " the instance just goes. Work redone = the step's progress before the reclaim minus the progress it resumed"
        " from, in seconds of work; a restart from zero (SkyPilot's default) redoes all of it. Every run ended with the"
        " uninterrupted run's final weights" + ("." if c["verdict"]["same_result"] else ": **not all did**."),
        "",
        table(c),
        "",
        "In AWS the warning is two minutes and `every_seconds` the manifest's (300 s for `jobs/train`): without a notice"
        " a reclaim there costs up to 300 s plus one epoch, against everything since the start for a restart from zero.\n",
    ]


# The sweep's wall time may exceed its ideal by at most this share (issue 17).
FANOUT_WALL_TARGET = 1.15


def fanout_summary(fo: dict) -> str:
    """The console summary of bench/fanout.json."""
    return (
        f"fanout: {fo['shards']} shards on {fo['lanes']} lanes: sweep {fo['wall_seconds']:.1f} s, ideal "
        f"{fo['ideal_seconds']:.1f} s (x{fo['ratio']:.2f}); {fo['transitions_per_shard']:.1f} transitions and "
        f"{fo['invocations_per_shard']:.1f} invocations per shard; {fo['launches']} launches; "
        f"{fo['priced']['shards']} shards on {fo['priced']['instances']} instances: {usd(fo['priced']['usd'])}"
    )


def fanout_section(fo: dict) -> list:
    """The fan-out section's lines (bench/fanout.json)."""
    s, p = fo["settings"], fo["priced"]
    met = fo["ratio"] <= FANOUT_WALL_TARGET
    return [
        "## 7. Fan-out sweep\n",
        f"`bench/fanout.py` (`.local/emu/bin/python bench/fanout.py --shards {s['shards']} --instances {s['instances']} "
        f"--seconds-scale {s['seconds_scale']}`, debug binaries, ~{fo['elapsed_seconds'] / 60:.0f} min): one execution of",
        "`jobs/backtest` on the local stage, its shards of uneven length (1, 2 or 3 s times the scale).\n",
        "| measure | value |",
        "|---|---|",
        f"| shards / lanes (instances at once) | {fo['shards']} / {fo['lanes']} |",
        f"| shard command times | {fo['shard_seconds_min']:.1f}-{fo['shard_seconds_max']:.1f} s, {fo['shard_seconds_sum']:.1f} s in all |",
        f"| one lane's boot and setup (the median lane, from the Map's start to its first shard's send) | {fo['boot_setup_seconds']:.1f} s |",
        f"| ideal: sum / lanes + boot and setup | {fo['ideal_seconds']:.1f} s |",
        f"| sweep wall time (the Map state) | {fo['wall_seconds']:.1f} s: x{fo['ratio']:.2f} the ideal "
        f"({'within' if met else 'NOT within'} {FANOUT_WALL_TARGET - 1:.0%}) |",
        f"| launches in the whole run (no reclaim; lane 0 runs on the run's instance) | {fo['launches']} = min(instances, shards) |",
        f"| SSM commands of the sweep | {fo['commands']} (one per shard) |",
        f"| transitions per shard / per lane | {fo['transitions_per_shard']:.1f} / {fo['transitions_per_lane']:.1f} |",
        f"| Lambda invocations per shard / per lane | {fo['invocations_per_shard']:.1f} / {fo['invocations_per_lane']:.1f} |",
        f"| history events (per shard, whole run) | {fo['history_events']} ({fo['events_per_shard']:.1f}) |",
        f"| orchestration cost of {p['shards']} shards on {p['instances']} instances | {p['transitions']} transitions "
        f"{usd(p['sfn_usd'])} + {p['invocations']} invocations {usd(p['lambda_usd'])} = **{usd(p['usd'])}** |",
        "",
        "Per shard: `next shard` (a poll-result invocation), `shard left?`, `send shard` (a send-step invocation; the",
        "wait itself makes no transition). Every lane but lane 0 (which adopts the run's instance) has its launch, agent wait",
        "(and its retries), setup sends; every lane its last `next shard`, `end`. The cost extrapolates the run's fixed,",
        "per-shard and per-lane counts with bench/cost.py's prices (Lambda at its assumed billed duration); the instances'",
        "own cost is apart.",
        f"Where the rest of the wall time goes: {fo['gap_seconds_mean']:.2f} s on average (at most {fo['gap_seconds_max']:.2f} s)",
        "between a shard's end and its lane's next send (SSM's event, poll-result, `next shard`, send-step); lanes ending",
        f"after the Map's last shard by {', '.join(f'{x:.1f}' for x in fo['tail_seconds'])} s (the uneven tail: no lane takes a",
        f"shard another holds); load average {fo['machine']['loadavg_end'][0]:.1f} on {fo['machine']['nproc']} cores at the end.\n",
        f"**Target (issue 17): the sweep within {FANOUT_WALL_TARGET - 1:.0%} of the ideal: {'met' if met else 'not met'}** "
        "(not in the Targets table above, which holds the Lambda and detection targets)."
        + ("" if met else " What dominates: the uneven tail (a lane that finishes early idles while the others run their"
           " last shards) and the per-shard dispatch on a loaded machine. What would fix it: a weight per shard item so"
           " `next shard` hands out the longest first, and fewer S3 round trips in `next shard` (one listing of"
           " claims and done marks under one prefix).")
        + "\n",
    ]


def markdown(r: dict, ev: dict = None) -> str:
    """The page: sections 1-4 from `r` (bench/results.json), the cost and detection sections and
    their targets from `ev` (bench/events.json) when given, else from `r`."""
    m = r["machine"]
    init = r["init"]["functions"]
    lat = r["latency"]
    mem = r["memory"]["functions"]
    cost = cost_of(r, ev)
    a = r["assumptions"]
    prices = (ev or r)["prices"]
    py_init = init[PY]["init_ms"]["median"]
    build = main_build(r)
    arch = "/".join(build["arch"])
    v = verdicts(r, ev)
    # Sections 1-4 measured with the polling design's poll-result input (before the token
    # definitions): their Python comparison is of that shape.
    old_shape = "poll-result running" in lat["scenarios"]
    out = []
    w = out.append

    w("# Benchmarks\n")
    w("How fast the spotstep functions start, how much memory they take, how big they are, what a weekly")
    w("run costs, and how quickly a finished step and a spot reclaim are noticed, measured against a Python/boto3")
    w("baseline of poll-result in the same run by the same harness.\n")
    w("**Rerun with one command each:**\n")
    w("```sh\nscripts/bench.sh            # sections 1-4: release build, init, latency, memory, sizes (bench/results.json)")
    w("scripts/bench.sh --quick    # smoke version: debug binaries, few runs, no absolute-time asserts")
    w("scripts/bench-events.sh     # the targets' cost and detection rows, sections 5-6: the event path on the local")
    w("                            # stage, debug binaries (bench/events.json), ~5 min\n```\n")
    w(f"Sections 1–4 were generated by `{r['command']}` on {m['date_utc']} at commit {m.get('git_head')}"
      + (", with the **polling design's** poll-result input (`<step>: poll` with the command in its input; the token"
         " definitions came after): they are kept as measured then." if old_shape else "."))
    if ev:
        w(f"The cost and detection rows and sections 5–6 were generated by `{ev['command']}` on {ev['date_utc']} at commit"
          f" {ev['git_head']} ({ev['git_modified_files']} files modified or untracked), with `target/{ev['profile']}` binaries:"
          " the production logic (the same code in every profile) on the local stage.")
    w("All of it, the targets' verdicts included, is produced by `bench/report.py` from those two files: edit the generator, not this page.\n")

    w("## Targets\n")
    w("| target | measured | |")
    w("|---|---|---|")
    cold = measured("coldstart")
    if cold:
        from coldstart import TARGET_FIRST_GAP_MS, TARGET_GAP_MS, repeats

        runs = repeats(cold)
        worst = max((r["verdict"] for r in runs), key=lambda cv: cv["max_gap_ms"])
        first = max(r["verdict"]["first_gap_ms"] for r in runs)
        v.append({
            "target": f"init within {TARGET_GAP_MS:.0f} ms of a bare `lambda_runtime` hello binary, and init + first invocation"
                      f" within {TARGET_FIRST_GAP_MS:.0f} ms of hello's init (release, same run, {len(runs)} runs in a row)",
            "measured": f"largest init gap {worst['worst']} {worst['max_gap_ms']:+.2f} ms; init + first {first:+.1f} ms over hello"
                        " ([Init against hello](#init-against-a-bare-lambda_runtime-hello))",
            "met": all(r["verdict"]["met"] for r in runs),
        })
    sam = measured("sam-build")
    if sam:
        largest = max(f["zip_bytes"] for f in sam["functions"].values()) / 2**20
        v.append({
            "target": f"`sam build` from a fresh clone at most {SAM_BUILD_MINUTES} min on 2 cores, each zip at most 4 MiB (arm64)",
            "measured": f"{sam['wall_seconds'] / 60:.1f} min at {sam['commit']}, largest zip {largest:.2f} MiB ([Sizes](#4-sizes))",
            "met": sam["wall_seconds"] <= SAM_BUILD_MINUTES * 60 and largest <= 4,
        })
    ckpt = measured("checkpoint")
    if ckpt:
        v.extend(checkpoint_targets(ckpt))
    for row in v:
        verdict = "–" if row["met"] is None else ("met" if row["met"] else "**missed**")
        w(f"| {row['target']} | {row['measured']} | {verdict} |")
    w("")
    missed = [row for row in v if row["met"] is False]
    if missed:
        w("Where a target is missed, [Misses: what dominates and what would fix it](#misses-what-dominates-and-what-would-fix-it) says why.\n")
    w("What the local stage cannot show: EventBridge's own delivery latency (AWS publishes no figure for it), how soon SSM")
    w("emits its status-change event after a command ends, and when EC2 sends a spot interruption warning (nominally two")
    w("minutes before the reclaim). The detection rows measure spotstep's own path from the moment an event is sent; in")
    w("AWS each detection is that plus EventBridge's delivery.\n")

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
        w(f"So about {full - least:.0f} ms of the {full:.0f} ms was the root store; the rest is exec and dynamic loading, the")
        w("SDK config and client construction, the log subscriber and the runtime's first request. (Measured with the")
        w("system store; since issue 20 the functions trust the Amazon Trust Services roots compiled in and load the SDK")
        w("configuration on first use: see [Init against hello](#init-against-a-bare-lambda_runtime-hello).)\n")
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
    if cold:
        from coldstart import repeats, summary, table

        w("### Init against a bare lambda_runtime hello\n")
        w(f"`{cold['command']}` (`scripts/bench-coldstart.sh`), {cold['machine']['date_utc']}, commit {cold['machine'].get('git_head')}:"
          f" {cold['method']}. {cold.get('design', '')} Whole measurements in a row, each against both targets:\n")
        w(summary(cold) + "\n")
        w("The last of them:\n")
        w(table(repeats(cold)[-1]) + "\n")

    w("## 2. Handler latency (warm)\n")
    w(f"Warm processes on the benchmark's Runtime API endpoint, against the local emulated AWS (moto + the SSM agent")
    w(f"emulation, `local/spotstep_local`), on a real launched instance with real commands. {lat['n']} invocations per")
    if old_shape:
        w("scenario after 3 warm-up calls; Rust and Python poll-result alternate call by call on the same events (the polling")
        w("design's input, the command in it). Time is from handing the event to the waiting `GET /next` to the function's")
        w("`POST .../response|error`.\n")
    else:
        w("scenario after warm-up calls. Time is from handing the event to the waiting `GET /next` to the function's")
        w("`POST .../response|error`. Rust and the Python baseline alternate call by call on the same inputs of the one shape")
        w("the baseline has: the fallback `<step>: poll` state (`{run, job, instance, step}`: the run's send markers listed and")
        w("read from S3, the latest of the step classified). Told by a command's end (the main path today), poll-result is")
        w("timed for Rust only; the benchmark's task token is no live one, so SendTaskSuccess/Failure is answered")
        w("`InvalidToken` (a live token adds one S3 PutObject, the marker's answer).\n")
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
    if old_shape:
        w(f"history, chained like a run (launch → wait-online → send-step → poll-result → cleanup end-of-run);")
    else:
        w(f"history, chained like a run (launch → wait-online → send-step → poll-result told by the command's end event, then")
        w("as the fallback poll state, Rust and Python → cleanup end-of-run);")
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
    sam = measured("sam-build")
    if sam:
        minutes, seconds = divmod(round(sam["wall_seconds"]), 60)
        w(f"**arm64, as deployed** (`sam build` on a fresh clone at {sam['commit']}, {sam['machine']['cpus']} cores "
          f"{sam['machine']['arch']}: {sam.get('build', 'one `cargo lambda build --release --arm64 --workspace`')} for all five functions, "
          f"**{minutes} min {seconds} s** wall; `scripts/bench-sam-build.sh`)"
          + (f"; measured while {sam['conditions']}" if sam.get("conditions") else "")
          + (f"; load average {sam['loadavg']['start'][0]:.1f} at the start, {sam['loadavg']['end'][0]:.1f} at the end"
             if sam.get("loadavg") else "") + ":\n")
        w("| function | ELF machine | loaded as | bootstrap MiB | zip MiB |")
        w("|---|---|---|---|---|")
        for logical, f in sam["functions"].items():
            w(f"| {logical} | {f['arch']} | {f.get('kind', 'PIE')} | {f['bootstrap_bytes'] / 2**20:.2f} | {f['zip_bytes'] / 2**20:.2f} |")
        w("")
    prof = measured("profiles")
    if prof:
        out.extend(profiles_table(prof))
    elif not any(b["arch"] == ["arm64"] for b in r["sizes"]["builds"]):
        w("These are **x86_64** builds (this machine). arm64 (what the template deploys, `cargo lambda build --release")
        w("--arm64`) was not built in this run; expect sizes within ~10–20% of these (the same code and dependencies).\n")
    w(f"The Python baseline's own zip is {r['sizes']['python_zip_bytes'] / 1024:.1f} KiB, because boto3 (~{'10'}+ MB unpacked)")
    w("comes with Lambda's Python runtime; it is not a like-for-like size comparison.\n")

    # -- cost
    w("## 5. Cost per data-weekly run\n")
    t, p = cost["token"], cost["polling"]
    if ev:
        w(f"**Counted from real local executions** of the token definitions (`spotstep asl <job> --local`) on the local stage,")
        w(f"the data-weekly job with each step script replaced by a `sleep` of its stated production duration scaled to")
        w(f"{ev['seconds_per_production_minute']} s per minute. State transitions = states entered + retries (each retry is billed);")
        w("invocations by states = `LambdaFunctionScheduled` plus the waiting send states' `TaskScheduled`; events = what the")
        w("stage's EventBridge delivered to poll-result about the execution's instances.\n")
        w("| local execution | status | wall s | states entered | retries | state transitions | invocations by states | events delivered |")
        w("|---|---|---|---|---|---|---|---|")
        for run in ev["runs"]:
            if run["kind"] in ("data-weekly", "demo", "demo-failing"):
                w(f"| {run['job']} (mode {run['mode']}) | {run['status']} | {run['wall_seconds']:.0f} | {run['states_entered']} | {run['retries']} | "
                  f"{run['state_transitions']} | {run['lambda_invocations_by_states']} | {len(run['told'])} |")
        w("")
        same = "entered the same states" if cost.get("same_states_in_every_data_weekly_run") else "did **not** all enter the same states"
        w(f"The data-weekly runs {same}; the model uses the first ({cost['from_run']}). Its events: "
          + ", ".join(f"{k} {n}" for k, n in _count_by([x["detail_type"] for x in ev["runs"][0]["told"]]).items()) + ".\n")
    else:
        w("**Counted from the local executions of this run** (token definitions; invocations by states = `LambdaFunctionScheduled`")
        w("plus the waiting send states' `TaskScheduled`):\n")
        w("| local execution | status | wall s | states entered | retries | state transitions | invocations by states | events delivered |")
        w("|---|---|---|---|---|---|---|---|")
        for name, e in r["executions"].items():
            w(f"| {name} (mode {e['mode']}) | {e['status']} | {e['wall_seconds']:.0f} | {e['states_entered']} | {e['retries']} | "
              f"{e['state_transitions']} | {e['lambda_invocations']} | {e.get('told_events', '–')} |")
        w("")
    w("**Both designs, from the same run.** The production model keeps every state the local run entered, the agent wait's")
    w(f"retries for an agent online {a['agent_online_seconds']} s after launch, and the stated step durations:\n")
    w("- **token design** (the definitions today): each step's `<step>: send` waits on its task token: 1 transition and 1")
    w("  send-step invocation whatever the step's length; poll-result runs once per event EventBridge delivers (each command's")
    w(f"  end, the instance's state changes at the end: {t['told_events']}, as counted on the local run) and once per reconciler tick")
    w(f"  during the run: ceil(run seconds / {cost['reconciler_standing']['every_seconds']}) = {t['reconciler_ticks']} (the most ticks of a 5-minute schedule a run that long")
    w("  can overlap). Detection lag ~0 plus EventBridge's delivery;")
    w("- **polling design** (the definitions before): the same run plus one `<step>: poll` state per step, retried on")
    w("  `StillRunning` by the production schedule (`contract.timing(\"production\")[\"poll\"]`, the same Backoff the fallback poll")
    w("  has today), no events, no reconciler.\n")
    w("| step | stated duration | token design: transitions, lag | polling design: polls (interval, rate, cap), lag as modeled |")
    w("|---|---|---|---|")
    for st in cost["steps"]:
        pol = st["policy"]
        w(f"| {st['step']} | {st['minutes']} min | 1, ~0 s + delivery | {st['polls']} ({pol['interval']} s, ×{pol['rate']}, ≤{pol['cap']} s), {st['detection_lag_seconds']:.0f} s |")
    w("")
    tu, pu = t["usd"], p["usd"]
    w("| production data-weekly run | token design | polling design |")
    w("|---|---|---|")
    w(f"| hours of instance | {t['run_seconds'] / 3600:.2f} h | {p['run_seconds'] / 3600:.2f} h |")
    w(f"| Step Functions Standard state transitions | {t['state_transitions']}: {usd(tu['step_functions'])} | {p['state_transitions']}: {usd(pu['step_functions'])} |")
    w(f"| Lambda requests | {t['lambda_invocations']}: {usd(tu['lambda_requests'])} | {p['lambda_invocations']}: {usd(pu['lambda_requests'])} |")
    w(f"| Lambda duration (arm64, {a['lambda_memory_mb']} MB, {a['lambda_billed_ms_per_invocation']} ms billed per invocation + {a['lambda_cold_starts_per_run']} cold inits) | {usd(tu['lambda_duration'])} | {usd(pu['lambda_duration'])} |")
    w(f"| EventBridge Scheduler (reconciler ticks) | {t['reconciler_ticks']}: {usd(tu['scheduler'])} | – |")
    w(f"| **orchestration total** | **{usd(tu['orchestration'])}** | **{usd(pu['orchestration'])}** |")
    w(f"| spot {a['spot_instance_type']} at ${a['spot_price_per_hour']}/h (assumed) | **{usd(tu['spot_instance'])}** | **{usd(pu['spot_instance'])}** |")
    w(f"| (for scale) root volume {a['root_volume_gb']} GB gp3 | {usd(tu['root_volume'])} | {usd(pu['root_volume'])} |")
    w(f"| (for scale) the same hours on demand at ${a['on_demand_price_per_hour']}/h | {usd(tu['on_demand_instance'])} | {usd(pu['on_demand_instance'])} |")
    w(f"| **orchestration ÷ spot instance** | **{t['orchestration_over_instance'] * 100:.2f}%** | **{p['orchestration_over_instance'] * 100:.1f}%** |")
    w(f"| runs a month within the free tier of {cost['free_tier_transitions_per_month']:,} transitions | {cost['runs_per_month_in_free_tier']['token']} | {cost['runs_per_month_in_free_tier']['polling']} |")
    w("")
    sr = cost["reconciler_standing"]
    w(f"**The reconciler runs whether a run does or not**: every {sr['every_seconds'] // 60} minutes, {sr['invocations_per_month']:,} invocations a month")
    w(f"(12 an hour × 24 × 30), {usd(sr['usd'])} a month at the prices below (Lambda requests {usd(sr['lambda_requests_usd'])}, duration")
    w(f"{usd(sr['lambda_duration_usd'])} at {a['lambda_billed_ms_per_invocation']} ms each, Scheduler {usd(sr['scheduler_usd'])}, which its free tier of 14 million invocations a month")
    w("covers). The per-run figures above count the ticks that fall within a run, so they are part of this standing cost, not")
    w("on top of it. A weekly job makes ~4.3 runs a month: standing cost and runs together stay far below a dollar.\n")
    sfn_share = tu["step_functions"] / tu["orchestration"] * 100
    w(f"In the token design Step Functions transitions are {sfn_share:.0f}% of the orchestration cost. Prices (us-east-1, published):")
    w(f"Step Functions Standard ${prices['sfn_standard_per_transition'] * 1000:.3f} per 1,000 transitions, the first {cost['free_tier_transitions_per_month']:,} a month free")
    w(f"(aws.amazon.com/step-functions/pricing); Lambda arm64 ${prices['lambda_arm64_per_gb_second']:.10f} per GB-s and "
      f"${prices['lambda_per_request'] * 1e6:.2f} per 1M requests (aws.amazon.com/lambda/pricing);")
    w(f"EventBridge Scheduler ${prices['scheduler_per_invocation'] * 1e6:.2f} per 1M invocations after 14M free a month, AWS service events (SSM,")
    w("EC2) on the default bus free (aws.amazon.com/eventbridge/pricing). The USD figures ignore the free tiers.")
    w(f"Assumptions: spot {a['spot_instance_type']} ${a['spot_price_per_hour']}/h (about 40% of its ${a['on_demand_price_per_hour']}/h on-demand price, the usual")
    w("us-east-1 level in the EC2 spot price history); launch "
      f"{a['launch_seconds']} s and agent online {a['agent_online_seconds']} s after launch; {a['lambda_billed_ms_per_invocation']} ms billed per invocation (in-region API")
    w(f"calls), and init billed on one cold start per function ({f1(cost['init_ms_used'])} ms: {cost.get('init_ms_from', 'measured init')}). poll-result told by an event")
    w("may pause 1, 2 and 4 s while SSM or EC2 do not show yet what the event said (billed time, not in the 100 ms).\n")
    w("**The polling design under other poll caps**, and the token design:\n")
    w("| design | transitions | invocations | orchestration | ÷ spot instance | worst-case detection | data-weekly steps' detection as modeled |")
    w("|---|---|---|---|---|---|---|")
    for alt in cost["alternatives"]:
        worst = f"{alt['worst_detection_seconds']} s" if alt["worst_detection_seconds"] else "section 6 + EventBridge delivery"
        modeled = ", ".join(f"{x:.0f}" for x in alt["modeled_detection_seconds"]) + " s" if alt["modeled_detection_seconds"] else "–"
        w(f"| {alt['policy']} | {alt['transitions']} | {alt['invocations']} | {usd(alt['orchestration_usd'])} | {alt['ratio'] * 100:.2f}% | {worst} | {modeled} |")
    w("")

    # -- detection
    w("## 6. Detection latency\n")
    if ev:
        se = ev["step_end_detection"]
        rc = ev["reclaim_detection"]
        stage = ev["local_stage"]
        n_dw = len([x for x in ev["runs"] if x["kind"] == "data-weekly"])
        n_rc = len([x for x in ev["runs"] if x["kind"] == "demo-reclaim"])
        w("**Step-end detection**: from the SSM agent emulation's end of a command (`CommandRun.ended`) to the next state the")
        w("execution entered (history timestamps, the same clock): SSM's status-change event goes through the stage's")
        w("EventBridge to poll-result, which finds the waiting send marker, classifies the command and answers the token;")
        w(f"Step Functions moves on. Every step of {n_dw} data-weekly full run{'s' if n_dw != 1 else ''}, the demo job (mode all), a demo run")
        w(f"whose `fail` step fails, and the {n_rc} reclaim run{'s' if n_rc != 1 else ''} below:\n")
        w("| runs | step ends | p50 s | p95 s | max s |")
        w("|---|---|---|---|---|")
        labels = {"data-weekly": "data-weekly full", "demo": "demo all", "demo-failing": "demo failing", "demo-reclaim": "demo all with a reclaim"}
        for k, x in se["by_kind"].items():
            if x.get("n"):
                w(f"| {labels.get(k, k)} | {x['n']} | {f2(x['p50'])} | {f2(x['p95'])} | {f2(x['max'])} |")
        w(f"| commands shorter than {stage['invocation_visible_after_seconds']:.0f} s | {se['short_commands'].get('n', 0)} | {f2(se['short_commands'].get('p50'))} | {f2(se['short_commands'].get('p95'))} | {f2(se['short_commands'].get('max'))} |")
        w(f"| commands of {stage['invocation_visible_after_seconds']:.0f} s or longer | {se['long_commands'].get('n', 0)} | {f2(se['long_commands'].get('p50'))} | {f2(se['long_commands'].get('p95'))} | {f2(se['long_commands'].get('max'))} |")
        w(f"| **all** | **{se['all']['n']}** | **{f2(se['all']['p50'])}** | **{f2(se['all']['p95'])}** | **{f2(se['all']['max'])}** |")
        w("")
        w(f"The two populations are the stage's and poll-result's doing, not noise: the agent emulation shows a command in")
        w(f"`GetCommandInvocation` only {stage['invocation_visible_after_seconds']:.0f} s after it was sent (SSM's own lag, emulated), so for a command that ended")
        w("sooner poll-result sees no invocation yet, pauses 1 s (its confirmation pauses: 1, 2, 4 s) and asks again. Longer")
        w("commands are answered on the first look, in tens of milliseconds. In AWS, add EventBridge's delivery and however long")
        w("SSM takes to emit the event; neither is published as a figure and this stage cannot show them.\n")
        w("**Reclaim detection**: `reclaim_during = {\"slow\": {\"after\": 2, \"times\": 1}}` on the demo job: EC2's spot")
        w(f"interruption warning, then the instance terminates {stage['reclaim_lead_seconds']:.0f} s later (`Faults.reclaim_lead`); from the warning being sent")
        w("(`stack.events.sent`, key `spot_warning`) to the relaunch's first states entered:\n")
        w("| from the warning to | reclaims | p50 s | p95 s | max s |")
        w("|---|---|---|---|---|")
        w(f"| `{reclaim_state(rc, 'to_resume_here')}` | {rc['to_resume_here']['n']} | {f2(rc['to_resume_here']['p50'])} | {f2(rc['to_resume_here']['p95'])} | {f2(rc['to_resume_here']['max'])} |")
        w(f"| `{reclaim_state(rc, 'to_relaunch_clean_up')}` | {rc['to_relaunch_clean_up']['n']} | {f2(rc['to_relaunch_clean_up']['p50'])} | {f2(rc['to_relaunch_clean_up']['p95'])} | {f2(rc['to_relaunch_clean_up']['max'])} |")
        w("")
        w("The warning alone fails the waiting step with `InstanceReclaimed`, so the relaunch starts before the instance is gone")
        w("(in AWS about two minutes before). When EC2 sends the warning relative to the reclaim, and how long EventBridge takes")
        w(f"to deliver it, are AWS's; the stage sends it {stage['reclaim_lead_seconds']:.0f} s ahead. The reconciler (here every {stage['reconcile_every_seconds']:.0f} s,")
        w("in production every 5 minutes) and the instance's state-change event are the nets when a warning is lost.\n")
    else:
        w("**Step-end detection** in this run's local executions, from the agent's end of a command to the next state entered")
        w("(`scripts/bench-events.sh` measures it over more runs, and a reclaim's):\n")
        w("| execution | step | command s | next state | detection s |")
        w("|---|---|---|---|---|")
        for name, e in r["executions"].items():
            for d in e["detection"]:
                w(f"| {name} | {d['step']} | {f1(d['command_seconds'])} | {d['next_state']} | {d['detection_seconds']:.2f} |")
        w("")
    cap = max(st["policy"]["cap"] for st in cost["steps"])
    w(f"**The polling design, for comparison** (modeled, not measured here): the poll interval grows from {cost['steps'][0]['policy']['interval']} s by")
    w(f"×{cost['steps'][0]['policy']['rate']} to its cap of {cap} s, so a step that ends just after a poll is noticed up to **{cap} s** later (about {cap / 2:.0f} s on")
    w(f"average once the cap is reached; the data-weekly steps' modeled lags: {', '.join(f'{x:.0f}' for x in p['detection_lag_seconds'])} s), and a reclaim at the")
    w("next poll that finds the spot request marked for termination or the instance gone, up to the same cap.\n")

    # -- misses
    fo = measured("fanout")
    if fo:
        for line in fanout_section(fo):
            w(line)

    w("## Misses: what dominates and what would fix it\n")
    if not missed:
        w("Every target is met.\n")
    for row in missed:
        tname = row["target"]
        w(f"**{tname}** — {row['measured']}.\n")
        if tname.startswith("init <"):
            slow = max(rust(r), key=lambda n: init[n]["init_ms"]["median"])
            w(f"The Rust init is CPU-bound ({slow}: {f1(init[slow]['cpu_ms']['median'])} ms of CPU): exec and dynamic loading, the")
            w("SDK config and clients, and above all the TLS root store the default HTTPS client loads (section 1's breakdown).\n")
        elif tname.startswith("orchestration cost"):
            w(f"The token design's cost is {t['state_transitions']} transitions and {t['lambda_invocations']} invocations; see section 5 for what dominates.\n")
        elif tname.startswith("transitions per"):
            w("Every state entered is a transition: the fixed states (defaults, naming, launch, the agent wait and its retries,")
            w("the mode choices) dominate once the steps no longer poll.\n")
        elif tname.startswith("step-end") or tname.startswith("reclaim"):
            w("See section 6: the stage's emulated SSM visibility lag and poll-result's confirmation pauses bound it.\n")

    # -- notes
    w("## Method notes\n")
    w("- Everything runs in one process tree on this machine: the local stack (moto's server in a thread, the SSM agent")
    w("  emulation, the EventBridge emulation and the reconciler, a front door), the benchmark's own Runtime API endpoints")
    w("  (Python `http.server`, HTTP/1.1 keep-alive), the functions under test. The endpoint's own overhead (a thread")
    w("  hand-off, ~0.1 ms) is in every number, Rust and Python alike.")
    w("- The Python baseline (`bench/python_poll_result/`) is poll-result's behaviour in boto3 — the same calls, the same")
    w("  classification, errors, success record and 40-line S3 tail — for one input shape"
      + (": the polling design's (the command in the input), at the commit sections 1-4 were measured."
         if old_shape else ": the fallback `<step>: poll` state's (the latest send marker read from S3, then classified)."))
    w("  It runs under `bootstrap.py`, a Runtime API client that does what the AWS Python runtime client does (import the")
    w(f"  handler at init, then `next`/`response`/`error`), on this machine's Python {m['python']} with boto3 {m['boto3']}.")
    w("- The data-weekly executions use a copy of `jobs/data-weekly/job.toml` in a temporary folder whose step scripts")
    w("  are `sleep`s; the repository's job is not touched.")
    w("- The event benchmark turns on `TCP_NODELAY` on the stage's front door, as `bench.py` does (its responses' headers and")
    w("  bodies are written apart, and a body can wait ~40 ms for a delayed ACK); `--emulator-as-is` measures without.")
    w("- Peak memory is the process's resident high-water mark; Lambda's `Max Memory Used` also counts the runtime's own")
    w("  share, so allow a few MB.")
    w("- Cold starts in AWS add the sandbox and code download (not measured here; a larger zip costs more there).")
    w("- Raw samples: `bench/results.json` (init samples per function, per-state counts of each execution) and")
    w("  `bench/events.json` (every run's states, step ends, reclaims and delivered events).\n")

    if ckpt:
        out.extend(checkpoint_section(ckpt))

    led = measured("ledger")
    if led:
        from ledger import table as ledger_table

        sp = led["split"]
        w("## Run ledger: what a data-weekly run costs, part by part\n")
        w(f"`{led['command']}`: the production data-weekly run modeled above ({sp['run_seconds'] / 3600:.2f} h, from the")
        w(f"event benchmark of {sp['events_from']}), priced under the ledger's rules (`src/cost.rs`, the record cleanup")
        w("writes to `runs/<job>/<run_id>.json`); a real run's record integrates the spot price history per second instead of")
        w("one price.\n")
        out.extend(ledger_table(sp))
    fl = measured("fleet")
    if fl:
        from fleet import table as fleet_table

        w("## Launch API calls per attempt: one fleet request vs the rotation\n")
        w(f"`{fl['command']}` ({fl['date_utc']}, commit {fl['git_head']}): the demo job's {fl['types']} instance types in the")
        w(f"stage's {fl['subnets']} subnets with the on-demand fallback on, so {fl['types'] * fl['subnets']} pools in 2 markets;")
        w("the stage's front door counts the CreateFleet requests. The rotation's figure is its plan's length (one RunInstances")
        w("per pool, spot then on-demand), not a count: that code is gone.\n")
        out.extend(fleet_table(fl))
    w("## CI\n")
    w("`scripts/bench.sh --quick` (debug binaries, 5 runs each, a data-weekly execution with 0.05 s per production")
    w("minute, no demo run) checks that every measurement runs and that the Rust and Python poll-results answer alike;")
    w("`scripts/bench-events.sh --quick` (one run of each kind) that the event-path measurements run and every run ends as")
    w("expected. Neither asserts anything about absolute time, and neither is wired into CI yet.\n")
    return "\n".join(out)


def _count_by(xs) -> dict:
    out = {}
    for x in xs:
        out[x] = out.get(x, 0) + 1
    return out


def regenerate(results: dict = None, events: dict = None, results_path: str = None, events_path: str = None) -> dict:
    """Writes BENCHMARKS.md from `results` and `events`, each read from its file (default
    bench/results.json, bench/events.json) when not given; the events file is optional (the
    cost and detection rows then come from the results' own cost model). Returns the events used."""
    if results is None:
        with open(results_path or os.path.join(HERE, "results.json")) as f:
            results = json.load(f)
    events_path = events_path or os.path.join(HERE, "events.json")
    if events is None and os.path.isfile(events_path):
        with open(events_path) as f:
            events = json.load(f)
    page = markdown(results, events)
    with open(os.path.join(REPO, "BENCHMARKS.md"), "w") as f:
        f.write(page)
    return events


if __name__ == "__main__":
    used = regenerate(
        results_path=sys.argv[1] if len(sys.argv) > 1 else None,
        events_path=sys.argv[2] if len(sys.argv) > 2 else None,
    )
    if used:
        print(events_summary(used))
