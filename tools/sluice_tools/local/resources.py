"""Create the template's queues, tables and bucket in a local AWS (moto), as CloudFormation would.

Safe to run twice: what exists is kept and brought back in line with the template. Lifecycle rules are not
applied locally (nothing ages in a development session), nor are policy statements with conditions, which moto
cannot evaluate; everything else that changes behaviour is.
"""

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from sluice_tools.local.template import StackContext, TemplateError, created_resources_of_type, load_template

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

# Queue properties whose CloudFormation and API names are the same.
_QUEUE_ATTRIBUTES = (
    "VisibilityTimeout",
    "MessageRetentionPeriod",
    "DelaySeconds",
    "ReceiveMessageWaitTimeSeconds",
    "SqsManagedSseEnabled",
)


def provision_stack(
    context: StackContext, s3: "S3Client", sqs: "SQSClient", dynamodb: "DynamoDBClient"
) -> StackContext:
    """Create every queue, table and bucket of the template; fill ``context`` with their names and ARNs."""
    _plan_function_roles(context)
    queues = created_resources_of_type(context, "AWS::SQS::Queue")
    # A queue that names a dead-letter queue needs that queue first.
    for name in sorted(queues, key=lambda queue: "RedrivePolicy" in queues[queue].get("Properties", {})):
        _create_queue(context, sqs, name, queues[name].get("Properties", {}))
    for policy in created_resources_of_type(context, "AWS::SQS::QueuePolicy").values():
        properties = context.resolve(policy["Properties"])
        for url in properties["Queues"]:
            sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(properties["PolicyDocument"])})
    for name, table in created_resources_of_type(context, "AWS::DynamoDB::Table").items():
        _create_table(context, dynamodb, name, table["Properties"])
    for name, bucket in created_resources_of_type(context, "AWS::S3::Bucket").items():
        _create_bucket(context, s3, name, bucket["Properties"])
    for policy in created_resources_of_type(context, "AWS::S3::BucketPolicy").values():
        _put_bucket_policy(s3, context.resolve(policy["Properties"]))
    return context


def plan_stack(context: StackContext, endpoint_url: str | None) -> StackContext:
    """Fill ``context`` with the names and ARNs ``provision_stack`` gives the resources, without calling AWS.

    ``sluice invoke`` resolves a function's environment this way, so it runs without touching the moto server
    until the function itself does. ``endpoint_url`` is where the queues live (None: AWS's own URLs).
    """
    region = context.region
    account = context.pseudo()["AWS::AccountId"]
    _plan_function_roles(context)
    for name, queue in created_resources_of_type(context, "AWS::SQS::Queue").items():
        # Only the name is resolved: the rest may refer to queues not planned yet (a redrive policy's target).
        queue_name = context.resolve(queue.get("Properties", {}).get("QueueName")) or physical_name(context, name)
        base = endpoint_url.rstrip("/") if endpoint_url else f"https://sqs.{region}.amazonaws.com"
        url = f"{base}/{account}/{queue_name}"
        context.refs[name] = url
        arn = f"arn:aws:sqs:{region}:{account}:{queue_name}"
        context.attributes[name] = {"Arn": arn, "QueueName": queue_name, "QueueUrl": url}
    for name, table in created_resources_of_type(context, "AWS::DynamoDB::Table").items():
        table_name = context.resolve(table["Properties"].get("TableName")) or physical_name(context, name)
        context.refs[name] = table_name
        arn = f"arn:aws:dynamodb:{region}:{account}:table/{table_name}"
        context.attributes[name] = {"Arn": arn}
        if "StreamSpecification" in table["Properties"]:
            # A stream's label is the moment it was created: known only once it is, so planned as a placeholder.
            context.attributes[name]["StreamArn"] = f"{arn}/stream/planned"
    for name, bucket in created_resources_of_type(context, "AWS::S3::Bucket").items():
        bucket_name = context.resolve(bucket["Properties"].get("BucketName")) or physical_name(context, name).lower()
        context.refs[name] = bucket_name
        context.attributes[name] = {
            "Arn": f"arn:aws:s3:::{bucket_name}",
            "DomainName": f"{bucket_name}.s3.amazonaws.com",
        }
    return context


