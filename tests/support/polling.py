"""Waiting in tests for something that happens asynchronously, without fixed sleeps.

A test that sleeps "long enough" is slow when the wait is generous and flaky when it is not.
:func:`eventually` polls instead: it returns as soon as the condition holds, and fails the test
with what it was waiting for and the last value it saw once ``timeout`` has passed.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

import pytest

__all__ = ["eventually"]

T = TypeVar("T")


@overload
async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], object] = ...,
    *,
    timeout: float = ...,
    interval: float = ...,
    what: str = ...,
) -> T: ...


@overload
async def eventually(
    probe: Callable[[], T],
    accept: Callable[[T], object] = ...,
    *,
    timeout: float = ...,
    interval: float = ...,
    what: str = ...,
) -> T: ...


async def eventually(
    probe: Callable[[], object],
    accept: Callable[[Any], object] = bool,
    *,
    timeout: float = 30.0,
    interval: float = 0.1,
    what: str = "the condition",
) -> object:
    """Poll ``probe`` (a plain or a coroutine function) until ``accept`` holds for its value.

    Returns that value; fails the test after ``timeout`` seconds, naming ``what`` and the last
    value seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if accept(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}; last value: {value!r}")
        await asyncio.sleep(interval)
