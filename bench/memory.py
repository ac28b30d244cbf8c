"""The peak memory section: each function in a fresh process, one invocation of a replayed mini
run of a real history, VmHWM read right after it (`replay_mini_runs`); `vmhwm` of any live
process.
"""

import json
import time

from functions import Functions
from measure import stats
from replay import QuietStage, bench_token, command_ended_event, poll_state_input, wait_command, with_run
from spotstep_local.stack import LocalStack


def vmhwm(process):
    """VmHWM (KiB) of a live process, or None."""
    if process is None or process.poll() is not None:
        return None
    with open(f"/proc/{process.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


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