def _plan_function_roles(context: StackContext) -> None:
    """The roles SAM generates for functions that name none (``<Function>Role``), which policies may name.

    Nothing checks them locally (functions run with the local credentials), but a bucket policy's condition names
    IngestApiFunction's role and must resolve.
    """
    account = context.pseudo()["AWS::AccountId"]
    for name, function in created_resources_of_type(context, "AWS::Serverless::Function").items():
        if "Role" not in function["Properties"]:
            role_name = physical_name(context, f"{name}Role")
            context.refs[f"{name}Role"] = role_name
            context.attributes[f"{name}Role"] = {"Arn": f"arn:aws:iam::{account}:role/{role_name}"}


def physical_name(context: StackContext, logical_id: str) -> str:
    """The name CloudFormation would make up for an unnamed resource (shorter and without the random tail)."""
    return f"{context.stack_name}-{logical_id}"


def _create_queue(context: StackContext, sqs: "SQSClient", name: str, properties: Mapping[str, Any]) -> None:
    resolved = context.resolve(dict(properties))
    attributes: dict[Any, str] = {
        name: str(resolved[name]).lower() if isinstance(resolved[name], bool) else str(resolved[name])
        for name in _QUEUE_ATTRIBUTES
        if name in resolved
    }
    if "RedrivePolicy" in resolved:
        attributes["RedrivePolicy"] = json.dumps(resolved["RedrivePolicy"])
    queue_name = resolved.get("QueueName") or physical_name(context, name)
    url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    # create_queue refuses changed attributes of an existing queue; setting them afterwards always works.
    if attributes:
        sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    context.refs[name] = url
    context.attributes[name] = {"Arn": arn, "QueueName": queue_name, "QueueUrl": url}


def _create_table(context: StackContext, dynamodb: "DynamoDBClient", name: str, properties: Mapping[str, Any]) -> None:
    resolved = context.resolve(dict(properties))
    table_name = resolved.get("TableName") or physical_name(context, name)
    if table_name not in dynamodb.list_tables()["TableNames"]:
        request: dict[str, Any] = {
            "TableName": table_name,
            "AttributeDefinitions": resolved["AttributeDefinitions"],
            "KeySchema": resolved["KeySchema"],
            "BillingMode": resolved.get("BillingMode", "PROVISIONED"),
        }
        if "GlobalSecondaryIndexes" in resolved:
            request["GlobalSecondaryIndexes"] = resolved["GlobalSecondaryIndexes"]
        if "StreamSpecification" in resolved:
            request["StreamSpecification"] = {"StreamEnabled": True} | resolved["StreamSpecification"]
        dynamodb.create_table(**request)
    ttl = resolved.get("TimeToLiveSpecification")
    if ttl:
        dynamodb.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": bool(ttl["Enabled"])},
        )
    table = dynamodb.describe_table(TableName=table_name)["Table"]
    context.refs[name] = table_name
    context.attributes[name] = {"Arn": table["TableArn"]}
    if "LatestStreamArn" in table:
        context.attributes[name]["StreamArn"] = table["LatestStreamArn"]


