"""The blue-green rollout plan: one table of cluster situations and the step each must lead to."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from typing import Any

import pytest

from tgi_autoscaler.config.constants import LABEL_MODEL_HASH
from tgi_autoscaler.config.service import RolloutSpec, RolloutStrategy, TGIServiceSpec, parse_service_yaml
from tgi_autoscaler.render import ServiceSource, render_service
from tgi_autoscaler.render.rollout import (
    ANNOTATION_MODEL,
    DeploymentPlan,
    DeploymentView,
    Plan,
    RolloutState,
    candidate_name,
    deployment_for,
    hpa_for,
    model_hash,
    plan_rollout,
    service_for,
)

pytestmark = pytest.mark.unit

OLD, NEW = "aaaaaaaaaa", "bbbbbbbbbb"
OLD_NAME, NEW_NAME = candidate_name("llm", OLD), candidate_name("llm", NEW)
NOW = 10_000.0


def _spec(extra: str = "") -> TGIServiceSpec:
    return parse_service_yaml(textwrap.dedent("model:\n  id: org/model-a\n" + extra), source="test")


def _dep(
    name: str, model: str, *, ready: int = 2, replicas: int = 2, labelled: bool = True
) -> DeploymentView:
    return DeploymentView(
        name=name,
        model=model,
        color=model if labelled else None,
        replicas=replicas,
        ready=ready,
        rolled_out=ready >= replicas,
    )


@pytest.mark.parametrize(
    ("change", "changes_model"),
    [
        ("model:\n  id: org/model-a\n  revision: abc123\n", True),
        ("engine:\n  image: ghcr.io/huggingface/text-generation-inference:9.9.9\n", True),
        ("engine:\n  numShard: 2\nresources:\n  gpu: 2\n", True),
        ("engine:\n  dtype: bfloat16\n", True),
        ("resources:\n  cpuRequest: '8'\n", False),
        ("engine:\n  env:\n  - name: X\n    value: '1'\n", False),
    ],
)
def test_the_model_hash_changes_exactly_with_what_is_served(change: str, changes_model: bool) -> None:
    base = _spec()
    text = "model:\n  id: org/model-a\n" + change if not change.startswith("model:") else change
    changed = parse_service_yaml(text, source="test")
    assert (model_hash(changed) != model_hash(base)) is changes_model
    assert len(model_hash(base)) == 10


@dataclass(frozen=True)
class Case:
    id: str
    deployments: tuple[DeploymentView, ...]
    state: RolloutState | None
    desired: str = NEW
    # The planner's BlueGreen path, which the config model refuses until the controller applies it.
    rollout: RolloutSpec = field(
        default_factory=lambda: RolloutSpec.model_construct(strategy=RolloutStrategy.BLUE_GREEN)
    )
    hpa: int | None = 2
    spec_changed: bool = True
    # expected
    phase: str = "Progressing"
    serving: str = OLD_NAME
    apply: tuple[tuple[str, int | None], ...] = ()
    delete: tuple[str, ...] = ()
    service_model: str | None = OLD
    hpa_target: str = OLD_NAME
    event: str | None = None
    color: str | None = "model"  # "model": the Deployment's own model hash
    scale: tuple[tuple[str, int], ...] = ()
    service_selects: str | None = None


STABLE_OLD = RolloutState(phase="Stable", serving=OLD_NAME)
PROGRESSING = RolloutState(phase="Progressing", serving=OLD_NAME, candidate=NEW_NAME, started_at=NOW - 60)

CASES = [
    Case(
        "a new service starts its first Deployment and routes to it",
        deployments=(),
        state=None,
        phase="Stable",
        serving="llm",
        apply=(("llm", None),),
        service_model=NEW,
        hpa_target="llm",
        color=NEW,
    ),
    Case(
        "a model change starts a candidate sized to the HPA's count; the Service stays",
        deployments=(_dep(OLD_NAME, OLD, replicas=3, ready=3),),
        state=STABLE_OLD,
        hpa=3,
        apply=((NEW_NAME, 3),),
        event="RolloutStarted",
    ),
    Case(
        "a candidate with some pods Ready keeps waiting",
        deployments=(_dep(OLD_NAME, OLD), _dep(NEW_NAME, NEW, ready=1)),
        state=PROGRESSING,
        apply=((NEW_NAME, 2),),
    ),
    Case(
        "a candidate with every pod Ready takes the Service and the HPA; the old one drains",
        deployments=(_dep(OLD_NAME, OLD), _dep(NEW_NAME, NEW)),
        state=PROGRESSING,
        phase="Draining",
        serving=NEW_NAME,
        apply=((NEW_NAME, None),),
        service_model=NEW,
        hpa_target=NEW_NAME,
        event="Switched",
    ),
    Case(
        "a candidate past the timeout fails: Warning, nothing deleted, the Service stays",
        deployments=(_dep(OLD_NAME, OLD), _dep(NEW_NAME, NEW, ready=0)),
        state=RolloutState(phase="Progressing", serving=OLD_NAME, candidate=NEW_NAME, started_at=NOW - 1801),
        phase="Failed",
        apply=((NEW_NAME, 2),),
        event="RolloutFailed",
    ),
    Case(
        "a failed rollout warns once",
        deployments=(_dep(OLD_NAME, OLD), _dep(NEW_NAME, NEW, ready=0)),
        state=RolloutState(phase="Failed", serving=OLD_NAME, candidate=NEW_NAME, started_at=NOW - 3000),
        phase="Failed",
        apply=((NEW_NAME, 2),),
    ),
    Case(
        "a further edit replaces the failed candidate",
        deployments=(_dep(OLD_NAME, OLD), _dep(NEW_NAME, NEW, ready=0)),
        state=RolloutState(phase="Failed", serving=OLD_NAME, candidate=NEW_NAME, started_at=NOW - 3000),
        desired="cccccccccc",
        apply=((candidate_name("llm", "cccccccccc"), 2),),
        delete=(NEW_NAME,),
        event="RolloutStarted",
    ),
    Case(
        "a revert to the serving model deletes the candidate",
        deployments=(_dep(OLD_NAME, OLD), _dep(NEW_NAME, NEW, ready=0)),
        state=RolloutState(phase="Failed", serving=OLD_NAME, candidate=NEW_NAME, started_at=NOW - 3000),
        desired=OLD,
        phase="Stable",
        apply=((OLD_NAME, None),),
        delete=(NEW_NAME,),
        event="RolloutAbandoned",
    ),
    Case(
        "the previous Deployment is kept inside the grace period",
        deployments=(_dep(OLD_NAME, OLD), _dep(NEW_NAME, NEW)),
        state=RolloutState(phase="Draining", serving=NEW_NAME, previous=OLD_NAME, switched_at=NOW - 599),
        phase="Draining",
        serving=NEW_NAME,
        apply=((NEW_NAME, None),),
        service_model=NEW,
        hpa_target=NEW_NAME,
    ),
    Case(
        "the previous Deployment is deleted once the grace period ends",
        deployments=(_dep(OLD_NAME, OLD), _dep(NEW_NAME, NEW)),
        state=RolloutState(phase="Draining", serving=NEW_NAME, previous=OLD_NAME, switched_at=NOW - 600),
        phase="Stable",
        serving=NEW_NAME,
        apply=((NEW_NAME, None),),
        delete=(OLD_NAME,),
        service_model=NEW,
        hpa_target=NEW_NAME,
    ),
    Case(
        "a revert inside the grace period switches straight back to the kept Deployment",
        deployments=(_dep(OLD_NAME, OLD), _dep(NEW_NAME, NEW)),
        state=RolloutState(phase="Draining", serving=NEW_NAME, previous=OLD_NAME, switched_at=NOW - 30),
        desired=OLD,
        phase="Draining",
        serving=OLD_NAME,
        apply=((OLD_NAME, None),),
        service_model=OLD,
        hpa_target=OLD_NAME,
        event="Switched",
    ),
    Case(
        "a lost state annotation resumes from the labelled Deployment that is rolled out",
        deployments=(_dep(OLD_NAME, OLD), _dep(NEW_NAME, NEW, ready=1)),
        state=None,
        apply=((NEW_NAME, 2),),
    ),
    Case(
        "RollingUpdate rolls the serving Deployment in place, keeping its label and the Service selector",
        deployments=(_dep(OLD_NAME, OLD),),
        state=STABLE_OLD,
        rollout=RolloutSpec(strategy=RolloutStrategy.ROLLING_UPDATE),
        phase="Stable",
        apply=((OLD_NAME, None),),
        color=OLD,
    ),
    Case(
        "an adopted Deployment is left untouched while the spec is unchanged (no restart at upgrade)",
        deployments=(_dep("llm", "", labelled=False),),
        state=None,
        spec_changed=False,
        phase="Stable",
        serving="llm",
        apply=(("llm", None),),
        service_model=None,
        hpa_target="llm",
        color=None,
    ),
    Case(
        "an adopted Deployment gets the label with the first change, rolled in place",
        deployments=(_dep("llm", "", labelled=False),),
        state=None,
        phase="Stable",
        serving="llm",
        apply=(("llm", None),),
        service_model=None,
        hpa_target="llm",
        color=NEW,
    ),
    Case(
        "a labelled Deployment mid-roll keeps the Service selecting on its label once it did",
        deployments=(_dep("llm", NEW, ready=1, replicas=2),),
        state=RolloutState(phase="Stable", serving="llm"),
        service_selects=NEW,
        phase="Stable",
        serving="llm",
        apply=(("llm", None),),
        service_model=NEW,
        hpa_target="llm",
        color=NEW,
    ),
    Case(
        "an adopted Deployment, labelled and rolled out, gets the Service selecting on its label",
        deployments=(_dep("llm", NEW),),
        state=None,
        phase="Stable",
        serving="llm",
        apply=(("llm", None),),
        service_model=NEW,
        hpa_target="llm",
        color=NEW,
    ),
    Case(
        "a model change of a labelled adopted Deployment is a blue-green switch",
        deployments=(_dep("llm", OLD),),
        state=None,
        serving="llm",
        apply=((NEW_NAME, 2),),
        hpa_target="llm",
        event="RolloutStarted",
    ),
    Case(
        "GPU budget: the serving Deployment gives one pod to the candidate at a time",
        deployments=(_dep(OLD_NAME, OLD, replicas=3, ready=3), _dep(NEW_NAME, NEW, replicas=1, ready=1)),
        state=PROGRESSING,
        rollout=RolloutSpec.model_construct(strategy=RolloutStrategy.BLUE_GREEN, gpu_budget=True),
        hpa=3,
        apply=((NEW_NAME, 2),),
        scale=((OLD_NAME, 1),),
    ),
    Case(
        "GPU budget: the switch comes one pod short and frees the old GPUs at once",
        deployments=(_dep(OLD_NAME, OLD, replicas=1, ready=1), _dep(NEW_NAME, NEW, replicas=2, ready=2)),
        state=PROGRESSING,
        rollout=RolloutSpec.model_construct(strategy=RolloutStrategy.BLUE_GREEN, gpu_budget=True),
        hpa=3,
        phase="Stable",
        serving=NEW_NAME,
        apply=((NEW_NAME, None),),
        delete=(OLD_NAME,),
        service_model=NEW,
        hpa_target=NEW_NAME,
        event="Switched",
    ),
]


def _plan(case: Case) -> Plan:
    return plan_rollout(
        "llm",
        case.desired,
        case.rollout,
        state=case.state,
        deployments={d.name: d for d in case.deployments},
        hpa_replicas=case.hpa,
        min_replicas=1,
        now=NOW,
        spec_changed=case.spec_changed,
        service_selects=case.service_selects,
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_plan(case: Case) -> None:
    plan = _plan(case)
    assert plan.state.phase == case.phase
    assert plan.state.serving == case.serving
    assert tuple((d.name, d.replicas) for d in plan.apply) == case.apply
    for d in plan.apply:
        assert d.color == (d.name.removeprefix("llm-") if case.color == "model" else case.color)
    assert plan.delete == case.delete
    assert plan.service_model == case.service_model
    assert plan.hpa_target == case.hpa_target
    assert (plan.event.reason if plan.event else None) == case.event
    assert plan.scale == case.scale
    # Safety: the Deployment the Service routes to is never deleted, whatever the situation.
    assert plan.hpa_target not in plan.delete
    assert plan.state.serving not in plan.delete


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_persisted_state_round_trips_so_a_new_leader_plans_the_same_step(case: Case) -> None:
    plan = _plan(case)
    parsed = RolloutState.parse(json.dumps(plan.state.document()))
    assert parsed == plan.state


def test_an_unreadable_state_annotation_is_a_fresh_start() -> None:
    assert RolloutState.parse("{not json") is None
    assert RolloutState.parse('{"phase": "Stable"}') is None
    assert RolloutState.parse(None) is None


def _rendered() -> dict[str, dict[str, Any]]:
    objects = render_service(ServiceSource(name="llm", namespace="serving", spec=_spec()))
    return {o["kind"]: o for o in objects}


def test_a_blue_green_deployment_selects_and_labels_its_pods_by_model_and_the_service_follows() -> None:
    rendered = _rendered()
    deployment = deployment_for(rendered["Deployment"], DeploymentPlan(NEW_NAME, NEW, color=NEW, replicas=3))
    assert deployment["metadata"]["name"] == NEW_NAME
    assert deployment["metadata"]["annotations"][ANNOTATION_MODEL] == NEW
    assert deployment["spec"]["selector"]["matchLabels"][LABEL_MODEL_HASH] == NEW
    assert deployment["spec"]["template"]["metadata"]["labels"][LABEL_MODEL_HASH] == NEW
    # The size goes through the scale subresource: an applied replicas field would be ours to lose.
    assert "replicas" not in deployment["spec"]
    service = service_for(rendered["Service"], NEW)
    # The Service selects a subset of the new pods' labels, and none of a Deployment of another model.
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    other = deployment_for(rendered["Deployment"], DeploymentPlan(OLD_NAME, OLD, color=OLD))
    assert not service["spec"]["selector"].items() <= other["spec"]["template"]["metadata"]["labels"].items()
    assert "replicas" not in other["spec"]
    assert (
        hpa_for(rendered["HorizontalPodAutoscaler"], NEW_NAME)["spec"]["scaleTargetRef"]["name"] == NEW_NAME
    )
    # What `render` prints is the first step: the Deployment named after the service, labelled.
    first = rendered["Deployment"]
    assert first["metadata"]["name"] == "llm"
    assert first["spec"]["template"]["metadata"]["labels"][LABEL_MODEL_HASH] == model_hash(_spec())
    assert LABEL_MODEL_HASH not in first["spec"]["selector"]["matchLabels"]
    assert rendered["Service"]["spec"]["selector"][LABEL_MODEL_HASH] == model_hash(_spec())


def test_an_adopted_deployment_keeps_its_name_and_immutable_selector() -> None:
    rendered = _rendered()
    selector = dict(rendered["Deployment"]["spec"]["selector"]["matchLabels"])
    unlabelled = deployment_for(rendered["Deployment"], DeploymentPlan("llm", NEW, color=None))
    assert unlabelled["spec"]["selector"]["matchLabels"] == selector
    assert LABEL_MODEL_HASH not in unlabelled["spec"]["template"]["metadata"]["labels"]
    labelled = deployment_for(rendered["Deployment"], DeploymentPlan("llm", NEW, color=NEW))
    assert labelled["spec"]["selector"]["matchLabels"] == selector
    assert labelled["spec"]["template"]["metadata"]["labels"][LABEL_MODEL_HASH] == NEW
    assert LABEL_MODEL_HASH not in service_for(rendered["Service"], None)["spec"]["selector"]


def test_blue_green_is_the_default_and_the_gpu_budget_is_refused_naming_the_field() -> None:
    from tgi_autoscaler.config.errors import ConfigError

    assert _spec().rollout.strategy is RolloutStrategy.BLUE_GREEN
    with pytest.raises(ConfigError) as info:
        _spec("rollout:\n  gpuBudget: true\n")
    assert "rollout.gpuBudget" in str(info.value)
    assert "not applied by this controller yet" in str(info.value)
