"""Build Go programs from published modules into a per-version cache.

The local stack needs real Kubernetes binaries, but this project can only reach the Go module
proxy, not release pages or container registries. So every binary is compiled from its published
module, once, and cached by version under the user's cache directory; later runs find it there and
start in seconds. Two build shapes cover everything:

- ``go_install``: a module that builds with plain ``go install pkg@version`` (controller-gen,
  prometheus-adapter).
- ``build_in_module``: a module whose release build sets version variables through ``-ldflags``
  (Helm), built inside its own downloaded directory so its committed go.sum pins every dependency.
- ``build_in_wrapper``: a module that cannot, because its own go.mod points staging modules at
  local directories (``k8s.io/kubernetes``) or because it has no ``main`` package we can name
  (etcd's server). A small generated wrapper module requires it, adds the ``replace`` directives a
  proxy build needs, and builds the wanted packages.

Builds print progress (``go build -v`` package lines, counted) because a cold Kubernetes build takes
many minutes on two cores and silence looks like a hang; ``run_with_progress`` does that for other
build shapes too (kube-state-metrics builds inside its downloaded module).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "BuildError",
    "GoModule",
    "build_in_module",
    "build_in_wrapper",
    "cache_root",
    "go_command",
    "go_install",
    "module_dir",
    "module_gomod",
    "run_with_progress",
]


class BuildError(RuntimeError):
    """A Go build failed; the message carries the tail of the build output."""


def cache_root() -> Path:
    """``$TGI_AUTOSCALER_CACHE`` or ``$XDG_CACHE_HOME/tgi-autoscaler`` (default ``~/.cache``)."""
    explicit = os.environ.get("TGI_AUTOSCALER_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tgi-autoscaler"


def go_command() -> str:
    """The ``go`` executable on PATH; BuildError when the toolchain is missing."""
    go = shutil.which("go")
    if go is None:
        raise BuildError("the Go toolchain is required to build the local stack (go not found on PATH)")
    return go


def run_with_progress(argv: Sequence[str], *, cwd: Path, label: str, env: Mapping[str, str]) -> None:
    """Run a go command, echoing a progress line every few seconds; raise BuildError on failure."""
    started = time.monotonic()
    lines: list[str] = []
    last_report = started
    print(f"[build] {label}: {' '.join(argv[:2])} ... (a cold build can take many minutes)", flush=True)
    with subprocess.Popen(
        argv,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip())
            now = time.monotonic()
            if now - last_report >= 10:
                last_report = now
                print(
                    f"[build] {label}: {len(lines)} packages/steps, {now - started:.0f}s elapsed",
                    flush=True,
                )
        code = proc.wait()
    elapsed = time.monotonic() - started
    if code != 0:
        tail = "\n".join(lines[-40:])
        raise BuildError(f"{label} failed after {elapsed:.0f}s (exit {code}):\n{tail}")
    print(f"[build] {label}: done in {elapsed:.0f}s", flush=True)


def _module_download(module: str, version: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``go mod download -json module@version``: the module's cache paths (``Dir``, ``GoMod``)."""
    out = subprocess.run(
        [go_command(), "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True,
        text=True,
        check=False,
        cwd=cache_root() if cache_root().exists() else None,
        env={**os.environ, **env} if env else None,
    )
    if out.returncode != 0:
        raise BuildError(f"go mod download {module}@{version} failed:\n{out.stdout}{out.stderr}")
    info: dict[str, str] = json.loads(out.stdout)
    return info


def module_gomod(module: str, version: str) -> str:
    """The go.mod text of ``module@version`` as served by the module proxy (via ``go mod download``)."""
    info = _module_download(module, version)
    gomod = info.get("GoMod")
    if not gomod:
        raise BuildError(f"go mod download {module}@{version} returned no go.mod: {info.get('Error')}")
    return Path(gomod).read_text()


def module_dir(module: str, version: str, *, env: Mapping[str, str] | None = None) -> Path:
    """The unpacked source of ``module@version`` in the Go module cache (read-only), downloading it.

    ``env`` adds to the go command's environment (e.g. ``GONOSUMDB`` for a module the checksum
    database cannot vouch for through the proxy).
    """
    info = _module_download(module, version, env)
    directory = info.get("Dir")
    if not directory:
        raise BuildError(f"go mod download {module}@{version} returned no source: {info.get('Error')}")
    return Path(directory)


@dataclass(frozen=True)
class GoModule:
    """A wrapper-module build: require ``module@version``, build ``packages`` into ``bin_dir``."""

    module: str
    version: str
    packages: Sequence[str]
    replaces: Mapping[str, str] = field(default_factory=dict)
    ldflags: str = "-s -w"
    main_go: str | None = None  # source of a main package in the wrapper itself, if any
    extra_requires: Mapping[str, str] = field(default_factory=dict)


def build_in_wrapper(spec: GoModule, *, workdir: Path, bin_dir: Path, label: str) -> None:
    """Generate the wrapper module in ``workdir`` and build ``spec.packages`` into ``bin_dir``."""
    go = go_command()
    workdir.mkdir(parents=True, exist_ok=True)
    bin_dir.mkdir(parents=True, exist_ok=True)
    requires = {spec.module: spec.version, **spec.extra_requires}
    gomod = ["module localstack.build/wrapper", "", "go 1.24", "", "require ("]
    gomod += [f"\t{mod} {ver}" for mod, ver in sorted(requires.items())]
    gomod += [")", ""]
    if spec.replaces:
        gomod += ["replace ("]
        gomod += [f"\t{mod} => {mod} {ver}" for mod, ver in sorted(spec.replaces.items())]
        gomod += [")", ""]
    (workdir / "go.mod").write_text("\n".join(gomod))
    imports = "\n".join(f'\t_ "{pkg}"' for pkg in spec.packages if pkg != ".")
    if spec.main_go is not None:
        (workdir / "main.go").write_text(spec.main_go)
    if imports:
        (workdir / "tools.go").write_text(f"//go:build tools\n\npackage wrapper\n\nimport (\n{imports}\n)\n")
    env = {"GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    run_with_progress([go, "mod", "tidy"], cwd=workdir, label=f"{label} (resolve modules)", env=env)
    tmp_bin = bin_dir.with_name(bin_dir.name + ".partial")
    shutil.rmtree(tmp_bin, ignore_errors=True)
    tmp_bin.mkdir(parents=True)
    run_with_progress(
        [go, "build", "-v", "-trimpath", f"-ldflags={spec.ldflags}", "-o", f"{tmp_bin}/", *spec.packages],
        cwd=workdir,
        label=label,
        env=env,
    )
    for built in tmp_bin.iterdir():
        built.replace(bin_dir / built.name)
    tmp_bin.rmdir()


def go_install(package: str, version: str, *, bin_dir: Path, label: str) -> Path:
    """``go install package@version`` into ``bin_dir``; returns the binary's path."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    name = package.rstrip("/").split("/")[-1]
    if name.startswith("v") and name[1:].isdigit():  # module major-version suffix, e.g. .../v2
        name = package.rstrip("/").split("/")[-2]
    target = bin_dir / name
    if target.exists():
        return target
    run_with_progress(
        [go_command(), "install", "-v", "-trimpath", f"{package}@{version}"],
        cwd=bin_dir,
        label=label,
        env={"GOBIN": str(bin_dir), "CGO_ENABLED": "0"},
    )
    if not target.exists():
        raise BuildError(f"{label}: go install succeeded but {target} is missing")
    return target


def build_in_module(
    module: str, version: str, package: str, *, target: Path, ldflags: str, label: str
) -> Path:
    """Build ``package`` (relative to the module root) of ``module@version`` into ``target``."""
    if target.exists():
        return target
    source = module_dir(module, version)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    run_with_progress(
        [go_command(), "build", "-v", "-trimpath", f"-ldflags={ldflags}", "-o", str(partial), package],
        cwd=source,
        label=label,
        env={"CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly -buildvcs=false"},
    )
    partial.replace(target)
    return target
