"""template.yaml keeps the promises the code relies on: auth on every route, the queue's redrive, the bucket's
guards, least-privilege statements, and an environment that satisfies each function's settings."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from sluice.adapters.dynamodb import STATUS_JOBS_INDEX
from sluice.domain.load import LoadOutcome
from sluice.models.jobs import Job
from sluice.settings import (
    AlertEvaluatorSettings,
    AlertsSettings,
    ConsoleSettings,
    HealthSettings,
    IngestApiSettings,
    JobEventsSettings,
    JobStatusSettings,
    LoadWorkerSettings,
    MaintenanceSettings,
    QuarantineSettings,
    ReadingsSettings,
    SystemsSettings,
    TokenClaimsSettings,
)
from sluice_tools.cli import ALL_SCOPES
from sluice_tools.local.api import http_api_routes
from sluice_tools.local.auth import jwt_authorizers
from sluice_tools.local.resources import plan_stack
from sluice_tools.local.stack import local_function_specs, planned_context
from sluice_tools.local.template import (
    StackContext,
    TemplateError,
    created_resources_of_type,
    function_environment,
    load_template,
    resources_of_type,
)

from ..lambdas import template
from ..paths import REPO_ROOT

FUNCTION_SETTINGS: dict[str, type[BaseSettings]] = {
    "IngestApiFunction": IngestApiSettings,
    "LoadWorkerFunction": LoadWorkerSettings,
    "JobStatusFunction": JobStatusSettings,
    "QuarantineFunction": QuarantineSettings,
    "SystemsFunction": SystemsSettings,
    "AlertsFunction": AlertsSettings,
    "ReadingsFunction": ReadingsSettings,
    "HealthFunction": HealthSettings,
    "MaintenanceFunction": MaintenanceSettings,
    "AlertEvaluatorFunction": AlertEvaluatorSettings,
    "JobEventsFunction": JobEventsSettings,
    "TokenClaimsFunction": TokenClaimsSettings,
    "ConsoleFunction": ConsoleSettings,
}


def resources() -> dict[str, Any]:
    found: dict[str, Any] = template()["Resources"]
    return found


def http_routes() -> list[tuple[str, dict[str, Any]]]:
    return [
        (function, event["Properties"])
        for function, body in resources_of_type(template(), "AWS::Serverless::Function").items()
        for event in body["Properties"].get("Events", {}).values()
        if event["Type"] == "HttpApi"
    ]


# The probe reads nothing and needs no token.
OPEN_ROUTES = {("/health", "GET"): "NONE", ("/console", "GET"): "NONE", ("/console/{proxy+}", "GET"): "NONE"}


def bare_scopes(route: dict[str, Any]) -> list[str]:
    """A route's scopes as written, without their Cognito forms (see test_every_scope_has_its_cognito_form)."""
    return [scope for scope in route["Auth"].get("AuthorizationScopes", []) if isinstance(scope, str)]


def test_every_route_but_the_probe_needs_a_jwt_with_a_scope() -> None:
    routes = http_routes()

    assert len(routes) == 31
    for _, route in routes:
        authorizer = OPEN_ROUTES.get((route["Path"], route["Method"]))
        if authorizer is None:
            assert route["Auth"]["Authorizer"] == "JwtAuthorizer"
            assert route["Auth"]["AuthorizationScopes"]
        else:
            assert route["Auth"] == {"Authorizer": authorizer}


def test_the_deep_check_is_for_operators() -> None:
    scopes = {(route["Path"], route["Method"]): bare_scopes(route) for _, route in http_routes()}

    # It names the bucket, queues, tables and schema version: ops:read, a scope no tenant route asks for.
    assert scopes["/health/deep", "GET"] == ["ops:read"]
    assert sum(found == ["ops:read"] for found in scopes.values()) == 1


def test_reading_routes_need_read_scopes_and_reviews_the_review_scope() -> None:
    scopes = {(route["Path"], route["Method"]): bare_scopes(route) for _, route in http_routes()}

    assert scopes["/api/v1/jobs", "GET"] == scopes["/api/v1/jobs/{job_id+}", "GET"] == ["jobs:read"]
    assert scopes["/api/v1/quarantine", "GET"] == scopes["/api/v1/quarantine/{id}", "GET"] == ["quarantine:read"]
    assert scopes["/api/v1/quarantine/{id}/review", "POST"] == ["quarantine:review"]
    assert scopes["/api/v1/quarantine/review", "POST"] == ["quarantine:review"]
    assert scopes["/api/v1/systems", "GET"] == scopes["/api/v1/systems/{system_id}", "GET"] == ["systems:read"]
    assert scopes["/api/v1/systems", "POST"] == scopes["/api/v1/systems/{system_id}", "PATCH"] == ["systems:write"]
    assert scopes["/api/v1/systems/{system_id}/readings", "GET"] == ["readings:read"]
    assert scopes["/api/v1/systems/{system_id}/sensors", "GET"] == ["readings:read"]


ALERTS_ROUTES = {
    ("/api/v1/alert-rules", "POST"): "alerts:write",
    ("/api/v1/alert-rules", "GET"): "alerts:read",
    ("/api/v1/alert-rules/{rule_id}", "GET"): "alerts:read",
    ("/api/v1/alert-rules/{rule_id}", "PATCH"): "alerts:write",
    ("/api/v1/alert-rules/{rule_id}", "DELETE"): "alerts:write",
    ("/api/v1/alarms", "GET"): "alerts:read",
    ("/api/v1/alarms/{alarm_id}", "GET"): "alerts:read",
    ("/api/v1/alarms/{alarm_id}/acknowledge", "POST"): "alerts:write",
    ("/api/v1/webhooks", "POST"): "alerts:write",
    ("/api/v1/webhooks", "GET"): "alerts:read",
    ("/api/v1/webhooks/{webhook_id}", "GET"): "alerts:read",
    ("/api/v1/webhooks/{webhook_id}", "DELETE"): "alerts:write",
    ("/api/v1/webhooks/{webhook_id}/deliveries", "GET"): "alerts:read",
}


