"""What every configuration document shares: the model base, YAML loading and the error translation.

The service spec, the adapter's metric definitions and settings, the alert and dashboard settings and
the ``what-if`` tool's inputs are all YAML with camelCase keys, unknown keys rejected and immutable
once parsed. A person fixing one wants every problem at once, each under the key path they typed
(``metrics[1].query``, ``autoscaling.minReplicas``) and in the same words whichever document it is;
so loading and translating pydantic's errors happen here, once:

- ``ConfigModel`` is the base class of every section;
- ``issue``/``raise_issues`` let one model validator report several cross-field problems, each with
  its own key path, instead of pydantic's one-error-per-validator;
- ``parse_yaml``, ``load_yaml`` (a mapping) and ``load_yaml_documents`` turn text into data or a
  ``ConfigError`` naming line and column;
- ``validate`` runs a model and turns a ``ValidationError`` into a ``ConfigError`` whose issues say
  ``required``, ``must be > 0`` or ``unknown key; did you mean ...?`` with the allowed keys.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from tgi_autoscaler.config.errors import ConfigError, ConfigIssue

__all__ = [
    "ROOT",
    "ConfigModel",
    "issue",
    "issues_from",
    "join_path",
    "key_path",
    "load_yaml",
    "load_yaml_documents",
    "parse_yaml",
    "raise_issues",
    "valid_fields",
    "validate",
]

ROOT: Final = "<root>"
_CROSS_FIELD: Final = "tgi_cross_field"

Model = TypeVar("Model", bound=BaseModel)


class ConfigModel(BaseModel):
    """Base of every configuration section: camelCase keys, unknown keys rejected, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        validate_default=True,
    )


def issue(path: str, message: str) -> tuple[str, str]:
    """One cross-field problem, ``path`` relative to the model that reports it ("" for the model)."""
    return (path, message)


def raise_issues(issues: Sequence[tuple[str, str]]) -> None:
    """Report several cross-field problems from one model validator, each with its own key path.

    Pydantic turns one raised error into one entry; the issues ride in the error context so
    ``issues_from`` can expand them into separate, path-qualified ``ConfigIssue`` entries.
    """
    if issues:
        summary = "; ".join(f"{path}: {message}" if path else message for path, message in issues)
        raise PydanticCustomError(_CROSS_FIELD, "{summary}", {"summary": summary, "issues": list(issues)})


# --------------------------------------------------------------------------------------------------
# YAML
# --------------------------------------------------------------------------------------------------


def _yaml_issue(exc: yaml.YAMLError) -> ConfigIssue:
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return ConfigIssue(ROOT, f"not valid YAML: {where}{problem}")


def parse_yaml(text: str, *, source: str, what: str, error: type[ConfigError] = ConfigError) -> Any:
    """One YAML document as data, whatever its shape; ``error`` naming line and column if not YAML."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(source, [_yaml_issue(exc)], what=what) from None


def load_yaml(
    text: str,
    *,
    source: str,
    what: str,
    empty: dict[str, Any] | None = None,
    error: type[ConfigError] = ConfigError,
) -> dict[str, Any]:
    """One YAML document, which must be a mapping; ``empty`` stands for an empty document.

    Raises ``error`` (a ``ConfigError``) naming the line and column of a syntax error, or what was
    found instead of a mapping (an empty document too, unless ``empty`` is given).
    """
    data = parse_yaml(text, source=source, what=what, error=error)
    if data is None and empty is not None:
        data = dict(empty)
    if not isinstance(data, dict):
        found = "an empty document" if data is None else type(data).__name__
        raise error(source, [ConfigIssue(ROOT, f"must be a mapping of keys, found {found}")], what=what)
    return data


def load_yaml_documents(
    text: str, *, source: str, what: str, error: type[ConfigError] = ConfigError
) -> list[Any]:
    """Every non-empty document of a multi-document YAML stream; ``error`` on a syntax error."""
    try:
        return [document for document in yaml.safe_load_all(text) if document is not None]
    except yaml.YAMLError as exc:
        raise error(source, [_yaml_issue(exc)], what=what) from None


# --------------------------------------------------------------------------------------------------
# Validation errors
# --------------------------------------------------------------------------------------------------


def key_path(loc: Sequence[int | str]) -> str:
    """A pydantic error location as a key path (``metrics[1].query``; ``<root>`` for the document)."""
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item.startswith(("function-after[", "function-before[", "function-wrap[")):
            continue  # pydantic's name for the validator, not a key
        else:
            parts.append(f".{item}" if parts else item)
    return "".join(parts) or ROOT


def join_path(prefix: str, suffix: str) -> str:
    """``prefix`` and a path relative to it (``"" `` stays at ``prefix``)."""
    if not suffix:
        return prefix
    if prefix == ROOT:
        return suffix
    return f"{prefix}{suffix}" if suffix.startswith("[") else f"{prefix}.{suffix}"


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def _model_at(root: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model class owning the key at ``loc`` (for 'did you mean' hints on unknown keys)."""
    model: type[BaseModel] | None = root
    for item in loc[:-1]:
        if model is None:
            return None
        if isinstance(item, int):
            continue
        field = next((f for name, f in model.model_fields.items() if item in (name, f.alias)), None)
        if field is None:
            return None
        model = _first_model(field.annotation)
    return model


