"""Reads and watches of the local control plane over one kept-alive TLS session.

``ControlPlane.request`` opens a connection per call, which is fine for a handful of requests; a
test or benchmark that follows a Deployment or records every status write of an HPA needs to see
changes within milliseconds, so it watches instead, over one session (cluster admin).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp

from tgi_autoscaler_dev.localstack.controlplane import ControlPlane

__all__ = ["ApiSession"]

Seen = Callable[[dict[str, Any]], Awaitable[None]]


class ApiSession:
    """GETs and watches against ``control_plane`` on ``session`` (the caller owns the session)."""

    def __init__(self, control_plane: ControlPlane, session: aiohttp.ClientSession) -> None:
        self.server = control_plane.server
        self.session = session
        self.ssl = control_plane.ssl_context()

    async def get(self, path: str) -> dict[str, Any]:
        async with self.session.get(
            f"{self.server}{path}", ssl=self.ssl, timeout=aiohttp.ClientTimeout(total=10)
        ) as resp:
            if resp.status != 200:
                raise RuntimeError(f"GET {path}: {resp.status} {await resp.text()}")
            body: dict[str, Any] = await resp.json()
            return body

    async def watch(self, collection: str, name: str, seen: Seen, *, max_watches: int = 1000) -> None:
        """Call ``seen`` with the named object of ``collection`` now and after every change.

        Runs until cancelled (or ``max_watches`` watches of up to a minute each have ended): each
        watch resumes from the version listed just before it, so no change is missed.
        """
        selector = "fieldSelector=" + quote(f"metadata.name={name}", safe="")
        for _ in range(max_watches):
            listed = await self.get(f"{collection}?{selector}")
            for item in listed["items"]:
                await seen(item)
            version = listed["metadata"]["resourceVersion"]
            url = f"{self.server}{collection}?{selector}&watch=1&timeoutSeconds=60&resourceVersion={version}"
            async with self.session.get(
                url, ssl=self.ssl, timeout=aiohttp.ClientTimeout(total=None, sock_read=90)
            ) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"watch {collection}: {resp.status} {await resp.text()}")
                while line := await resp.content.readline():
                    event = json.loads(line)
                    if event["type"] in ("ADDED", "MODIFIED"):
                        await seen(event["object"])
                    elif event["type"] == "ERROR":
                        break