def test_the_alerts_routes_read_with_alerts_read_and_change_with_alerts_write() -> None:
    routes = {
        (route["Path"], route["Method"]): bare_scopes(route)
        for function, route in http_routes()
        if function == "AlertsFunction"
    }

    assert routes == {key: [scope] for key, scope in ALERTS_ROUTES.items()}


def test_webhook_targets_are_https_and_public_in_aws_and_local_only_in_the_twin() -> None:
    variables = resources()["AlertsFunction"]["Properties"]["Environment"]["Variables"]
    twin = local_function_specs(
        planned_context(REPO_ROOT, moto_endpoint="http://127.0.0.1:4566"), REPO_ROOT, "http://127.0.0.1:4566", {}
    )

    assert variables["SLUICE_WEBHOOK_ALLOW_LOCAL"] == "false"
    assert AlertsSettings.model_fields["webhook_allow_local"].default is False
    assert twin["AlertsFunction"].environment["SLUICE_WEBHOOK_ALLOW_LOCAL"] == "true"


def test_job_status_never_touches_the_database() -> None:
    function = resources()["JobStatusFunction"]["Properties"]

    assert "SLUICE_DB_SECRET_ARN" not in function["Environment"]["Variables"]
    assert function["Policies"] == [
        {"DynamoDBReadPolicy": {"TableName": {"Ref": "JobsTable"}}},
        {"DynamoDBCrudPolicy": {"TableName": {"Ref": "RateLimitTable"}}},
    ]


def test_the_ingest_route_needs_ingest_write() -> None:
    assert ("IngestApiFunction", ["ingest:write"]) in [
        (function, bare_scopes(route))
        for function, route in http_routes()
        if route["Path"] == "/api/v1/data/ingest" and route["Method"] == "POST"
    ]


def test_a_failing_batch_is_parked_after_five_receives() -> None:
    queue = resources()["IngestQueue"]["Properties"]

    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["IngestDeadLetterQueue", "Arn"]},
        "maxReceiveCount": 5,
    }
    assert resources()["IngestDeadLetterQueue"]["Properties"]["MessageRetentionPeriod"] == 1209600
    # The worker fails a message's jobs on its last receive, so it must know the same count.
    worker = resources()["LoadWorkerFunction"]["Properties"]["Environment"]["Variables"]
    assert worker["SLUICE_MAX_RECEIVE_COUNT"] == queue["RedrivePolicy"]["maxReceiveCount"]


