"""template.yaml read the way CloudFormation reads it, so local resources and environments follow the template.

Only what Sluice's template uses is resolved: ``Ref``, ``Fn::GetAtt``, ``Fn::Sub`` and the pseudo parameters.
Anything else raises, so a template change the local runtime does not understand fails loudly instead of drifting.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# moto's default account; any fixed value works for a local stack.
LOCAL_ACCOUNT_ID = "123456789012"
_SUB_FIELD = re.compile(r"\$\{([^}!][^}]*)\}")


class TemplateError(ValueError):
    """The template uses something the local runtime cannot resolve."""


class _TemplateLoader(yaml.SafeLoader):
    """A YAML loader that turns CloudFormation's short tags (``!Ref X``) into their long forms."""


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_TemplateLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template."""
    text = path.read_text(encoding="utf-8")
    document = yaml.load(text, Loader=_TemplateLoader)  # noqa: S506 (a SafeLoader)  # nosec B506
    if not isinstance(document, dict) or "Resources" not in document:
        raise TemplateError(f"{path} is not a CloudFormation template")
    return document


@dataclass
class StackContext:
    """What intrinsic functions resolve against: parameters, pseudo parameters and created resources."""

    template: Mapping[str, Any]
    stack_name: str
    region: str
    parameter_overrides: Mapping[str, str] = field(default_factory=dict)
    # Logical id -> the value of ``!Ref`` and of each ``!GetAtt`` attribute.
    refs: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)

    def pseudo(self) -> dict[str, str]:
        """The pseudo parameters."""
        return {
            "AWS::StackName": self.stack_name,
            "AWS::Region": self.region,
            "AWS::AccountId": LOCAL_ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }

    def ref(self, name: str) -> str:
        """The value of ``!Ref name``."""
        if name in self.refs:
            return self.refs[name]
        if name in self.pseudo():
            return self.pseudo()[name]
        parameters = self.template.get("Parameters", {})
        if name in parameters:
            return str(self.parameter_overrides.get(name, parameters[name].get("Default", "")))
        raise TemplateError(f"!Ref {name}: not a parameter or a resource created locally")

    def get_att(self, name: str, attribute: str) -> str:
        """The value of ``!GetAtt name.attribute``."""
        try:
            return self.attributes[name][attribute]
        except KeyError:
            raise TemplateError(f"!GetAtt {name}.{attribute}: not created locally") from None

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic function replaced by its value."""
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Fn::GetAtt":
                return self.get_att(*argument)
            if key == "Fn::Sub":
                return self._sub(argument)
            if key.startswith("Fn::"):
                raise TemplateError(f"{key} is not supported by the local runtime")
        return {key: self.resolve(item) for key, item in value.items()}

    def _sub(self, template: str) -> str:
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if "." in name and name not in self.pseudo():
                return self.get_att(*name.split(".", 1))
            return self.ref(name)

        return _SUB_FIELD.sub(replace, template)


def resources_of_type(template: Mapping[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """The template's resources of one type, by logical id."""
    return {name: body for name, body in template["Resources"].items() if body["Type"] == kind}


def function_environment(context: StackContext, logical_id: str) -> dict[str, str]:
    """The environment variables a function gets: Globals, then its own, resolved like CloudFormation does."""
    template = context.template
    function = template["Resources"][logical_id]
    if function["Type"] != "AWS::Serverless::Function":
        raise TemplateError(f"{logical_id} is not a function")
    global_vars = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    own_vars = function["Properties"].get("Environment", {}).get("Variables", {})
    return {name: str(context.resolve(value)) for name, value in {**global_vars, **own_vars}.items()}