def _plain_number(value: Any) -> Any:
    """``0.0`` -> ``0`` in messages: limits are written as integers in the models."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _message(root: type[BaseModel], error: Mapping[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        loc = tuple(error["loc"])
        model = _model_at(root, loc)
        if model is None:
            return "unknown key"
        allowed = sorted((f.alias or n) for n, f in model.model_fields.items())
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        return f"unknown key{hint} (allowed: {', '.join(allowed)})"
    ctx = {key: _plain_number(value) for key, value in (error.get("ctx") or {}).items()}
    simple = {
        "missing": "required",
        "greater_than": f"must be > {ctx.get('gt')}",
        "greater_than_equal": f"must be >= {ctx.get('ge')}",
        "less_than": f"must be < {ctx.get('lt')}",
        "less_than_equal": f"must be <= {ctx.get('le')}",
        "too_short": f"must have at least {ctx.get('min_length')} item(s)",
        "string_too_short": f"must have at least {ctx.get('min_length')} character(s)",
        "string_pattern_mismatch": f"{error.get('input')!r} must match {ctx.get('pattern')}",
        "int_parsing": f"{error.get('input')!r} is not an integer",
        "int_type": f"{error.get('input')!r} is not an integer",
        "bool_parsing": f"{error.get('input')!r} is not true or false",
        "dict_type": "must be a mapping",
        "list_type": "must be a list",
        "model_type": "must be a mapping",
    }
    if kind in simple:
        return simple[kind]
    if kind == "enum":
        return f"{error['input']!r} is not one of {ctx['expected']}"
    return str(error["msg"]).removeprefix("Value error, ")


def issues_from(exc: ValidationError, root: type[BaseModel]) -> list[ConfigIssue]:
    """Every error of ``exc`` (raised validating ``root``) as a key-path issue, in document order."""
    issues: list[ConfigIssue] = []
    for error in exc.errors(include_url=False):
        path = key_path(tuple(error["loc"]))
        if error["type"] == _CROSS_FIELD:
            for sub_path, message in error["ctx"]["issues"]:
                issues.append(ConfigIssue(join_path(path, sub_path), message))
        else:
            issues.append(ConfigIssue(path, _message(root, error)))
    return issues


def validate(
    model: type[Model],
    data: Any,
    *,
    source: str,
    what: str,
    by_name: bool = True,
    error: type[ConfigError] = ConfigError,
) -> Model:
    """``model`` validated from ``data``; ``error`` listing every problem with its key path.

    ``by_name=False`` accepts only the camelCase keys (documents that are never written from Python).
    """
    try:
        return model.model_validate(data, by_alias=True, by_name=by_name)
    except ValidationError as exc:
        raise error(source, issues_from(exc, model), what=what) from None


def valid_fields(model: type[BaseModel], data: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``model`` that ``data`` gives valid values for, each validated on its own.

    A field ``data`` leaves out counts with its default; a required one it leaves out is missing.
    With these, rules across fields can still be checked when other fields of ``data`` are invalid.
    """
    found: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key, annotation = field.alias or name, field.annotation
        if key not in data and name not in data:
            if not field.is_required():
                found[name] = field.get_default(call_default_factory=True)
            continue
        if annotation is None:
            continue
        adapter: TypeAdapter[Any] = TypeAdapter(annotation)
        try:
            found[name] = adapter.validate_python(data[key if key in data else name])
        except ValidationError:
            continue
    return found