def test_the_bucket_is_private_encrypted_versioned_and_tls_only() -> None:
    bucket = resources()["BatchBucket"]["Properties"]
    statements = resources()["BatchBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]

    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert {
        "Effect": "Deny",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }.items() <= statements[0].items()


def test_the_bucket_answers_browsers_posting_upload_forms_and_nothing_else() -> None:
    properties = resources()["BatchBucket"]["Properties"]
    default = StackContext(template(), stack_name="s", region="eu-west-1")
    narrowed = StackContext(
        template(),
        stack_name="s",
        region="eu-west-1",
        parameter_overrides={"UploadCorsOrigins": "https://abc.execute-api.eu-west-1.amazonaws.com,https://b.example"},
    )

    (rule,) = default.resolve(properties["CorsConfiguration"])["CorsRules"]
    (narrowed_rule,) = narrowed.resolve(properties["CorsConfiguration"])["CorsRules"]

    assert (rule["AllowedMethods"], rule["AllowedHeaders"], rule["AllowedOrigins"]) == (["POST"], ["*"], ["*"])
    assert narrowed_rule["AllowedOrigins"] == ["https://abc.execute-api.eu-west-1.amazonaws.com", "https://b.example"]


@pytest.mark.parametrize(
    ("origins", "accepted"),
    [
        ("*", True),
        ("https://abc.execute-api.eu-west-1.amazonaws.com", True),
        ("https://a.example,http://localhost:3000", True),
        ("", False),
        ("https://a.example/console/", False),
        ("*,https://a.example", False),
        ("https://*.example", False),
        ("https://a.example, https://b.example", False),
    ],
)
def test_upload_cors_origins_are_star_or_bare_origins(origins: str, accepted: bool) -> None:
    pattern = template()["Parameters"]["UploadCorsOrigins"]["AllowedPattern"]

    assert (re.fullmatch(pattern, origins) is not None) == accepted


def test_incoming_and_drops_notify_the_ingest_queue() -> None:
    notifications = resources()["BatchBucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]

    assert sorted(
        (entry["Queue"]["Fn::GetAtt"][0], entry["Event"], entry["Filter"]["S3Key"]["Rules"][0]["Value"])
        for entry in notifications
    ) == [
        ("IngestQueue", "s3:ObjectCreated:*", "drops/"),
        ("IngestQueue", "s3:ObjectCreated:*", "incoming/"),
    ]


def test_written_out_statements_name_their_resources() -> None:
    for function in resources_of_type(template(), "AWS::Serverless::Function").values():
        for policy in function["Properties"].get("Policies", []):
            for statement in policy.get("Statement", []):
                assert statement["Resource"] != "*"
                assert "*" not in statement["Action"]


def test_the_api_may_write_only_under_incoming_and_the_tenants_uploads_folders() -> None:
    statements = [
        statement
        for policy in resources()["IngestApiFunction"]["Properties"]["Policies"]
        for statement in policy.get("Statement", [])
    ]

    assert [statement["Action"] for statement in statements] == ["s3:PutObject", "s3:PutObject"]
    # Its own batches, and what the upload forms it signs (which act with its credentials) write.
    assert [statement["Resource"]["Fn::Sub"].split("}/", 1)[1] for statement in statements] == [
        "incoming/*",
        "drops/*/uploads/*",
    ]


def test_the_upload_route_spends_ingest_write_and_its_bounds_reach_the_function() -> None:
    scopes = {(route["Path"], route["Method"]): bare_scopes(route) for _, route in http_routes()}
    variables = resources()["IngestApiFunction"]["Properties"]["Environment"]["Variables"]
    parameters = template()["Parameters"]

    assert scopes["/api/v1/uploads", "POST"] == ["ingest:write"]
    assert variables["SLUICE_UPLOAD_MAX_BYTES"] == {"Ref": "UploadMaxBytes"}
    assert variables["SLUICE_UPLOAD_EXPIRY_SECONDS"] == {"Ref": "UploadExpirySeconds"}
    # 5 GiB is the most one S3 POST carries; 15 minutes keeps a leaked form short-lived.
    assert parameters["UploadMaxBytes"]["Default"] == parameters["UploadMaxBytes"]["MaxValue"] == 5 * 1024**3
    assert parameters["UploadExpirySeconds"]["Default"] == 900


def test_every_function_has_its_settings_here() -> None:
    assert set(resources_of_type(template(), "AWS::Serverless::Function")) == set(FUNCTION_SETTINGS)


SECRET_PARAMETERS = (
    "DatabaseSecretArn",
    "WorkerDatabaseSecretArn",
    "ReviewDatabaseSecretArn",
    "SystemsDatabaseSecretArn",
    "AlertsDatabaseSecretArn",
    "NotifierDatabaseSecretArn",
    "ReadOnlyDatabaseSecretArn",
    "ReadingsDatabaseSecretArn",
)


def deployed_environment(function: str, monkeypatch: pytest.MonkeyPatch, parameters: dict[str, str]) -> None:
    """Set the environment a deployment with ``parameters`` gives ``function``, and nothing of this machine's."""
    monkeypatch.delenv("SLUICE_DB_DSN", raising=False)
    context = StackContext(template(), stack_name="sluice", region="eu-central-1", parameter_overrides=parameters)
    for name in resources():
        context.refs[name] = f"{name}-physical"
    for name, value in function_environment(context, function).items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("function", sorted(FUNCTION_SETTINGS))
def test_the_environment_the_template_gives_satisfies_the_settings(
    function: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:sluice/db-AbCdEf"
    deployed_environment(function, monkeypatch, dict.fromkeys(SECRET_PARAMETERS, secret))

    settings = FUNCTION_SETTINGS[function]()

    assert settings.model_dump()


@pytest.mark.parametrize(
    "function",
    [
        "LoadWorkerFunction",
        "QuarantineFunction",
        "SystemsFunction",
        "AlertsFunction",
        "ReadingsFunction",
        "HealthFunction",
        "MaintenanceFunction",
    ],
)
def test_a_deployment_without_its_database_secret_fails_the_settings_naming_it(
    function: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    deployed_environment(function, monkeypatch, {})

    with pytest.raises(ValidationError, match="SLUICE_DB_SECRET_ARN is not set"):
        FUNCTION_SETTINGS[function]()


def test_the_worker_reports_partial_failures_and_its_queue_outlasts_six_timeouts() -> None:
    worker = resources()["LoadWorkerFunction"]["Properties"]
    (event,) = worker["Events"].values()
    queue = resources()["IngestQueue"]["Properties"]

    assert event["Type"] == "SQS"
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["IngestQueue", "Arn"]}
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # AWS's advice for SQS event sources: a message stays invisible for at least six function timeouts.
    assert queue["VisibilityTimeout"] >= 6 * worker["Timeout"]
    # The worker extends a long file's message to the queue's own timeout.
    assert int(worker["Environment"]["Variables"]["SLUICE_VISIBILITY_TIMEOUT_SECONDS"]) == queue["VisibilityTimeout"]


@pytest.mark.parametrize(
    ("function", "parameter"),
    [
        # Each connects as a login user of its own role (migration 0004); the owner's DatabaseSecretArn is not theirs.
        ("LoadWorkerFunction", "WorkerDatabaseSecretArn"),
        ("QuarantineFunction", "ReviewDatabaseSecretArn"),
        ("SystemsFunction", "SystemsDatabaseSecretArn"),
        ("AlertsFunction", "AlertsDatabaseSecretArn"),
        ("HealthFunction", "ReadOnlyDatabaseSecretArn"),
        ("ReadingsFunction", "ReadingsDatabaseSecretArn"),
        ("AlertEvaluatorFunction", "AlertsDatabaseSecretArn"),
        ("JobEventsFunction", "NotifierDatabaseSecretArn"),
    ],
)
def test_each_database_function_reads_its_own_roles_secret_and_never_a_dsn(function: str, parameter: str) -> None:
    properties = resources()[function]["Properties"]
    variables = properties["Environment"]["Variables"]

    assert variables["SLUICE_DB_SECRET_ARN"] == {"Ref": parameter}
    assert "SLUICE_DB_DSN" not in variables
    assert {"AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": {"Ref": parameter}}} in properties["Policies"]
    assert "Default" not in template()["Parameters"][parameter]


def test_maintenance_runs_on_a_schedule_with_policies_on_named_resources_only() -> None:
    maintenance = resources()["MaintenanceFunction"]["Properties"]
    (event,) = maintenance["Events"].values()

    assert event["Type"] == "Schedule"
    assert event["Properties"]["Schedule"] == "rate(15 minutes)"
    assert maintenance["Environment"]["Variables"]["SLUICE_DB_SECRET_ARN"] == {"Ref": "DatabaseSecretArn"}
    assert maintenance["Policies"] == [
        {"DynamoDBCrudPolicy": {"TableName": {"Ref": "JobsTable"}}},
        {"S3ReadPolicy": {"BucketName": {"Ref": "BatchBucket"}}},
        {"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["IngestQueue", "QueueName"]}}},
        # IngestQueue's depth: a requeued job is not failed while messages still wait there.
        {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "sqs:GetQueueAttributes",
                    "Resource": {"Fn::GetAtt": ["IngestQueue", "Arn"]},
                }
            ]
        },
        {"SQSPollerPolicy": {"QueueName": {"Fn::GetAtt": ["IngestDeadLetterQueue", "QueueName"]}}},
        {"AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": {"Ref": "DatabaseSecretArn"}}},
    ]


def test_the_sweeper_waits_for_sqs_to_hand_out_a_crashed_workers_message_first() -> None:
    visibility_s = resources()["IngestQueue"]["Properties"]["VisibilityTimeout"]
    stuck_after_s = MaintenanceSettings.model_fields["stuck_job_minutes"].default * 60

    assert stuck_after_s > visibility_s


