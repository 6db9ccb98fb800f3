"""The servers load kubernetes_asyncio without its generated models, and can still reach them."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

PROGRAM = """
import sys
import tgi_autoscaler.kube.connect
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.rest import RESTClientObject
loaded = [m for m in sys.modules if m.startswith("kubernetes_asyncio.client.models.")]
print(len(loaded), ApiClient.__module__, Configuration.__module__, callable(config.load_kube_config))
from kubernetes_asyncio.client import V1ObjectMeta  # a generated class: the full package loads
models = [m for m in sys.modules if m.startswith("kubernetes_asyncio.client.models.")]
print(V1ObjectMeta(name="x").name, len(models) > 500)
"""


def test_the_connection_layer_loads_no_generated_model_until_one_is_asked_for() -> None:
    out = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, check=True).stdout
    first, second = out.splitlines()
    assert first == "0 kubernetes_asyncio.client.api_client kubernetes_asyncio.client.configuration True"
    assert second == "x True"
