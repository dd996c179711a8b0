"""template.yaml's functions run locally: each warm execution environment is a process of its own.

A process per environment keeps what Lambda keeps apart: each function has only the environment variables the
template gives it, module state (clients, database connections, Powertools' metric store) lives as long as the
environment is warm, one environment runs one invocation at a time, and an invocation that overruns its
function's Timeout is stopped by killing its environment, as Lambda does.
"""

import contextlib
import json
import os
import select
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from sluice_tools.local.template import LOCAL_ACCOUNT_ID, StackContext, TemplateError, function_environment

# What the python3.13 runtime gives every function (the rest comes from the template).
_RUNTIME = "python3.13"
# How long an environment asked to end may take before it is killed.
_EXIT_GRACE_S = 5
# Lambda gives an environment's init (runtime start, handler module import) a budget of its own, outside the
# function's timeout: the bootstrap says when init is done, and only then does the invocation's clock start.
_INIT_BUDGET_S = 10
# Names from the caller's environment that an environment process may keep: where things are, not what they are.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# Lambda's synchronous invocation quotas ("6 MB" each way), in the bytes its errors name: Invoke refuses a request
# payload with RequestEntityTooLargeException, "Request must be smaller than 6291456 bytes for the InvokeFunction
# operation", before any environment runs; an answer over 6291556 bytes fails the invocation with
# Function.ResponseSizeTooLarge (a function error). Zac Charles measured both ("Deep Dive: Lambda's Response / Request
# Payload Size Limit", 2022); AWS's own .NET Lambda Test Tool enforces them the same way.
MAX_REQUEST_PAYLOAD_BYTES = 6_291_456
MAX_RESPONSE_PAYLOAD_BYTES = 6_291_556
REQUEST_TOO_LARGE = "RequestEntityTooLargeException"


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """One function of the template, resolved: where its code is, how it is called, what it gets."""

    logical_id: str
    function_name: str
    code_dir: Path
    handler: str
    environment: Mapping[str, str]
    timeout_s: int
    memory_mb: int
    region: str

    @property
    def arn(self) -> str:
        """The function's ARN, as its context reports it."""
        return f"arn:aws:lambda:{self.region}:{LOCAL_ACCOUNT_ID}:function:{self.function_name}"


def function_specs(
    context: StackContext,
    root: Path,
    *,
    local_environment: Mapping[str, str],
    overrides: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, FunctionSpec]:
    """Every ``AWS::Serverless::Function`` of the template, with the environment Lambda would give it.

    ``local_environment`` is what the local runtime adds (credentials, the moto endpoint); ``overrides`` is an
    ``--env-vars`` file: ``{"Parameters": {...}, "<LogicalId>": {...}}``. As with ``sam local invoke``, an
    override only replaces a variable the template declares for that function.
    """
    overrides = overrides or {}
    template = context.template
    globals_ = template.get("Globals", {}).get("Function", {})
    specs: dict[str, FunctionSpec] = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        if "Condition" in resource and not context.condition(resource["Condition"]):
            continue  # a function the stack creates only under a condition that does not hold
        properties = {**globals_, **resource["Properties"]}
        if properties.get("Runtime") != _RUNTIME or properties.get("PackageType", "Zip") != "Zip":
            raise TemplateError(f"{logical_id}: only {_RUNTIME} zip functions run locally")
        declared = function_environment(context, logical_id)
        for source in (overrides.get("Parameters", {}), overrides.get(logical_id, {})):
            declared.update({name: str(value) for name, value in source.items() if name in declared})
        function_name = f"{context.stack_name}-{logical_id}"
        memory_mb = int(context.resolve(properties.get("MemorySize", 128)))
        runtime_environment = {
            "AWS_REGION": context.region,
            "AWS_DEFAULT_REGION": context.region,
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{_RUNTIME}",
            "AWS_LAMBDA_FUNCTION_NAME": function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function_name}",
            # sam local sets this too; Powertools' Tracer reads it and stays quiet (there is no X-Ray daemon).
            "AWS_SAM_LOCAL": "true",
            "TZ": ":UTC",
        }
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            function_name=function_name,
            code_dir=(root / properties["CodeUri"]).resolve(),
            handler=properties["Handler"],
            environment={**local_environment, **runtime_environment, **declared},
            timeout_s=int(context.resolve(properties.get("Timeout", 3))),
            memory_mb=memory_mb,
            region=context.region,
        )
    return specs


