"""The local emulated AWS: moto, the SSM agent emulation, the Lambda service, and a front
door that routes each request, with fault injection.

Everything runs in this one Python process (moto's server in a thread), so the harness can
reach moto's EC2 model directly to stage a spot reclaim. The Rust functions reach AWS through
`AWS_ENDPOINT_URL` = the front door; moto's Step Functions interpreter reaches Lambda through
it too (moto sends its Lambda calls to `localhost:$MOTO_PORT`, which is set to the front door).
"""

import datetime
import json
import logging
import os
import re
import sys
import threading
import time
import urllib.parse
import uuid
import http.client
import inspect
import queue
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
from botocore.config import Config

from . import contract, fleet, prices
from .agent import Agent, SsmError
from .events import EventBus, Reconciler
from .lambdas import ACCOUNT, REGION, LambdaService
from .redrive import TARGET_PREFIX as SFN_TARGET_PREFIX
from .redrive import Redrives, Refused

# The reconciler's schedule on the local stage (production: every 5 minutes).
RECONCILE_EVERY_SECONDS = 5.0

SSM_OPERATIONS = {
    "DescribeInstanceInformation",
    "SendCommand",
    "GetCommandInvocation",
    "ListCommands",
    "CancelCommand",
}


def __getattr__(name: str):
    # `FUNCTIONS`: the function names, from the contract (read when first asked for, so that
    # importing this module needs no binary).
    if name == "FUNCTIONS":
        return contract.functions()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class Hold:
    """Holds the Lambda invocations `matches(function, payload)` picks (before the function
    runs) until `release()`; `reached` is set once one is held."""

    def __init__(self, matches, times: int = 1):
        self.matches = matches
        self.times = times
        self.reached = threading.Event()
        self.released = threading.Event()

    def take(self, function: str, payload) -> bool:
        if self.times == 0 or not self.matches(function, payload):
            return False
        self.times -= 1
        return True

    def release(self):
        self.released.set()