def test_the_status_index_projects_every_field_a_swept_job_needs() -> None:
    (index,) = [
        index
        for index in resources()["JobsTable"]["Properties"]["GlobalSecondaryIndexes"]
        if index["IndexName"] == STATUS_JOBS_INDEX
    ]
    keys = {"job_id"} | {key["AttributeName"] for key in index["KeySchema"]}
    required = {name for name, info in Job.model_fields.items() if info.is_required()}

    assert [key["AttributeName"] for key in index["KeySchema"]] == ["status", "created_at"]
    # job_from_item must read an index item as a Job; the sweeper also reads when the job last started.
    assert required | {"started_at", "attempted_at"} <= keys | set(index["Projection"]["NonKeyAttributes"])


def test_every_function_is_arm64_python313_and_traced() -> None:
    function_globals = template()["Globals"]["Function"]

    assert (function_globals["Runtime"], function_globals["Architectures"], function_globals["Tracing"]) == (
        "python3.13",
        ["arm64"],
        "Active",
    )
    for function in resources_of_type(template(), "AWS::Serverless::Function").values():
        assert not {"Runtime", "Architectures", "Tracing"} & set(function["Properties"])


def test_no_function_switches_its_tracer_off() -> None:
    # Powertools' Tracer goes quiet by itself outside Lambda and under SAM local (AWS_SAM_LOCAL); in AWS only this
    # variable would silence it, and the template must not set it.
    globals_ = template()["Globals"]["Function"]["Environment"]["Variables"]
    for function in resources_of_type(template(), "AWS::Serverless::Function").values():
        declared = globals_ | function["Properties"].get("Environment", {}).get("Variables", {})
        assert "POWERTOOLS_TRACE_DISABLED" not in declared