@dataclass(frozen=True, slots=True)
class Invocation:
    """What one invocation returned: its result, or the error Lambda would report."""

    request_id: str
    result: Any = None
    error: Mapping[str, Any] | None = None
    duration_ms: float = 0.0
    cold_start: bool = False

    @property
    def failed(self) -> bool:
        """Did the function fail (raise, time out, die)?"""
        return self.error is not None

    @property
    def rejected(self) -> bool:
        """Did Lambda refuse the request payload, so that the function never ran?"""
        return self.error is not None and self.error.get("errorType") == REQUEST_TOO_LARGE


def request_payload_bytes(event: Any) -> int:
    """The bytes of ``event`` as an Invoke request payload (compact JSON, UTF-8)."""
    return len(json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass"))


def response_payload_bytes(result: Any) -> int:
    """The bytes of ``result`` as the python3.12+ runtime sends it back: ``json.dumps`` with ``ensure_ascii=False``
    (awslambdaric's marshaller), so non-ASCII text counts as its UTF-8 bytes."""
    return len(json.dumps(result, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def refused_request(event: Any) -> Invocation | None:
    """Lambda's answer to an Invoke whose payload is over its quota; None when the payload may be sent."""
    if request_payload_bytes(event) < MAX_REQUEST_PAYLOAD_BYTES:
        return None
    message = f"Request must be smaller than {MAX_REQUEST_PAYLOAD_BYTES} bytes for the InvokeFunction operation"
    return Invocation(str(uuid.uuid4()), error={"errorType": REQUEST_TOO_LARGE, "errorMessage": message})


class ExecutionEnvironment:
    """One warm environment of a function: a bootstrap process and the pipes to it."""

    def __init__(self, spec: FunctionSpec, log: IO[bytes] | int | None) -> None:
        self.spec = spec
        requests_read, self._requests = os.pipe()
        self._responses, responses_write = os.pipe()
        # COVERAGE_*: so the test suite's coverage follows functions into their processes. SLUICE_FAULT_*: the fault
        # switches `make reliability` turns on. They reach functions only here, never through the template, so no
        # deployed function can be switched into a fault by its configuration.
        inherited = {
            name: value
            for name, value in os.environ.items()
            if name in _INHERITED or name.startswith(("COVERAGE_", "SLUICE_FAULT_"))
        }
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and module  # nosec B603
            [
                sys.executable,
                "-m",
                "sluice_tools.local.bootstrap",
                str(requests_read),
                str(responses_write),
                str(spec.code_dir),
                spec.handler,
            ],
            env={**inherited, **spec.environment},
            cwd=spec.code_dir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            pass_fds=(requests_read, responses_write),
        )
        os.close(requests_read)
        os.close(responses_write)
        self._pending = b""
        self.invocations = 0

    def invoke(self, event: Any) -> Invocation:
        """Run one invocation; a timeout or a dead process leaves this environment unusable (see ``alive``)."""
        request_id = str(uuid.uuid4())
        started = time.monotonic()
        context = {
            "function_name": self.spec.function_name,
            "function_version": "$LATEST",
            "invoked_function_arn": self.spec.arn,
            "memory_limit_in_mb": self.spec.memory_mb,
            "aws_request_id": request_id,
            "log_group_name": f"/aws/lambda/{self.spec.function_name}",
            "log_stream_name": f"local/{self._process.pid}",
            "timeout_ms": self.spec.timeout_s * 1000,
        }
        cold = self.invocations == 0
        self.invocations += 1
        try:
            os.write(self._requests, json.dumps({"event": event, "context": context}).encode() + b"\n")
            answer = self._read_answer(started + (_INIT_BUDGET_S if cold else self.spec.timeout_s))
            if answer is not None and answer.get("ready"):  # init is done: the function's own clock starts now
                answer = self._read_answer(time.monotonic() + self.spec.timeout_s)
        except TimeoutError:
            self.kill()  # as Lambda does: the environment is gone, and the next invocation starts cold
            self.close()
            message = f"Task timed out after {self.spec.timeout_s:.2f} seconds"
            error = {"errorType": "Sandbox.Timedout", "errorMessage": message}
            return Invocation(request_id, error=error, duration_ms=(time.monotonic() - started) * 1000)
        except BrokenPipeError:
            answer = None
        elapsed = (time.monotonic() - started) * 1000
        if answer is None:  # the process ended mid-invocation (a crash, os._exit, a kill at shutdown)
            self.close()
            message = f"Runtime exited with status {self._process.returncode}"
            error = {"errorType": "Runtime.ExitError", "errorMessage": message}
            return Invocation(request_id, error=error, duration_ms=elapsed)
        if "error" in answer:
            return Invocation(request_id, error=answer["error"], duration_ms=elapsed, cold_start=cold)
        result = json.loads(answer["result"])
        if response_payload_bytes(result) > MAX_RESPONSE_PAYLOAD_BYTES:
            limit = MAX_RESPONSE_PAYLOAD_BYTES
            message = f"Response payload size exceeded maximum allowed payload size ({limit} bytes)."
            error = {"errorType": "Function.ResponseSizeTooLarge", "errorMessage": message}
            return Invocation(request_id, error=error, duration_ms=elapsed, cold_start=cold)
        return Invocation(request_id, result=result, duration_ms=elapsed, cold_start=cold)

    def _read_answer(self, deadline: float) -> dict[str, Any] | None:
        """The next answer; None when the process ended first; TimeoutError at the deadline."""
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self._responses], [], [], max(0.0, remaining))
            if not ready:
                raise TimeoutError
            data = os.read(self._responses, 1 << 20)
            if not data:  # the process died
                return None
            self._pending += data
        line, _, self._pending = self._pending.partition(b"\n")
        answer: dict[str, Any] = json.loads(line)
        return answer

    @property
    def alive(self) -> bool:
        """Can this environment take another invocation?"""
        return self._process.poll() is None

    def kill(self) -> None:
        """Stop the process now; an invocation waiting on it returns as failed."""
        if self._process.poll() is None:
            self._process.kill()

    def close(self) -> None:
        """End the environment: closing its requests pipe lets the process finish as it would (exit handlers run);
        one that does not end promptly is killed."""
        with contextlib.suppress(OSError):  # closed already
            os.close(self._requests)
        try:
            self._process.wait(_EXIT_GRACE_S)
        except subprocess.TimeoutExpired:
            self.kill()
            self._process.wait()
        with contextlib.suppress(OSError):
            os.close(self._responses)


