"""SSM emulation that really runs each sent command, as the SSM agent would.

moto records SendCommand but reports every invocation as `Success` and implements neither
`DescribeInstanceInformation` nor agent behaviour. This module answers those SSM calls for
the instances moto's EC2 knows: agent registration (`Online` a moment after launch, unless a
fault says never), `SendCommand` of `AWS-RunShellScript` (the `commands` written to a script
file in a per-instance sandbox folder and run with `sh`, `executionTimeout` enforced),
`GetCommandInvocation` (real status and exit code; `InvocationDoesNotExist` for a moment after
the send; stdout/stderr truncated to 24,000/8,000 characters) and the full output written
to the S3 output prefix, `ListCommands` and `CancelCommand`. A command sent with a
`CloudWatchOutputConfig` also has its output streamed to CloudWatch Logs while it runs, as the
agent does: each output's lines as they are written, to the stream `ssm_log_stream` (from the
contract) of the command's log group, created when missing (`CloudWatchOutput`).

Each instance has its own instance metadata service (`Metadata`: IMDSv2 tokens, the spot
`instance-action` notice, 404 until a reclaim posts it, and the rebalance recommendation),
reached through `AWS_EC2_METADATA_SERVICE_ENDPOINT` in the instance's environment, the
override AWS SDKs and the CLI honour: the step runner asks it as it asks the default
address on a real instance.

The "instance" has an `aws` CLI that reaches the local stack, never the real AWS (`env`,
set by the stack: endpoint, region, dummy credentials). `aws s3 cp FILE s3://...` and
`aws s3 cp s3://... FILE` and `aws s3 sync` between a folder and an S3 folder (what the step
runner and the job scripts use) are served by a
small stub that talks to the local S3 directly, because the real CLI takes 1-3 s to start on
these machines; every other `aws` command goes to the real CLI on PATH, if there is one.
"""

import datetime
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import contract

STDOUT_LIMIT = 24_000
STDERR_LIMIT = 8_000


