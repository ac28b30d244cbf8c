"""The warm handler latency section, against the local stack on a real instance with real
commands: send-step, poll-result told by a command's end, poll-result as the fallback poll
state (Rust and the Python baseline alternating on the same inputs), and whether both answer
alike (`same_answer`).
"""

import json
import time

from functions import Functions
from measure import loadavg, stats
from replay import QuietStage, bench_token, command_ended_event, poll_state_input, wait_command, with_run
from spotstep_local.harness import Harness
from spotstep_local.stack import LocalStack


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
