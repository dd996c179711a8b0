"""template.yaml's resources in an in-process moto, for the benches that run one API function's handler."""

import os
from collections.abc import Iterator
from contextlib import contextmanager

from moto import mock_aws

from sluice.adapters.aws import dynamodb_client, forget_clients, s3_client, sqs_client
from sluice_tools.local.resources import provision_stack
from sluice_tools.local.template import StackContext, function_environment

from ..lambdas import template


@contextmanager
def function_stack(logical_id: str, dsn: str) -> Iterator[StackContext]:
    """The stack provisioned in moto, and the function's environment set from the template, its database ``dsn``
    (no secret) and its logs at WARNING; the clients are forgotten afterwards."""
    os.environ.update(AWS_DEFAULT_REGION="eu-central-1", AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    os.environ.pop("AWS_ENDPOINT_URL", None)
    with mock_aws():
        forget_clients()
        stack = provision_stack(
            StackContext(template(), stack_name="sluice-bench", region="eu-central-1"),
            s3_client(),
            sqs_client(),
            dynamodb_client(),
        )
        os.environ.update(function_environment(stack, logical_id))
        os.environ.update(SLUICE_DB_SECRET_ARN="", SLUICE_DB_DSN=dsn, POWERTOOLS_LOG_LEVEL="WARNING")
        try:
            yield stack
        finally:
            forget_clients()