def _create_bucket(context: StackContext, s3: "S3Client", name: str, properties: Mapping[str, Any]) -> None:
    # The notification names queues that already exist; the rest of the bucket resolves now.
    resolved = context.resolve(dict(properties))
    bucket = resolved.get("BucketName") or physical_name(context, name).lower()
    existing = {entry["Name"] for entry in s3.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        if context.region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": context.region})  # type: ignore[typeddict-item]
    context.refs[name] = bucket
    context.attributes[name] = {"Arn": f"arn:aws:s3:::{bucket}", "DomainName": f"{bucket}.s3.amazonaws.com"}
    if "PublicAccessBlockConfiguration" in resolved:
        s3.put_public_access_block(
            Bucket=bucket, PublicAccessBlockConfiguration=resolved["PublicAccessBlockConfiguration"]
        )
    if "BucketEncryption" in resolved:
        # CloudFormation says ServerSideEncryptionByDefault where the S3 API says ApplyServerSideEncryptionByDefault.
        rules: list[Any] = [
            {
                ("ApplyServerSideEncryptionByDefault" if key == "ServerSideEncryptionByDefault" else key): value
                for key, value in rule.items()
            }
            for rule in resolved["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": rules})
    if "VersioningConfiguration" in resolved:
        s3.put_bucket_versioning(
            Bucket=bucket, VersioningConfiguration={"Status": resolved["VersioningConfiguration"]["Status"]}
        )
    if "CorsConfiguration" in resolved:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=_cors_configuration(resolved["CorsConfiguration"]))
    notifications = resolved.get("NotificationConfiguration", {})
    if notifications:
        s3.put_bucket_notification_configuration(
            Bucket=bucket, NotificationConfiguration=_notification_configuration(notifications)
        )


def _put_bucket_policy(s3: "S3Client", properties: Mapping[str, Any]) -> None:
    # moto enforces bucket policies but ignores their conditions, so the template's "deny unless TLS" would deny
    # everything locally. Conditional statements are left out; any others are applied.
    document = dict(properties["PolicyDocument"])
    document["Statement"] = [statement for statement in document["Statement"] if "Condition" not in statement]
    if document["Statement"]:
        s3.put_bucket_policy(Bucket=properties["Bucket"], Policy=json.dumps(document))


# CloudFormation's names for a CORS rule's properties where the S3 API's differ.
_CORS_RULE_NAMES = {"Id": "ID", "MaxAge": "MaxAgeSeconds", "ExposedHeaders": "ExposeHeaders"}


def _cors_configuration(cfn: Mapping[str, Any]) -> Any:
    return {
        "CORSRules": [
            {_CORS_RULE_NAMES.get(key, key): value for key, value in rule.items()} for rule in cfn["CorsRules"]
        ]
    }


def _notification_configuration(cfn: Mapping[str, Any]) -> Any:
    unsupported = set(cfn) - {"QueueConfigurations"}
    if unsupported:
        raise TemplateError(f"bucket notifications of kind {sorted(unsupported)} are not supported locally")
    return {
        "QueueConfigurations": [
            {
                "QueueArn": entry["Queue"],
                "Events": [entry["Event"]],
                **(
                    {"Filter": {"Key": {"FilterRules": entry["Filter"]["S3Key"]["Rules"]}}} if "Filter" in entry else {}
                ),
            }
            for entry in cfn["QueueConfigurations"]
        ]
    }


def main(argv: list[str] | None = None) -> None:
    """``python -m sluice_tools.local.resources``: create template.yaml's resources in moto, print their names."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--endpoint-url", required=True, help="the moto server, e.g. http://localhost:4566")
    parser.add_argument("--template", type=Path, default=Path("template.yaml"))
    parser.add_argument("--stack-name", default="sluice-local")
    parser.add_argument("--region", default="eu-central-1")
    args = parser.parse_args(argv)
    session = boto3.session.Session(region_name=args.region)
    context = provision_stack(
        StackContext(load_template(args.template), stack_name=args.stack_name, region=args.region),
        session.client("s3", endpoint_url=args.endpoint_url),
        session.client("sqs", endpoint_url=args.endpoint_url),
        session.client("dynamodb", endpoint_url=args.endpoint_url),
    )
    for logical_id, physical in sorted(context.refs.items()):
        print(f"{logical_id}={physical}")


if __name__ == "__main__":
    main()
