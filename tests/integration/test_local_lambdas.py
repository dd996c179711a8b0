"""Functions in local execution environments: one process each, kept warm, stopped on timeout or crash."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from sluice_tools.local.lambdas import (
    MAX_REQUEST_PAYLOAD_BYTES,
    MAX_RESPONSE_PAYLOAD_BYTES,
    FunctionSpec,
    LocalFunction,
    function_specs,
)
from sluice_tools.local.resources import plan_stack
from sluice_tools.local.stack import local_function_specs, local_parameters
from sluice_tools.local.template import StackContext, TemplateError, load_template

from ..paths import REPO_ROOT

FUNCTIONS = REPO_ROOT / "tests" / "data" / "functions"


def spec(name: str = "probe", timeout_s: int = 10, **environment: str) -> FunctionSpec:
    return FunctionSpec(
        logical_id="ProbeFunction",
        function_name="sluice-test-ProbeFunction",
        code_dir=FUNCTIONS / name,
        handler="app.lambda_handler",
        environment={"SLUICE_PROBE": "yes", **environment},
        timeout_s=timeout_s,
        memory_mb=256,
        region="eu-central-1",
    )


@pytest.fixture
def probe() -> Iterator[LocalFunction]:
    function = LocalFunction(spec(), max_concurrency=1)
    yield function
    function.close()


def test_an_environment_stays_warm_between_invocations(probe: LocalFunction) -> None:
    first = probe.invoke({"names": ["SLUICE_PROBE", "HOME_OF_NOTHING"]})
    second = probe.invoke({})

    assert (first.cold_start, second.cold_start) == (True, False)
    assert (first.result["calls"], second.result["calls"]) == (1, 2)
    assert first.result["pid"] == second.result["pid"]
    assert first.result["environment"] == {"SLUICE_PROBE": "yes", "HOME_OF_NOTHING": None}
    assert first.result["function_name"] == "sluice-test-ProbeFunction"
    assert 0 < first.result["remaining_ms"] <= 10_000
    assert first.request_id == first.result["request_id"] != second.request_id


def test_a_handler_error_is_the_invocations_error_and_the_environment_survives(probe: LocalFunction) -> None:
    failed = probe.invoke({"do": "raise"})
    after = probe.invoke({})

    assert failed.failed
    assert failed.error is not None
    assert (failed.error["errorType"], failed.error["errorMessage"]) == ("ValueError", "asked to fail")
    assert after.result["calls"] == 2


def test_a_result_json_cannot_carry_is_an_error(probe: LocalFunction) -> None:
    answer = probe.invoke({"do": "unserialisable"})

    assert answer.error is not None
    assert answer.error["errorType"] == "TypeError"


def test_an_answer_over_lambdas_limit_fails_the_invocation(probe: LocalFunction) -> None:
    # '{"text": "' and '"}' around the text: 12 bytes. "é" is two bytes in the runtime's UTF-8 answer.
    at_the_limit = probe.invoke({"do": "answer", "text": "x", "count": MAX_RESPONSE_PAYLOAD_BYTES - 12})
    over_it = probe.invoke({"do": "answer", "text": "x", "count": MAX_RESPONSE_PAYLOAD_BYTES - 11})
    non_ascii = probe.invoke({"do": "answer", "text": "é", "count": MAX_RESPONSE_PAYLOAD_BYTES // 2})

    assert not at_the_limit.failed
    assert over_it.error == {
        "errorType": "Function.ResponseSizeTooLarge",
        "errorMessage": "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
    }
    assert non_ascii.error is not None
    assert non_ascii.error["errorType"] == "Function.ResponseSizeTooLarge"


def test_a_request_over_lambdas_limit_reaches_no_environment(probe: LocalFunction) -> None:
    refused = probe.invoke({"pad": "x" * MAX_REQUEST_PAYLOAD_BYTES})
    taken = probe.invoke({"pad": "x" * (MAX_REQUEST_PAYLOAD_BYTES - 100)})

    assert refused.rejected
    assert taken.result["calls"] == 1


def test_an_invocation_past_its_timeout_is_stopped_and_the_next_starts_cold() -> None:
    function = LocalFunction(spec(timeout_s=1), max_concurrency=1)
    try:
        first = function.invoke({})
        timed_out = function.invoke({"do": "sleep", "seconds": 30})
        after = function.invoke({})
    finally:
        function.close()

    assert timed_out.error == {"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out after 1.00 seconds"}
    assert timed_out.duration_ms < 5_000
    assert after.cold_start
    assert after.result["pid"] != first.result["pid"]


def test_a_slow_init_has_its_own_budget_and_the_timeout_starts_after_it() -> None:
    function = LocalFunction(spec(timeout_s=1, SLUICE_PROBE_INIT_SECONDS="1.5"), max_concurrency=1)
    try:
        cold = function.invoke({})
    finally:
        function.close()

    assert cold.error is None, cold.error  # 1.5 s of imports did not use up the 1 s the function has
    assert cold.cold_start
    assert 500 < cold.result["remaining_ms"] <= 1000  # its deadline counts from the end of init


def test_a_process_that_dies_mid_invocation_fails_it(probe: LocalFunction) -> None:
    died = probe.invoke({"do": "exit"})
    after = probe.invoke({})

    assert died.error == {"errorType": "Runtime.ExitError", "errorMessage": "Runtime exited with status 3"}
    assert after.cold_start


def test_a_module_that_fails_to_import_fails_every_invocation() -> None:
    function = LocalFunction(spec("broken"), max_concurrency=1)
    try:
        answer = function.invoke({})
    finally:
        function.close()

    assert answer.error is not None
    assert answer.error["errorType"] == "Runtime.ImportModuleError"
    assert "a dependency is missing" in answer.error["errorMessage"]


def test_a_closed_function_refuses_invocations(probe: LocalFunction) -> None:
    probe.close()

    with pytest.raises(RuntimeError, match="shut down"):
        probe.invoke({})


def local_context(stack_name: str = "sluice-local") -> StackContext:
    context = StackContext(
        load_template(REPO_ROOT / "template.yaml"),
        stack_name=stack_name,
        region="eu-central-1",
        parameter_overrides=local_parameters(stack_name, "eu-central-1"),
    )
    return plan_stack(context, "http://127.0.0.1:4566")


def test_each_function_gets_the_templates_variables_and_the_runtimes_own() -> None:
    specs = local_function_specs(local_context(), REPO_ROOT, "http://127.0.0.1:4566", {})

    worker = specs["LoadWorkerFunction"]
    assert worker.code_dir == REPO_ROOT / "functions" / "load_worker"
    assert (worker.timeout_s, worker.memory_mb) == (300, 1024)
    assert (
        worker.environment["SLUICE_INGEST_QUEUE_URL"] == "http://127.0.0.1:4566/123456789012/sluice-local-IngestQueue"
    )
    assert worker.environment["SLUICE_AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert worker.environment["AWS_LAMBDA_FUNCTION_NAME"] == "sluice-local-LoadWorkerFunction"
    assert worker.environment["SLUICE_DB_SECRET_ARN"].endswith(":secret:sluice-local/database-worker")
    assert "SLUICE_RATE_LIMIT_TABLE" not in worker.environment  # only IngestApiFunction's
    assert specs["HealthFunction"].timeout_s == 10
    assert specs["QuarantineFunction"].memory_mb == 512  # from Globals


def test_env_var_overrides_replace_only_declared_variables_like_sam() -> None:
    overrides = {"Parameters": {"SLUICE_TENANT_CLAIM": "org"}, "JobStatusFunction": {"UNDECLARED": "x"}}

    specs = local_function_specs(local_context(), REPO_ROOT, "http://127.0.0.1:4566", overrides)

    assert specs["JobStatusFunction"].environment["SLUICE_TENANT_CLAIM"] == "org"
    assert "UNDECLARED" not in specs["JobStatusFunction"].environment
    assert "SLUICE_TENANT_CLAIM" not in specs["LoadWorkerFunction"].environment


def test_only_python_zip_functions_run_locally(tmp_path: Path) -> None:
    context = local_context()
    template = dict(context.template)
    resources = dict(template["Resources"])
    resources["HealthFunction"] = {
        **resources["HealthFunction"],
        "Properties": {**resources["HealthFunction"]["Properties"], "Runtime": "nodejs22.x"},
    }
    template["Resources"] = resources
    other = StackContext(template, "sluice-local", "eu-central-1", refs=context.refs, attributes=context.attributes)

    with pytest.raises(TemplateError, match=r"HealthFunction: only python3\.13"):
        function_specs(other, tmp_path, local_environment={})


@pytest.mark.parametrize(
    ("logical_id", "directory"), [("LoadWorkerFunction", "load_worker"), ("MaintenanceFunction", "maintenance")]
)
def test_a_function_without_its_database_secret_fails_its_init_naming_it(logical_id: str, directory: str) -> None:
    # Given a function whose environment has everything but its database secret (and no DSN), in an execution
    # environment (the Lambda runtime names the function in AWS_LAMBDA_FUNCTION_NAME)
    environment = {
        "AWS_LAMBDA_FUNCTION_NAME": f"sluice-test-{logical_id}",
        "SLUICE_JOBS_TABLE": "jobs",
        "SLUICE_INGEST_QUEUE_URL": "http://127.0.0.1:9/queue/ingest",
        "SLUICE_DEAD_LETTER_QUEUE_URL": "http://127.0.0.1:9/queue/dead-letter",
        "SLUICE_DB_SECRET_ARN": "",
    }
    function = LocalFunction(
        FunctionSpec(
            logical_id=logical_id,
            function_name=f"sluice-test-{logical_id}",
            code_dir=REPO_ROOT / "functions" / directory,
            handler="app.lambda_handler",
            environment=environment,
            timeout_s=10,
            memory_mb=256,
            region="eu-central-1",
        ),
        max_concurrency=1,
    )

    # When its first event arrives
    try:
        answer = function.invoke({"Records": []})
    finally:
        function.close()

    # Then its init failed, before any event, with an error that names the missing setting
    assert answer.error is not None
    assert answer.error["errorType"] == "Runtime.ImportModuleError"
    assert "SLUICE_DB_SECRET_ARN is not set" in answer.error["errorMessage"]