class Faults:
    """What the tests can break. Each switch is off after `reset()` (between tests)."""

    def __init__(self):
        self.holds = []
        self.reset()
        self.reclaim_hook = None
        self.terminate_hook = None

    def reset(self):
        for hold in getattr(self, "holds", []):
            hold.release()
        self.never_online = False
        self.no_capacity = set()  # {(instance_type or "*", subnet_id or "*")}
        # The next N CreateFleet requests answer InsufficientInstanceCapacity in every pool;
        # then capacity returns.
        self.no_capacity_runs = 0
        # CreateFleet (fleet.py): the next N requests answer HTTP 200 with only
        # `RequestLimitExceeded` in `Errors`; with `fleet_unauthorized`, every request answers
        # `UnauthorizedOperation` in `Errors` for each pool (IAM refusing the launch).
        self.fleet_throttled = 0
        self.fleet_unauthorized = False
        # Every CreateFleet request the front door saw: (action, market), for the call counts.
        self.launch_calls = []
        self.throttle = {}  # operation -> remaining throttled answers
        # The next N S3 CopyObject calls answer AccessDenied (e.g. Launch staging the config).
        self.s3_copy_denied = 0
        self.reclaim_during = {}  # step -> {"after": seconds, "times": remaining (None = always)}
        # An operator's TerminateInstances (`Client.UserInitiatedShutdown`) during a step:
        # step -> {"after": seconds, "times": remaining (None = always)}.
        self.terminate_during = {}
        # EC2 eventual consistency: for this many seconds after a launch, EC2 does not show
        # the instance: DescribeInstances and TerminateInstances naming it answer
        # `InvalidInstanceID.NotFound`, a filtered DescribeInstances leaves it out, and its SSM
        # agent is not registered yet. `not_found` records each (action, instance_id) so hidden.
        self.ec2_not_found_for = 0.0
        self.not_found = []
        self.launched = {}  # instance_id -> time.time() of the launch that made it
        # SSM ListCommands lags SendCommand: a command is listed only this many seconds after
        # it was sent. `unlisted` counts the commands a ListCommands answer left out.
        self.list_commands_lag = 0.0
        self.unlisted = 0
        # What the agent reports for a command that ran past its executionTimeout:
        # (StatusDetails, ResponseCode). SSM documents `Execution Timed Out`; other SSM
        # references (and events) spell it `ExecutionTimedOut`.
        self.execution_timed_out = ("Execution Timed Out", 124)
        # A Lambda answer lost after the function succeeded: (function, step name, or
        # `fanout:<request>` for a sweep's bookkeeping call, or None) ->
        # remaining; the Lambda service then answers HTTP 500 `ServiceException`, as Lambda
        # does, and Step Functions sees `Lambda.ServiceException`. `lost_answers` records
        # (function, step, the body the function had returned).
        self.lose_answer = {}
        self.lost_answers = []
        # Lambda invocations held before the function runs (see `hold`).
        self.holds = []
        # The status-change rule's delivery (harness): None = at once, synchronously, as
        # before; or {"when": seconds or a predicate, "copies": n}: delivered late, from
        # another thread, once `when` is due, `copies` times (duplicates).
        self.rule_delivery = None
        # EventBridge's delivery of the step events to poll-result (events.py), per
        # detail-type key (`command_invocation`, `spot_warning`, `instance_state`): drop the
        # next N (None: every one), deliver each N times, deliver after N seconds.
        self.drop_events = {}
        self.duplicate_events = {}
        self.delay_events = {}
        # Each further copy of a duplicated event this many seconds after the one before.
        self.duplicate_after = 0.0
        # Hold every event this many seconds, then deliver the held ones newest first.
        self.reorder_events = 0.0
        # The reconciler's schedule runs (events.Reconciler).
        self.reconcile = True
        # A spot reclaim: the interruption warning (EventBridge's event and the instance
        # metadata notice), then the instance terminates this many seconds later (AWS: about
        # 120).
        self.reclaim_lead = 2.0
        # False: a reclaim with no notice at all (AWS calls both best effort): neither the
        # event nor the metadata notice, the instance just terminates.
        self.reclaim_notice = True
        # The rebalance recommendation appears in the instance's metadata this many seconds
        # before a reclaim's notice (None: never).
        self.rebalance_before = None
        # The on-demand instances a planned reclaim left alone.
        self.not_reclaimed = []
        # EC2 eventual consistency after an instance went: for this many seconds after it
        # terminated, DescribeInstances naming it still shows it `running` (no state reason).
        # `shown_running` records each instance id so shown.
        self.ec2_running_after_gone = 0.0
        self.gone = {}  # instance_id -> time.time() it terminated
        self.shown_running = []
        # Step Functions' ListExecutions is eventually consistent: an execution is listed
        # only this many seconds after it started.
        self.list_executions_lag = 0.0
        # The next N writes that complete a send marker with its command (send-step's write
        # after SendCommand) answer AccessDenied: the marker keeps no command.
        self.marker_completion_lost = 0
        # DescribeSpotPriceHistory (prices.py): {(instance type, zone): [(epoch s, usd/h)]}
        # replacing a pool's seeded history; an empty list is a pool without history.
        self.spot_prices = {}

    def event_plan(self, key: str):
        """(drop, copies, delay) for the next event of detail-type key `key`."""
        drop = False
        if key in self.drop_events:
            left = self.drop_events[key]
            if left is None:
                drop = True
            elif left > 0:
                self.drop_events[key] = left - 1
                drop = True
        return drop, self.duplicate_events.get(key, 1), self.delay_events.get(key, 0.0)

    def request_without_capacity(self) -> bool:
        if self.no_capacity_runs > 0:
            self.no_capacity_runs -= 1
            return True
        return False

    def pool_without_capacity(self, instance_type: str, subnet: str) -> bool:
        return any(t in ("*", instance_type) and s in ("*", subnet) for t, s in self.no_capacity)

    def fleet_errors(self, market: str, pools) -> tuple:
        """What a CreateFleet over `pools` [(number, type, subnet)] answers: (the pool that
        launches or None, [(type, subnet, code, message)] for `Errors`)."""
        self.launch_calls.append(("CreateFleet", market))
        if self.fleet_unauthorized:
            message = "You are not authorized to perform this operation. (injected)"
            return None, [(t, s, "UnauthorizedOperation", message) for _, t, s in pools]
        if self.fleet_throttled > 0:
            self.fleet_throttled -= 1
            return None, [(t, s, "RequestLimitExceeded", "Request limit exceeded. (injected)") for _, t, s in pools]
        everywhere = self.request_without_capacity()
        errors, chosen = [], None
        for number, t, s in pools:
            if everywhere or self.pool_without_capacity(t, s):
                message = f"We currently do not have sufficient {t} capacity in the subnet {s} (injected)"
                errors.append((t, s, "InsufficientInstanceCapacity", message))
            elif chosen is None:
                chosen = number
        return chosen, errors

    def take_s3_copy_denied(self) -> bool:
        if self.s3_copy_denied > 0:
            self.s3_copy_denied -= 1
            return True
        return False

    def take_throttle(self, operation: str) -> bool:
        left = self.throttle.get(operation, 0)
        if left > 0:
            self.throttle[operation] = left - 1
            return True
        return False

    def _due(self, plans: dict, run):
        plan = plans.get(run.step)
        if not plan or plan.get("times") == 0:
            return None
        if plan.get("times") is not None:
            plan["times"] -= 1
        return run.requested + plan.get("after", 1.0)

    def reclaim_time(self, run):
        return self._due(self.reclaim_during, run)

    def rebalance_time(self, reclaim_at):
        if reclaim_at is None or self.rebalance_before is None:
            return None
        return reclaim_at - self.rebalance_before

    def terminate_time(self, run):
        return self._due(self.terminate_during, run)

    def reclaim(self, instance_id):
        self.reclaim_hook(instance_id)

    def terminate(self, instance_id):
        self.terminate_hook(instance_id)

    # -- EC2 eventual consistency

    def saw_launch(self, instance_ids):
        now = time.time()
        for instance_id in instance_ids:
            self.launched[instance_id] = now

    def saw_gone(self, instance_id: str):
        self.gone.setdefault(instance_id, time.time())

    def still_shown_running(self, instance_id: str) -> bool:
        """True while DescribeInstances still shows the terminated `instance_id` running."""
        gone = self.gone.get(instance_id)
        lagging = bool(self.ec2_running_after_gone) and gone is not None and time.time() - gone < self.ec2_running_after_gone
        if lagging:
            self.shown_running.append(instance_id)
        return lagging

    def take_marker_completion_lost(self, body: bytes) -> bool:
        """True (once per count) for a send marker write that records its command while
        the step still waits: send-step completing the marker."""
        if self.marker_completion_lost <= 0:
            return False
        try:
            marker = json.loads(body or b"{}")
        except ValueError:
            return False
        if not isinstance(marker, dict) or not marker.get("command") or marker.get("answer"):
            return False
        self.marker_completion_lost -= 1
        return True

    def invisible(self, instance_id: str) -> bool:
        """True while EC2 does not show `instance_id` yet (the fault is on and it was launched
        less than `ec2_not_found_for` seconds ago)."""
        launched = self.launched.get(instance_id)
        return bool(self.ec2_not_found_for) and launched is not None and time.time() - launched < self.ec2_not_found_for

    # -- Lambda

    def hold(self, matches, times: int = 1) -> Hold:
        """Holds the next `times` Lambda invocations for which `matches(function, payload)` is
        true (payload: the parsed event) until the returned hold is released."""
        hold = Hold(matches, times)
        self.holds.append(hold)
        return hold

    def take_lost_answer(self, function: str, step) -> bool:
        for key in ((function, step), (function, None)):
            if self.lose_answer.get(key, 0) > 0:
                self.lose_answer[key] -= 1
                return True
        return False


