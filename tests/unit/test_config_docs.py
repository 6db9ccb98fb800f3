"""The configuration reference is generated from the model and the committed copy is current."""

from __future__ import annotations

from pathlib import Path

import pytest

from tgi_autoscaler.config import docs
from tgi_autoscaler.config.service import TGIServiceSpec

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[2]


def test_committed_reference_matches_the_model() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == docs.reference_markdown(), "docs/configuration.md is stale: run `tgi-autoscaler docs`"


def test_check_mode_passes_on_the_committed_files() -> None:
    assert docs.main(ROOT / "docs" / "configuration.md", ROOT / "README.md", check=True) == 0


def test_check_mode_fails_on_a_stale_file_and_writes_nothing(tmp_path: Path) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text("old\n")
    assert docs.main(stale, None, check=True) == 1
    assert stale.read_text() == "old\n"
    assert docs.main(stale, None, check=False) == 0
    assert docs.main(stale, None, check=True) == 0


def test_every_key_is_documented_with_a_description() -> None:
    rows = docs.rows()
    paths = {row.path for row in rows}
    for name, field in TGIServiceSpec.model_fields.items():
        assert (field.alias or name) in paths
    assert "autoscaling.scaleDown.stabilizationWindowSeconds" in paths
    assert "engine.env[].secretKeyRef.name" in paths
    assert "alerts.latencyP95.for" in paths
    missing = [row.path for row in rows if not row.description]
    assert missing == []


def test_defaults_come_from_the_enclosing_default_object() -> None:
    rows = {row.path: row for row in docs.rows()}
    assert rows["autoscaling.scaleDown.stabilizationWindowSeconds"].default == "`300`"
    assert rows["model.id"].default == "**required**"
    assert rows["engine.maxTotalTokens"].default == "unset"
    assert rows["engine.numShard"].type == "integer (> 0)"
    assert rows["engine.quantize"].type.startswith("`none` \\| `awq`")


def test_readme_summary_is_replaced_between_markers_only(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nintro\n{docs.README_BEGIN}\nold table\n{docs.README_END}\n\nrest\n")
    out = tmp_path / "configuration.md"
    assert docs.main(out, readme, check=False) == 0
    text = readme.read_text()
    assert text.startswith("# Title\n\nintro\n")
    assert text.endswith(f"{docs.README_END}\n\nrest\n")
    assert "old table" not in text
    assert "| [`autoscaling`](docs/configuration.md#autoscaling) |" in text
    assert docs.main(out, readme, check=True) == 0
