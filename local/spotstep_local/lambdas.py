"""A local Lambda service for the real spotstep binaries.

Each function is one long-lived `bootstrap` process (a warm Lambda) talking to its own
Lambda Runtime API endpoint served here. An invocation is queued to the process and answered
with real Lambda Invoke semantics: HTTP 200 with the result, or HTTP 200 with the
`X-Amz-Function-Error` header and `{errorType, errorMessage}` when the function failed, so
that Step Functions' Retry and Catch see the function's own error names.
"""

import json
import os
import queue
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RUNTIME_PREFIX = "/2018-06-01/runtime"


class Invocation:
    def __init__(self, payload: bytes, deadline_ms: int):
        self.request_id = str(uuid.uuid4())
        self.payload = payload
        self.deadline_ms = deadline_ms
        self.done = threading.Event()
        self.result: bytes = b""
        self.error: bool = False


class Function:
    """One function: its Runtime API endpoint and its bootstrap process."""

    def __init__(self, name: str, binary: str, env: dict, timeout: float, log_dir: str):
        self.name = name
        self.binary = binary
        self.env = env
        self.timeout = timeout
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self.pending: "queue.Queue[Invocation]" = queue.Queue()
        self.in_flight: dict = {}
        self.lock = threading.Lock()
        self.process = None
        self.invocations = 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def runtime_api(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def _handler(self):
        function = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, code: int, body: bytes = b"", headers: dict = None):
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path != f"{RUNTIME_PREFIX}/invocation/next":
                    return self._reply(404)
                invocation = function.pending.get()
                function.in_flight[invocation.request_id] = invocation
                self._reply(
                    200,
                    invocation.payload,
                    {
                        "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                        "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                        "Lambda-Runtime-Invoked-Function-Arn": function.arn,
                        "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}",
                        "Content-Type": "application/json",
                    },
                )

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = self.path[len(RUNTIME_PREFIX):].strip("/").split("/")
                if parts[:1] == ["init"]:
                    function.init_error = body
                    return self._reply(202)
                if len(parts) != 3 or parts[0] != "invocation":
                    return self._reply(404)
                invocation = function.in_flight.pop(parts[1], None)
                if invocation is None:
                    return self._reply(400)
                invocation.result = body
                invocation.error = parts[2] == "error"
                invocation.done.set()
                self._reply(202)

        return Handler

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.name}"

    def _ensure_process(self):
        if self.process is not None and self.process.poll() is None:
            return
        env = dict(self.env)
        env.update(
            {
                "AWS_LAMBDA_RUNTIME_API": self.runtime_api,
                "AWS_LAMBDA_FUNCTION_NAME": self.name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
                "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.name}",
                "AWS_LAMBDA_LOG_STREAM_NAME": "local",
            }
        )
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([self.binary], env=env, stdout=log, stderr=subprocess.STDOUT)

    def invoke(self, payload: bytes):
        """Runs one invocation; returns (status, body, function_error or None)."""
        with self.lock:
            self._ensure_process()
            self.invocations += 1
            invocation = Invocation(payload, int((time.time() + self.timeout) * 1000))
            self.pending.put(invocation)
            if not invocation.done.wait(self.timeout):
                self.process.kill()
                self.process.wait()
                self.in_flight.pop(invocation.request_id, None)
                body = json.dumps(
                    {"errorType": "Sandbox.Timedout", "errorMessage": f"{self.name} timed out after {self.timeout}s"}
                )
                return 200, body.encode(), "Unhandled"
            return 200, invocation.result, ("Unhandled" if invocation.error else None)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.server.shutdown()


class LambdaService:
    """The five spotstep functions, invoked by name or ARN."""

    def __init__(self, binaries: dict, env: dict, log_dir: str, timeouts: dict):
        self.functions = {
            name: Function(name, path, env, timeouts.get(name, 60), log_dir) for name, path in binaries.items()
        }

    def invoke(self, function: str, payload: bytes):
        name = function.rsplit(":", 1)[-1] if function.startswith("arn:") else function
        if name not in self.functions:
            body = json.dumps({"Type": "User", "Message": f"Function not found: {function}"}).encode()
            return 404, body, None
        return self.functions[name].invoke(payload)

    def stop(self):
        for f in self.functions.values():
            f.stop()