def _patch_moto_terminate():
    """TerminateInstances on an instance that is already terminated changes nothing on AWS (its
    state reason stays, say, `Server.SpotInstanceTermination`); moto rewrites it to
    `Client.UserInitiatedShutdown`, which would turn a reclaim into a plain loss for whoever
    looks at the instance after a cleanup."""
    import copy

    from moto.ec2.models.instances import Instance

    if getattr(Instance, "_spotstep_patched", False):
        return
    original = Instance.terminate

    def terminate(self):
        if self._state.name == "terminated":
            return copy.copy(self._state)
        previous = original(self)
        faults = _faults()
        if faults is not None:
            faults.saw_gone(self.id)
        for hook in _STATE_HOOKS:
            hook(self.id, "shutting-down")
            hook(self.id, "terminated")
        return previous

    Instance.terminate = terminate
    Instance._spotstep_patched = True


# The faults the patched moto calls consult (the stack's, set when it starts).
_FAULTS = []
# Told of each instance state change moto makes (the stack's EC2 events).
_STATE_HOOKS = []


def _faults():
    return _FAULTS[-1] if _FAULTS else None


def _patch_moto_dispatch_caches():
    """moto's server, on every request, lists its own package folder to route the request
    (`backends.list_of_moto_modules`: about 180 `stat` calls) and lists the response class's
    methods through `inspect.getmembers` to find the action: about 3 ms of its 6 ms for a
    DescribeInstances on these machines (cProfile, 40 requests). Both answers are fixed for the
    life of the process, so each is computed once. Only the stage's speed changes: the same
    request reaches the same backend and the same action."""
    import functools

    from moto import backends
    from moto.core import responses

    if getattr(backends, "_spotstep_patched", False):
        return
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    responses.method_names_from_class = functools.lru_cache(maxsize=None)(
        lambda clazz: tuple(name for name, _ in inspect.getmembers(clazz, inspect.isfunction))
    )
    backends._spotstep_patched = True


def _patch_moto_ec2_visibility():
    """EC2 eventual consistency (`Faults.ec2_not_found_for`): an instance EC2 does not show yet
    is `InvalidInstanceID.NotFound` to a DescribeInstances or TerminateInstances naming it and
    absent from a filtered DescribeInstances. Only the API answers change: moto's model, which
    the harness and the agent read directly, still has the instance."""
    from moto.ec2.exceptions import InvalidInstanceIdError
    from moto.ec2.models.instances import InstanceBackend
    from moto.ec2.responses.instances import InstanceResponse

    if getattr(InstanceResponse, "_spotstep_patched", False):
        return

    def hidden(action: str, ids) -> list:
        faults = _faults()
        found = [i for i in ids if faults is not None and faults.invisible(i)]
        for instance_id in found:
            faults.not_found.append((action, instance_id))
        return found

    def guarded(action: str, original):
        def method(self):
            missing = hidden(action, self._get_param("InstanceIds", []))
            if missing:
                raise InvalidInstanceIdError(missing)
            return original(self)

        return method

    def shown(reservations):
        """The reservations with each instance EC2 still shows running (its state lags its
        termination, `Faults.ec2_running_after_gone`) as a running copy."""
        import copy

        from moto.ec2.models.instances import InstanceState, StateReason

        def running(instance):
            instance = copy.copy(instance)
            instance._state = InstanceState("running", 16)
            instance._reason = ""
            instance.state_reason = StateReason()
            return instance

        faults = _faults()
        for reservation in reservations:
            lagging = {i.id for i in reservation.instances if faults is not None and faults.still_shown_running(i.id)}
            if lagging:
                reservation.instances = [running(i) if i.id in lagging else i for i in reservation.instances]
        return reservations

    original_by_ids = InstanceBackend.get_reservations_by_instance_ids

    def get_reservations_by_instance_ids(self, instance_ids, filters=None):
        return shown(original_by_ids(self, instance_ids, filters))

    InstanceBackend.get_reservations_by_instance_ids = get_reservations_by_instance_ids
    InstanceResponse.describe_instances = guarded("DescribeInstances", InstanceResponse.describe_instances)
    InstanceResponse.terminate_instances = guarded("TerminateInstances", InstanceResponse.terminate_instances)

    original_describe = InstanceBackend.describe_instances

    def describe_instances(self, filters=None):
        # The filtered (no instance ids) DescribeInstances; the reservations are shallow copies
        # whose instance lists are moto's own: build new lists.
        reservations = []
        for reservation in original_describe(self, filters):
            gone = set(hidden("DescribeInstances", [i.id for i in reservation.instances]))
            if gone:
                reservation.instances = [i for i in reservation.instances if i.id not in gone]
            if reservation.instances:
                reservations.append(reservation)
        return reservations

    InstanceBackend.describe_instances = describe_instances
    InstanceResponse._spotstep_patched = True


