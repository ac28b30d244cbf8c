"""The one Lambda Runtime API server (local/spotstep_local/lambdas.py), driven by the
benchmark's Python runtime client (bench/python_poll_result/bootstrap.py) and a tiny
handler: Invoke semantics for the stack, and the measurements the benchmark takes."""

import json
import os
import sys
import textwrap

import pytest

from spotstep_local.lambdas import Function, LambdaService, RuntimeHost, lambda_env

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BOOTSTRAP = os.path.join(REPO, "bench", "python_poll_result", "bootstrap.py")

HANDLER = '''
import os
import time


class StillRunning(Exception):
    pass


def handle(event, context):
    if event.get("fail"):
        raise StillRunning("step deps is InProgress")
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {"pid": os.getpid(), "event": event, "function": context.function_name}
'''


@pytest.fixture
def binary(tmp_path):
    (tmp_path / "fake.py").write_text(HANDLER)
    path = tmp_path / "fake-function"
    path.write_text(
        textwrap.dedent(
            f"""\
            #!/bin/sh
            export LAMBDA_TASK_ROOT={tmp_path} _HANDLER=fake.handle
            exec {sys.executable} {BOOTSTRAP}
            """
        )
    )
    path.chmod(0o755)
    return str(path)


def test_invocations_are_answered_like_lambda_invoke(binary, tmp_path):
    service = LambdaService({"send-step": binary}, {"PATH": os.environ["PATH"]}, str(tmp_path), {"send-step": 30})
    try:
        status, body, error = service.invoke("arn:aws:lambda:us-east-1:123456789012:function:send-step", b'{"a": 1}')
        first = json.loads(body)
        assert (status, error) == (200, None)
        assert first["event"] == {"a": 1} and first["function"] == "send-step"
        status, body, error = service.invoke("send-step", b'{"fail": true}')
        assert (status, error) == (200, "Unhandled")
        assert json.loads(body)["errorType"] == "StillRunning"
        _, body, _ = service.invoke("send-step", b"{}")
        assert json.loads(body)["pid"] == first["pid"], "a warm function keeps its process"
        status, body, _ = service.invoke("no-such-function", b"{}")
        assert status == 404 and b"Function not found" in body
        assert service.functions["send-step"].invocations == 3
    finally:
        service.stop()


def test_a_function_that_times_out_is_replaced(binary, tmp_path):
    function = Function("poll-result", binary, {"PATH": os.environ["PATH"]}, 1.0, str(tmp_path))
    try:
        _, body, error = function.invoke(b'{"sleep": 5}')
        assert error == "Unhandled"
        assert json.loads(body)["errorType"] == "Sandbox.Timedout"
        assert function.process.returncode is not None
        _, body, error = function.invoke(b'{"b": 2}')
        assert error is None and json.loads(body)["event"] == {"b": 2}
    finally:
        function.stop()


def test_the_timeout_counts_from_the_hand_off_not_from_the_process_start(binary, tmp_path):
    """Lambda's function timeout covers the invocation; the init phase has a limit of its own.
    A function whose start takes longer than its timeout (here a slow interpreter start, as on
    a loaded machine) still answers its first event."""
    slow = tmp_path / "slow-start"
    slow.write_text(f"#!/bin/sh\nsleep 1.5\nexec {binary}\n")
    slow.chmod(0o755)
    function = Function("poll-result", str(slow), {"PATH": os.environ["PATH"]}, 1.0, str(tmp_path))
    try:
        _, body, error = function.invoke(b'{"c": 3}')
        assert error is None and json.loads(body)["event"] == {"c": 3}
    finally:
        function.stop()


def test_a_session_measures_init_latency_and_memory(binary, tmp_path):
    host = RuntimeHost()
    try:
        env = lambda_env({"PATH": os.environ["PATH"]}, host, "cleanup", stream="bench")
        assert env["AWS_LAMBDA_RUNTIME_API"] == host.address and env["AWS_LAMBDA_LOG_STREAM_NAME"] == "bench"
        session = host.session("cleanup").start([binary], env, str(tmp_path / "cleanup.log"))
        init_ms = session.wait_ready(30)
        assert 0 < init_ms < 30_000
        ms, body, error = session.invoke({"x": 1})
        assert error is None and json.loads(body)["event"] == {"x": 1} and ms > 0
        ms, body, error = session.invoke({"fail": True})
        assert error == "StillRunning"
        assert session.status()["VmHWM"] > 0
        assert session.cpu_seconds() >= 0
        session.kill()
        assert session.rusage is not None and host.current is None
    finally:
        host.stop()
