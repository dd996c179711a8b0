"""docs/openapi.yaml is a valid OpenAPI 3.1 document that cannot drift from template.yaml's routes and scopes, the
API models, or the errors the HTTP edge answers with."""

from functools import cache
from typing import Any

import pytest
import yaml
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from pydantic import BaseModel

from sluice.adapters.http import STATUS_BY_ERROR, STORAGE_RETRY_AFTER_S
from sluice.domain.rules import MAX_READINGS_PER_BATCH, MIN_READINGS_PER_BATCH
from sluice.local.template import resources_of_type
from sluice.models.api import ErrorDetail, ErrorInfo, ErrorResponse, IngestRequest, JobAccepted, ReadingIn

from ..lambdas import template
from ..paths import REPO_ROOT

SPEC_PATH = REPO_ROOT / "docs" / "openapi.yaml"
INGEST = ("/api/v1/data/ingest", "post")
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# Answers that do not come from a RequestError: accepted, a crash, and storage that could not be written.
OTHER_STATUSES = {202: None, 500: "internal_error", 503: "storage_unavailable"}
# Spec schema -> the model it documents.
SCHEMA_MODELS: dict[str, type[BaseModel]] = {
    "IngestRequest": IngestRequest,
    "Reading": ReadingIn,
    "JobAccepted": JobAccepted,
    "ErrorResponse": ErrorResponse,
    "ErrorInfo": ErrorInfo,
    "ErrorDetail": ErrorDetail,
}


@cache
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    return loaded


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow local ``$ref``s (``#/components/...``) until a node that is not one."""
    while "$ref" in node:
        found: Any = spec()
        for part in node["$ref"].removeprefix("#/").split("/"):
            found = found[part]
        node = found
    return node


def operation(path: str, method: str) -> dict[str, Any]:
    found: dict[str, Any] = spec()["paths"][path][method]
    return found


def spec_operations() -> set[tuple[str, str]]:
    return {(path, method) for path, item in spec()["paths"].items() for method in item if method in HTTP_METHODS}


def template_routes() -> dict[tuple[str, str], list[str]]:
    """(path, method) -> AuthorizationScopes of every HttpApi event of every function in template.yaml."""
    return {
        (event["Properties"]["Path"], event["Properties"]["Method"].lower()): event["Properties"]
        .get("Auth", {})
        .get("AuthorizationScopes", [])
        for function in resources_of_type(template(), "AWS::Serverless::Function").values()
        for event in function["Properties"].get("Events", {}).values()
        if event["Type"] == "HttpApi"
    }


def required_scopes(path: str, method: str) -> list[str]:
    """The scopes an operation requires under the ``jwt`` scheme (the document's default when it sets none)."""
    requirements: list[dict[str, list[str]]] = operation(path, method).get("security", spec().get("security", []))
    return sorted(scope for requirement in requirements for scope in requirement.get("jwt", []))


def response(status: int) -> dict[str, Any]:
    return resolve(operation(*INGEST)["responses"][str(status)])


def json_examples(node: dict[str, Any]) -> list[Any]:
    media = node["content"]["application/json"]
    return [resolve(example)["value"] for example in media["examples"].values()]


def schema_validator(name: str) -> OAS31Validator:
    """A validator for one of the spec's component schemas, with the rest of the components to resolve refs in."""
    return OAS31Validator({"$ref": f"#/components/schemas/{name}", "components": spec()["components"]})


def test_the_spec_is_valid_openapi_3_1() -> None:
    assert spec()["openapi"] == "3.1.0"

    validate(spec())


def test_the_spec_version_is_the_package_version() -> None:
    pyproject = (REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8")

    assert f'\nversion = "{spec()["info"]["version"]}"\n' in pyproject


def test_every_template_route_is_documented_with_its_scopes() -> None:
    routes = template_routes()

    assert routes
    for (path, method), scopes in routes.items():
        assert (path, method) in spec_operations(), f"{method.upper()} {path} is not in docs/openapi.yaml"
        assert required_scopes(path, method) == sorted(scopes), f"{method.upper()} {path}"


def test_every_documented_operation_is_a_template_route() -> None:
    assert spec_operations() <= set(template_routes())


def test_every_scope_an_operation_requires_is_declared() -> None:
    declared = set(spec()["components"]["securitySchemes"]["jwt"]["flows"]["clientCredentials"]["scopes"])

    assert declared == {"ingest:write", "jobs:read", "quarantine:read", "quarantine:review"}
    for path, method in spec_operations():
        assert set(required_scopes(path, method)) <= declared


@pytest.mark.parametrize(("name", "model"), SCHEMA_MODELS.items(), ids=SCHEMA_MODELS)
def test_a_schema_has_the_models_fields(name: str, model: type[BaseModel]) -> None:
    documented = resolve(spec()["components"]["schemas"][name])
    generated = model.model_json_schema()

    assert set(documented["properties"]) == set(generated["properties"])
    assert set(documented.get("required", [])) == set(generated.get("required", []))
    assert documented.get("additionalProperties") == generated.get("additionalProperties")


def test_the_ingest_operation_sends_and_answers_the_models() -> None:
    body = resolve(operation(*INGEST)["requestBody"])["content"]["application/json"]["schema"]

    assert body == {"$ref": "#/components/schemas/IngestRequest"}
    assert response(202)["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/JobAccepted"}
    for status in {*STATUS_BY_ERROR.values(), 500, 503}:
        assert response(status)["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorResponse"
        }


def test_the_batch_size_bounds_are_the_rules() -> None:
    readings = spec()["components"]["schemas"]["IngestRequest"]["properties"]["readings"]

    assert (readings["minItems"], readings["maxItems"]) == (MIN_READINGS_PER_BATCH, MAX_READINGS_PER_BATCH)
    assert readings["items"] == {}


def test_every_status_the_edge_answers_is_documented_with_its_code() -> None:
    codes = {status: kind.code for kind, status in STATUS_BY_ERROR.items()} | OTHER_STATUSES

    assert set(operation(*INGEST)["responses"]) == {str(status) for status in codes}
    for status, code in codes.items():
        examples = json_examples(response(status))
        assert examples, f"{status} has no example"
        if code is not None:
            assert {example["error"]["code"] for example in examples} == {code}, status


def test_the_examples_are_valid_for_the_models_and_the_spec() -> None:
    for value in json_examples(resolve(operation(*INGEST)["requestBody"])):
        IngestRequest.model_validate(value)
        schema_validator("IngestRequest").validate(value)
    for value in json_examples(response(202)):
        JobAccepted.model_validate(value)
        schema_validator("JobAccepted").validate(value)
    for status in {*STATUS_BY_ERROR.values(), 500, 503}:
        for value in json_examples(response(status)):
            ErrorResponse.model_validate(value)
            schema_validator("ErrorResponse").validate(value)


def test_the_headers_the_edge_sets_are_documented() -> None:
    assert set(response(202)["headers"]) == {"Location", "Idempotent-Replayed"}
    assert set(response(401)["headers"]) == {"WWW-Authenticate"}
    assert set(response(429)["headers"]) == {"Retry-After"}
    assert response(503)["headers"]["Retry-After"]["schema"]["const"] == STORAGE_RETRY_AFTER_S
