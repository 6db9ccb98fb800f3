"""Discrete-event queueing model of one TGI replica (continuous batching), with an injected clock.

The model is what makes ``tgi_queue_size`` behave like the real thing, so the autoscaler can be
tested without GPUs. It is pure: callers pass the current time to every method, so unit tests drive
it with a fake clock and the HTTP server drives it with ``time.monotonic``.

How a replica works here (a simplification of TGI's router + batcher, documented so numbers can be
reasoned about):

* At most ``max_concurrent_requests`` requests are in flight (waiting + running). One more is
  rejected at once: TGI's "Model is overloaded" (HTTP 429), counted as
  ``tgi_request_failure{err="overloaded"}``.
* Accepted requests wait in a FIFO queue; ``tgi_queue_size`` is its length.
* The engine runs one *step* at a time. At every step boundary, free batch slots
  (``max_batch_size`` minus running sequences) are filled from the queue; if any were filled the
  step is a **prefill** of the new sequences (``prefill_time_s``; it yields their first token and,
  as in TGI, pauses the running ones), otherwise it is a **decode** step producing one token for
  every running sequence.
* A decode step over ``b`` sequences takes ``(1 / token_rate) * (1 + batch_slowdown * (b - 1))``:
  ``token_rate`` is the per-sequence speed of a lone sequence, and each extra sequence in the batch
  slows every sequence a little (memory-bandwidth bound decoding). A prefill takes
  ``prefill_time_s + prefill_s_per_token * prompt tokens``. Both come from the service model
  (``tgi_autoscaler.servicemodel.ServerParams``, what ``backtest`` replays), so a simulated pod and
  a replayed one agree step for step; ``ReplicaConfig.server_params`` is the translation.
* A request generates exactly ``max_new_tokens`` tokens (finish reason ``length``).

Simplifications: no token budget (``max_batch_total_tokens``), no ``waiting_served_ratio``
hysteresis, validation takes no simulated time.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from tgi_autoscaler.servicemodel.params import ServerParams
from tgi_autoscaler_dev.sim.families import Recorder, RequestTimes, recorders
from tgi_autoscaler_dev.sim.stats import ReplicaStats

__all__ = [
    "Accepted",
    "Completion",
    "GenerationRequest",
    "InvalidRequest",
    "Rejected",
    "ReplicaConfig",
    "ReplicaModel",
    "Snapshot",
    "Submission",
    "TokenEvent",
]


@dataclass(frozen=True, slots=True)
class ReplicaConfig:
    """Capacity and limits of one simulated replica (names follow TGI's launcher flags)."""

    max_batch_size: int = 8
    token_rate: float = 50.0
    batch_slowdown: float = 0.02
    prefill_time_s: float = 0.02
    prefill_s_per_token: float = 0.0
    max_concurrent_requests: int = 128
    max_input_tokens: int = 1024
    max_total_tokens: int = 2048
    max_stop_sequences: int = 4
    max_top_n_tokens: int = 5
    max_best_of: int = 1

    def __post_init__(self) -> None:
        positive_ints = (
            "max_batch_size",
            "max_concurrent_requests",
            "max_input_tokens",
            "max_total_tokens",
            "max_best_of",
        )
        for name in positive_ints:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ReplicaConfig.{name}: must be an integer >= 1, got {value!r}")
        if not (math.isfinite(self.token_rate) and self.token_rate > 0):
            raise ValueError(f"ReplicaConfig.token_rate: must be > 0 tokens/s, got {self.token_rate!r}")
        if not (math.isfinite(self.batch_slowdown) and self.batch_slowdown >= 0):
            raise ValueError(f"ReplicaConfig.batch_slowdown: must be >= 0, got {self.batch_slowdown!r}")
        if not (math.isfinite(self.prefill_time_s) and self.prefill_time_s >= 0):
            raise ValueError(f"ReplicaConfig.prefill_time_s: must be >= 0, got {self.prefill_time_s!r}")
        if self.max_input_tokens >= self.max_total_tokens:
            raise ValueError(
                "ReplicaConfig.max_input_tokens: must be < max_total_tokens "
                f"({self.max_input_tokens} >= {self.max_total_tokens})"
            )
        for name in ("max_stop_sequences", "max_top_n_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"ReplicaConfig.{name}: must be an integer >= 0, got {value!r}")

    def server_params(self) -> ServerParams:
        """The same replica in the service model's terms (what ``backtest`` replays)."""
        return ServerParams(
            max_batch_size=self.max_batch_size,
            max_concurrent_requests=self.max_concurrent_requests,
            decode_step_s=1.0 / self.token_rate,
            batch_slowdown=self.batch_slowdown,
            prefill_s_per_token=self.prefill_s_per_token,
            prefill_overhead_s=self.prefill_time_s,
        )

    def step_time(self, batch_size: int) -> float:
        """Seconds one decode step takes with ``batch_size`` running sequences."""
        return self.server_params().step_time(batch_size)

    def capacity_rps(self, new_tokens: int) -> float:
        """Approximate saturated throughput (requests/s) for requests of ``new_tokens`` tokens.

        A full batch turns over every ``prefill + (new_tokens - 1) decode steps``; used to size loads in
        tests and the demo, not a guarantee (prefills of staggered arrivals cost a little more).
        """
        if new_tokens < 1:
            raise ValueError(f"new_tokens: must be >= 1, got {new_tokens}")
        turnover = self.prefill_time_s + (new_tokens - 1) * self.step_time(self.max_batch_size)
        return self.max_batch_size / turnover if turnover > 0 else math.inf


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A request that passed validation."""

    input_tokens: int
    max_new_tokens: int


@dataclass(frozen=True, slots=True)
class InvalidRequest:
    """A request that failed validation; ``message`` is TGI's ValidationError text."""

    message: str


@dataclass(frozen=True, slots=True)
class Accepted:
    request_id: int


@dataclass(frozen=True, slots=True)
class Rejected:
    error: Literal["overloaded", "validation"]
    message: str


Submission = Accepted | Rejected


@dataclass(frozen=True, slots=True)
class Completion:
    """Timings of a finished request, as TGI computes them for its histograms and headers."""

    queued_at: float
    started_at: float
    finished_at: float
    generated_tokens: int
    input_tokens: int

    @property
    def total_duration(self) -> float:
        return self.finished_at - self.queued_at

    @property
    def queue_duration(self) -> float:
        return self.started_at - self.queued_at

    @property
    def inference_duration(self) -> float:
        return self.finished_at - self.started_at

    @property
    def time_per_token(self) -> float:
        return self.inference_duration / self.generated_tokens


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """One generated token; ``index`` is 1-based like TGI's ``StreamResponse.index``."""

    request_id: int
    index: int
    at: float
    completion: Completion | None = None

    @property
    def last(self) -> bool:
        return self.completion is not None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Instantaneous state, read by the metrics collector and status lines."""

    time: float
    queue_size: int
    batch_size: int
    batch_max_tokens: int
    in_flight: int


@dataclass(slots=True)
class _Entry:
    request_id: int
    input_tokens: int
    max_new_tokens: int
    queued_at: float
    started_at: float = 0.0
    generated: int = 0
    first_token_at: float = 0.0
    last_token_at: float = 0.0


@dataclass(frozen=True, slots=True)
class _Step:
    method: Literal["prefill", "decode"]
    started_at: float
    ends_at: float
    members: tuple[int, ...]


@dataclass(slots=True)
class ReplicaModel:
    """The queue, the running batch and the metrics of one replica."""

    config: ReplicaConfig
    now: float
    # Which other engines' families to record besides TGI's (a server impersonating one engine
    # records only its own; the default keeps them all, for tests reading several).
    record_for: tuple[str, ...] = ("vllm", "sglang")
    stats: ReplicaStats = field(init=False)
    # The same requests as vLLM's and SGLang's families count them, by engine name.
    engines: dict[str, Recorder] = field(init=False)
    _queue: deque[_Entry] = field(init=False, default_factory=deque)
    _running: dict[int, _Entry] = field(init=False, default_factory=dict)
    _step: _Step | None = field(init=False, default=None)
    _outbox: list[TokenEvent] = field(init=False, default_factory=list)
    _next_id: int = field(init=False, default=1)
    _params: ServerParams = field(init=False)

    def __post_init__(self) -> None:
        self._params = self.config.server_params()
        self.stats = ReplicaStats.for_limits(
            max_input_tokens=self.config.max_input_tokens,
            max_total_tokens=self.config.max_total_tokens,
        )
        every = recorders(max_model_len=self.config.max_total_tokens)
        unknown = sorted(set(self.record_for) - set(every))
        if unknown:
            raise ValueError(f"record_for: no families for {unknown}; known: {', '.join(every)}")
        self.engines = {name: every[name] for name in self.record_for}

    # -- public API -------------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._queue) + len(self._running)

    def submit(self, request: GenerationRequest | InvalidRequest, now: float) -> Submission:
        """Admit, queue or reject a request at time ``now`` (TGI order: permit, then validation)."""
        self._advance(now)
        self.stats.inc("tgi_request_count")
        if self.in_flight >= self.config.max_concurrent_requests:
            self.stats.inc("tgi_request_failure", {"err": "overloaded"})
            self._each(lambda r: r.refused())
            return Rejected("overloaded", "Model is overloaded")
        if isinstance(request, InvalidRequest):
            self.stats.inc("tgi_request_failure", {"err": "validation"})
            self._each(lambda r: r.refused())
            return Rejected("validation", f"Input validation error: {request.message}")
        if request.max_new_tokens < 1 or request.input_tokens < 1:
            raise ValueError(f"unvalidated request reached the model: {request}")
        self.stats.observe("tgi_request_validation_duration", 0.0)
        self.stats.observe("tgi_request_input_length", float(request.input_tokens))
        self.stats.observe("tgi_request_max_new_tokens", float(request.max_new_tokens))
        entry = _Entry(self._next_id, request.input_tokens, request.max_new_tokens, queued_at=self.now)
        self._next_id += 1
        self._queue.append(entry)
        prompt, new = request.input_tokens, request.max_new_tokens
        self._each(lambda r: r.admitted(prompt_tokens=prompt, max_new_tokens=new))
        if self._step is None:
            self._start_step()
        return Accepted(entry.request_id)

    def cancel(self, request_id: int, now: float) -> bool:
        """Drop a request whose client went away (TGI counts it as ``err="dropped"``)."""
        self._advance(now)
        dropped = self._running.pop(request_id, None)
        if dropped is None:
            for entry in self._queue:
                if entry.request_id == request_id:
                    self._queue.remove(entry)
                    dropped = entry
                    break
        if dropped is not None:
            self.stats.inc("tgi_request_failure", {"err": "dropped"})
            gone = dropped
            self._each(lambda r: r.aborted(prompt_tokens=gone.input_tokens, generated=gone.generated))
        return dropped is not None

    def poll(self, now: float) -> list[TokenEvent]:
        """Advance the simulation to ``now`` and return every token produced since the last poll."""
        self._advance(now)
        events, self._outbox = self._outbox, []
        return events

    def next_deadline(self) -> float | None:
        """When the current step ends (the next time ``poll`` can return something), if busy."""
        return None if self._step is None else self._step.ends_at

    def snapshot(self) -> Snapshot:
        return Snapshot(
            time=self.now,
            queue_size=len(self._queue),
            batch_size=len(self._running),
            batch_max_tokens=sum(e.input_tokens + e.max_new_tokens for e in self._running.values()),
            in_flight=self.in_flight,
        )

    # -- simulation -------------------------------------------------------------------------------

    def _each(self, hook: Callable[[Recorder], None]) -> None:
        for recorder in self.engines.values():
            hook(recorder)

    def _advance(self, now: float) -> None:
        # Clocks read by different coroutines can be a hair apart; time never goes backwards here.
        now = max(now, self.now)
        while self._step is not None and self._step.ends_at <= now:
            step = self._step
            self._step = None
            self.now = step.ends_at
            self._complete(step)
            self._start_step()
        self.now = now

    def _start_step(self) -> None:
        free = self.config.max_batch_size - len(self._running)
        admitted: list[int] = []
        while free > 0 and self._queue:
            entry = self._queue.popleft()
            entry.started_at = self.now
            self._scheduled(entry.queued_at)
            self._running[entry.request_id] = entry
            admitted.append(entry.request_id)
            free -= 1
        if admitted:
            self.stats.observe("tgi_batch_next_size", float(len(admitted)))
            tokens = sum(self._running[rid].input_tokens for rid in admitted)
            duration = self._params.prefill_time(tokens)
            self._step = _Step("prefill", self.now, self.now + duration, tuple(admitted))
        elif self._running:
            duration = self._params.step_time(len(self._running))
            self._step = _Step("decode", self.now, self.now + duration, tuple(self._running))
        else:
            return
        self.stats.inc("tgi_batch_inference_count", {"method": self._step.method})

    def _complete(self, step: _Step) -> None:
        if step.method == "prefill":
            tokens = sum(self._running[rid].input_tokens for rid in step.members if rid in self._running)
        else:
            tokens = len(step.members)
        for request_id in step.members:
            entry = self._running.get(request_id)
            if entry is None:  # cancelled while the step ran
                continue
            entry.generated += 1
            self._token(entry, step.ends_at)
            completion: Completion | None = None
            if entry.generated >= entry.max_new_tokens:
                completion = self._finish(entry, step.ends_at)
            self._outbox.append(TokenEvent(request_id, entry.generated, step.ends_at, completion))
        method = {"method": step.method}
        duration = step.ends_at - step.started_at
        self.stats.inc("tgi_batch_inference_success", method)
        self.stats.observe("tgi_batch_inference_duration", duration, method)
        self.stats.observe("tgi_batch_forward_duration", duration, method)
        self._each(lambda r: r.step(tokens=max(1, tokens)))

    def _scheduled(self, queued_at: float) -> None:
        at = self.now
        self._each(lambda r: r.scheduled(queued_at=queued_at, at=at))

    def _token(self, entry: _Entry, at: float) -> None:
        if entry.generated == 1:
            entry.first_token_at = at
            queued, prompt = entry.queued_at, entry.input_tokens
            self._each(lambda r: r.first_token(queued_at=queued, at=at, prompt_tokens=prompt))
        else:
            interval = at - entry.last_token_at
            self._each(lambda r: r.token(interval=interval))
        entry.last_token_at = at

    def _finish(self, entry: _Entry, at: float) -> Completion:
        del self._running[entry.request_id]
        done = Completion(
            queued_at=entry.queued_at,
            started_at=entry.started_at,
            finished_at=at,
            generated_tokens=entry.generated,
            input_tokens=entry.input_tokens,
        )
        self.stats.inc("tgi_request_success")
        self.stats.observe("tgi_request_duration", done.total_duration)
        self.stats.observe("tgi_request_queue_duration", done.queue_duration)
        self.stats.observe("tgi_request_inference_duration", done.inference_duration)
        self.stats.observe("tgi_request_mean_time_per_token_duration", done.time_per_token)
        self.stats.observe("tgi_request_generated_tokens", float(done.generated_tokens))
        times = RequestTimes(entry.queued_at, entry.started_at, entry.first_token_at, at)
        self._each(
            lambda r: r.finished(
                times=times,
                prompt_tokens=entry.input_tokens,
                generated=entry.generated,
                max_new_tokens=entry.max_new_tokens,
            )
        )
        return done
