"""A minimal Lambda Runtime API endpoint for the benchmark, and the process measurements.

One `RuntimeHost` serves `/2018-06-01/runtime/...` on a local port. `Session` is one
function process started against it: the spawn instant is taken with `perf_counter_ns`
right before `Popen`, the arrival of its first `GET /invocation/next` is taken the same way
when the request reaches the host, and the difference is the init time. A session can then
hand its process invocations (the long-poll `GET` is answered with the event, as Lambda
does) and time each one from hand-over to the function's `POST .../response|error`.

Only what a runtime client needs is implemented: `invocation/next`, `invocation/<id>/response`,
`invocation/<id>/error` and `init/error`, HTTP/1.1 with keep-alive.
"""

import json
import os
import queue
import signal
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PREFIX = "/2018-06-01/runtime"
_STOP = object()


class Invocation:
    def __init__(self, payload: bytes, deadline_ms: int):
        self.request_id = str(uuid.uuid4())
        self.payload = payload
        self.deadline_ms = deadline_ms
        self.handed_ns = 0
        self.done_ns = 0
        self.done = threading.Event()
        self.body = b""
        self.error = False
        self.error_type = ""


class Session:
    """One process of one function, talking to the host."""

    def __init__(self, host: "RuntimeHost", name: str):
        self.host = host
        self.name = name
        self.first_next_ns = 0
        self.next_calls = 0
        self.ready = threading.Event()
        self.pending: "queue.Queue" = queue.Queue()
        self.in_flight: dict = {}
        self.init_error = None
        self.process = None
        self.spawn_ns = 0
        self.rusage = None
        self.exit_status = None

    # -- process --------------------------------------------------------------------------

    def start(self, argv: list, env: dict, log_path: str):
        self.host.current = self
        log = open(log_path, "ab")
        self.spawn_ns = time.perf_counter_ns()
        self.process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    def wait_ready(self, timeout: float) -> float:
        """Waits for the first `GET /next`; returns the init time in milliseconds."""
        if not self.ready.wait(timeout):
            code = self.process.poll()
            raise TimeoutError(
                f"{self.name}: no GET /invocation/next within {timeout}s (exit status {code}, init error {self.init_error!r})"
            )
        return (self.first_next_ns - self.spawn_ns) / 1e6

    def status(self) -> dict:
        """VmHWM / VmRSS of the live process, in KiB."""
        out = {}
        with open(f"/proc/{self.process.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS", "Threads"):
                    out[key] = int(value.split()[0])
        return out

    def cpu_seconds(self) -> float:
        """CPU time (user + system) of the live process so far, all threads."""
        with open(f"/proc/{self.process.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def kill(self):
        """SIGKILL, then reap with `wait4` to keep the child's resource usage (CPU, max RSS)."""
        if self.process is None:
            return
        if self.process.returncode is None:
            try:
                os.kill(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                _, status, usage = os.wait4(self.process.pid, 0)
                self.exit_status = status
                self.rusage = usage
                self.process.returncode = -9
            except ChildProcessError:
                self.process.wait()
        self.pending.put(_STOP)
        if self.host.current is self:
            self.host.current = None

    # -- invocations ----------------------------------------------------------------------

    def invoke(self, payload, timeout: float = 60.0):
        """Hands one event to the (waiting) process; returns (ms, body, error_type or None)."""
        if not isinstance(payload, (bytes, bytearray)):
            payload = json.dumps(payload).encode()
        inv = Invocation(bytes(payload), int((time.time() + timeout) * 1000))
        inv.handed_ns = time.perf_counter_ns()
        self.pending.put(inv)
        if not inv.done.wait(timeout):
            raise TimeoutError(f"{self.name}: invocation not answered within {timeout}s")
        ms = (inv.done_ns - inv.handed_ns) / 1e6
        return ms, inv.body, (inv.error_type or "Unhandled") if inv.error else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A function process killed between two requests resets its keep-alive connection.
        pass


class RuntimeHost:
    def __init__(self):
        self.current = None
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            # Headers and body leave in one write, with TCP_NODELAY: written apart, the body
            # waits for the ACK of the headers (Nagle), which the client delays by ~40 ms.
            disable_nagle_algorithm = True

            def _reply(self, code: int, body: bytes = b"", headers: dict = None):
                try:
                    self.send_response(code)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self._headers_buffer.append(b"\r\n" + body)
                    self.flush_headers()
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                now = time.perf_counter_ns()
                session = host.current
                if self.path != f"{PREFIX}/invocation/next" or session is None:
                    return self._reply(404)
                session.next_calls += 1
                if not session.first_next_ns:
                    session.first_next_ns = now
                    session.ready.set()
                inv = session.pending.get()
                if inv is _STOP:
                    self.close_connection = True
                    return self._reply(410)
                session.in_flight[inv.request_id] = inv
                self._reply(
                    200,
                    inv.payload,
                    {
                        "Lambda-Runtime-Aws-Request-Id": inv.request_id,
                        "Lambda-Runtime-Deadline-Ms": str(inv.deadline_ms),
                        "Lambda-Runtime-Invoked-Function-Arn": f"arn:aws:lambda:us-east-1:123456789012:function:{session.name}",
                        "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}",
                        "Content-Type": "application/json",
                    },
                )

            def do_POST(self):
                now = time.perf_counter_ns()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                session = host.current
                parts = self.path[len(PREFIX):].strip("/").split("/")
                if session is None:
                    return self._reply(404)
                if parts == ["init", "error"]:
                    session.init_error = body
                    return self._reply(202, b"{}")
                if len(parts) != 3 or parts[0] != "invocation" or parts[2] not in ("response", "error"):
                    return self._reply(404)
                inv = session.in_flight.pop(parts[1], None)
                if inv is None:
                    return self._reply(400)
                inv.done_ns = now
                inv.body = body
                inv.error = parts[2] == "error"
                if inv.error:
                    inv.error_type = self.headers.get("Lambda-Runtime-Function-Error-Type", "")
                    try:
                        inv.error_type = json.loads(body).get("errorType") or inv.error_type
                    except (ValueError, AttributeError):
                        pass
                self._reply(202, b"{}")
                inv.done.set()

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def session(self, name: str) -> Session:
        return Session(self, name)

    def stop(self):
        self.server.shutdown()


def lambda_env(base: dict, host: RuntimeHost, name: str, memory_mb: int = 128) -> dict:
    """The environment Lambda gives a function, over `base` (its configured variables)."""
    env = dict(base)
    env.update(
        {
            "AWS_LAMBDA_RUNTIME_API": host.address,
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_SESSION_TOKEN": "bench-session-token",
            "LAMBDA_TASK_ROOT": "/var/task",
            "TZ": ":UTC",
            "LANG": "en_US.UTF-8",
        }
    )
    return env
