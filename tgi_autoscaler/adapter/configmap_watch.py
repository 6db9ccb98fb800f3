"""Follow one ConfigMap while the adapter runs, through API server restarts, as its data.

The adapter reads two ConfigMaps this way: kube-apiserver's ``extension-apiserver-authentication``
(the front-proxy CA and identity headers) and, optionally, the metric definitions. Both must take
effect without a restart. :func:`follow_configmap` runs the project's one list-then-watch loop
(:class:`tgi_autoscaler.kube.watch.Reflector`) on the ConfigMap's name and reduces each change to
what the adapter acts on: the ConfigMap's ``data``, or ``None`` when it is absent or deleted.

Handlers here apply security settings, so a handler that fails is retried: the watch policy has
``retry_failed_handlers`` set, which backs off, lists again and delivers the data again until it
is applied.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping

from tgi_autoscaler.kube.client import KubeObject, ListWatchClient
from tgi_autoscaler.kube.resources import CONFIGMAP
from tgi_autoscaler.kube.watch import ChangeType, Reflector, Store, WatchPolicy

__all__ = ["ConfigMapRef", "DataHandler", "follow_configmap"]

ConfigMapRef = tuple[str, str]
"""(namespace, name)."""

DataHandler = Callable[[Mapping[str, str] | None, str], Awaitable[None]]
"""Receives the ConfigMap's data (``None``: absent or deleted) and what produced it (``list`` or
the change type)."""


async def follow_configmap(
    client: ListWatchClient,
    ref: ConfigMapRef,
    handle: DataHandler,
    *,
    policy: WatchPolicy,
    rand: Callable[[], float] = random.random,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Pass every version of the ConfigMap to ``handle``, forever (until cancelled)."""
    namespace, name = ref
    deletion_delivered = False  # by the current list: its absence is then already reported

    def on_relist() -> None:
        nonlocal deletion_delivered
        deletion_delivered = False

    async def on_change(change: ChangeType, obj: KubeObject, _old: KubeObject | None) -> None:
        nonlocal deletion_delivered
        deletion_delivered = change == "DELETED"
        await handle(None if change == "DELETED" else _data(obj), change)

    async def on_listed(store: Store) -> None:
        # A list without the ConfigMap changes nothing in the cache, but handlers must hear of it.
        if len(store) == 0 and not deletion_delivered:
            await handle(None, "list")

    reflector = Reflector(
        client,
        CONFIGMAP,
        handler=on_change,
        namespace=namespace,
        field_selector=f"metadata.name={name}",
        policy=policy,
        rand=rand,
        sleep=sleep,
        on_relist=on_relist,
        on_listed=on_listed,
    )
    await reflector.run()


def _data(obj: KubeObject) -> Mapping[str, str]:
    data = obj.get("data") or {}
    return {str(k): str(v) for k, v in data.items()}
