"""A local Lambda service for the real spotstep binaries, and the one Lambda Runtime API
server the local stack and the benchmark share.

`RuntimeHost` serves `/2018-06-01/runtime/...` on a local port to its current `Session`, one
function process: `invocation/next` (the long poll is answered with the next event, as Lambda
does), `invocation/<id>/response`, `invocation/<id>/error` and `init/error`, HTTP/1.1 with
keep-alive. A session times what the benchmark measures: the spawn instant is taken with
`perf_counter_ns` right before `Popen` and the arrival of the first `GET /invocation/next`
the same way (their difference is the init time), and each invocation from hand-over to the
function's `POST .../response|error`; `status()` reads the process's VmHWM/VmRSS.

`Function` is one warm Lambda of the stack (a host and the session of its current process)
and `LambdaService` the five of them: an invocation is answered with Lambda Invoke semantics,
HTTP 200 with the result, or HTTP 200 with the `X-Amz-Function-Error` header and
`{errorType, errorMessage}` when the function failed, so that Step Functions' Retry and Catch
see the function's own error names.
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
ACCOUNT = "123456789012"
REGION = "us-east-1"
_STOP = object()


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


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
    """One process of one function, talking to its host."""

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

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

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
        """Hands one event to the (waiting) process; returns (ms, body, error_type or None).
        Raises TimeoutError when the function does not answer within `timeout` seconds."""
        if not isinstance(payload, (bytes, bytearray)):
            payload = json.dumps(payload).encode()
        inv = Invocation(bytes(payload), int((time.time() + timeout) * 1000))
        inv.handed_ns = time.perf_counter_ns()
        self.pending.put(inv)
        if not inv.done.wait(timeout):
            self.in_flight.pop(inv.request_id, None)
            raise TimeoutError(f"{self.name}: invocation not answered within {timeout}s")
        ms = (inv.done_ns - inv.handed_ns) / 1e6
        return ms, inv.body, (inv.error_type or "Unhandled") if inv.error else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A function process killed between two requests resets its keep-alive connection.
        pass


class RuntimeHost:
    """One Runtime API endpoint; it serves whichever session started last (`current`)."""

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
                        "Lambda-Runtime-Invoked-Function-Arn": function_arn(session.name),
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
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def session(self, name: str) -> Session:
        return Session(self, name)

    def stop(self):
        self.server.shutdown()


def lambda_env(base: dict, host: RuntimeHost, name: str, memory_mb: int = 128, stream: str = "local") -> dict:
    """The environment Lambda gives a function, over `base` (its configured variables)."""
    env = dict(base)
    env.update(
        {
            "AWS_LAMBDA_RUNTIME_API": host.address,
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "LAMBDA_TASK_ROOT": "/var/task",
            "TZ": ":UTC",
            "LANG": "en_US.UTF-8",
        }
    )
    return env


# Lambda's limit on a function's init phase (on-demand), apart from the function's timeout.
INIT_TIMEOUT_SECONDS = 10.0


class Function:
    """One warm function of the stack: its Runtime API endpoint and its current process,
    started on the first invocation and again after it died or timed out."""

    def __init__(self, name: str, binary: str, env: dict, timeout: float, log_dir: str):
        self.name = name
        self.binary = binary
        self.env = env
        self.timeout = timeout
        self.log_path = os.path.join(log_dir, f"{name}.log")
        self.lock = threading.Lock()
        self.host = RuntimeHost()
        self.session = None
        self.invocations = 0

    @property
    def process(self):
        """The current process (None before the first invocation)."""
        return self.session.process if self.session is not None else None

    def invoke(self, payload: bytes):
        """Runs one invocation; returns (status, body, function_error or None). As on Lambda,
        the function's timeout counts from the hand-off of the event: a new process first
        has `INIT_TIMEOUT_SECONDS` of its own to reach its first `GET /next`."""
        with self.lock:
            started = self.session is None or not self.session.alive()
            if started:
                self.session = self.host.session(self.name).start(
                    [self.binary], lambda_env(self.env, self.host, self.name), self.log_path
                )
            self.invocations += 1
            try:
                if started:
                    self.session.wait_ready(INIT_TIMEOUT_SECONDS)
                _, body, error = self.session.invoke(payload, self.timeout)
            except TimeoutError:
                self.session.kill()
                body = json.dumps(
                    {"errorType": "Sandbox.Timedout", "errorMessage": f"{self.name} timed out after {self.timeout}s"}
                )
                return 200, body.encode(), "Unhandled"
            return 200, body, ("Unhandled" if error else None)

    def stop(self):
        if self.session is not None:
            self.session.kill()
        self.host.stop()


class LambdaService:
    """The spotstep functions, invoked by name or ARN.

    `faults` (the stack's, optional) may hold an invocation before its function runs
    (`Faults.hold`) or lose the answer of one that succeeded (`Faults.lose_answer`): Lambda
    then answers HTTP 500 `ServiceException` (the third value is that error code, with a
    status >= 400; a function error comes with status 200)."""

    def __init__(self, binaries: dict, env: dict, log_dir: str, timeouts: dict, faults=None):
        self.functions = {
            name: Function(name, path, env, timeouts.get(name, 60), log_dir) for name, path in binaries.items()
        }
        self.faults = faults

    def invoke(self, function: str, payload: bytes):
        name = function.rsplit(":", 1)[-1] if function.startswith("arn:") else function
        if name not in self.functions:
            body = json.dumps({"Type": "User", "message": f"Function not found: {function}"}).encode()
            return 404, body, "ResourceNotFoundException"
        if self.faults is None:
            return self.functions[name].invoke(payload)
        try:
            event = json.loads(payload or b"null")
        except ValueError:
            event = None
        for hold in list(self.faults.holds):
            if hold.take(name, event):
                hold.reached.set()
                hold.released.wait(600)
        status, body, error = self.functions[name].invoke(payload)
        step = event.get("step") if isinstance(event, dict) else None
        step_name = step.get("name") if isinstance(step, dict) else None
        if step_name is None and isinstance(event, dict) and isinstance(event.get("fanout"), str):
            # A sweep's bookkeeping call (poll-result): keyed `fanout:<request>`.
            step_name = f"fanout:{event['fanout']}"
        if status == 200 and error is None and self.faults.take_lost_answer(name, step_name):
            # The function succeeded; its answer never reaches the caller.
            self.faults.lost_answers.append((name, step_name, body))
            answer = {"Type": "Service", "message": "Internal error: the answer was lost (injected)"}
            return 500, json.dumps(answer).encode(), "ServiceException"
        return status, body, error

    def stop(self):
        for f in self.functions.values():
            f.stop()
