"""template.yaml read the way CloudFormation reads it, so local resources and environments follow the template.

Only what Sluice's template uses is resolved: ``Ref`` (a ``CommaDelimitedList`` parameter as a list),
``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join``, ``Fn::Split``, the pseudo parameters (``AWS::NoValue`` included) and
``Fn::If`` over the template's ``Conditions`` (``Fn::Equals``, ``Fn::Not``,
``Fn::And``, ``Fn::Or``). Anything else raises, so a template change the local runtime does not understand fails
loudly instead of drifting.
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# moto's default account; any fixed value works for a local stack.
LOCAL_ACCOUNT_ID = "123456789012"
_SUB_FIELD = re.compile(r"\$\{([^}!][^}]*)\}")


class _NoValue:
    """``!Ref AWS::NoValue``: the property or list item that holds it is left out."""


_NO_VALUE = _NoValue()


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

    def list_ref(self, name: str) -> list[str]:
        """The value of ``!Ref name`` for a ``CommaDelimitedList`` parameter: its items (none when empty)."""
        text = self.ref(name)
        return [item.strip() for item in text.split(",")] if text else []

    def _is_list_parameter(self, name: str) -> bool:
        parameter = self.template.get("Parameters", {}).get(name, {})
        return bool(parameter.get("Type") == "CommaDelimitedList")

    def get_att(self, name: str, attribute: str) -> str:
        """The value of ``!GetAtt name.attribute``."""
        try:
            return self.attributes[name][attribute]
        except KeyError:
            raise TemplateError(f"!GetAtt {name}.{attribute}: not created locally") from None

    def condition(self, name: str) -> bool:
        """Whether the template's condition ``name`` holds."""
        conditions = self.template.get("Conditions", {})
        if name not in conditions:
            raise TemplateError(f"condition {name}: not in the template's Conditions")
        return self._holds(conditions[name])

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic function replaced by its value (None for ``AWS::NoValue`` alone)."""
        resolved = self._resolve(value)
        return None if resolved is _NO_VALUE else resolved

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in map(self._resolve, value) if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref" or key.startswith("Fn::"):
                return self._intrinsic(key, argument)
        resolved = {key: self._resolve(item) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not _NO_VALUE}

    def _intrinsic(self, key: str, argument: Any) -> Any:
        """The value of one intrinsic function."""
        functions: dict[str, Callable[[Any], Any]] = {
            "Ref": self._ref_value,
            "Fn::GetAtt": lambda name_attribute: self.get_att(*name_attribute),
            "Fn::Sub": self._sub,
            "Fn::If": self._if,
            "Fn::Join": self._join,
            "Fn::Split": self._split,
        }
        if key not in functions:
            raise TemplateError(f"{key} is not supported by the local runtime")
        return functions[key](argument)

    def _ref_value(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        return self.list_ref(name) if self._is_list_parameter(name) else self.ref(name)

    def _if(self, argument: list[Any]) -> Any:
        name, if_true, if_false = argument
        return self._resolve(if_true if self.condition(name) else if_false)

    def _join(self, argument: list[Any]) -> str:
        delimiter, items = argument
        return str(delimiter).join(str(item) for item in self._resolve(items))

    def _split(self, argument: list[Any]) -> list[str]:
        delimiter, text = argument
        return str(self._resolve(text)).split(str(delimiter))

    def _holds(self, expression: Any) -> bool:
        """The truth of a condition's expression."""
        if isinstance(expression, dict) and len(expression) == 1:
            ((key, argument),) = expression.items()
            if key == "Condition":
                return self.condition(argument)
            if key == "Fn::Equals":
                left, right = (str(self.resolve(side)) for side in argument)
                return left == right
            if key == "Fn::Not":
                return not self._holds(argument[0])
            if key == "Fn::And":
                return all(self._holds(item) for item in argument)
            if key == "Fn::Or":
                return any(self._holds(item) for item in argument)
        raise TemplateError(f"{expression!r} is not a condition the local runtime understands")

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


def created_resources_of_type(context: StackContext, kind: str) -> dict[str, dict[str, Any]]:
    """The resources of one type the stack creates: those without a ``Condition``, or whose condition holds."""
    return {
        name: body
        for name, body in resources_of_type(context.template, kind).items()
        if "Condition" not in body or context.condition(body["Condition"])
    }


def function_environment(context: StackContext, logical_id: str) -> dict[str, str]:
    """The environment variables a function gets: Globals, then its own, resolved like CloudFormation does."""
    template = context.template
    function = template["Resources"][logical_id]
    if function["Type"] != "AWS::Serverless::Function":
        raise TemplateError(f"{logical_id} is not a function")
    global_vars = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    own_vars = function["Properties"].get("Environment", {}).get("Variables", {})
    return {name: str(context.resolve(value)) for name, value in {**global_vars, **own_vars}.items()}
