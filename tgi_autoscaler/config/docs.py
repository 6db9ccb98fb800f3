"""``tgi-autoscaler docs``: generate the configuration reference from the service spec model.

The reference (``docs/configuration.md``) is a table per section (key path, type, default,
description) built from the pydantic model itself, so it cannot drift from what the parser accepts;
``--check`` fails when the committed file is stale, and a unit test runs that check. A README may
embed the section overview between ``<!-- tgi-autoscaler:config-summary:begin -->`` and
``<!-- tgi-autoscaler:config-summary:end -->``; the markers and anything outside them are kept.
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from tgi_autoscaler.config.service import TGIServiceSpec, TypeLabel
from tgi_autoscaler.engines import ENGINES

__all__ = [
    "README_BEGIN",
    "README_END",
    "Row",
    "main",
    "reference_markdown",
    "register",
    "rows",
    "summary_markdown",
]

README_BEGIN = "<!-- tgi-autoscaler:config-summary:begin -->"
README_END = "<!-- tgi-autoscaler:config-summary:end -->"
DEFAULT_OUTPUT = Path("docs/configuration.md")


@dataclass(frozen=True)
class Row:
    """One documented key."""

    path: str
    type: str
    default: str
    description: str


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) < len(get_args(annotation)):
            return (args[0] if len(args) == 1 else typing.Union[tuple(args)]), True  # noqa: UP007
    return annotation, False


def _type_name(annotation: Any, metadata: list[Any]) -> str:
    for item in metadata:
        if isinstance(item, TypeLabel):
            return item.name
    annotation, _ = _strip_optional(annotation)
    origin = get_origin(annotation)
    if origin is typing.Annotated:
        base, *extra = get_args(annotation)
        return _type_name(base, [*extra, *metadata])
    if origin is Literal:
        return " \\| ".join(f"`{value}`" for value in get_args(annotation))
    if origin is list:
        (item,) = get_args(annotation)
        return f"list of {_type_name(item, [])}"
    if origin is dict:
        _, value = get_args(annotation)
        return "object" if value is Any else f"map of {_type_name(value, [])}"
    if isinstance(annotation, type):
        if issubclass(annotation, enum.Enum):
            return " \\| ".join(f"`{member.value}`" for member in annotation)
        if issubclass(annotation, BaseModel):
            return "object"
        return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(
            annotation, annotation.__name__
        )
    if annotation is Any or get_origin(annotation) is dict:
        return "object"
    return str(annotation)


def _constraints(metadata: list[Any]) -> str:
    parts: list[str] = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            nested = _constraints(item.metadata)
            if nested:
                parts.append(nested)
        elif isinstance(item, annotated_types.Ge):
            parts.append(f">= {item.ge}")
        elif isinstance(item, annotated_types.Gt):
            parts.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Le):
            parts.append(f"<= {item.le}")
        elif isinstance(item, annotated_types.Lt):
            parts.append(f"< {item.lt}")
        elif isinstance(item, annotated_types.MinLen) and item.min_length > 0:
            parts.append(f"at least {item.min_length}")
    return ", ".join(parts)


def _all_metadata(field: FieldInfo) -> list[Any]:
    metadata = list(field.metadata)
    annotation, _ = _strip_optional(field.annotation)
    if get_origin(annotation) is typing.Annotated:
        metadata.extend(get_args(annotation)[1:])
    return metadata


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    return value


_NO_DEFAULT = object()


def _default_value(name: str, field: FieldInfo, parent: BaseModel | None) -> Any:
    """The value a key has when omitted: from the enclosing default object, else the field's default.

    The enclosing object matters: ``alerts.latencyP95`` defaults to an object whose ``for`` differs from
    the class-level default of ``for``.
    """
    if parent is not None:
        return getattr(parent, name)
    if field.is_required():
        return _NO_DEFAULT
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    return field.default


def _format_default(value: Any) -> str:
    if value is _NO_DEFAULT:
        return "**required**"
    if value is None:
        return "unset"
    if isinstance(value, BaseModel):
        return ""  # an object: its keys have their own rows
    value = _jsonable(value)
    if isinstance(value, dict) and not value:
        return "`{}`"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    return f"`{json.dumps(value, separators=(', ', ': '))}`"


def _nested_model(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model class documented below a field, and whether it is a list item model."""
    annotation, _ = _strip_optional(annotation)
    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item, True
        return None, False
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def _escape(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _walk(model: type[BaseModel], prefix: str, defaults: BaseModel | None) -> Iterator[Row]:
    for name, field in model.model_fields.items():
        key = field.alias or name
        path = f"{prefix}.{key}" if prefix else key
        metadata = _all_metadata(field)
        type_name = _type_name(field.annotation, metadata)
        constraints = _constraints(metadata)
        if constraints:
            type_name = f"{type_name} ({constraints})"
        value = _default_value(name, field, defaults)
        yield Row(path, type_name, _format_default(value), _escape(field.description or ""))
        nested, is_list = _nested_model(field.annotation)
        if nested is not None:
            nested_defaults = value if isinstance(value, BaseModel) else None
            yield from _walk(nested, f"{path}[]" if is_list else path, nested_defaults)


def rows(model: type[BaseModel] = TGIServiceSpec) -> list[Row]:
    """Every key of the model, depth first in declaration order."""
    return list(_walk(model, "", None))


def _table(entries: list[Row]) -> list[str]:
    lines = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    lines.extend(f"| `{r.path}` | {r.type} | {r.default} | {r.description} |" for r in entries)
    return lines


def _engine_table() -> list[str]:
    lines = [
        "| Engine | Default image | Port | Queue metric (HPA) | Batch-size metric | Quantization |",
        "|---|---|---|---|---|---|",
    ]
    for kind, d in ENGINES.items():
        quants = ", ".join(sorted(q.value for q in d.quantizations))
        batch = f"`{d.batch_metric}`" if d.batch_metric else "none (set `autoscaling.batchSize.metric`)"
        lines.append(f"| `{kind.value}` | `{d.image}` | {d.port} | `{d.queue_metric}` | {batch} | {quants} |")
    return lines


_INTRO = """# Service configuration reference

<!-- Generated by `tgi-autoscaler docs` from tgi_autoscaler/config/service.py; do not edit by hand.
     `tgi-autoscaler docs --check` (run by the unit tests) fails when this file is stale. -->

A service is one ConfigMap labelled `tgi-autoscaler.io/service: "true"` whose data key `service.yaml`
holds the spec below (camelCase keys). The ConfigMap's name names every object rendered for it
(Deployment, Service, HPA, PodMonitor, PrometheusRule, ...). Unknown keys are errors, and every
problem in a spec is reported at once with its key path, e.g.
`autoscaling.minReplicas: must be <= maxReplicas (3 > 2)`.

Preview what the controller will apply with `tgi-autoscaler render -f service-configmap.yaml`.
With the Prometheus Operator (the default) the pods are scraped through a PodMonitor and alerts are
a PrometheusRule; with `--no-prometheus-operator` (controller and `render`) the pods carry
`prometheus.io/scrape|port|path` annotations for an annotation-driven scrape job and no PodMonitor
or PrometheusRule is rendered. Examples: `manifests/examples/`.

## Rules checked across keys

- `engine.numShard` must equal `resources.gpu` (each shard is one GPU); without GPUs it must be 1.
- Token limits, as TGI's launcher checks them: `maxInputTokens` < `maxTotalTokens`;
  `maxBatchPrefillTokens` >= `maxInputTokens`; `maxBatchTotalTokens` >= `maxTotalTokens` and
  >= `maxBatchPrefillTokens`; only one of `maxInputTokens` and its deprecated name `maxInputLength`.
- `engine.dtype` cannot be combined with `engine.quantize`; `exl2` cannot be sharded; vLLM and SGLang
  accept only the quantizations in the engine table, and TGI-only limits are rejected for them.
- `engine.env` may not set variables the spec controls (`MODEL_ID`, `NUM_SHARD`, `HF_TOKEN`, ...).
- `autoscaling.minReplicas` <= `autoscaling.maxReplicas`.
- A created cache claim with a single-node access mode needs `autoscaling.maxReplicas: 1`.
- `resources.shmSize` < `resources.memoryLimit` (memory-backed `/dev/shm` counts against the limit);
  limits >= requests.
- `ingress.host` is required when the Ingress is enabled; `auth.apiKeysSecret` when auth is enabled.
- `routing.gateway` is required when routing is enabled, `routing.inferencePool` with
  `backend: InferencePool`, which cannot be combined with `auth` (the pool reaches the pods directly,
  past the API-key proxy). A controller on a cluster without the Gateway API, Inference Extension or
  Envoy Gateway CRDs a spec needs reports it Invalid, naming the field.
- The service name must be a DNS-1035 label of at most 52 characters (so `<name>-auth-proxy` fits).

## Engines

"""

_OWNERSHIP = """
## Ownership and clean-up

Objects in the service's namespace carry an ownerReference to the service ConfigMap: deleting the
ConfigMap garbage-collects them (including a cache claim created by `cache.create`, so use
`cache.existingClaim` for weights that must outlive the service). The Grafana dashboard ConfigMap may
live in another namespace (`dashboard.namespace` or the controller's `--dashboard-namespace`), where
Kubernetes does not allow an owner reference; it carries the labels
`tgi-autoscaler.io/owner-namespace` and `tgi-autoscaler.io/owner-name` instead, and the controller
deletes it when the service goes away.
"""


def reference_markdown() -> str:
    """The full text of ``docs/configuration.md``."""
    all_rows = rows()
    lines = [_INTRO.rstrip(" \n"), "", *_engine_table(), _OWNERSHIP]
    for name, field in TGIServiceSpec.model_fields.items():
        key = field.alias or name
        section = [r for r in all_rows if r.path == key or r.path.startswith((f"{key}.", f"{key}["))]
        lines.append(f"## `{key}`")
        lines.append("")
        lines.append(_escape(field.description or ""))
        lines.append("")
        lines.extend(_table(section))
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def summary_markdown() -> str:
    """The top-level sections as a short table, for embedding in a README."""
    lines = ["| Section | What it configures |", "|---|---|"]
    for name, field in TGIServiceSpec.model_fields.items():
        key = field.alias or name
        lines.append(
            f"| [`{key}`](docs/configuration.md#{key.lower()}) | {_escape(field.description or '')} |"
        )
    return "\n".join(lines) + "\n"


def _with_summary(readme: str) -> str | None:
    """``readme`` with the summary between the markers; None when it has no markers."""
    start, end = readme.find(README_BEGIN), readme.find(README_END)
    if start < 0 or end < start:
        return None
    return readme[: start + len(README_BEGIN)] + "\n" + summary_markdown() + readme[end:]


def main(output: Path, readme: Path | None, check: bool) -> int:
    """Write (or with ``check`` compare) the reference and the README summary; 1 when stale."""
    targets: list[tuple[Path, str]] = [(output, reference_markdown())]
    if readme is not None and readme.exists():
        updated = _with_summary(readme.read_text(encoding="utf-8"))
        if updated is not None:
            targets.append((readme, updated))
    stale = [path for path, text in targets if not path.exists() or path.read_text(encoding="utf-8") != text]
    if check:
        for path in stale:
            print(f"{path} is out of date with the service model; run `tgi-autoscaler docs`", file=sys.stderr)
        return 1 if stale else 0
    for path, text in targets:
        if path in stale:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    return 0


def _run(args: argparse.Namespace) -> int:
    return main(Path(args.output), Path(args.readme) if args.readme else None, args.check)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "docs",
        help="generate docs/configuration.md from the service spec model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="reference file (default: %(default)s)")
    parser.add_argument(
        "--readme", default="README.md", help="README with summary markers (default: %(default)s)"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is out of date; write nothing")
    parser.set_defaults(func=_run)
