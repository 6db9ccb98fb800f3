"""Where the API server is and who we are to it: one way to build an API client, for every server.

In a pod the ServiceAccount's token and CA (in-cluster config); elsewhere a kubeconfig, the one
given explicitly or else ``$KUBECONFIG`` / ``~/.kube/config``. An explicit kubeconfig wins even in a
pod, so an operator can point a debug run somewhere else. kubernetes_asyncio's ``ApiClient`` keeps
TLS, auth plugins and token refresh; :class:`~.client.ApiKubeClient` sends requests through it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tgi_autoscaler.kube import lean

lean.install()  # before kubernetes_asyncio is imported: without its generated models (35 MiB)

from kubernetes_asyncio import client as k8s_client  # noqa: E402
from kubernetes_asyncio import config as k8s_config  # noqa: E402

__all__ = ["load_api_client"]


async def load_api_client(kubeconfig: str | Path | None = None) -> Any:
    """A kubernetes_asyncio ApiClient: explicit kubeconfig, else in-cluster, else $KUBECONFIG/~/.kube.

    The caller owns it and must ``await client.close()``.
    """
    configuration = k8s_client.Configuration()
    if kubeconfig:
        await k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        load_incluster: Callable[..., None] = k8s_config.load_incluster_config
        load_incluster(client_configuration=configuration)
    else:
        await k8s_config.load_kube_config(client_configuration=configuration)
    return k8s_client.ApiClient(configuration=configuration)
