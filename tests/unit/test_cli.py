"""The command-line dispatcher: every subcommand registers, and only the one being run is imported."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tgi_autoscaler import cli
from tgi_autoscaler_dev import cli as dev_cli

pytestmark = pytest.mark.unit

ALL = [(*entry, cli.SUBCOMMANDS) for entry in cli.SUBCOMMANDS] + [
    (*entry, dev_cli.SUBCOMMANDS) for entry in dev_cli.SUBCOMMANDS
]


@pytest.mark.parametrize(("name", "module", "help_text", "registry"), ALL)
def test_each_subcommand_module_registers_a_parser_of_its_name(
    name: str, module: str, help_text: str, registry: tuple[cli.Subcommand, ...]
) -> None:
    parser = cli.build_parser([name, "--help"], subcommands=registry)
    with pytest.raises(SystemExit) as exited:
        parser.parse_args([name, "--help"])
    assert exited.value.code == 0
    assert help_text


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["render", "-f", "x.yaml"], "render"),
        (["--log-format", "json", "adapter"], None),  # an option value ends the scan: full parser
        (["--log-level=DEBUG", "backtest"], "backtest"),
        (["--help"], None),
        ([], None),
        (["unknown"], None),
    ],
)
def test_the_requested_subcommand_is_found_before_any_positional(
    argv: list[str], expected: str | None
) -> None:
    assert cli._requested(argv, cli.SUBCOMMANDS) == expected


def test_the_runtime_cli_offers_no_harness_subcommand() -> None:
    runtime = {name for name, _, _ in cli.SUBCOMMANDS}
    harness = {name for name, _, _ in dev_cli.SUBCOMMANDS}
    assert runtime.isdisjoint(harness)
    assert not any(module.startswith("tgi_autoscaler_dev") for _, module, _ in cli.SUBCOMMANDS)


def test_render_does_not_import_the_kubernetes_client() -> None:
    code = (
        "import sys; from tgi_autoscaler import cli; cli.build_parser(['render', '-f', 'x']);"
        "print('kubernetes_asyncio' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
