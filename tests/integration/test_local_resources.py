"""template.yaml's resources created in moto match the template, and creating them twice changes nothing."""

import json

from sluice.adapters.aws import dynamodb_client, s3_client, sqs_client
from sluice_tools.local.resources import provision_stack
from sluice_tools.local.template import StackContext


def test_queues_carry_the_templates_timeouts_and_redrive(aws_stack: StackContext) -> None:
    attributes = sqs_client().get_queue_attributes(QueueUrl=aws_stack.refs["IngestQueue"], AttributeNames=["All"])[
        "Attributes"
    ]

    assert attributes["VisibilityTimeout"] == "1800"
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": aws_stack.attributes["IngestDeadLetterQueue"]["Arn"],
        "maxReceiveCount": 5,
    }
    assert "s3.amazonaws.com" in attributes["Policy"]


def test_the_jobs_table_lists_a_tenants_jobs_by_creation_and_expires_them(aws_stack: StackContext) -> None:
    table = aws_stack.refs["JobsTable"]

    indexes = dynamodb_client().describe_table(TableName=table)["Table"]["GlobalSecondaryIndexes"]
    ttl = dynamodb_client().describe_time_to_live(TableName=table)["TimeToLiveDescription"]

    keys = {index["IndexName"]: [key["AttributeName"] for key in index["KeySchema"]] for index in indexes}
    assert keys == {"TenantJobsIndex": ["tenant_id", "created_at"], "StatusJobsIndex": ["status", "created_at"]}
    assert (ttl["AttributeName"], ttl["TimeToLiveStatus"]) == ("expires_at", "ENABLED")


def test_the_bucket_is_versioned_encrypted_and_private(aws_stack: StackContext) -> None:
    bucket = aws_stack.refs["BatchBucket"]

    assert s3_client().get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rules = s3_client().get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3_client().get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())


def test_the_bucket_carries_the_templates_cors_rule_for_upload_forms(aws_stack: StackContext) -> None:
    rules = s3_client().get_bucket_cors(Bucket=aws_stack.refs["BatchBucket"])["CORSRules"]

    assert rules == [
        {
            "ID": "upload-forms",
            "AllowedMethods": ["POST"],
            "AllowedOrigins": ["*"],
            "AllowedHeaders": ["*"],
            "MaxAgeSeconds": 600,
        }
    ]


def test_provisioning_twice_keeps_the_same_resources(aws_stack: StackContext) -> None:
    again = StackContext(aws_stack.template, stack_name=aws_stack.stack_name, region=aws_stack.region)

    provision_stack(again, s3_client(), sqs_client(), dynamodb_client())

    assert again.refs == aws_stack.refs
    assert again.attributes == aws_stack.attributes