AWS_STUB = r'''#!{python}
"""aws on a spotstep local instance: `s3 cp` between a file and the local S3, and
`ssm get-parameter --with-decryption --name P --query Parameter.Value --output text` against
the local Parameter Store, served here; anything else goes to the real aws CLI further down
PATH (pointed at the local stack)."""
import json
import os
import shutil
import sys
import urllib.error
import urllib.parse
import urllib.request

QUIET = ("--quiet", "--only-show-errors", "--no-progress")


def real_cli():
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if os.path.abspath(p or ".") != here)
    exe = shutil.which("aws", path=path)
    if not exe:
        print("aws: command not found (spotstep local instance: only `aws s3 cp` is emulated)", file=sys.stderr)
        sys.exit(127)
    os.environ["PATH"] = path
    os.execv(exe, [exe] + sys.argv[1:])


def request(uri, method, data=None, raw_query=False):
    """One S3 call to the local stack; `raw_query`: the key part of `uri` is a query string."""
    bucket, _, key = uri[len("s3://"):].partition("/")
    url = os.environ["AWS_ENDPOINT_URL"].rstrip("/") + "/" + bucket + "/" + (key if raw_query else urllib.parse.quote(key))
    region = os.environ.get("AWS_REGION", "us-east-1")
    headers = {{
        # moto routes by the credential scope and does not check signatures
        "Authorization": f"AWS4-HMAC-SHA256 Credential=local/20260101/{{region}}/s3/aws4_request, SignedHeaders=host, Signature=0",
        "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
        "Content-Type": "application/octet-stream",
    }}
    return urllib.request.urlopen(urllib.request.Request(url, data=data, method=method, headers=headers), timeout=60)


def get_parameter(args):
    """The value of `--name`, printed as `--query Parameter.Value --output text` prints it;
    an SSM error as the CLI reports it (exit 254)."""
    region = os.environ.get("AWS_REGION", "us-east-1")
    headers = {{
        "Authorization": f"AWS4-HMAC-SHA256 Credential=local/20260101/{{region}}/ssm/aws4_request, SignedHeaders=host, Signature=0",
        "X-Amz-Target": "AmazonSSM.GetParameter",
        "Content-Type": "application/x-amz-json-1.1",
    }}
    body = json.dumps({{"Name": args["--name"], "WithDecryption": True}}).encode()
    url = os.environ["AWS_ENDPOINT_URL"].rstrip("/") + "/"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST", headers=headers), timeout=60) as r:
            answer = json.load(r)
    except urllib.error.HTTPError as e:
        error = json.loads(e.read() or b"{{}}")
        code = error.get("__type", str(e.code)).rsplit("#", 1)[-1]
        print(f"An error occurred ({{code}}) when calling the GetParameter operation: {{error.get('message', '')}}", file=sys.stderr)
        sys.exit(254)
    except (OSError, urllib.error.URLError) as e:
        print(f"Could not connect to the endpoint URL: {{e}}", file=sys.stderr)
        sys.exit(255)
    print(answer["Parameter"]["Value"])


def listing(uri):
    """{{key: (size, last modified epoch)}} of the objects under the folder `uri`
    (ListObjectsV2, every page)."""
    import datetime
    import xml.etree.ElementTree as ET

    bucket, _, prefix = uri[len("s3://"):].partition("/")
    found, token = {{}}, None
    ns = "{{http://s3.amazonaws.com/doc/2006-03-01/}}"
    while True:
        query = {{"list-type": "2", "prefix": prefix}}
        if token:
            query["continuation-token"] = token
        page = ET.fromstring(request(f"s3://{{bucket}}/?" + urllib.parse.urlencode(query), "GET", raw_query=True).read())
        for item in page.iter(ns + "Contents"):
            modified = datetime.datetime.fromisoformat(item.find(ns + "LastModified").text.replace("Z", "+00:00"))
            found[item.find(ns + "Key").text] = (int(item.find(ns + "Size").text), modified.timestamp())
        token = page.findtext(ns + "NextContinuationToken")
        if not token:
            return found


def sync(words):
    """`aws s3 sync SRC DST [--delete]` between a folder and an S3 folder, as the CLI does it:
    a file is copied when the other side lacks it, its size differs or it is newer there;
    `--delete` removes what the source does not have."""
    delete = "--delete" in words
    rest = [w for w in words if w not in QUIET and w != "--delete"]
    if len(rest) != 2 or any(w.startswith("-") for w in rest):
        real_cli()
    src, dst = rest
    if src.startswith("s3://") == dst.startswith("s3://"):
        real_cli()
    remote_uri = (src if src.startswith("s3://") else dst).rstrip("/") + "/"
    folder = dst if src.startswith("s3://") else src
    bucket, _, prefix = remote_uri[len("s3://"):].partition("/")
    remote = {{key[len(prefix):]: meta for key, meta in listing(remote_uri).items() if not key.endswith("/")}}
    local = {{}}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            stat = os.stat(path)
            local[os.path.relpath(path, folder)] = (stat.st_size, stat.st_mtime)
    if dst.startswith("s3://"):
        for rel, (size, mtime) in sorted(local.items()):
            there = remote.get(rel)
            if there is None or there[0] != size or mtime > there[1]:
                with open(os.path.join(folder, rel), "rb") as f:
                    request(f"s3://{{bucket}}/{{prefix}}{{rel}}", "PUT", f.read()).read()
        for rel in sorted(set(remote) - set(local)) if delete else []:
            request(f"s3://{{bucket}}/{{prefix}}{{rel}}", "DELETE").read()
    else:
        for rel, (size, modified) in sorted(remote.items()):
            here = local.get(rel)
            if here is None or here[0] != size or modified > here[1]:
                path = os.path.join(folder, rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(request(f"s3://{{bucket}}/{{prefix}}{{rel}}", "GET").read())
                os.utime(path, (modified, modified))
        for rel in sorted(set(local) - set(remote)) if delete else []:
            os.remove(os.path.join(folder, rel))


args = sys.argv[1:]
if args[:2] == ["s3", "sync"]:
    try:
        sync(args[2:])
    except (OSError, urllib.error.URLError) as e:
        print(f"fatal error: sync: {{getattr(e, 'code', '')}} {{e}}", file=sys.stderr)
        sys.exit(1)
    sys.exit(0)
if args[:2] == ["ssm", "get-parameter"]:
    options, flags, words = {{}}, set(), args[2:]
    while words:
        word = words.pop(0)
        if word == "--with-decryption":
            flags.add(word)
        elif word in ("--name", "--query", "--output") and words:
            options[word] = words.pop(0)
        else:
            real_cli()
    if flags == {{"--with-decryption"}} and options.get("--query") == "Parameter.Value" and options.get("--output") == "text" and "--name" in options:
        get_parameter(options)
        sys.exit(0)
    real_cli()
rest = [a for a in args[2:] if a not in QUIET]
if args[:2] != ["s3", "cp"] or len(rest) != 2 or any(a.startswith("-") for a in rest):
    real_cli()
src, dst = rest
quiet = any(a in QUIET for a in args)
try:
    if dst.startswith("s3://") and not src.startswith("s3://"):
        if dst.endswith("/"):
            dst += os.path.basename(src)
        with open(src, "rb") as f:
            request(dst, "PUT", f.read()).read()
    elif src.startswith("s3://") and not dst.startswith("s3://"):
        if dst.endswith("/") or os.path.isdir(dst):
            dst = os.path.join(dst, os.path.basename(src))
        data = request(src, "GET").read()
        with open(dst, "wb") as f:
            f.write(data)
    else:
        real_cli()
except (OSError, urllib.error.URLError) as e:
    code = getattr(e, "code", "")
    print(f"fatal error: copying {{src}} to {{dst}}: {{code}} {{e}}", file=sys.stderr)
    sys.exit(1)
if not quiet:
    print(f"copy: {{src}} to {{dst}}")
'''


