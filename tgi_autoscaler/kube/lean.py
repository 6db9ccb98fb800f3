"""kubernetes_asyncio without its generated API and model modules, which the servers never use.

The servers take four things from kubernetes_asyncio: ``Configuration``, ``ApiClient.call_api``
(raw requests; nothing is deserialized into model classes, see ``client``) and the kubeconfig and
in-cluster loaders. Importing ``kubernetes_asyncio.client`` the ordinary way imports every generated
API and model first: about 860 modules and 35 MiB of resident memory, a third of the adapter's.

``install`` registers light modules for the packages ``kubernetes_asyncio``, ``.client``,
``.client.api`` and ``.client.models`` (before anything imported them; otherwise it does nothing):
their submodules load on first use, and any other name asked of them runs the package's real
``__init__`` into the same module, so code that does need a generated class still gets it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

__all__ = ["install"]

_PACKAGES = (
    "kubernetes_asyncio",
    "kubernetes_asyncio.client",
    "kubernetes_asyncio.client.api",
    "kubernetes_asyncio.client.models",
)
# Names the loaders and ApiKubeClient use, and the submodule defining each.
_LIGHT = {"Configuration": "configuration", "ApiClient": "api_client"}


def _lazy(module: types.ModuleType, init: Path) -> Any:
    full = False

    def __getattr__(attribute: str) -> Any:  # the module-level hook of PEP 562
        nonlocal full
        name = module.__name__
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        submodule = _LIGHT.get(attribute, attribute) if name == "kubernetes_asyncio.client" else attribute
        if (init.parent / f"{submodule}.py").exists() or (init.parent / submodule / "__init__.py").exists():
            loaded = importlib.import_module(f"{name}.{submodule}")
            return loaded if submodule == attribute else getattr(loaded, attribute)
        if not full:
            full = True
            code = compile(init.read_text(encoding="utf-8"), str(init), "exec")
            exec(code, module.__dict__)  # noqa: S102 - the package's own __init__, as import would run it
        if attribute in module.__dict__:
            return module.__dict__[attribute]
        raise AttributeError(f"module {name!r} has no attribute {attribute!r}")

    return __getattr__


def install() -> None:
    """Register the light packages, unless kubernetes_asyncio is already imported."""
    if "kubernetes_asyncio" in sys.modules:
        return
    found = importlib.util.find_spec("kubernetes_asyncio")
    if found is None or found.origin is None:
        return
    base = Path(found.origin).parent
    for name in _PACKAGES:
        directory = base.joinpath(*name.split(".")[1:])
        init = directory / "__init__.py"
        spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(directory)])
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        module.__getattr__ = _lazy(module, init)  # type: ignore[method-assign]
        sys.modules[name] = module
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(sys.modules[parent], child, module)