def _patch_moto_lambda_service_errors():
    """When Lambda's Invoke itself fails (HTTP 4xx/5xx, no function error), Step Functions
    names the error `Lambda.<the Lambda error code>` (`Lambda.ServiceException`, ...): what the
    states' transient Retry lists. moto names every such error `Exception`."""
    from botocore.exceptions import ClientError
    from moto.stepfunctions.parser.api import HistoryEventType, LambdaFunctionFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEvent
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.state_task_lambda import StateTaskLambda
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    if getattr(StateTaskLambda, "_spotstep_patched", False):
        return
    original = StateTaskLambda._from_error

    def _from_error(self, env, ex):
        if not isinstance(ex, ClientError):
            return original(self, env, ex)
        error = ex.response.get("Error", {})
        name = "Lambda." + (error.get("Code") or "ServiceException")
        status = ex.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        cause = f"{error.get('Message', '')} (Service: Lambda, Status Code: {status}, Error Code: {error.get('Code')})"
        return FailureEvent(
            env=env,
            error_name=CustomErrorName(name),
            event_type=HistoryEventType.LambdaFunctionFailed,
            event_details=EventDetails(
                lambdaFunctionFailedEventDetails=LambdaFunctionFailedEventDetails(error=name, cause=cause)
            ),
        )

    StateTaskLambda._from_error = _from_error
    StateTaskLambda._spotstep_patched = True


def _patch_moto_send_task_failure_cause():
    """SendTaskFailure's `cause` reaches the failed task (and its Catch, `$.failure.Cause`) on
    AWS; moto's server drops it, passing only the error."""
    from moto.stepfunctions.responses import StepFunctionResponse

    if getattr(StepFunctionResponse, "_spotstep_patched", False):
        return
    from moto.core.responses import EmptyResult

    def send_task_failure(self):
        self.stepfunction_backend.send_task_failure(
            self._get_param("taskToken"), error=self._get_param("error"), cause=self._get_param("cause")
        )
        return EmptyResult()

    StepFunctionResponse.send_task_failure = send_task_failure
    StepFunctionResponse._spotstep_patched = True


def _patch_moto_stop_wakes_waiting_tasks():
    """StopExecution ends an execution at once on AWS, also while a task waits for its token.
    moto marks the stop but reports ABORTED only once the waiting task returns (its token
    answered or timed out): the stop here wakes the execution's waiting tasks."""
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker

    if getattr(ExecutionWorker.stop, "_spotstep_patched", False):
        return
    original = ExecutionWorker.stop

    def stop(self, stop_date, error, cause):
        original(self, stop_date=stop_date, error=error, cause=cause)
        pool = getattr(getattr(self.env, "callback_pool_manager", None), "_pool", {})
        for endpoint in list(pool.values()):
            endpoint.interrupt_all()

    stop._spotstep_patched = True
    ExecutionWorker.stop = stop

    # The woken task ends in an error, which must not turn the stop into a failure.
    from moto.stepfunctions.parser.asl.eval.environment import Environment
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped

    set_error = Environment.set_error

    def keep_the_stop(self, error):
        if isinstance(self._program_state, ProgramStopped):
            return
        set_error(self, error)

    Environment.set_error = keep_the_stop


