"""Golden files: the exact YAML rendered for each example service in ``manifests/examples``.

Any change to what the controller would apply shows up as a diff of ``tests/golden``. After an
intended change, regenerate with ``UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_render_golden.py``
and review the diff like code.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tgi_autoscaler.render import RenderOptions
from tgi_autoscaler.render.cli import render_file

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[2]
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))
GOLDEN = ROOT / "tests" / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

CASES = [(path, RenderOptions(), f"{path.stem}.yaml") for path in EXAMPLES] + [
    (
        ROOT / "manifests" / "examples" / "llama2-7b-chat.yaml",
        RenderOptions(prometheus_operator=False),
        "llama2-7b-chat.no-operator.yaml",
    )
]


def test_there_are_five_examples() -> None:
    assert [p.name for p in EXAMPLES] == [
        "llama2-70b-sharded.yaml",
        "llama2-7b-chat.yaml",
        "llama3-8b-gateway.yaml",
        "llama3-8b-inferencepool.yaml",
        "mistral-7b-awq.yaml",
    ]


@pytest.mark.parametrize(("example", "options", "golden"), CASES, ids=[case[2] for case in CASES])
def test_rendered_example_matches_its_golden_file(example: Path, options: RenderOptions, golden: str) -> None:
    rendered = render_file(example.read_text(encoding="utf-8"), origin=str(example), options=options)
    path = GOLDEN / golden
    if UPDATE:
        path.write_text(rendered, encoding="utf-8")
    assert path.exists(), f"{path} missing; run with UPDATE_GOLDEN=1 to create it"
    expected = path.read_text(encoding="utf-8")
    assert rendered == expected, (
        f"{example.name} renders differently from {path}; if intended, UPDATE_GOLDEN=1"
    )
