"""What one replica can do and how long a new one takes to serve: the numbers behind every replay.

Defaults describe a 7-8B model (Llama-3.1-8B-Instruct, BF16) on one NVIDIA A100 with vLLM or TGI,
from published measurements:

- decode: about 75 tokens/s for a lone sequence (13.3 ms per step) and 6.6x that throughput at a
  concurrency of 8 (J. Musgrave, "vLLM throughput-latency sweep on NVIDIA A100", Llama-3.1-8B,
  1024-token prompts, vLLM 0.23, 2026). A step over ``b`` sequences is modelled as
  ``decode_step_s * (1 + batch_slowdown * (b - 1))``; 0.031 reproduces the 6.6x at 8 and gives
  about 1,600 tokens/s at 64, in line with the 1.6-3.4k tokens/s published for 7-8B models on one
  A100 under load;
- prefill: 0.1 ms per prompt token plus 5 ms per step, i.e. about 10k prompt tokens/s: an 8B model
  needs ~16 GFLOP per token and an A100 delivers ~150 TFLOPS at the 50 % utilisation prefill reaches;
- batch: at most 64 running sequences, where decode still runs at ~25 tokens/s per user, a usual
  ``max_batch_size``/``max_num_seqs`` choice for interactive chat (the engines' own defaults are
  larger and let inter-token latency grow instead);
- cold start (scale-up to Ready): lognormal, median 90 s, 90 % within about 60-135 s: scheduling on
  a warm node, the image already cached, 16 GB of weights from a node-local cache and the engine's
  warm-up (CUDA graphs). Node provisioning adds minutes: calibrate it from your cluster
  (``backtest --calibrate``) rather than trusting this default.

Everything can be changed, and ``backtest --calibrate`` fits the decode and cold-start numbers from
a service's own Prometheus history.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_COLD_START", "DEFAULT_SERVER", "ColdStart", "ParamsError", "ServerParams"]


class ParamsError(ValueError):
    """A parameter that does not describe a server; the message names it and its value."""


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ParamsError(f"{name}: must be > 0 (got {value!r})")


def _non_negative(name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ParamsError(f"{name}: must be >= 0 (got {value!r})")


@dataclass(frozen=True, slots=True)
class ServerParams:
    """One replica's continuous batching: limits and step times (names follow the engines' flags)."""

    max_batch_size: int = 64
    max_concurrent_requests: int = 1024
    decode_step_s: float = 0.0133
    batch_slowdown: float = 0.031
    prefill_s_per_token: float = 0.0001
    prefill_overhead_s: float = 0.005

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_concurrent_requests"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParamsError(f"{name}: must be an integer >= 1 (got {value!r})")
        _positive("decode_step_s", self.decode_step_s)
        _non_negative("batch_slowdown", self.batch_slowdown)
        _non_negative("prefill_s_per_token", self.prefill_s_per_token)
        _non_negative("prefill_overhead_s", self.prefill_overhead_s)

    def step_time(self, batch: int) -> float:
        """Seconds of one decode step over ``batch`` running sequences."""
        return self.decode_step_s * (1.0 + self.batch_slowdown * (max(batch, 1) - 1))

    def prefill_time(self, prompt_tokens: int) -> float:
        """Seconds of one prefill step over prompts totalling ``prompt_tokens``."""
        return self.prefill_overhead_s + self.prefill_s_per_token * prompt_tokens

    def capacity_rps(self, prompt_tokens: float, output_tokens: float, batch: int | None = None) -> float:
        """Sustained requests/s at a full batch for requests of the given mean sizes.

        A slot is held for ``output_tokens - 1`` decode steps; every request also costs one prefill
        of its prompt, during which the whole batch waits (TGI pauses decoding for a prefill). With
        ``n`` requests per second the replica spends ``n * prefill`` of each second prefilling and
        the rest decoding ``batch`` sequences, which gives ``n`` in closed form.
        """
        b = self.max_batch_size if batch is None else batch
        if b < 1 or output_tokens < 1 or prompt_tokens < 0:
            raise ParamsError("capacity_rps: need batch >= 1, output_tokens >= 1, prompt_tokens >= 0")
        decode = max(output_tokens - 1.0, 0.0) * self.step_time(b)
        # Prefills of several arrivals share a step; count each prompt's token cost plus a
        # share of the overhead (one step per arrival is the pessimistic bound used here).
        prefill = self.prefill_time(0) + self.prefill_s_per_token * prompt_tokens
        if decode == 0:
            return 1.0 / prefill if prefill > 0 else math.inf
        return b / (decode + b * prefill)


@dataclass(frozen=True, slots=True)
class ColdStart:
    """Seconds from the HPA asking for a pod until it is Ready: lognormal, clipped to a range."""

    median_s: float = 90.0
    sigma: float = 0.25
    min_s: float = 0.0
    max_s: float = 1800.0

    def __post_init__(self) -> None:
        _non_negative("coldStart.median", self.median_s)
        _non_negative("coldStart.sigma", self.sigma)
        _non_negative("coldStart.min", self.min_s)
        if self.max_s < self.min_s:
            raise ParamsError(f"coldStart.max: must be >= min ({self.max_s} < {self.min_s})")

    def sample(self, rng: random.Random) -> float:
        """One pod's start time; deterministic for a seeded ``rng``."""
        if self.median_s == 0:
            return self.min_s
        value = self.median_s if self.sigma == 0 else rng.lognormvariate(math.log(self.median_s), self.sigma)
        return min(max(value, self.min_s), self.max_s)

    @property
    def p95_s(self) -> float:
        """The 95th percentile (before clipping): what a scale-up has to wait for in a bad case."""
        return min(max(self.median_s * math.exp(1.645 * self.sigma), self.min_s), self.max_s)


DEFAULT_SERVER: Final = ServerParams()
DEFAULT_COLD_START: Final = ColdStart()