def _patch_moto_used_tokens():
    """On AWS a task token is answered once: SendTaskSuccess/Failure on the token of a task
    that ended (answered, timed out, stopped) is refused (`TaskTimedOut`, `InvalidToken`).
    moto keeps accepting it (and would report a late, duplicate answer as taken): here a
    waiting task's token is spent when the task ends."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
        StateTaskServiceCallback,
    )
    from moto.stepfunctions.parser.asl.eval.callback.callback import (
        CallbackConsumerLeft,
        CallbackConsumerTimeout,
        CallbackTimeoutError,
    )

    if getattr(StateTaskServiceCallback, "_spotstep_patched", False):
        return
    original = StateTaskServiceCallback._eval_integration_pattern

    def spend(env, token, why):
        endpoint = env.callback_pool_manager.get(token) if token else None
        if endpoint is not None and endpoint.consumer_error is None:
            endpoint.report(why)

    def _eval_integration_pattern(self, env, *args, **kwargs):
        token = (env.states.context_object.context_object_data.get("Task") or {}).get("Token")
        try:
            return original(self, env, *args, **kwargs)
        except CallbackTimeoutError:
            spend(env, token, CallbackConsumerTimeout())
            raise
        finally:
            spend(env, token, CallbackConsumerLeft())

    StateTaskServiceCallback._eval_integration_pattern = _eval_integration_pattern
    StateTaskServiceCallback._spotstep_patched = True


def _patch_moto_conditional_writes():
    """S3 decides a conditional PutObject (`If-None-Match: *`, `If-Match`) atomically: of two
    writes racing for one key, one wins. moto checks the condition and writes in two steps,
    each request on its own thread: here they run one at a time."""
    from moto.s3.responses import S3Response

    if getattr(S3Response, "_spotstep_patched", False):
        return
    original = S3Response.put_object
    lock = threading.Lock()

    def put_object(self):
        with lock:
            return original(self)

    S3Response.put_object = put_object
    S3Response._spotstep_patched = True


def _patch_moto_state_machine_clone():
    """moto's executing StartExecution deep-copies the state machine, executions included; a
    finished execution keeps its interpreter environment (which holds an RLock), so every
    StartExecution after the first on the same state machine fails with HTTP 500 ("cannot
    pickle '_thread.RLock' object"). The clone only needs the definition and settings: copy it
    without the executions."""
    import copy

    from moto.stepfunctions.models import StateMachine

    if getattr(StateMachine, "_spotstep_patched", False):
        return

    def __deepcopy__(self, memo):
        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        for key, value in self.__dict__.items():
            setattr(clone, key, [] if key == "executions" else copy.deepcopy(value, memo))
        return clone

    StateMachine.__deepcopy__ = __deepcopy__
    StateMachine._spotstep_patched = True


class MotoConnections:
    """Kept-alive connections from the front door to moto, shared by all of its request
    threads: a request takes one (or opens one when none is free) and gives it back after
    the answer, so neither a new client connection nor a new request pays a connect and a new
    server thread in moto (about 1 ms each time)."""

    def __init__(self, port: int):
        self.port = port
        self.free = queue.SimpleQueue()

    def take(self) -> http.client.HTTPConnection:
        try:
            return self.free.get_nowait()
        except queue.Empty:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def give(self, conn: http.client.HTTPConnection):
        self.free.put(conn)

    def close(self):
        while True:
            try:
                self.free.get_nowait().close()
            except queue.Empty:
                return


class LocalStack:
    def __init__(self, root: str, binaries: dict, bucket: str = "spotstep-local", log_group: str = "/spotstep/local/steps"):
        """`log_group`: the CloudWatch Logs group send-step has the steps' output streamed to
        (`SPOTSTEP_LOG_GROUP`, as template.yaml's `LogGroupName`; empty: S3 only)."""
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer

        _patch_moto_dispatch_caches()
        _patch_moto_terminate()
        _patch_moto_state_machine_clone()
        _patch_moto_ec2_visibility()
        _patch_moto_lambda_service_errors()
        _patch_moto_send_task_failure_cause()
        _patch_moto_stop_wakes_waiting_tasks()
        _patch_moto_used_tokens()
        _patch_moto_conditional_writes()

        for noisy in ("werkzeug", "moto"):
            logging.getLogger(noisy).setLevel(logging.CRITICAL)

        self.root = root
        self.bucket = bucket
        self.log_group = log_group
        os.makedirs(root, exist_ok=True)
        self.faults = Faults()
        # The harness driving executions on this stack (it sets itself): the front door's
        # RedriveExecution runs its emulated redrive.
        self.harness = None
        self.redrives = Redrives(self)
        self.faults.reclaim_hook = self.reclaim
        self.faults.terminate_hook = self.operator_terminate
        _FAULTS.append(self.faults)
        # Both servers bind port 0 and are asked which port they got: a port picked first and
        # bound later could be taken in between by another stack on the same machine.
        self.front = ThreadingHTTPServer(("127.0.0.1", 0), self._front_handler())
        self.front.daemon_threads = True
        self.front_port = self.front.server_address[1]
        os.environ["MOTO_PORT"] = str(self.front_port)
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        self.moto_port = self.moto.get_host_and_port()[1]
        self._moto_url = f"http://127.0.0.1:{self.moto_port}"
        self.moto_connections = MotoConnections(self.moto_port)
        self.endpoint = f"http://127.0.0.1:{self.front_port}"
        self._post_moto("/moto-api/config", {"stepfunctions": {"execute_state_machine": True}})
        self.agent = Agent(self._instances, self._s3_put, os.path.join(root, "instances"), self.faults)
        self.agent.on_end = self._command_ended
        self.agent.logs = self.client("logs")
        self.world = self._create_world()
        self.agent.env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_EC2_METADATA_DISABLED": "true",
            "RUST_LOG": "info",
            "SPOTSTEP_BUCKET": bucket,
            "SPOTSTEP_SUBNETS": ",".join(self.world["subnets"]),
            "SPOTSTEP_LAUNCH_TEMPLATE": self.world["launch_template"],
            "SPOTSTEP_INSTANCE_PROFILE": self.world["instance_profile"],
            "SPOTSTEP_IMAGE_ID": self.world["image_id"],
            "SPOTSTEP_LOG_GROUP": log_group,
            "SPOTSTEP_REGISTRATION_GRACE": "30",
            "SPOTSTEP_SWEEP_GRACE": "60",
            "SPOTSTEP_STACK": "spotstep-local",
            "SPOTSTEP_TOPIC": self.world["topic"],
        }
        os.makedirs(os.path.join(root, "logs"), exist_ok=True)
        self.lambdas = LambdaService(
            binaries, env, os.path.join(root, "logs"), {"launch": 120, "cleanup": 300}, faults=self.faults
        )
        self.events = EventBus(self.lambdas, self.faults)
        _STATE_HOOKS[:] = [self.events.instance_state]
        self.reconciler = Reconciler(self.lambdas, self.faults, RECONCILE_EVERY_SECONDS)
        threading.Thread(target=self.front.serve_forever, daemon=True).start()

    # ------------------------------------------------------------------ clients and moto

    def client(self, service: str):
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self._moto_url,
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=Config(retries={"max_attempts": 2}, s3={"addressing_style": "path"}),
        )

    def _post_moto(self, path: str, body: dict):
        conn = http.client.HTTPConnection("127.0.0.1", self.moto_port, timeout=30)
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        conn.getresponse().read()
        conn.close()

    def _ec2_backend(self):
        from moto.ec2.models import ec2_backends

        return ec2_backends[ACCOUNT][REGION]

    def _instances(self) -> dict:
        return {i.id: i for i in self._ec2_backend().all_instances()}

    def _s3_put(self, bucket: str, key: str, text: str):
        self.client("s3").put_object(Bucket=bucket, Key=key, Body=text.encode())

    def _create_world(self) -> dict:
        ec2 = self.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
        subnets = [
            ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.42.{i}.0/24", AvailabilityZone=f"{REGION}{az}")["Subnet"]["SubnetId"]
            for i, az in enumerate("abc")
        ]
        sg = ec2.create_security_group(GroupName="spotstep-local", Description="no inbound", VpcId=vpc)["GroupId"]
        image_id = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        # The stack's launch template (template.yaml's LaunchTemplate, without its watchdog:
        # the stage runs no user data).
        launch_template = ec2.create_launch_template(
            LaunchTemplateName="spotstep-local",
            LaunchTemplateData={
                "SecurityGroupIds": [sg],
                "InstanceInitiatedShutdownBehavior": "terminate",
                "MetadataOptions": {"HttpTokens": "required", "InstanceMetadataTags": "enabled"},
                "TagSpecifications": [
                    {"ResourceType": "volume", "Tags": [{"Key": "spotstep:stack", "Value": "spotstep-local"}]}
                ],
            },
        )["LaunchTemplate"]["LaunchTemplateId"]
        iam = self.client("iam")
        iam.create_role(RoleName="spotstep-instance", AssumeRolePolicyDocument="{}")
        iam.create_instance_profile(InstanceProfileName="spotstep-instance")
        iam.add_role_to_instance_profile(InstanceProfileName="spotstep-instance", RoleName="spotstep-instance")
        s3 = self.client("s3")
        s3.create_bucket(Bucket=self.bucket)
        topic = self.client("sns").create_topic(Name="spotstep-local")["TopicArn"]
        return {
            "vpc": vpc,
            "subnets": subnets,
            "security_group": sg,
            "launch_template": launch_template,
            "image_id": image_id,
            "instance_profile": "spotstep-instance",
            "topic": topic,
        }

    def notifications(self) -> list:
        """(subject, message) of every notification published to the stack's topic, in order."""
        from moto.sns.models import sns_backends

        sent = sns_backends[ACCOUNT][REGION].topics[self.world["topic"]].sent_notifications
        return [(n[2], n[1]) for n in sent]

    def put_config(self, uri: str, text: str = "local: true\n"):
        bucket, key = uri[len("s3://"):].split("/", 1)
        s3 = self.client("s3")
        try:
            s3.create_bucket(Bucket=bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        s3.put_object(Bucket=bucket, Key=key, Body=text.encode())

    def _command_ended(self, run):
        """SSM's event for a command that reached a terminal status."""
        requested = datetime.datetime.fromtimestamp(run.requested, datetime.timezone.utc).isoformat(timespec="milliseconds")
        self.events.command_ended(run.command_id, run.instance_id, run.status, requested.replace("+00:00", "Z"))

    def reclaim(self, instance_id: str):
        """A spot reclaim: EC2's interruption warning (the event and the notice in the
        instance's metadata), then, `Faults.reclaim_lead` seconds later, the instance
        terminates with `Server.SpotInstanceTermination`; without `Faults.reclaim_notice`, at
        once and unannounced. EC2 reclaims only spot instances: a reclaim planned for an
        on-demand one does not happen (`Faults.not_reclaimed` records it)."""
        if self._ec2_backend().get_instance(instance_id).lifecycle != "spot":
            self.faults.not_reclaimed.append(instance_id)
            return
        if not self.faults.reclaim_notice:
            self._reclaimed(instance_id)
            return
        lead = self.faults.reclaim_lead
        self.agent.metadata_of(instance_id).notice(lead)
        self.events.spot_warning(instance_id)
        if lead:
            timer = threading.Timer(lead, self._reclaimed, args=(instance_id,))
            timer.daemon = True
            timer.start()
        else:
            self._reclaimed(instance_id)

    def _reclaimed(self, instance_id: str):
        from moto.ec2.models.instances import StateReason

        instance = self._ec2_backend().get_instance(instance_id)
        instance.terminate()
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S GMT")
        instance._reason = f"Service initiated ({stamp})"
        instance.state_reason = StateReason(
            "Server.SpotInstanceTermination: Spot instance termination", "Server.SpotInstanceTermination"
        )

    def operator_terminate(self, instance_id: str):
        """An operator's TerminateInstances (moto: `Client.UserInitiatedShutdown`)."""
        self._ec2_backend().terminate_instances([instance_id])

    def live_instances(self) -> list:
        return [i for i in self._ec2_backend().all_instances() if i.state in ("pending", "running", "stopping", "stopped")]

    def instances(self, run_id: str = None, job: str = None) -> list:
        """Every instance moto's EC2 ever launched (terminated ones too); only those tagged with
        `run_id` / `job` when given."""
        found = []
        for instance in self._ec2_backend().all_instances():
            tags = {t["key"]: t["value"] for t in instance.get_tags()}
            if run_id is not None and tags.get(contract.tag("run_id")) != run_id:
                continue
            if job is not None and tags.get(contract.tag("job")) != job:
                continue
            found.append(instance)
        return found

    def keys(self, prefix: str, bucket: str = None) -> list:
        """The object keys under `prefix` in the stack's bucket (or `bucket`)."""
        s3 = self.client("s3")
        keys, token = [], None
        while True:
            kwargs = {"Bucket": bucket or self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = s3.list_objects_v2(**kwargs)
            keys.extend(o["Key"] for o in page.get("Contents", []))
            token = page.get("NextContinuationToken")
            if not token:
                return keys

    def read(self, key: str, bucket: str = None) -> str:
        return self.client("s3").get_object(Bucket=bucket or self.bucket, Key=key)["Body"].read().decode()

    def stop(self):
        self.reconciler.stop()
        self.lambdas.stop()
        for run in self.agent.runs():
            self.agent._kill(run)
        self.agent.stop()
        self.front.shutdown()
        self.moto_connections.close()
        self.moto.stop()

    # ------------------------------------------------------------------ the front door

    def _front_handler(self):
        stack = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's
            # algorithm and delayed ACKs stall some answers by ~40 ms.
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def _reply(self, status: int, body: bytes, headers: dict):
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = urllib.parse.unquote(self.path.split("?", 1)[0])
                m = re.match(r"^/2015-03-31/functions/(.+)/invocations$", path)
                if m and self.command == "POST":
                    status, payload, error = stack.lambdas.invoke(m.group(1), body)
                    headers = {
                        "Content-Type": "application/json",
                        "X-Amz-Executed-Version": "$LATEST",
                        "x-amzn-RequestId": str(uuid.uuid4()),
                    }
                    if error and status >= 400:
                        # Lambda's own failure (no function error): its error code
                        headers["x-amzn-ErrorType"] = error
                    elif error:
                        headers["X-Amz-Function-Error"] = error
                    return self._reply(status, payload, headers)
                target = self.headers.get("X-Amz-Target", "")
                if target.startswith("AmazonSSM."):
                    op = target.split(".", 1)[1]
                    if stack.faults.take_throttle(op):
                        return self._json_error(400, "ThrottlingException", "Rate exceeded (injected)")
                    if op in SSM_OPERATIONS:
                        try:
                            out = stack.agent.handle(op, json.loads(body or b"{}"))
                        except SsmError as e:
                            return self._json_error(400, e.code, e.message)
                        except contract.FormatMismatch as e:
                            # A Rust-made string the stage cannot read: fail the call with the
                            # reason (the function reports it), and say it here too.
                            print(f"spotstep local stage: {op}: {e}", file=sys.stderr, flush=True)
                            return self._json_error(500, "InternalServerError", f"spotstep local stage: {e}")
                        return self._reply(200, json.dumps(out).encode(), {"Content-Type": "application/x-amz-json-1.1"})
                if target.startswith(SFN_TARGET_PREFIX):
                    op = target[len(SFN_TARGET_PREFIX):]
                    if op == "ListExecutions" and stack.faults.list_executions_lag:
                        return self._list_executions_lagging(json.loads(body or b"{}"))
                    try:
                        out = stack.redrives.answer(op, json.loads(body or b"{}"), self._fetch_json)
                    except Refused as e:
                        return self._json_error(400, e.code, e.message, "application/x-amz-json-1.0")
                    if out is not None:
                        return self._reply(200, json.dumps(out).encode(), {"Content-Type": "application/x-amz-json-1.0"})
                if self.command == "PUT" and self._is_send_marker(path) and stack.faults.take_marker_completion_lost(body):
                    return self._s3_access_denied()
                if self.command == "PUT" and self.headers.get("x-amz-copy-source") and stack.faults.take_s3_copy_denied():
                    return self._s3_access_denied()
                ec2_action = self._ec2_action(body)
                if ec2_action:
                    if stack.faults.take_throttle(ec2_action):
                        return self._ec2_error("RequestLimitExceeded", "Request limit exceeded (injected)")
                    if ec2_action == "DescribeSpotPriceHistory":
                        product = contract.load()["prices"]["spot_product"]
                        answer = prices.answer(prices.parse(body), stack.faults.spot_prices, product)
                        return self._reply(200, answer, {"Content-Type": "text/xml"})
                    if ec2_action == "CreateFleet":
                        return self._create_fleet(body)
                    if ec2_action == "RunInstances":
                        # Not the launch's (one fleet request); the eventual-consistency switch
                        # still hides an instance launched this way.
                        data = self._forward(body)
                        stack.faults.saw_launch(re.findall(r"<instanceId>(i-[0-9a-f]+)</instanceId>", data.decode(errors="replace")))
                        return data
                return self._forward(body)

            def _create_fleet(self, body: bytes):
                """CreateFleet as EC2 answers it (fleet.py): the pools the faults refuse in
                `Errors`, the first other pool launched by moto, in the same answer."""
                pairs, market, pools = fleet.parse(body)
                chosen, errors = stack.faults.fleet_errors(market, pools)
                headers = {"Content-Type": "text/xml"}
                if chosen is None:
                    return self._reply(200, fleet.only_errors(errors, market), headers)
                status, data, moto_headers = self._fetch(fleet.keep_only(pairs, chosen))
                if status != 200:
                    return self._reply(status, data, moto_headers)
                stack.faults.saw_launch(re.findall(r"(i-[0-9a-f]{8,})", data.decode(errors="replace")))
                return self._reply(200, fleet.with_errors(data, errors, market), headers)

            def _is_send_marker(self, path: str) -> bool:
                bucket_and_key = path.lstrip("/").split("/", 1)
                return len(bucket_and_key) == 2 and contract.fmt("send_marker_key").match(bucket_and_key[1]) is not None

            def _s3_access_denied(self):
                payload = (
                    '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                    "<Message>Access Denied (injected)</Message><RequestId>local</RequestId></Error>"
                ).encode()
                return self._reply(403, payload, {"Content-Type": "application/xml"})

            def _list_executions_lagging(self, request: dict):
                """ListExecutions without the executions started less than
                `Faults.list_executions_lag` seconds ago (eventual consistency)."""
                status, out = self._fetch_json("ListExecutions", request)
                if status == 200:
                    since = time.time() - stack.faults.list_executions_lag
                    out["executions"] = [e for e in out.get("executions", []) if e.get("startDate", 0) <= since]
                return self._reply(status, json.dumps(out).encode(), {"Content-Type": "application/x-amz-json-1.0"})

            def _ec2_action(self, body: bytes) -> str:
                ctype = self.headers.get("Content-Type", "")
                if "x-www-form-urlencoded" not in ctype or b"Action=" not in body:
                    return ""
                form = urllib.parse.parse_qs(body.decode(errors="replace"))
                version = form.get("Version", [""])[0]
                return form.get("Action", [""])[0] if version.startswith("2016-11-15") else ""

            def _json_error(self, status: int, code: str, message: str, ctype: str = "application/x-amz-json-1.1"):
                payload = json.dumps({"__type": code, "message": message}).encode()
                self._reply(status, payload, {"Content-Type": ctype})

            def _ec2_error(self, code: str, message: str):
                payload = (
                    f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
                    f"<Message>{message}</Message></Error></Errors><RequestID>local</RequestID></Response>"
                ).encode()
                self._reply(400, payload, {"Content-Type": "text/xml"})

            def _fetch(self, body: bytes, target: str = None):
                """moto's answer to this request (with `body`, and `target` as its
                X-Amz-Target when given): (status, body, headers)."""
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection", "content-length")
                }
                headers["Host"] = f"127.0.0.1:{stack.moto_port}"
                if target is not None:
                    headers["X-Amz-Target"] = target
                conn = stack.moto_connections.take()
                try:
                    try:
                        conn.request(self.command, self.path, body, headers)
                        resp = conn.getresponse()
                        data = resp.read()
                    except (http.client.HTTPException, OSError):
                        # moto closed the kept connection: once more on a new one.
                        conn.close()
                        conn.request(self.command, self.path, body, headers)
                        resp = conn.getresponse()
                        data = resp.read()
                except BaseException:
                    conn.close()
                    raise
                stack.moto_connections.give(conn)
                return resp.status, data, dict(resp.getheaders())

            def _fetch_json(self, operation: str, request: dict):
                """moto's answer to the Step Functions `operation` with `request`: (status, JSON)."""
                status, data, _ = self._fetch(json.dumps(request).encode(), SFN_TARGET_PREFIX + operation)
                return status, json.loads(data or b"{}")

            def _forward(self, body: bytes):
                status, data, headers = self._fetch(body)
                self._reply(status, data, headers)
                return data

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

        return Handler
