"""Supervised child processes for the local stack.

Every component of the local stack (etcd, kube-apiserver, kube-controller-manager, Prometheus,
kube-state-metrics) is a real binary started as a child process. This module gives them one shape:
stdout and stderr go to a log file that tests print when they fail, start-up waits on a readiness
probe with a deadline instead of a blind sleep, and stopping escalates from SIGTERM to SIGKILL so a
failing test never leaves a server behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import structlog

__all__ = ["ManagedProcess", "ProcessFailed", "background", "free_port", "http_ok", "running", "wait_for"]

log = structlog.get_logger(__name__)


class ProcessFailed(RuntimeError):
    """A component exited or never became ready; the message carries the tail of its log."""


def free_port() -> int:
    """Return a loopback TCP port that is free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_for(
    condition: Callable[[], Awaitable[bool]],
    *,
    timeout: float,
    interval: float = 0.2,
    what: str,
) -> None:
    """Poll ``condition`` until it returns True, or raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if await condition():
                return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


async def http_ok(url: str, *, timeout_s: float = 2.0, ssl_context: ssl.SSLContext | None = None) -> bool:
    """True when GET ``url`` answers 200: the readiness probe of most components."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, ssl=ssl_context or True, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp,
    ):
        return resp.status == 200


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ManagedProcess:
    """One child process with its own log file."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: Path | None = None
    _proc: asyncio.subprocess.Process | None = field(default=None, init=False, repr=False)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **(self.env or {})}
        logfile = self.log_path.open("ab")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdout=logfile,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                env=env,
                cwd=self.cwd,
                start_new_session=True,  # a signal to the test runner must not hit the child first
            )
        finally:
            logfile.close()
        log.debug("process_started", component=self.name, pid=self._proc.pid)

    async def wait_ready(self, probe: Callable[[], Awaitable[bool]], *, timeout: float) -> None:
        """Wait until ``probe`` succeeds; fail fast (with the log tail) if the process dies."""

        async def ready() -> bool:
            if not self.running:
                raise ProcessFailed(
                    f"{self.name} exited with code {self._proc.returncode if self._proc else '?'}; "
                    f"log {self.log_path}:\n{_tail(self.log_path)}"
                )
            return await probe()

        deadline = time.monotonic() + timeout
        while True:
            try:
                if await ready():
                    return
            except ProcessFailed:
                raise
            except Exception:  # noqa: S110 - not ready yet; the probe's errors are expected while starting
                pass
            if time.monotonic() >= deadline:
                raise ProcessFailed(
                    f"{self.name} not ready after {timeout:.0f}s; "
                    f"log {self.log_path}:\n{_tail(self.log_path)}"
                )
            await asyncio.sleep(0.2)

    async def stop(self, *, grace: float = 10.0) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
        log.debug("process_stopped", component=self.name, code=proc.returncode)

    async def kill(self) -> None:
        """SIGKILL, as when a node dies: no graceful shutdown."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()

    def log_tail(self, lines: int = 60) -> str:
        return _tail(self.log_path, lines)


@contextlib.asynccontextmanager
async def running(proc: ManagedProcess) -> AsyncIterator[ManagedProcess]:
    """``proc`` started for the duration of the block, stopped on exit whatever happened."""
    await proc.start()
    try:
        yield proc
    finally:
        await proc.stop()


@contextlib.asynccontextmanager
async def background(coro: Coroutine[Any, Any, Any], name: str) -> AsyncIterator[asyncio.Task[Any]]:
    """Run ``coro`` as a task for the duration of the block; cancelled and awaited on exit, so no
    task outlives the block (the tests' leaked-task check holds)."""
    task = asyncio.create_task(coro, name=name)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