@dataclass
class LocalFunction:
    """A function's pool of warm environments: one is started when an invocation finds none idle (a cold start),
    up to ``max_concurrency``; beyond that an invocation waits, as a throttled event source would."""

    spec: FunctionSpec
    max_concurrency: int = 4
    log: IO[bytes] | int | None = None
    _idle: list[ExecutionEnvironment] = field(default_factory=list)
    _busy: set[ExecutionEnvironment] = field(default_factory=set)
    _running: int = 0
    _closed: bool = False
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def invoke(self, event: Any) -> Invocation:
        """Invoke the function synchronously (RequestResponse); a payload over Lambda's quota reaches no
        environment."""
        refused = refused_request(event)
        if refused is not None:
            return refused
        environment = self._acquire()
        try:
            return environment.invoke(event)
        finally:
            self._release(environment)

    @property
    def environments(self) -> int:
        """How many environments are running now, idle or busy."""
        with self._changed:
            return len(self._idle) + len(self._busy)

    def _acquire(self) -> ExecutionEnvironment:
        with self._changed:
            while True:
                if self._closed:
                    raise RuntimeError(f"{self.spec.logical_id} is shut down")
                if self._idle:
                    self._running += 1
                    environment = self._idle.pop()
                    self._busy.add(environment)
                    return environment
                if self._running < self.max_concurrency:
                    self._running += 1
                    break
                self._changed.wait()
        try:
            environment = ExecutionEnvironment(self.spec, self.log)
        except BaseException:
            with self._changed:
                self._running -= 1
                self._changed.notify()
            raise
        with self._changed:
            self._busy.add(environment)
        return environment

    def _release(self, environment: ExecutionEnvironment) -> None:
        with self._changed:
            self._running -= 1
            self._busy.discard(environment)
            if environment.alive and not self._closed:
                self._idle.append(environment)
            else:
                environment.close()
            self._changed.notify()

    def close(self) -> None:
        """Stop every environment. A busy one is killed mid-invocation, which then fails as if its process had
        crashed: an SQS message it held returns to the queue, exactly as after a crash in Lambda."""
        with self._changed:
            self._closed = True
            idle, busy, self._idle = self._idle, list(self._busy), []
            self._changed.notify_all()
        for environment in idle:
            environment.close()
        for environment in busy:
            environment.kill()