# The log group SSM streams to when a command enables CloudWatch output without naming one.
DEFAULT_LOG_GROUP = "/aws/ssm/AWS-RunShellScript"
# The most text one log event carries here (CloudWatch Logs takes up to 256 KiB an event).
LOG_EVENT_CHARS = 100_000


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SsmError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Metadata:
    """One instance's metadata service, IMDSv2 as EC2 serves it: `PUT /latest/api/token`
    (with `X-aws-ec2-metadata-token-ttl-seconds`, 1 to 21600) gives a token; every
    `GET /latest/meta-data/...` needs it (`X-aws-ec2-metadata-token`, else 401).
    `spot/instance-action` is 404 until `notice()`, then `{"action", "time"}`;
    `events/recommendations/rebalance` is 404 until `rebalance()`, then `{"noticeTime"}`."""

    def __init__(self, instance_id: str):
        self.instance_id = instance_id
        self.tokens = set()
        self.paths = {"instance-id": instance_id}
        # What was asked, in order: (method, path, HTTP status).
        self.asked = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def _at(seconds_from_now: float) -> str:
        at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds_from_now)
        return at.strftime("%Y-%m-%dT%H:%M:%SZ")

    def notice(self, lead: float, action: str = "terminate"):
        """The spot interruption notice: EC2 acts `lead` seconds from now."""
        self.paths["spot/instance-action"] = json.dumps({"action": action, "time": self._at(lead)})

    def rebalance(self):
        self.paths["events/recommendations/rebalance"] = json.dumps({"noticeTime": self._at(0)})

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        metadata = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status: int, body: str = ""):
                metadata.asked.append((self.command, self.path, status))
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self):
                if self.path != "/latest/api/token":
                    return self._answer(404)
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", "")
                if not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                    return self._answer(400)
                token = secrets.token_urlsafe(32)
                metadata.tokens.add(token)
                self._answer(200, token)

            def do_GET(self):
                if self.headers.get("X-aws-ec2-metadata-token") not in metadata.tokens:
                    return self._answer(401)
                path = self.path.removeprefix("/latest/meta-data/")
                body = metadata.paths.get(path)
                if body is None or path == self.path:
                    return self._answer(404)
                self._answer(200, body)

        return Handler


