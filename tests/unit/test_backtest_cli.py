"""``tgi-autoscaler backtest`` on a short shaped trace: formats, the plot, the service spec, and
errors that exit 2 naming the problem. And the study's parameters block in the docs."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from tgi_autoscaler import cli
from tgi_autoscaler.backtest.docs import PARAMS_BEGIN, PARAMS_END, parameters_block
from tgi_autoscaler.backtest.policies import Slo
from tgi_autoscaler.backtest.report import COLUMNS
from tgi_autoscaler.backtest.run import RunConfig
from tgi_autoscaler.servicemodel import ColdStart, ServerParams

pytestmark = pytest.mark.unit

DOCS = Path(__file__).resolve().parents[2] / "docs" / "scaling-behavior.md"
REGENERATE = (
    "tgi-autoscaler backtest --trace ../shared/traces/azure-llm-2023-conv.csv "
    "--update-docs docs/scaling-behavior.md"
)
SHORT = [
    "backtest",
    "--shape",
    "spike",
    "--base-rate",
    "2",
    "--peak-rate",
    "6",
    "--start",
    "60",
    "--peak-duration",
    "60",
    "--duration",
    "240",
    "--cold-start",
    "30",
    "--max",
    "4",
    "--quiet",
]
TWO_POLICIES = ["--policy", "tgi-autoscaler", "--policy", "kubernetes-defaults"]


def backtest(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def csv_rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_csv_has_a_row_per_policy_and_the_oracle(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = backtest([*SHORT, *TWO_POLICIES, "--format", "csv", "--plot", ""], capsys)
    assert (code, err) == (0, "")
    header, *rows = csv_rows(out)
    assert tuple(header) == COLUMNS
    assert [r[0] for r in rows] == ["tgi-autoscaler", "kubernetes-defaults", "oracle"]
    oracle = rows[-1]
    assert oracle[COLUMNS.index("x oracle")] == "1.00"
    assert float(oracle[COLUMNS.index("SLO %")]) == 100.0
    assert all(float(r[COLUMNS.index("GPU-h")]) > 0 for r in rows)
    assert not list(tmp_path.iterdir())


def test_the_plot_is_a_png(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    image = tmp_path / "plots" / "run.png"
    code, out, _ = backtest(
        [*SHORT, "--policy", "tgi-autoscaler", "--no-oracle", "--plot", str(image)], capsys
    )
    assert code == 0
    assert out.splitlines()[0].split()[:2] == ["policy", "GPU-h"]  # the terminal table
    assert image.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_progress_goes_to_stderr_unless_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a for a in SHORT if a != "--quiet"]
    code, out, err = backtest(
        [*argv, "--policy", "tgi-autoscaler", "--no-oracle", "--plot", "", "--format", "markdown"], capsys
    )
    assert code == 0
    assert out.startswith("| policy | GPU-h |")
    assert "SLO: TTFT <= 2 s for 99 %" in err
    assert "[1/1] tgi-autoscaler" in err


def test_a_service_spec_adds_the_service_policy(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "service.yaml"
    spec.write_text("model: {id: meta-llama/Llama-3.1-8B-Instruct}\nautoscaling: {maxReplicas: 4}\n")
    argv = [*SHORT, "--policy", "tgi-autoscaler", "--no-oracle", "--plot", "", "--format", "csv"]
    code, out, err = backtest([*argv, "--service", str(spec)], capsys)
    assert (code, err) == (0, "")
    assert [r[0] for r in csv_rows(out)[1:]] == ["service", "tgi-autoscaler"]


def test_a_configmap_holding_the_spec_is_read_too(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from tgi_autoscaler.config.constants import SERVICE_CONFIGMAP_KEY

    spec = tmp_path / "cm.yaml"
    body = "model: {id: m}\\nautoscaling: {maxReplicas: 3}\\n"
    spec.write_text(f'kind: ConfigMap\ndata:\n  {SERVICE_CONFIGMAP_KEY}: "{body}"\n')
    argv = [*SHORT, "--policy", "tgi-autoscaler", "--no-oracle", "--plot", "", "--format", "csv"]
    code, out, _ = backtest([*argv, "--service", str(spec)], capsys)
    assert code == 0
    assert csv_rows(out)[1][0] == "service"


@pytest.mark.parametrize(
    ("extra", "file_text", "message"),
    [
        (["--attainment", "1.5"], None, "--attainment: must be between 0 and 1 (got 1.5)"),
        (["--attainment", "0"], None, "--attainment"),
        (
            [],
            "time,prompt,output\n0,1,1\n",
            "line 1: expected the header TIMESTAMP,ContextTokens,GeneratedTokens",
        ),
        ([], "TIMESTAMP,ContextTokens,GeneratedTokens\n0,1,many\n", "line 2: token counts"),
        (["--trace", "{tmp}/missing.csv"], None, "missing.csv"),
        (["--max-batch", "0"], None, "max_batch_size"),
        (["--min", "5", "--max", "2"], None, "minReplicas <= maxReplicas"),
        (["--rate-scale", "-1"], None, "rate scale must be > 0"),
        (["--service", "{tmp}/nothing.yaml"], None, "nothing.yaml"),
    ],
)
def test_bad_inputs_exit_2_naming_the_problem(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, extra: list[str], file_text: str | None, message: str
) -> None:
    argv = [*SHORT, "--no-oracle", "--plot", "", *(a.replace("{tmp}", str(tmp_path)) for a in extra)]
    if file_text is not None:
        trace = tmp_path / "trace.csv"
        trace.write_text(file_text)
        argv += ["--trace", str(trace)]
    code, out, err = backtest(argv, capsys)
    assert code == 2
    assert out == ""
    assert err.startswith("backtest: ")
    assert message in err


def test_a_service_spec_with_an_error_exits_2_naming_the_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = tmp_path / "service.yaml"
    spec.write_text("model: {id: m}\nautoscaling: {maxReplicas: 0}\n")
    code, _, err = backtest([*SHORT, "--service", str(spec), "--plot", ""], capsys)
    assert code == 2
    assert "maxReplicas" in err
    assert str(spec) in err


def test_update_docs_needs_the_trace(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = backtest([*SHORT, "--update-docs", str(tmp_path / "doc.md")], capsys)
    assert code == 2
    assert "--update-docs needs --trace" in err


def test_the_docs_state_the_parameters_the_study_ran_with() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert text.count(PARAMS_BEGIN) == 1, f"{DOCS}: no parameters block; run `{REGENERATE}`"
    begin = text.index(PARAMS_BEGIN)
    documented = text[begin : text.index(PARAMS_END, begin) + len(PARAMS_END)]
    current = parameters_block(RunConfig(ServerParams(), ColdStart()), Slo())
    assert documented == current, (
        f"the defaults differ from those the study in {DOCS.name} was run with; regenerate it with "
        f"`{REGENERATE}`"
    )
