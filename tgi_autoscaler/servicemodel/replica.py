"""One replica's continuous batching, exact at step boundaries and fast over long replays.

The semantics are TGI's router and batcher, the same as the live simulator's:

- at most ``max_concurrent_requests`` requests are in flight; one more is rejected at once (429);
- accepted requests wait in a FIFO queue; at every step boundary free batch slots are filled from
  it, and if any were filled the step is a **prefill** of the new prompts (their first token comes
  at its end, and the running sequences wait meanwhile);
- otherwise the step is a **decode** step giving every running sequence one token.

Speed comes from not simulating decode steps one by one: while nothing arrives and nothing finishes,
``k`` decode steps over the same batch take exactly ``k * step_time(b)``, so they are one event. An
arrival during such a run cuts it at the first step boundary after the arrival (that is when the
engine would see the request), so the result is the same as stepping. Cost per request: a few heap
operations, whatever the token counts.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, field

from tgi_autoscaler.servicemodel.params import ServerParams

__all__ = ["Replica", "RequestLog"]

_IDLE, _PREFILL, _DECODE = 0, 1, 2
_EPS = 1e-9


@dataclass(slots=True)
class RequestLog:
    """What happened to every request of a replay, indexed by request id (its position in the trace).

    ``admitted`` (its prefill starts: the end of its queue wait), ``first_token`` and ``finished``
    are NaN until they happen; a rejected request keeps NaN and is marked in ``rejected``.
    """

    arrival: list[float]
    prompt_tokens: list[int]
    output_tokens: list[int]
    admitted: list[float] = field(default_factory=list)
    first_token: list[float] = field(default_factory=list)
    finished: list[float] = field(default_factory=list)
    rejected: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.arrival)
        if len(self.prompt_tokens) != n or len(self.output_tokens) != n:
            raise ValueError("RequestLog: arrival, prompt_tokens and output_tokens differ in length")
        self.admitted = [math.nan] * n
        self.first_token = [math.nan] * n
        self.finished = [math.nan] * n
        self.rejected = [False] * n

    def __len__(self) -> int:
        return len(self.arrival)

    def ttft(self, rid: int) -> float:
        """Time to first token (queue wait plus prefill); infinite for a rejected request."""
        if self.rejected[rid]:
            return math.inf
        return self.first_token[rid] - self.arrival[rid]


class Replica:
    """A serving replica: ``submit`` requests and ``advance`` time; the log records the outcome."""

    __slots__ = (
        "_admitted",
        "_end",
        "_kind",
        "_queue",
        "_running",
        "_start",
        "_step_len",
        "_steps",
        "_target_steps",
        "arrivals",
        "last_step_end",
        "log",
        "params",
        "successes",
    )

    def __init__(self, params: ServerParams, log: RequestLog) -> None:
        self.params = params
        self.log = log
        self._queue: deque[int] = deque()
        self._running: list[tuple[int, int]] = []  # heap of (decode step count at finish, rid)
        self._steps = 0  # decode steps done so far
        self._kind = _IDLE
        self._start = 0.0
        self._end = 0.0
        self._step_len = 0.0
        self._target_steps = 0
        self._admitted: list[int] = []
        self.arrivals = 0  # counters, like tgi_request_count and tgi_request_success
        self.successes = 0
        self.last_step_end = 0.0  # when the latest step ended: a drained pod is gone from then

    # -- reading ----------------------------------------------------------------------------------

    @property
    def queue_size(self) -> int:
        """Requests waiting (``tgi_queue_size``)."""
        return len(self._queue)

    @property
    def batch_size(self) -> int:
        """Sequences in the running batch (``tgi_batch_current_size``); a prefill's count too."""
        return len(self._running) + (len(self._admitted) if self._kind == _PREFILL else 0)

    @property
    def in_flight(self) -> int:
        return self.queue_size + self.batch_size

    @property
    def idle(self) -> bool:
        return self._kind == _IDLE

    @property
    def next_event(self) -> float:
        """When the current step (or run of decode steps) ends; infinity when idle."""
        return math.inf if self._kind == _IDLE else self._end

    # -- driving ----------------------------------------------------------------------------------

    def submit(self, rid: int, now: float) -> bool:
        """Offer request ``rid`` at ``now`` (after ``advance(now)``); False if rejected (overloaded)."""
        self.arrivals += 1
        if self.in_flight >= self.params.max_concurrent_requests:
            self.log.rejected[rid] = True
            return False
        self._queue.append(rid)
        if self._kind == _IDLE:
            self._start_step(now)
        elif self._kind == _DECODE:
            self._cut(now)
        return True

    def advance(self, now: float) -> None:
        """Run every step that ends at or before ``now``."""
        while self._kind != _IDLE and self._end <= now + _EPS:
            end = self._end
            self.last_step_end = end
            if self._kind == _PREFILL:
                self._finish_prefill(end)
            else:
                self._finish_decode(end)
            self._start_step(end)

    def take_queue(self) -> list[int]:
        """Remove and return the waiting requests (a pod killed before serving them)."""
        waiting = list(self._queue)
        self._queue.clear()
        return waiting

    # -- the engine -------------------------------------------------------------------------------

    def _cut(self, now: float) -> None:
        # A run of decode steps ends at the first step boundary after ``now``: the engine looks at
        # its queue between steps, and a step that ends at ``now`` (within ``_EPS``, as in
        # ``advance``) has already begun the next one without this request.
        done = math.floor((now - self._start + _EPS) / self._step_len) + 1
        if done < self._target_steps:
            self._target_steps = done
            self._end = self._start + done * self._step_len

    def _start_step(self, now: float) -> None:
        params = self.params
        free = params.max_batch_size - len(self._running)
        if free > 0 and self._queue:
            admitted = []
            tokens = 0
            prompt = self.log.prompt_tokens
            started = self.log.admitted
            queue = self._queue
            while free > 0 and queue:
                rid = queue.popleft()
                started[rid] = now
                admitted.append(rid)
                tokens += prompt[rid]
                free -= 1
            self._admitted = admitted
            self._kind = _PREFILL
            self._start = now
            self._end = now + params.prefill_time(tokens)
            return
        if self._running:
            batch = len(self._running)
            self._kind = _DECODE
            self._step_len = params.step_time(batch)
            self._target_steps = self._running[0][0] - self._steps
            self._start = now
            self._end = now + self._target_steps * self._step_len
            return
        self._kind = _IDLE

    def _finish_prefill(self, end: float) -> None:
        log = self.log
        for rid in self._admitted:
            log.first_token[rid] = end
            remaining = log.output_tokens[rid] - 1
            if remaining <= 0:
                log.finished[rid] = end
                self.successes += 1
            else:
                heapq.heappush(self._running, (self._steps + remaining, rid))
        self._admitted = []

    def _finish_decode(self, end: float) -> None:
        self._steps += self._target_steps
        running = self._running
        finished = self.log.finished
        while running and running[0][0] <= self._steps:
            _, rid = heapq.heappop(running)
            finished[rid] = end
            self.successes += 1