def session_pids(sid: int) -> list:
    """Every process of session `sid` (a command's `sh` leads its own): the step runner puts
    a checkpointed step in a process group of its own, which a kill of the command's group
    would miss, while an instance that goes takes all of them."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid:
            pids.append(int(name))
    return pids


class CommandRun:
    def __init__(self, command_id, instance_id, comment, commands, execution_timeout, s3_bucket, s3_prefix, log_group=None):
        self.command_id = command_id
        # The CloudWatch Logs group the output streams to (None: S3 only).
        self.log_group = log_group
        self.instance_id = instance_id
        self.comment = comment
        self.commands = commands
        self.execution_timeout = execution_timeout
        self.s3_bucket = s3_bucket
        self.s3_prefix = s3_prefix
        self.requested = time.time()
        self.status = "Pending"
        self.details = "Pending"
        self.response_code = -1
        self.started = ""
        self.ended = ""
        self.stdout = ""
        self.stderr = ""
        self.process = None
        # What send-step put in the command (`naming::command_comment`, `step_log_prefix`):
        # a command spotstep did not make, or a format that changed, fails the send loudly.
        # A sweep's shard names its shard in both (`naming::shard_command_comment`,
        # `shard_log_prefix`).
        sharded = contract.fmt("shard_command_comment").match(comment) is not None
        comment_fields = contract.fmt("shard_command_comment" if sharded else "command_comment").parse(comment)
        prefix_fields = contract.fmt("shard_log_prefix" if sharded else "step_log_prefix").parse(s3_prefix)
        self.shard = int(comment_fields["shard"]) if sharded else None
        if prefix_fields["step"] != comment_fields["step"]:
            raise contract.FormatMismatch(
                "step_log_prefix", s3_prefix, f"the output prefix of step {comment_fields['step']!r} (comment {comment!r})"
            )
        self.step = comment_fields["step"]
        self.round = int(comment_fields["round"])
        self.job = prefix_fields["job"]
        self.run_id = prefix_fields["run_id"]

    def __repr__(self):
        return f"<CommandRun {self.step} run={self.run_id} on {self.instance_id}: {self.status} ({self.response_code})>"


class CloudWatchOutput:
    """A running command's output streamed to CloudWatch Logs, as the SSM agent streams it:
    `pump()` sends what each output file gained since the last pump (its complete lines; with
    `final`, the rest too) to the stream `ssm_log_stream` of the command's group."""

    def __init__(self, agent, run: "CommandRun", files: dict):
        self.agent = agent
        self.run = run
        self.files = {stream: [path, 0] for stream, path in files.items()}
        self.created = set()

    def pump(self, final: bool = False):
        for stream, position in self.files.items():
            path, offset = position
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
            cut = len(data) if final else data.rfind(b"\n") + 1
            if cut <= 0:
                continue
            position[1] = offset + cut
            text = data[:cut].decode(errors="replace")
            try:
                self._send(stream, text)
            except Exception as e:  # the agent goes on without CloudWatch, as SSM's does
                print(f"spotstep local agent: CloudWatch Logs for {self.run.command_id}: {e}", file=sys.stderr, flush=True)

    def _send(self, stream: str, text: str):
        logs, group = self.agent.logs, self.run.log_group
        name = contract.fmt("ssm_log_stream").make(command_id=self.run.command_id, instance_id=self.run.instance_id, stream=stream)
        if stream not in self.created:
            self.agent.ensure_log_group(group)
            try:
                logs.create_log_stream(logGroupName=group, logStreamName=name)
            except logs.exceptions.ResourceAlreadyExistsException:
                pass
            self.created.add(stream)
        chunks, chunk = [], ""
        for line in text.splitlines(keepends=True):
            if chunk and len(chunk) + len(line) > LOG_EVENT_CHARS:
                chunks.append(chunk)
                chunk = ""
            chunk += line
        chunks.append(chunk)
        now = int(time.time() * 1000)
        logs.put_log_events(
            logGroupName=group, logStreamName=name, logEvents=[{"timestamp": now, "message": c} for c in chunks if c]
        )


