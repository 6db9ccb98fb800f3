"""KEDA's binaries are an opt-in build: not in the default ``localstack build``, and a test that needs
them fails (naming the build command) rather than skipping or building inside the test."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tgi_autoscaler_dev.localstack import cli
from tgi_autoscaler_dev.localstack.gobuild import BuildError
from tgi_autoscaler_dev.localstack.keda import keda_binaries, require_keda

pytestmark = pytest.mark.unit


def test_default_build_does_not_build_keda_and_with_keda_does() -> None:
    assert all(func != "ensure_keda" for _, func in cli.EXTRA_BUILDS)
    assert cli.KEDA_BUILD == ("tgi_autoscaler_dev.localstack.keda", "ensure_keda")
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    assert parser.parse_args(["localstack", "build"]).with_keda is False
    assert parser.parse_args(["localstack", "build", "--with-keda"]).with_keda is True


def test_missing_keda_binaries_raise_naming_the_opt_in_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TGI_AUTOSCALER_CACHE", str(tmp_path))
    with pytest.raises(BuildError, match="--with-keda"):
        require_keda()
    operator, adapter = keda_binaries()
    operator.parent.mkdir(parents=True)
    operator.write_bytes(b"")
    with pytest.raises(BuildError, match="adapter"):
        require_keda()
    adapter.write_bytes(b"")
    assert require_keda() == [operator, adapter]
