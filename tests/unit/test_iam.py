"""template.yaml grants least privilege: no wildcard actions or resources in any statement that allows something,
SAM policy templates scoped to this stack's resources, each function reading only its own database secret, and no
database credential anywhere in the template or the functions' environments.

The checks read the template, not a deployed stack; each is also run on a small bad template below, so a check
that stopped finding anything would fail too.
"""

import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from ..lambdas import template

PSEUDO_PARAMETERS = {"AWS::Partition", "AWS::Region", "AWS::AccountId", "AWS::StackName", "AWS::URLSuffix"}
# Resources whose Policies property is a list of SAM policy templates and inline statements.
SAM_POLICY_HOLDERS = {"AWS::Serverless::Function", "AWS::Serverless::StateMachine"}
_SUB_FIELD = re.compile(r"\$\{([^}!][^}]*)\}")
# Environment variable names that would carry a credential in plain text. A secret's ARN is fine, its value not.
CREDENTIAL_NAME = re.compile(r"PASSWORD|PASSWD|DSN|CONN(ECTION)?_?STR(ING)?|DATABASE_URL|DB_URL|CREDENTIAL", re.I)
# A connection string or password assignment anywhere in the template, Descriptions included.
CONNECTION_STRING = re.compile(
    r"\b(?:postgres(?:ql)?|mysql|mongodb(?:\+srv)?|redis)://|\bpassword\s*=\s*\S|\buser(?:name)?\s*=\s*\S+\s+host\s*=",
    re.I,
)


def names(document: Mapping[str, Any]) -> set[str]:
    """What a reference may name: the template's resources and parameters."""
    return set(document.get("Resources", {})) | set(document.get("Parameters", {}))


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def sub_text(value: Any) -> str | None:
    """The text of a ``!Sub``, short or long form; None for anything else."""
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        argument = value["Fn::Sub"]
        return str(argument[0] if isinstance(argument, list) else argument)
    return None


