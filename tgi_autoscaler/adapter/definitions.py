"""The metric definitions being served, and the watchers that replace them while the adapter runs.

``DefinitionStore`` holds one immutable snapshot; a reload swaps it atomically (single event loop,
one assignment), so a request sees the old or the new definitions, never a mix. A document that
fails to parse or compile is logged with every problem, counted in
``tgi_autoscaler_adapter_config_reload_total{result="failure"}`` and
``tgi_autoscaler_adapter_config_last_reload_success`` = 0, and the last good definitions stay.

Two sources feed it:

- ``watch_file``: a local YAML file, polled for changes of mtime/size/inode (local runs, tests,
  or a ConfigMap mounted as a volume);
- ``watch_configmap``: a ConfigMap through the Kubernetes API (``configmap_watch``, over the
  project's one list-then-watch loop in ``tgi_autoscaler.kube.watch``): list, then watch from the
  listed ``resourceVersion``, resuming from the last seen version when a watch ends, and listing
  again when the server answers 410 Gone. Edits reach the adapter within a second or two, without
  the kubelet's volume-sync delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from tgi_autoscaler.adapter.configmap_watch import ConfigMapRef, follow_configmap
from tgi_autoscaler.adapter.own_metrics import AdapterMetrics
from tgi_autoscaler.config.metrics import (
    METRICS_CONFIGMAP_KEY,
    MetricDefinition,
    MetricsConfig,
    MetricsConfigError,
    parse_metrics_yaml,
)
from tgi_autoscaler.kube.client import ListWatchClient
from tgi_autoscaler.kube.retry import Backoff
from tgi_autoscaler.kube.watch import WatchPolicy

__all__ = [
    "DEFINITIONS_WATCH",
    "DefinitionSnapshot",
    "DefinitionStore",
    "watch_configmap",
    "watch_file",
]

log = structlog.get_logger(__name__)

# The last good definitions keep serving meanwhile, so there is no hurry: start at a second.
DEFINITIONS_WATCH = WatchPolicy(
    backoff=Backoff(initial_s=1.0, max_s=30.0, jitter=0.0), retry_failed_handlers=True
)


@dataclass(frozen=True)
class DefinitionSnapshot:
    """The definitions served at one moment; ``generation`` increases with every change."""

    generation: int
    definitions: Mapping[str, MetricDefinition]
    source: str
    loaded_at: float = field(default_factory=time.time)


class DefinitionStore:
    """The current definitions; ``apply_text`` replaces them only with a valid document."""

    def __init__(
        self, initial: MetricsConfig | None = None, *, metrics: AdapterMetrics | None = None
    ) -> None:
        self._metrics = metrics
        self._loaded = initial is not None
        self._snapshot = DefinitionSnapshot(
            generation=0,
            definitions=(initial or MetricsConfig()).definitions(),
            source="built-in defaults" if initial is None else "initial configuration",
        )
        self._attempts = 0
        self._waiters: list[asyncio.Future[None]] = []
        if metrics is not None:
            metrics.definitions.set(len(self._snapshot.definitions))
            if initial is not None:
                metrics.config_last_reload_success.set(1)

    @property
    def snapshot(self) -> DefinitionSnapshot:
        return self._snapshot

    @property
    def loaded(self) -> bool:
        """True once definitions came from configuration (or were given at construction)."""
        return self._loaded

    def get(self, name: str) -> MetricDefinition | None:
        return self._snapshot.definitions.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._snapshot.definitions

    def names(self) -> list[str]:
        return sorted(self._snapshot.definitions)

    def replace(self, config: MetricsConfig, *, source: str) -> DefinitionSnapshot:
        """Serve ``config`` from now on."""
        previous = self._snapshot
        self._snapshot = DefinitionSnapshot(
            generation=previous.generation + 1, definitions=config.definitions(), source=source
        )
        self._loaded = True
        added = sorted(set(self._snapshot.definitions) - set(previous.definitions))
        removed = sorted(set(previous.definitions) - set(self._snapshot.definitions))
        log.info(
            "metric_definitions_loaded",
            source=source,
            generation=self._snapshot.generation,
            metrics=sorted(self._snapshot.definitions),
            added=added,
            removed=removed,
        )
        if self._metrics is not None:
            self._metrics.config_reloads.labels(result="success").inc()
            self._metrics.config_last_reload_success.set(1)
            self._metrics.config_last_reload_success_timestamp.set(time.time())
            self._metrics.definitions.set(len(self._snapshot.definitions))
        self._attempted()
        return self._snapshot

    @property
    def attempts(self) -> int:
        """Loads tried so far (applied or rejected)."""
        return self._attempts

    def _attempted(self) -> None:
        self._attempts += 1
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def reject(self, *, source: str, error: str, issues: list[str] | None = None) -> None:
        """Record a failed load; the current definitions stay in service."""
        log.error(
            "metric_definitions_rejected",
            source=source,
            error=error,
            issues=issues or [],
            kept_generation=self._snapshot.generation,
            kept_source=self._snapshot.source,
        )
        if self._metrics is not None:
            self._metrics.config_reloads.labels(result="failure").inc()
            self._metrics.config_last_reload_success.set(0)
        self._attempted()

    def apply_text(self, text: str, *, source: str) -> bool:
        """Parse ``text`` and serve it if valid; True if it was applied."""
        try:
            config = parse_metrics_yaml(text, source=source)
        except MetricsConfigError as exc:
            self.reject(
                source=source,
                error=f"invalid metrics configuration ({len(exc.issues)} problem(s))",
                issues=[str(issue) for issue in exc.issues],
            )
            return False
        self.replace(config, source=source)
        return True

    async def wait_for_change(self, after_generation: int, timeout: float) -> bool:
        """Wait until the generation exceeds ``after_generation``; False on timeout."""
        return await self._wait(lambda: self._snapshot.generation > after_generation, timeout)

    async def wait_for_attempts(self, attempts: int, timeout: float) -> bool:
        """Wait until at least ``attempts`` loads were tried; False on timeout."""
        return await self._wait(lambda: self._attempts >= attempts, timeout)

    async def _wait(self, done: Callable[[], bool], timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, remaining)
        return True


def _file_identity(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


async def watch_file(
    store: DefinitionStore, path: Path, *, interval_s: float = 1.0, stop: asyncio.Event | None = None
) -> None:
    """Load ``path`` now and again whenever it changes, until ``stop`` is set (or forever)."""
    seen: tuple[int, int, int] | str | None = "never"
    stop = stop or asyncio.Event()
    while not stop.is_set():
        identity = await asyncio.to_thread(_file_identity, path)
        if identity != seen:
            seen = identity
            if identity is None:
                store.reject(source=str(path), error="file not found")
            else:
                try:
                    text = await asyncio.to_thread(path.read_text, encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    store.reject(source=str(path), error=f"cannot read: {exc}")
                else:
                    store.apply_text(text, source=str(path))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


async def watch_configmap(
    store: DefinitionStore,
    client: ListWatchClient,
    ref: ConfigMapRef,
    *,
    key: str = METRICS_CONFIGMAP_KEY,
    policy: WatchPolicy = DEFINITIONS_WATCH,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Keep ``store`` in step with the ConfigMap's ``key``, forever (until cancelled)."""
    where = "configmap {}/{}".format(*ref)
    applied_text: str | None = None

    async def apply(data: Mapping[str, str] | None, _trigger: str) -> None:
        nonlocal applied_text
        if data is None:
            store.reject(source=where, error="the ConfigMap does not exist")
            applied_text = None
            return
        text = data.get(key)
        if text is None:
            store.reject(source=where, error=f"the ConfigMap has no data key {key!r}")
            applied_text = None
            return
        if text != applied_text:  # resyncs and unrelated edits need no reload
            applied_text = text
            store.apply_text(text, source=f"{where} ({key})")

    await follow_configmap(client, ref, apply, policy=policy, sleep=sleep)
