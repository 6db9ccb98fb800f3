"""Properties of rendering over many generated valid specs (hypothesis)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tgi_autoscaler.config.constants import LABEL_INSTANCE, LABEL_MANAGED_BY
from tgi_autoscaler.config.service import TGIServiceSpec
from tgi_autoscaler.render import RenderOptions, ServiceSource, render_service, to_yaml

pytestmark = pytest.mark.unit

_names = st.from_regex(r"[a-z][a-z0-9]{0,10}(-[a-z0-9]{1,8})?", fullmatch=True)


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["tgi", "vllm", "sglang"]))
    gpus = draw(st.sampled_from([0, 1, 2, 4, 8]))
    low = draw(st.integers(1, 5))
    high = draw(st.integers(low, 20))
    spec: dict[str, Any] = {
        "model": {"id": draw(st.sampled_from(["meta-llama/Llama-2-7b-chat-hf", "gpt2", "/data/local"]))},
        "engine": {"kind": kind, "numShard": max(gpus, 1)},
        "resources": {"gpu": gpus, "memoryLimit": "64Gi", "shmSize": draw(st.sampled_from(["1Gi", "8Gi"]))},
        "autoscaling": {
            "minReplicas": low,
            "maxReplicas": high,
            "queue": {"targetPerReplica": draw(st.sampled_from([0.5, 1, 3.25, 10]))},
        },
    }
    cache = draw(st.sampled_from(["none", "existing", "create"]))
    if cache == "existing":
        spec["cache"] = {"existingClaim": "weights"}
    elif cache == "create":
        spec["cache"] = {"create": {"size": "200Gi"}}
    if draw(st.booleans()):
        spec["ingress"] = {"enabled": True, "host": "llm.example.com"}
    if draw(st.booleans()):
        spec["auth"] = {"enabled": True, "apiKeysSecret": {"name": "keys", "key": "keys"}}
    if draw(st.booleans()):
        spec["autoscaling"]["cpu"] = {"targetUtilization": draw(st.integers(1, 100))}
    return spec


@settings(max_examples=40, deadline=None)
@given(
    spec=specs(),
    name=_names,
    namespace=_names,
    operator=st.booleans(),
    uid=st.none() | st.uuids().map(str),
)
def test_any_valid_spec_renders_managed_objects_without_deployment_replicas(
    spec: dict[str, Any], name: str, namespace: str, operator: bool, uid: str | None
) -> None:
    source = ServiceSource(name, namespace, TGIServiceSpec.model_validate(spec), uid)
    options = RenderOptions(prometheus_operator=operator)
    objects = render_service(source, options)
    assert render_service(source, options) == objects, "rendering must be deterministic"
    server = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name)
    assert "replicas" not in server["spec"]
    hpa = next(o for o in objects if o["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert hpa["spec"]["metrics"][0]["external"]["metric"]["selector"] == {
        "matchLabels": {LABEL_INSTANCE: name}
    }
    kinds = {o["kind"] for o in objects}
    assert ("PodMonitor" in kinds) == operator
    for obj in objects:
        meta = obj["metadata"]
        assert meta["namespace"] == namespace
        assert meta["labels"][LABEL_MANAGED_BY] == "tgi-autoscaler"
        assert meta["labels"][LABEL_INSTANCE] == name
        assert ("ownerReferences" in meta) == (uid is not None)
    assert list(yaml.safe_load_all(to_yaml(objects))) == objects