def reference_problem(value: Any, known: set[str]) -> str | None:
    """None when ``value`` is a ``!Ref``, ``!GetAtt`` or ``!Sub`` of the template's own resources and parameters
    (a ``!Sub`` also without wildcards); otherwise why not."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return None if value["Ref"] in known else f"!Ref {value['Ref']} names nothing in the template"
    if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
        target = as_list(value["Fn::GetAtt"])[0].split(".")[0]
        return None if target in known else f"!GetAtt {target} names nothing in the template"
    text = sub_text(value)
    if text is not None:
        fields = [field.split(".")[0] for field in _SUB_FIELD.findall(text) if field not in PSEUDO_PARAMETERS]
        if not fields:
            return f"!Sub {text!r} names no resource or parameter of the template"
        unknown = [field for field in fields if field not in known]
        if unknown:
            return f"!Sub {text!r} names {unknown}, not in the template"
        return f"!Sub {text!r} has a wildcard" if "*" in text else None
    return f"{value!r} is a literal, not a reference to a resource or parameter of the template"


def arn_problem(text: str) -> str | None:
    """None when an ARN (literal or ``!Sub`` text) names specific resources. Its resource part may end in an
    object-key pattern under a named bucket (``arn:...:s3:::${Bucket}/incoming/*``): S3 has no other way to scope a
    grant to a prefix, and no SAM policy template is that narrow. The pattern needs a literal prefix: ``${Bucket}/*``
    is every object, which S3ReadPolicy and its siblings grant. Any other wildcard is refused, in the service,
    region, account or resource part alike."""
    # ${AWS::Partition} and the like hold colons of their own: parse with each field as a plain word.
    parts = _SUB_FIELD.sub("ref", text).split(":", 5)
    if len(parts) < 6 or parts[0] != "arn":
        return None if text == "*" or "*" not in text else f"{text!r}: a wildcard"
    service, region, account, resource = parts[2], parts[3], parts[4], parts[5]
    if "*" in service + region + account:
        return f"{text!r}: a wildcard service, region or account"
    if "*" not in resource:
        return None
    bucket, slash, key = resource.partition("/")
    if service == "s3" and slash and bucket and "*" not in bucket and key.split("*")[0]:
        return None
    return f"{text!r}: the resource part {resource!r} is a wildcard"


def resource_problem(resource: Any, known: set[str]) -> str | None:
    if resource == "*":
        return "Resource '*'"
    if isinstance(resource, str):
        return arn_problem(resource)
    text = sub_text(resource)
    if text is not None:
        unknown = [
            field
            for field in _SUB_FIELD.findall(text)
            if field not in PSEUDO_PARAMETERS and field.split(".")[0] not in known
        ]
        return f"!Sub {text!r} names {unknown}, not in the template" if unknown else arn_problem(text)
    return reference_problem(resource, known)


def statement_problems(statement: Mapping[str, Any], known: set[str]) -> list[str]:
    """What is too broad in one statement. A Deny is never a grant: it only takes away (the bucket's
    DenyInsecureTransport denies s3:* to everyone unless the request uses TLS), so a wildcard there narrows access
    and is left alone."""
    effect = statement.get("Effect")
    if effect == "Deny":
        return []
    if effect != "Allow":
        return [f"Effect {effect!r}: neither Allow nor Deny"]
    problems = [
        f"{key} in an Allow grants everything but a list"
        for key in ("NotAction", "NotResource", "NotPrincipal")
        if key in statement
    ]
    for action in as_list(statement.get("Action", [])):
        if not isinstance(action, str) or "*" in action:
            # "*", "service:*" and prefixes like "s3:Get*" alike: a pattern also grants actions AWS adds later.
            problems.append(f"Action {action!r}: a wildcard (or not a literal action)")
    if "Resource" not in statement:
        problems.append("no Resource")
    for resource in as_list(statement.get("Resource", [])):
        found = resource_problem(resource, known)
        if found:
            problems.append(found)
    principal = statement.get("Principal")
    if principal == "*" or (isinstance(principal, dict) and "*" in as_list(principal.get("AWS", []))):
        problems.append("Principal '*': anyone")
    return problems


def policy_documents(document: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every policy document of the template (bucket, queue, topic policies, IAM policies) and every inline
    statement block of a function's Policies, with where it is. Trust policies (AssumeRolePolicyDocument) say who
    may assume a role, not what it may do, and are not included."""

    def walk(value: Any, where: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == "PolicyDocument":
                    yield f"{where}.PolicyDocument", item
                else:
                    yield from walk(item, f"{where}.{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                yield from walk(item, f"{where}[{index}]")

    for logical_id, resource in document["Resources"].items():
        properties = resource.get("Properties", {})
        if resource["Type"] in SAM_POLICY_HOLDERS:
            for index, policy in enumerate(as_list(properties.get("Policies", []))):
                if isinstance(policy, dict) and "Statement" in policy:
                    yield f"{logical_id}.Policies[{index}]", policy
        yield from walk(properties, logical_id)


def statement_findings(document: Mapping[str, Any]) -> list[str]:
    known = names(document)
    return [
        f"{where}: {problem}"
        for where, policy in policy_documents(document)
        for statement in as_list(policy.get("Statement", []))
        for problem in statement_problems(statement, known)
    ]


def sam_template_findings(document: Mapping[str, Any]) -> list[str]:
    """Every SAM policy template must be scoped by its parameters to resources this template names (or takes as
    parameters). A template without parameters (CloudWatchPutMetricPolicy and the like) grants on '*', and a
    managed policy given by name cannot be scoped at all."""
    known = names(document)
    findings: list[str] = []
    for logical_id, resource in document["Resources"].items():
        if resource["Type"] not in SAM_POLICY_HOLDERS:
            continue
        for index, policy in enumerate(as_list(resource.get("Properties", {}).get("Policies", []))):
            where = f"{logical_id}.Policies[{index}]"
            if not isinstance(policy, dict):
                findings.append(f"{where}: managed policy {policy!r} is not scoped to this stack's resources")
                continue
            if "Statement" in policy:
                continue
            for name, parameters in policy.items():
                if not isinstance(parameters, dict) or not parameters:
                    findings.append(f"{where}: {name} names no resource")
                    continue
                findings += [
                    f"{where}: {name}.{parameter}: {problem}"
                    for parameter, value in parameters.items()
                    if (problem := reference_problem(value, known))
                ]
    return findings


def environments(document: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """The environment variables of Globals and of each function."""
    yield "Globals", document.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    for logical_id, resource in document["Resources"].items():
        if resource["Type"] in {"AWS::Serverless::Function", "AWS::Lambda::Function"}:
            yield logical_id, resource.get("Properties", {}).get("Environment", {}).get("Variables", {})


def secret_arn_parameters(document: Mapping[str, Any]) -> set[str]:
    """Parameters that can only hold a Secrets Manager ARN."""
    return {
        name
        for name, parameter in document.get("Parameters", {}).items()
        if str(parameter.get("AllowedPattern", "")).startswith("^arn:aws[a-z-]*:secretsmanager:")
    }


def credential_findings(document: Mapping[str, Any]) -> list[str]:
    """No credential in the template: variables named like one carry nothing (a !Ref of a parameter would put its
    plain value in the environment), a *SECRET* variable holds a secret's ARN, no string anywhere is a connection
    string, and no parameter is a password."""
    secret_parameters = secret_arn_parameters(document)
    secret_resources = {
        name for name, body in document["Resources"].items() if body["Type"] == "AWS::SecretsManager::Secret"
    }
    findings: list[str] = []
    for where, variables in environments(document):
        for name, value in variables.items():
            if CREDENTIAL_NAME.search(name) and value not in ("", None):
                findings.append(f"{where}: {name} would carry a credential in the environment; pass a secret's ARN")
            if "SECRET" in name.upper() and value not in ("", None):
                target = value.get("Ref") if isinstance(value, dict) else None
                if target not in secret_parameters | secret_resources:
                    findings.append(f"{where}: {name} is {value!r}, not a !Ref of a secret or a secret ARN parameter")
    for name in document.get("Parameters", {}):
        if CREDENTIAL_NAME.search(name):
            findings.append(f"parameter {name}: a credential as a parameter; keep it in Secrets Manager")

    def strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
        if isinstance(value, str):
            yield where, value
        elif isinstance(value, dict):
            for key, item in value.items():
                yield from strings(key, where)
                yield from strings(item, f"{where}.{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                yield from strings(item, f"{where}[{index}]")

    findings += [
        f"{where}: {text!r} looks like a connection string"
        for where, text in strings(document, "template")
        if CONNECTION_STRING.search(text)
    ]
    return findings


# --- template.yaml ------------------------------------------------------------------------------------------------


def test_no_statement_allows_a_wildcard_action_or_resource() -> None:
    assert statement_findings(template()) == []


def test_every_sam_policy_template_names_resources_of_this_template() -> None:
    assert sam_template_findings(template()) == []


def test_no_credential_is_in_the_template_or_an_environment() -> None:
    assert credential_findings(template()) == []


def test_each_function_may_read_only_the_secret_it_connects_with() -> None:
    for logical_id, resource in template()["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        properties = resource["Properties"]
        connects_with = properties.get("Environment", {}).get("Variables", {}).get("SLUICE_DB_SECRET_ARN")
        readable = [
            policy["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"]
            for policy in properties.get("Policies", [])
            if isinstance(policy, dict) and "AWSSecretsManagerGetSecretValuePolicy" in policy
        ]
        inline = [
            action
            for policy in properties.get("Policies", [])
            if isinstance(policy, dict)
            for statement in as_list(policy.get("Statement", []))
            for action in as_list(statement.get("Action", []))
            if str(action).lower().startswith("secretsmanager:")
        ]

        assert readable == ([] if connects_with is None else [connects_with]), logical_id
        assert inline == [], logical_id


def test_the_database_functions_read_six_different_secrets_none_the_owners() -> None:
    functions = {
        "LoadWorkerFunction",
        "QuarantineFunction",
        "SystemsFunction",
        "AlertsFunction",
        "ReadingsFunction",
        "HealthFunction",
    }
    secrets = {
        logical_id: resource["Properties"]["Environment"]["Variables"]["SLUICE_DB_SECRET_ARN"]["Ref"]
        for logical_id, resource in template()["Resources"].items()
        if logical_id in functions
    }

    assert len(set(secrets.values())) == 6
    assert "DatabaseSecretArn" not in secrets.values()


# --- the checks find what they are for -----------------------------------------------------------------------------


def bad_template(**resources: Any) -> dict[str, Any]:
    bucket = {"Type": "AWS::S3::Bucket", "Properties": {}}
    return {
        "Parameters": {"DbSecret": {"AllowedPattern": "^arn:aws[a-z-]*:secretsmanager:.+"}},
        "Resources": {"Bucket": bucket, **resources},
    }


def function(*policies: Any, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
    properties: dict[str, Any] = {"Policies": list(policies)}
    if variables is not None:
        properties["Environment"] = {"Variables": dict(variables)}
    return {"Type": "AWS::Serverless::Function", "Properties": properties}


def allow(action: Any, resource: Any) -> dict[str, Any]:
    return {"Statement": [{"Effect": "Allow", "Action": action, "Resource": resource}]}


BUCKET_OBJECTS = {"Fn::Sub": "arn:${AWS::Partition}:s3:::${Bucket}/incoming/*"}


@pytest.mark.parametrize(
    ("policy", "found"),
    [
        (allow("*", {"Fn::GetAtt": ["Bucket", "Arn"]}), "Action '*'"),
        (allow("s3:*", {"Fn::GetAtt": ["Bucket", "Arn"]}), "Action 's3:*'"),
        (allow("s3:Get*", {"Fn::GetAtt": ["Bucket", "Arn"]}), "Action 's3:Get*'"),
        (allow("s3:GetObject", "*"), "Resource '*'"),
        (allow("sqs:SendMessage", "arn:aws:sqs:eu-central-1:123456789012:*"), "the resource part '*'"),
        (allow("sqs:SendMessage", {"Fn::Sub": "arn:aws:sqs:*:${AWS::AccountId}:q"}), "wildcard service, region"),
        (allow("s3:GetObject", {"Fn::Sub": "arn:${AWS::Partition}:s3:::*/incoming/*"}), "is a wildcard"),
        (allow("dynamodb:Query", {"Fn::Sub": "${Bucket.Arn}/index/*"}), "a wildcard"),
        (allow("s3:GetObject", {"Fn::Sub": "arn:${AWS::Partition}:s3:::${Bucket}/*"}), "is a wildcard"),
        (allow("s3:GetObject", {"Fn::Sub": "arn:aws:s3:::${Elsewhere}/x"}), "not in the template"),
        (allow("s3:GetObject", {"Ref": "Elsewhere"}), "names nothing"),
        ({"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]}, "NotAction"),
    ],
)
def test_a_broad_inline_statement_is_found(policy: dict[str, Any], found: str) -> None:
    findings = statement_findings(bad_template(Fn=function(policy)))

    assert any(found in finding for finding in findings), findings


def test_an_object_key_pattern_under_a_named_bucket_and_a_deny_pass() -> None:
    deny = {
        "Type": "AWS::S3::BucketPolicy",
        "Properties": {
            "Bucket": {"Ref": "Bucket"},
            "PolicyDocument": {
                "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*"}],
            },
        },
    }

    assert statement_findings(bad_template(Fn=function(allow("s3:PutObject", BUCKET_OBJECTS)), Policy=deny)) == []


def test_a_resource_policy_that_allows_anyone_is_found() -> None:
    policy = {
        "Type": "AWS::SQS::QueuePolicy",
        "Properties": {
            "PolicyDocument": {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": "*"},
                        "Action": "sqs:SendMessage",
                        "Resource": {"Fn::GetAtt": ["Bucket", "Arn"]},
                    }
                ],
            }
        },
    }

    assert statement_findings(bad_template(Policy=policy)) == ["Policy.PolicyDocument: Principal '*': anyone"]


@pytest.mark.parametrize(
    ("policy", "found"),
    [
        ({"S3ReadPolicy": {"BucketName": "*"}}, "'*' is a literal"),
        ({"S3ReadPolicy": {"BucketName": "some-bucket"}}, "'some-bucket' is a literal"),
        ({"S3ReadPolicy": {"BucketName": {"Ref": "Nothing"}}}, "names nothing"),
        ({"CloudWatchPutMetricPolicy": {}}, "names no resource"),
        ("AmazonS3FullAccess", "managed policy 'AmazonS3FullAccess'"),
    ],
)
def test_an_unscoped_sam_policy_template_is_found(policy: Any, found: str) -> None:
    findings = sam_template_findings(bad_template(Fn=function(policy)))

    assert any(found in finding for finding in findings), findings


@pytest.mark.parametrize(
    ("variables", "found"),
    [
        ({"SLUICE_DB_DSN": "postgresql://app:pw@db.example.com/sluice"}, "SLUICE_DB_DSN would carry a credential"),
        ({"DB_PASSWORD": {"Ref": "DbSecret"}}, "DB_PASSWORD would carry a credential"),
        ({"SLUICE_DB_SECRET_ARN": "arn:aws:secretsmanager:eu-central-1:1:secret:x"}, "not a !Ref of a secret"),
        ({"SETTINGS": "host=db user=app password=pw"}, "looks like a connection string"),
    ],
)
def test_a_credential_in_an_environment_is_found(variables: dict[str, Any], found: str) -> None:
    findings = credential_findings(bad_template(Fn=function(variables=variables)))

    assert any(found in finding for finding in findings), findings


def test_a_secret_arn_parameter_in_the_environment_passes() -> None:
    document = bad_template(Fn=function(variables={"SLUICE_DB_SECRET_ARN": {"Ref": "DbSecret"}, "EMPTY_DSN": ""}))

    assert credential_findings(document) == []