def test_nobody_but_the_ingest_api_may_put_objects_under_incoming() -> None:
    statements = resources()["BatchBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    (deny,) = [statement for statement in statements if statement.get("Sid") == "DenyIncomingWritesButTheIngestApi"]

    assert deny == {
        "Sid": "DenyIncomingWritesButTheIngestApi",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:PutObject",
        "Resource": {"Fn::Sub": "${BatchBucket.Arn}/incoming/*"},
        "Condition": {"ArnNotEquals": {"aws:PrincipalArn": {"Fn::GetAtt": ["IngestApiFunctionRole", "Arn"]}}},
    }
    # The role SAM generates for the function: it must not be given a role of its own that the policy misses.
    assert "Role" not in resources()["IngestApiFunction"]["Properties"]


def test_nobody_but_the_forms_of_the_ingest_api_may_put_objects_under_a_tenants_uploads_folder() -> None:
    statements = resources()["BatchBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    (deny,) = [s for s in statements if s.get("Sid") == "DenyUploadWritesButTheIngestApiForms"]

    assert deny["Effect"] == "Deny"
    assert deny["Action"] == "s3:PutObject"
    assert deny["Resource"] == {"Fn::Sub": "${BatchBucket.Arn}/drops/*/uploads/*"}
    assert deny["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": {"Fn::GetAtt": ["IngestApiFunctionRole", "Arn"]}}}


# The names and defaults agreed for the read and review limits (the functions' settings read the variables).
READ_LIMIT = {
    "SLUICE_RATE_LIMIT_TABLE": {"Ref": "RateLimitTable"},
    "SLUICE_READ_RATE_LIMIT_REQUESTS": {"Ref": "ReadRateLimitRequests"},
    "SLUICE_RATE_LIMIT_WINDOW_SECONDS": {"Ref": "RateLimitWindowSeconds"},
}
SYSTEMS_WRITE_LIMIT = {"SLUICE_SYSTEMS_WRITE_RATE_LIMIT_REQUESTS": {"Ref": "SystemsWriteRateLimitRequests"}}
ALERTS_WRITE_LIMIT = {"SLUICE_ALERTS_WRITE_RATE_LIMIT_REQUESTS": {"Ref": "AlertsWriteRateLimitRequests"}}
REVIEW_LIMIT = {
    "SLUICE_REVIEW_RATE_LIMIT_REQUESTS": {"Ref": "ReviewRateLimitRequests"},
    "SLUICE_REVIEW_MAX_ROWS_PER_REQUEST": {"Ref": "ReviewMaxRowsPerRequest"},
    "SLUICE_REVIEW_ROWS_PER_MINUTE": {"Ref": "ReviewRowsPerMinute"},
}


@pytest.mark.parametrize(
    ("function", "limits"),
    [
        ("JobStatusFunction", READ_LIMIT),
        ("QuarantineFunction", READ_LIMIT | REVIEW_LIMIT),
        ("SystemsFunction", READ_LIMIT | SYSTEMS_WRITE_LIMIT),
        ("AlertsFunction", READ_LIMIT | ALERTS_WRITE_LIMIT),
        ("HealthFunction", READ_LIMIT),
        ("ReadingsFunction", READ_LIMIT),
    ],
)
def test_read_and_review_functions_get_their_per_principal_limits(function: str, limits: dict[str, Any]) -> None:
    properties = resources()[function]["Properties"]

    assert limits.items() <= properties["Environment"]["Variables"].items()
    assert {"DynamoDBCrudPolicy": {"TableName": {"Ref": "RateLimitTable"}}} in properties["Policies"]


def test_limit_parameters_have_the_agreed_defaults() -> None:
    parameters = template()["Parameters"]

    assert {
        name: parameters[name]["Default"]
        for name in (
            "ReadRateLimitRequests",
            "ReviewRateLimitRequests",
            "ReviewMaxRowsPerRequest",
            "ReviewRowsPerMinute",
            "ReadMaxConcurrency",
        )
    } == {
        "ReadRateLimitRequests": 120,
        "ReviewRateLimitRequests": 30,
        "ReviewMaxRowsPerRequest": 500,
        "ReviewRowsPerMinute": 5000,
        "ReadMaxConcurrency": 10,
    }


def test_the_database_backed_read_functions_have_a_concurrency_cap() -> None:
    capped = {
        name
        for name, function in resources_of_type(template(), "AWS::Serverless::Function").items()
        if function["Properties"].get("ReservedConcurrentExecutions") == {"Ref": "ReadMaxConcurrency"}
    }

    assert capped == {"QuarantineFunction", "SystemsFunction", "AlertsFunction", "ReadingsFunction", "HealthFunction"}


def test_every_database_function_verifies_the_servers_certificate_against_the_parameters_roots() -> None:
    database_functions = {
        name: function["Properties"]["Environment"]["Variables"]
        for name, function in resources_of_type(template(), "AWS::Serverless::Function").items()
        if "SLUICE_DB_SECRET_ARN" in function["Properties"]["Environment"]["Variables"]
    }

    assert set(database_functions) == {
        "LoadWorkerFunction",
        "QuarantineFunction",
        "SystemsFunction",
        "AlertsFunction",
        "ReadingsFunction",
        "HealthFunction",
        "MaintenanceFunction",
        "AlertEvaluatorFunction",
        "JobEventsFunction",
    }
    for variables in database_functions.values():
        assert variables["SLUICE_DB_SSLROOTCERT"] == {"Ref": "DatabaseRootCertificate"}
    assert template()["Parameters"]["DatabaseRootCertificate"]["Default"] == "system"


def test_the_database_functions_join_the_deployers_vpc_only_when_subnets_are_given() -> None:
    vpc_config = {
        "Fn::If": [
            "InVpc",
            {"SubnetIds": {"Ref": "VpcSubnetIds"}, "SecurityGroupIds": {"Ref": "VpcSecurityGroupIds"}},
            {"Ref": "AWS::NoValue"},
        ]
    }

    in_vpc = {
        name
        for name, function in resources_of_type(template(), "AWS::Serverless::Function").items()
        if function["Properties"].get("VpcConfig") == vpc_config
    }

    assert in_vpc == {
        "LoadWorkerFunction",
        "QuarantineFunction",
        "SystemsFunction",
        "AlertsFunction",
        "ReadingsFunction",
        "HealthFunction",
        "MaintenanceFunction",
        "AlertEvaluatorFunction",
        "JobEventsFunction",
    }
    assert "VpcConfig" not in template()["Globals"]["Function"]


KMS_KEY = {"Fn::If": ["HasKmsKey", {"Ref": "KmsKeyArn"}, {"Ref": "AWS::NoValue"}]}


def test_the_deployers_key_encrypts_queues_tables_logs_and_topic_when_given() -> None:
    for queue in resources_of_type(template(), "AWS::SQS::Queue").values():
        assert queue["Properties"]["KmsMasterKeyId"] == KMS_KEY
        # Without the deployer's key, SSE-SQS: S3 cannot notify a queue under the AWS-managed aws/sqs key.
        assert queue["Properties"]["SqsManagedSseEnabled"] == {"Fn::If": ["HasKmsKey", {"Ref": "AWS::NoValue"}, True]}
    for table in resources_of_type(template(), "AWS::DynamoDB::Table").values():
        assert table["Properties"]["SSESpecification"] == {
            "SSEEnabled": True,
            "SSEType": "KMS",
            "KMSMasterKeyId": KMS_KEY,
        }
    for log_group in resources_of_type(template(), "AWS::Logs::LogGroup").values():
        assert log_group["Properties"]["KmsKeyId"] == KMS_KEY
    assert resources()["AlarmTopic"]["Properties"]["KmsMasterKeyId"] == KMS_KEY
    assert template()["Globals"]["Function"]["KmsKeyArn"] == KMS_KEY
    # Every function's role may use the key, only when there is one.
    key_use = resources()["KmsKeyUsePolicy"]
    assert key_use["Condition"] == "HasKmsKey"
    roles = [role if "Ref" in role else role["Fn::If"][1] for role in key_use["Properties"]["Roles"]]
    assert {role["Ref"] for role in roles} == {
        f"{name}Role" for name in resources_of_type(template(), "AWS::Serverless::Function")
    }
    # The trigger's role exists only with the user pool.
    assert {"Fn::If": ["UseCognito", {"Ref": "TokenClaimsFunctionRole"}, {"Ref": "AWS::NoValue"}]} in key_use[
        "Properties"
    ]["Roles"]
    (statement,) = key_use["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Resource"] == {"Ref": "KmsKeyArn"}


def test_the_jobs_table_can_be_restored_to_a_point_in_time() -> None:
    recovery = resources()["JobsTable"]["Properties"]["PointInTimeRecoverySpecification"]

    assert recovery == {"PointInTimeRecoveryEnabled": True}


def test_every_scanner_finding_skipped_says_why_in_one_line() -> None:
    skips = [
        (name, skip)
        for name, body in resources().items()
        for skip in body.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]

    assert skips
    for name, skip in skips:
        assert set(skip) == {"id", "comment"}, name
        assert skip["id"].startswith("CKV_"), name
        assert skip["comment"].strip(), name
        assert "\n" not in skip["comment"], name


# --- alarms and dashboard -------------------------------------------------------------------------------

ALARM_TARGET = {"Fn::If": ["CreateAlarmTopic", {"Ref": "AlarmTopic"}, {"Ref": "AlarmTopicArn"}]}


def alarms() -> dict[str, dict[str, Any]]:
    return {name: body["Properties"] for name, body in resources_of_type(template(), "AWS::CloudWatch::Alarm").items()}


def alarmed_metrics(alarm: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(namespace, metric name, dimensions) of every metric an alarm watches, metric math included."""
    if "MetricName" in alarm:
        return [(alarm["Namespace"], alarm["MetricName"], alarm["Dimensions"])]
    return [
        (metric["Namespace"], metric["MetricName"], metric["Dimensions"])
        for metric in (query["MetricStat"]["Metric"] for query in alarm["Metrics"] if "MetricStat" in query)
    ]


def test_the_stack_creates_an_alarm_topic_only_when_none_is_given() -> None:
    assert template()["Parameters"]["AlarmTopicArn"]["Default"] == ""
    assert template()["Conditions"]["CreateAlarmTopic"] == {"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}
    assert resources()["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
    assert resources()["AlarmTopic"]["Condition"] == "CreateAlarmTopic"
    assert template()["Outputs"]["AlarmTopicArn"]["Value"] == ALARM_TARGET


def test_every_alarm_notifies_the_alarm_topic() -> None:
    assert alarms()
    for alarm in alarms().values():
        assert alarm["AlarmActions"] == [ALARM_TARGET]
        assert alarm["OKActions"] == [ALARM_TARGET]


def test_alarms_watch_the_queues_failed_jobs_every_functions_errors_and_maintenance() -> None:
    watched = {
        (namespace, metric, str(dimensions))
        for alarm in alarms().values()
        for namespace, metric, dimensions in alarmed_metrics(alarm)
    }
    service = str([{"Name": "service", "Value": "sluice"}])

    def queue(name: str) -> str:
        return str([{"Name": "QueueName", "Value": {"Fn::GetAtt": [name, "QueueName"]}}])

    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage", queue("IngestQueue")) in watched
    assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", queue("IngestDeadLetterQueue")) in watched
    for failed_jobs in ("JobsFailed", "JobsParked", "ParkedJobsFailed", "StuckJobsFailed"):
        assert ("Sluice", failed_jobs, service) in watched
    assert ("Sluice", "MaintenanceStepFailures", service) in watched
    assert ("Sluice", "InternalErrors", service) in watched
    # An incoming/ object the API did not write: the bucket policy was bypassed.
    assert ("Sluice", "IgnoredObjects", service) in watched
    for function in resources_of_type(template(), "AWS::Serverless::Function"):
        assert ("AWS/Lambda", "Errors", str([{"Name": "FunctionName", "Value": {"Ref": function}}])) in watched
    assert alarms()["MaintenanceNotRunningAlarm"]["TreatMissingData"] == "breaching"


def emitted_metric_names() -> set[str]:
    """Every name the code could publish a metric under: its CamelCase string literals, and the worker's
    ``Jobs<Outcome>`` per load outcome."""
    sources = [*(REPO_ROOT / "functions").glob("*/app.py"), *(REPO_ROOT / "layers/sluice/sluice").rglob("*.py")]
    literals = {name for path in sources for name in re.findall(r"\"([A-Z][A-Za-z]+)\"", path.read_text())}
    return literals | {f"Jobs{outcome.title().replace('_', '')}" for outcome in LoadOutcome}


def test_custom_metric_alarms_watch_what_the_functions_publish_where_they_publish_it() -> None:
    function_globals = template()["Globals"]["Function"]["Environment"]["Variables"]
    custom = [
        (namespace, metric, dimensions)
        for alarm in alarms().values()
        for namespace, metric, dimensions in alarmed_metrics(alarm)
        if not namespace.startswith("AWS/")
    ]

    assert custom
    for namespace, metric, dimensions in custom:
        # Powertools publishes under POWERTOOLS_METRICS_NAMESPACE with the one dimension service.
        assert namespace == function_globals["POWERTOOLS_METRICS_NAMESPACE"]
        assert dimensions == [{"Name": "service", "Value": function_globals["POWERTOOLS_SERVICE_NAME"]}]
        assert metric in emitted_metric_names()


def test_the_dashboard_shows_every_alarm() -> None:
    body = resources()["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    # The body is JSON once CloudFormation has substituted the ${...} fields.
    widgets = json.loads(re.sub(r"\$\{[^}]+\}", "x", body))["widgets"]

    # An alarm the stack creates only under a condition cannot be named there: the dashboard would not deploy.
    unconditional = {
        name
        for name, alarm in resources_of_type(template(), "AWS::CloudWatch::Alarm").items()
        if "Condition" not in alarm
    }
    assert {f"${{{name}.Arn}}" for name in unconditional} <= set(re.findall(r"\$\{\w+\.Arn\}", body))
    assert {widget["type"] for widget in widgets} == {"alarm", "metric"}


# --- the local reader of templates -----------------------------------------------------------------------


def test_intrinsics_resolve_like_cloudformation() -> None:
    context = StackContext(template(), stack_name="s", region="eu-west-1", parameter_overrides={"TenantClaim": "org"})
    context.refs["Queue"] = "https://q"
    context.attributes["Queue"] = {"Arn": "arn:q"}

    assert context.resolve({"Ref": "TenantClaim"}) == "org"
    assert context.resolve({"Ref": "RateLimitRequests"}) == "15"
    assert context.resolve([{"Fn::GetAtt": ["Queue", "Arn"]}]) == ["arn:q"]
    assert context.resolve({"Fn::Sub": "${AWS::StackName}-${Queue}-${Queue.Arn}"}) == "s-https://q-arn:q"


def test_a_list_parameter_is_a_list_that_joins_and_splits() -> None:
    context = StackContext(
        template(), stack_name="s", region="eu-west-1", parameter_overrides={"VpcSubnetIds": "subnet-a, subnet-b"}
    )

    assert context.resolve({"Ref": "VpcSubnetIds"}) == ["subnet-a", "subnet-b"]
    assert context.resolve({"Ref": "VpcSecurityGroupIds"}) == []
    assert context.resolve({"Fn::Join": ["+", {"Ref": "VpcSubnetIds"}]}) == "subnet-a+subnet-b"
    assert context.resolve({"Fn::Split": [",", "a,b"]}) == ["a", "b"]


@pytest.mark.parametrize(
    "value",
    [{"Ref": "Nothing"}, {"Fn::GetAtt": ["Nothing", "Arn"]}, {"Fn::Select": [0, ["a"]]}],
    ids=["unknown ref", "unknown resource", "unsupported function"],
)
def test_what_the_local_runtime_cannot_resolve_fails_loudly(value: dict[str, Any]) -> None:
    context = StackContext(template(), stack_name="s", region="eu-west-1")

    with pytest.raises(TemplateError):
        context.resolve(value)


def test_a_file_that_is_not_a_template_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("just: text\n")

    with pytest.raises(TemplateError):
        load_template(tmp_path / "x.yaml")


def test_conditions_choose_an_if_branch_and_no_value_leaves_the_property_out() -> None:
    without_key = StackContext(template(), stack_name="s", region="eu-west-1")
    key = "arn:aws:kms:eu-west-1:123456789012:key/k"
    with_key = StackContext(template(), stack_name="s", region="eu-west-1", parameter_overrides={"KmsKeyArn": key})
    queue = resources()["IngestDeadLetterQueue"]["Properties"]

    assert without_key.condition("CreateAlarmTopic")
    assert not without_key.condition("HasKmsKey")
    assert with_key.condition("HasKmsKey")
    assert "KmsMasterKeyId" not in without_key.resolve(queue)
    assert without_key.resolve(queue)["SqsManagedSseEnabled"] is True
    assert with_key.resolve(queue)["KmsMasterKeyId"] == key
    assert "SqsManagedSseEnabled" not in with_key.resolve(queue)
    assert without_key.resolve([{"Ref": "AWS::NoValue"}, "kept"]) == ["kept"]
    assert without_key.resolve({"Ref": "AWS::NoValue"}) is None


@pytest.mark.parametrize(
    "condition",
    [{"Condition": "Nothing"}, {"Fn::Contains": [["a"], "a"]}],
    ids=["unknown condition", "unsupported condition function"],
)
def test_conditions_the_local_runtime_cannot_evaluate_fail_loudly(condition: dict[str, Any]) -> None:
    context = StackContext({"Resources": {}, "Conditions": {"Odd": condition}}, stack_name="s", region="eu-west-1")

    with pytest.raises(TemplateError):
        context.resolve({"Fn::If": ["Odd", "a", "b"]})


def test_the_bucket_policy_resolves_locally_with_the_ingest_functions_generated_role() -> None:
    context = plan_stack(StackContext(template(), stack_name="s", region="eu-west-1"), endpoint_url=None)

    statements = context.resolve(resources()["BatchBucketPolicy"]["Properties"])["PolicyDocument"]["Statement"]

    assert {"ArnNotEquals": {"aws:PrincipalArn": "arn:aws:iam::123456789012:role/s-IngestApiFunctionRole"}} in [
        statement["Condition"] for statement in statements
    ]


def test_only_functions_have_an_environment() -> None:
    with pytest.raises(TemplateError):
        function_environment(StackContext(template(), stack_name="s", region="eu-west-1"), "IngestQueue")


# --- sign-in: scopes, the optional Cognito user pool, CORS --------------------------------------------------

# Every scope a token of `sluice token` carries: the routes, the resource server and the spec declare these.
SLUICE_SCOPES = frozenset(ALL_SCOPES.split())
WITH_POOL = {"CognitoUserPool": "true"}


def rendered(parameters: dict[str, str]) -> StackContext:
    """The template as a deployment with ``parameters`` would resolve it, every resource given a name."""
    context = StackContext(template(), stack_name="sluice", region="eu-central-1", parameter_overrides=parameters)
    for name in resources():
        context.refs[name] = f"{name}-physical"
        context.attributes[name] = {"Arn": f"arn:{name}"}
    return context


def test_every_scope_has_its_cognito_form_under_the_pool_and_only_there() -> None:
    for function, route in http_routes():
        scopes = route["Auth"].get("AuthorizationScopes")
        if scopes is None:
            continue
        # The one form every route uses: each bare scope, then its Cognito form under the UseCognito condition.
        expected = []
        for scope in bare_scopes(route):
            expected += [scope, {"Fn::If": ["UseCognito", f"sluice/{scope}", {"Ref": "AWS::NoValue"}]}]
        assert scopes == expected, f"{function} {route['Method']} {route['Path']}"
        assert set(bare_scopes(route)) <= SLUICE_SCOPES


def test_the_resource_server_carries_every_scope_under_the_prefix_the_functions_take_off() -> None:
    server = resources()["UserPoolResourceServer"]["Properties"]
    prefix = template()["Globals"]["Function"]["Environment"]["Variables"]["SLUICE_SCOPE_PREFIX"]

    assert {scope["ScopeName"] for scope in server["Scopes"]} == SLUICE_SCOPES
    assert prefix == {"Fn::If": ["UseCognito", f"{server['Identifier']}/", ""]}
    assert rendered({}).resolve(prefix) == ""
    assert rendered(WITH_POOL).resolve(prefix) == "sluice/"


@pytest.mark.parametrize("parameters", [{}, WITH_POOL], ids=["external provider", "cognito pool"])
def test_the_twin_routes_each_scope_in_the_forms_the_deployment_accepts(parameters: dict[str, str]) -> None:
    prefixes = ["", "sluice/"] if parameters else [""]

    for route in http_api_routes(rendered(parameters))[1]:
        bare = [scope for scope in route.scopes if "/" not in scope]
        assert list(route.scopes) == [prefix + scope for scope in bare for prefix in prefixes], route.key


def test_without_the_pool_the_authorizer_trusts_the_parameters_and_nothing_of_cognito_is_created() -> None:
    context = rendered({"JwtIssuer": "https://sluice-example.eu.auth0.com/", "JwtAudience": "https://api.example"})

    (authorizer,) = jwt_authorizers(context, "HttpApi").values()
    assert (authorizer.issuer, authorizer.audiences) == (
        "https://sluice-example.eu.auth0.com/",
        ("https://api.example",),
    )
    cognito = [name for name, body in resources().items() if body.get("Condition") == "UseCognito"]
    assert set(cognito) >= {"UserPool", "UserPoolDomain", "UserPoolResourceServer", "DeviceClient", "PeopleClient"}
    assert set(cognito) >= {"DeviceClientsTable", "TokenClaimsFunction", "TokenClaimsPermission"}
    for kind in {body["Type"] for name, body in resources().items() if name in cognito}:
        assert not set(created_resources_of_type(context, kind)) & set(cognito)
    assert template()["Parameters"]["CognitoUserPool"]["Default"] == "false"


def test_with_the_pool_the_authorizer_trusts_the_pool_and_its_clients() -> None:
    context = rendered(WITH_POOL)

    (authorizer,) = jwt_authorizers(context, "HttpApi").values()
    assert authorizer.issuer == "https://cognito-idp.eu-central-1.amazonaws.com/UserPool-physical"
    assert authorizer.audiences == ("DeviceClient-physical", "PeopleClient-physical")
    assert "TokenClaimsFunction" in created_resources_of_type(context, "AWS::Serverless::Function")

    more = rendered(WITH_POOL | {"CognitoMoreClientIds": "4kd9tenantb,7qz2tenantc"})
    (authorizer,) = jwt_authorizers(more, "HttpApi").values()
    assert authorizer.audiences == ("DeviceClient-physical", "PeopleClient-physical", "4kd9tenantb", "7qz2tenantc")


def test_the_pool_lets_only_administrators_create_people_and_set_their_tenant() -> None:
    pool = resources()["UserPool"]["Properties"]
    people = resources()["PeopleClient"]["Properties"]
    devices = resources()["DeviceClient"]["Properties"]

    assert pool["UserPoolTier"] == "ESSENTIALS"
    assert pool["AdminCreateUserConfig"] == {"AllowAdminCreateUserOnly": True}
    assert {"Name": "tenant_id", "AttributeDataType": "String", "Mutable": True}.items() <= next(
        attribute for attribute in pool["Schema"] if attribute["Name"] == "tenant_id"
    ).items()
    assert pool["LambdaConfig"]["PreTokenGenerationConfig"] == {
        "LambdaArn": {"Fn::GetAtt": ["TokenClaimsFunction", "Arn"]},
        "LambdaVersion": "V3_0",
    }
    # People: code + PKCE from a browser (no secret), and they may not write their own tenant.
    assert (people["GenerateSecret"], people["AllowedOAuthFlows"]) == (False, ["code"])
    assert "custom:tenant_id" not in people["WriteAttributes"]
    assert people["CallbackURLs"] == {"Ref": "SignInCallbackUrls"}
    assert people["LogoutURLs"] == {"Ref": "SignOutUrls"}
    # Devices: client credentials with a secret, tokens as long as the deployer chose (Cognito allows 5 min to a day).
    assert (devices["GenerateSecret"], devices["AllowedOAuthFlows"]) == (True, ["client_credentials"])
    assert devices["AccessTokenValidity"] == {"Ref": "DeviceTokenMinutes"}
    assert devices["TokenValidityUnits"] == {"AccessToken": "minutes"}
    minutes = template()["Parameters"]["DeviceTokenMinutes"]
    assert (minutes["MinValue"], minutes["MaxValue"], minutes["Default"]) == (5, 1440, 60)
    for client in (people, devices):
        assert client["AllowedOAuthFlowsUserPoolClient"] is True
        assert "custom:tenant_id" not in client.get("WriteAttributes", [])
        assert {scope for scope in client["AllowedOAuthScopes"] if "/" in scope} <= {
            f"sluice/{s}" for s in SLUICE_SCOPES
        }
        assert "sluice/ops:read" not in client["AllowedOAuthScopes"]


def test_the_trigger_may_only_read_the_device_mapping_and_only_the_pool_may_invoke_it() -> None:
    function = resources()["TokenClaimsFunction"]["Properties"]
    permission = resources()["TokenClaimsPermission"]["Properties"]

    assert function["Policies"] == [
        {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "dynamodb:GetItem",
                    "Resource": {"Fn::GetAtt": ["DeviceClientsTable", "Arn"]},
                }
            ]
        }
    ]
    assert function["Environment"]["Variables"]["SLUICE_TENANT_CLAIM"] == {"Ref": "TenantClaim"}
    assert function["Timeout"] <= 5  # Cognito waits 5 seconds for a trigger
    assert (permission["Principal"], permission["SourceArn"]) == (
        "cognito-idp.amazonaws.com",
        {"Fn::GetAtt": ["UserPool", "Arn"]},
    )


def test_the_pools_endpoints_and_clients_are_outputs() -> None:
    outputs = template()["Outputs"]

    for name in ("TokenUrl", "SignInUrl", "UserPoolId", "DeviceClientId", "PeopleClientId", "DeviceClientsTableName"):
        assert outputs[name]["Condition"] == "UseCognito", name
    assert outputs["TokenUrl"]["Value"]["Fn::Sub"].endswith(".amazoncognito.com/oauth2/token")
    assert outputs["SignInUrl"]["Value"]["Fn::Sub"].endswith(".amazoncognito.com/oauth2/authorize")


def test_cors_is_off_unless_origins_are_given() -> None:
    cors = resources()["HttpApi"]["Properties"]["CorsConfiguration"]

    assert template()["Parameters"]["CorsAllowedOrigins"]["Default"] == ""
    assert rendered({}).resolve(cors) is None
    allowed = rendered({"CorsAllowedOrigins": "https://console.example.com,http://localhost:5173"}).resolve(cors)
    assert allowed == {
        "AllowOrigins": ["https://console.example.com", "http://localhost:5173"],
        # What the API reads: the token, the body's type and encoding, and a retry's key.
        "AllowHeaders": ["authorization", "content-type", "content-encoding", "idempotency-key"],
        "AllowMethods": ["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
        # A 429 or 503 says when to come back; a browser script may read it only when exposed.
        "ExposeHeaders": ["retry-after"],
        "MaxAge": 600,
    }


@pytest.mark.parametrize(
    ("origins", "allowed"),
    [
        ("", True),
        ("https://console.example.com", True),
        ("https://a.example,http://localhost:5173", True),
        ("https://a.example, https://b.example", False),  # a space would become part of the origin
        ("https://console.example.com/", False),  # an origin has no path
        ("console.example.com", False),
        ("*", False),
    ],
)
def test_cors_origins_must_be_origins(origins: str, allowed: bool) -> None:
    pattern = template()["Parameters"]["CorsAllowedOrigins"]["AllowedPattern"]

    assert bool(re.fullmatch(pattern, origins)) is allowed
