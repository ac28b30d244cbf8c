"""The functions under test, each started in a fresh process on one of the benchmark's own
Runtime API hosts (the stage's `RuntimeHost`) with production's environment: the Rust
binaries and the Python/boto3 baseline of poll-result (`PY_BASELINE`).
"""

import os
import sys

from spotstep_local import contract
from spotstep_local.lambdas import RuntimeHost, lambda_env

PY_BASELINE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "python_poll_result")


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