class Agent:
    def __init__(self, ec2_instances, s3_put, sandbox_root: str, faults):
        """`ec2_instances()` returns {instance_id: moto Instance}; `s3_put(bucket, key, text)`."""
        self.ec2_instances = ec2_instances
        self.s3_put = s3_put
        self.sandbox_root = sandbox_root
        self.faults = faults
        self.commands: dict = {}
        self.lock = threading.Lock()
        self.registration_delay = 1.0
        # Told of each command that reached a terminal status (the stack sends SSM's event).
        self.on_end = lambda run: None
        self.invocation_visible_after = 1.0
        # Extra environment of every command (what an instance's role and region give its
        # `aws` CLI: the stack sets the local endpoint, so nothing reaches the real AWS).
        self.env: dict = {}
        # The CloudWatch Logs client the output is streamed with (set by the stack).
        self.logs = None
        self._log_groups = set()
        # Each instance's metadata service, made with its first command.
        self.metadata: dict = {}
        self.tools = os.path.join(sandbox_root, "_bin")
        os.makedirs(self.tools, exist_ok=True)
        stub = os.path.join(self.tools, "aws")
        with open(stub, "w") as f:
            f.write(AWS_STUB.format(python=sys.executable))
        os.chmod(stub, 0o755)

    # ------------------------------------------------------------------ helpers

    def _instance(self, instance_id):
        return self.ec2_instances().get(instance_id)

    def _state(self, instance_id) -> str:
        inst = self._instance(instance_id)
        return inst.state if inst is not None else "gone"

    def _online(self, instance_id) -> bool:
        inst = self._instance(instance_id)
        if inst is None or inst.state != "running" or self.faults.never_online:
            return False
        if self.faults.invisible(instance_id):
            # EC2 does not show the instance yet: its agent has not registered either.
            return False
        launched = inst.launch_time
        if isinstance(launched, str):
            launched = datetime.datetime.fromisoformat(launched.replace("Z", "+00:00"))
        if launched.tzinfo is None:
            launched = launched.replace(tzinfo=datetime.timezone.utc)
        launched = launched.timestamp()
        return time.time() - launched >= self.registration_delay

    def metadata_of(self, instance_id: str) -> Metadata:
        """The instance's metadata service (started on first use)."""
        with self.lock:
            if instance_id not in self.metadata:
                self.metadata[instance_id] = Metadata(instance_id)
            return self.metadata[instance_id]

    def stop(self):
        for metadata in list(self.metadata.values()):
            metadata.stop()

    def ensure_log_group(self, group: str):
        """Creates `group` unless it exists (the agent creates a missing group)."""
        with self.lock:
            if group in self._log_groups:
                return
            try:
                self.logs.create_log_group(logGroupName=group)
            except self.logs.exceptions.ResourceAlreadyExistsException:
                pass
            self._log_groups.add(group)

    # ------------------------------------------------------------------ API

    def handle(self, operation: str, body: dict) -> dict:
        handler = getattr(self, operation, None)
        if handler is None:
            raise NotImplementedError(operation)
        return handler(body)

    def DescribeInstanceInformation(self, body):
        wanted = None
        for f in body.get("Filters", []) + body.get("InstanceInformationFilterList", []):
            if f.get("Key") in ("InstanceIds", "InstanceIds".lower()) or f.get("key") == "InstanceIds":
                wanted = set(f.get("Values") or f.get("valueSet") or [])
        items = []
        for instance_id in self.ec2_instances():
            if wanted is not None and instance_id not in wanted:
                continue
            if self._online(instance_id):
                items.append(
                    {
                        "InstanceId": instance_id,
                        "PingStatus": "Online",
                        "LastPingDateTime": time.time(),
                        "AgentVersion": "3.3.0-local",
                        "IsLatestVersion": True,
                        "PlatformType": "Linux",
                        "PlatformName": "Amazon Linux (spotstep local emulation)",
                        "ResourceType": "EC2Instance",
                    }
                )
        return {"InstanceInformationList": items}

    def SendCommand(self, body):
        ids = body.get("InstanceIds") or []
        if body.get("DocumentName") != "AWS-RunShellScript":
            raise SsmError("InvalidDocument", f"the local agent runs only AWS-RunShellScript, not {body.get('DocumentName')}")
        if len(ids) != 1 or not self._online(ids[0]):
            raise SsmError("InvalidInstanceId", f"Instances {ids} not in a valid state for account 123456789012")
        params = body.get("Parameters") or {}
        timeout = int((params.get("executionTimeout") or ["3600"])[0])
        command_id = str(uuid.uuid4())
        if not any(contract.workdir_template() in line for line in params.get("commands") or []):
            raise contract.FormatMismatch(
                "workdir_template", params.get("commands"), f"a step's command lines (none has {contract.workdir_template()!r})"
            )
        cloudwatch = body.get("CloudWatchOutputConfig") or {}
        log_group = None
        if cloudwatch.get("CloudWatchOutputEnabled"):
            log_group = cloudwatch.get("CloudWatchLogGroupName") or DEFAULT_LOG_GROUP
        run = CommandRun(
            command_id,
            ids[0],
            body.get("Comment", ""),
            params.get("commands") or [],
            timeout,
            body.get("OutputS3BucketName", ""),
            body.get("OutputS3KeyPrefix", ""),
            log_group,
        )
        with self.lock:
            self.commands[command_id] = run
        threading.Thread(target=self._run, args=(run,), daemon=True).start()
        return {"Command": self._command_summary(run)}

    def _command_summary(self, run: CommandRun) -> dict:
        status = run.status if run.status != "Delayed" else "InProgress"
        return {
            "CommandId": run.command_id,
            "DocumentName": "AWS-RunShellScript",
            "Comment": run.comment,
            "InstanceIds": [run.instance_id],
            "RequestedDateTime": run.requested,
            "Status": status,
            "StatusDetails": run.details,
            "OutputS3BucketName": run.s3_bucket,
            "OutputS3KeyPrefix": run.s3_prefix,
            "CloudWatchOutputConfig": self._cloudwatch_config(run),
        }

    @staticmethod
    def _cloudwatch_config(run: CommandRun) -> dict:
        return {"CloudWatchLogGroupName": run.log_group or "", "CloudWatchOutputEnabled": run.log_group is not None}

    def GetCommandInvocation(self, body):
        run = self.commands.get(body.get("CommandId"))
        if run is None or run.instance_id != body.get("InstanceId") or time.time() - run.requested < self.invocation_visible_after:
            raise SsmError("InvocationDoesNotExist", "An error occurred (InvocationDoesNotExist)")
        finished = run.status in ("Success", "Failed", "TimedOut", "Cancelled")
        out = {
            "CommandId": run.command_id,
            "InstanceId": run.instance_id,
            "Comment": run.comment,
            "DocumentName": "AWS-RunShellScript",
            "PluginName": "aws:runShellScript",
            "ResponseCode": run.response_code,
            "ExecutionStartDateTime": run.started,
            "ExecutionEndDateTime": run.ended,
            "Status": run.status,
            "StatusDetails": run.details,
            "StandardOutputContent": run.stdout[:STDOUT_LIMIT] if finished else "",
            "StandardErrorContent": run.stderr[:STDERR_LIMIT] if finished else "",
            "CloudWatchOutputConfig": self._cloudwatch_config(run),
        }
        if run.s3_bucket:
            out["StandardOutputUrl"] = f"https://s3.amazonaws.com/{run.s3_bucket}/{self._key(run, 'stdout')}"
            out["StandardErrorUrl"] = f"https://s3.amazonaws.com/{run.s3_bucket}/{self._key(run, 'stderr')}"
        return out

    def ListCommands(self, body):
        with self.lock:
            runs = list(self.commands.values())
        if body.get("CommandId"):
            runs = [r for r in runs if r.command_id == body["CommandId"]]
        if body.get("InstanceId"):
            runs = [r for r in runs if r.instance_id == body["InstanceId"]]
        lag = self.faults.list_commands_lag
        if lag:
            listed = [r for r in runs if time.time() - r.requested >= lag]
            self.faults.unlisted += len(runs) - len(listed)
            runs = listed
        return {"Commands": [self._command_summary(r) for r in runs]}

    def CancelCommand(self, body):
        run = self.commands.get(body.get("CommandId"))
        if run is None:
            raise SsmError("InvalidCommandId", "no such command")
        if run.status in ("Pending", "InProgress", "Delayed"):
            run.status = "Cancelling"
            run.details = "Cancelling"
            self._kill(run)
            run.status = "Cancelled"
            run.details = "Cancelled"
            run.ended = _now_iso()
            self.on_end(run)
        return {}

    # ------------------------------------------------------------------ the agent itself

    def _key(self, run: CommandRun, stream: str) -> str:
        return contract.fmt("ssm_output_key").make(
            log_prefix=run.s3_prefix.rstrip("/"), command_id=run.command_id, instance_id=run.instance_id, stream=stream
        )

    def _kill(self, run: CommandRun):
        if run.process is not None and run.process.poll() is None:
            for pid in session_pids(run.process.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def _run(self, run: CommandRun):
        sandbox = os.path.join(self.sandbox_root, run.instance_id)
        os.makedirs(sandbox, exist_ok=True)
        script = os.path.join(sandbox, f"_script-{run.command_id}.sh")
        # The instance's own temporary folder for the folder each command makes
        # (`script::WORKDIR_TEMPLATE`): in the sandbox, so that the host's /tmp does not fill
        # up with them. Only that template in the command lines is moved; the step script
        # itself (base64 inside them) is untouched.
        tmp = os.path.join(sandbox, "tmp")
        os.makedirs(tmp, exist_ok=True)
        template = contract.workdir_template()
        local_template = os.path.join(tmp, os.path.basename(template))
        lines = [line.replace(template, local_template) for line in run.commands]
        with open(script, "w") as f:
            f.write("\n".join(lines) + "\n")
        out_path, err_path = script + ".stdout", script + ".stderr"
        run.status, run.details, run.started = "InProgress", "InProgress", _now_iso()
        env = {
            "PATH": self.tools + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            **self.env,
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": self.metadata_of(run.instance_id).url,
        }
        streamed = None
        if run.log_group is not None and self.logs is not None:
            streamed = CloudWatchOutput(self, run, {"stdout": out_path, "stderr": err_path})
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            run.process = subprocess.Popen(
                ["sh", script], cwd=sandbox, env=env, stdout=out, stderr=err, start_new_session=True
            )
            deadline = run.requested + run.execution_timeout
            reclaim_at = self.faults.reclaim_time(run)
            rebalance_at = self.faults.rebalance_time(reclaim_at)
            terminate_at = self.faults.terminate_time(run)
            lost = timed_out = False
            while run.process.poll() is None:
                if self._state(run.instance_id) not in ("running", "pending"):
                    lost = True
                    self._kill(run)
                    break
                if rebalance_at is not None and time.time() >= rebalance_at:
                    self.metadata_of(run.instance_id).rebalance()
                    rebalance_at = None
                if reclaim_at is not None and time.time() >= reclaim_at:
                    self.faults.reclaim(run.instance_id)
                    reclaim_at = None
                    continue
                if terminate_at is not None and time.time() >= terminate_at:
                    self.faults.terminate(run.instance_id)
                    terminate_at = None
                    continue
                if time.time() >= deadline:
                    self._kill(run)
                    run.process.wait()
                    timed_out = True
                    break
                if streamed is not None:
                    streamed.pump()
                time.sleep(0.2)
            run.process.wait()
        with open(out_path, errors="replace") as f:
            run.stdout = f.read()
        with open(err_path, errors="replace") as f:
            run.stderr = f.read()
        if lost:
            # The agent vanished with its instance: nothing more is ever reported.
            return
        if streamed is not None:
            streamed.pump(final=True)
        if run.s3_bucket:
            # The full output reaches S3 before the invocation reports its end, as with SSM.
            self.s3_put(run.s3_bucket, self._key(run, "stdout"), run.stdout)
            if run.stderr:
                self.s3_put(run.s3_bucket, self._key(run, "stderr"), run.stderr)
        run.ended = _now_iso()
        if timed_out:
            details, code = self.faults.execution_timed_out
            run.status, run.details, run.response_code = "TimedOut", details, code
        elif run.status != "Cancelled":
            code = run.process.returncode
            run.response_code = code
            run.status = run.details = "Success" if code == 0 else "Failed"
        if run.status != "Cancelled":
            self.on_end(run)

    def runs(self, run_id: str = None, step: str = None):
        """The commands sent so far, in order: all, or one run's (and one step's)."""
        with self.lock:
            runs = list(self.commands.values())
        return [
            r for r in runs if (run_id is None or r.run_id == run_id) and (step is None or r.step == step)
        ]


def parse_json_body(raw: bytes) -> dict:
    return json.loads(raw or b"{}")
