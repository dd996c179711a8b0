"""boto3 clients, created once per execution environment and reused while it is warm.

Locally every client talks to the moto server that ``SLUICE_AWS_ENDPOINT_URL`` names (``AwsSettings``); in AWS
that setting is empty and boto3 finds the real endpoints.
"""

from functools import cache
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from sluice.settings import get_aws_settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient

# An API call that hangs must fail the request (the client retries) well inside the function's timeout.
CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=10, retries={"mode": "standard", "max_attempts": 3})
# A health check asks once and briefly: a dependency that takes longer to answer is reported, not waited for.
PROBE_CONFIG = Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "max_attempts": 1})


def endpoint_url() -> str | None:
    """The local AWS endpoint, or None for boto3's own choice."""
    return get_aws_settings().aws_endpoint_url


@cache
def s3_client() -> "S3Client":
    """The execution environment's S3 client."""
    return boto3.client("s3", config=CLIENT_CONFIG, endpoint_url=endpoint_url())


@cache
def s3_form_client() -> "S3Client":
    """The S3 client that signs upload forms. Its addressing style is set because botocore's default ("auto")
    signs forms for the global endpoint (s3.amazonaws.com), which answers a POST for a bucket of another region
    with a redirect that most clients follow without the body; this one names the bucket's regional endpoint."""
    config = CLIENT_CONFIG.merge(Config(s3={"addressing_style": "virtual"}))
    return boto3.client("s3", config=config, endpoint_url=endpoint_url())


@cache
def dynamodb_client() -> "DynamoDBClient":
    """The execution environment's DynamoDB client."""
    return boto3.client("dynamodb", config=CLIENT_CONFIG, endpoint_url=endpoint_url())


@cache
def sqs_client() -> "SQSClient":
    """The execution environment's SQS client."""
    return boto3.client("sqs", config=CLIENT_CONFIG, endpoint_url=endpoint_url())


@cache
def secretsmanager_client() -> "SecretsManagerClient":
    """The execution environment's Secrets Manager client."""
    return boto3.client("secretsmanager", config=CLIENT_CONFIG, endpoint_url=endpoint_url())


@cache
def probe_clients() -> tuple["S3Client", "SQSClient", "DynamoDBClient"]:
    """S3, SQS and DynamoDB clients for health checks, with short timeouts and no retries."""
    return (
        boto3.client("s3", config=PROBE_CONFIG, endpoint_url=endpoint_url()),
        boto3.client("sqs", config=PROBE_CONFIG, endpoint_url=endpoint_url()),
        boto3.client("dynamodb", config=PROBE_CONFIG, endpoint_url=endpoint_url()),
    )


def forget_clients() -> None:
    """Drop the cached clients (tests that switch endpoints or credentials call this)."""
    for factory in (s3_client, s3_form_client, dynamodb_client, sqs_client, secretsmanager_client, probe_clients):
        factory.cache_clear()
    get_aws_settings.cache_clear()
