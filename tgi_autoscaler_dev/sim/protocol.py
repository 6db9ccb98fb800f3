"""TGI's HTTP request and response bodies: parsing, validation and fake token text (pure).

The simulator must be a drop-in target for real TGI clients (``huggingface_hub``'s
``InferenceClient``, ``text-generation``), so field names, defaults, validation messages and error
bodies follow the router (``router/src/lib.rs``, ``validation.rs``, ``server.rs``). No tokenizer is
loaded: the input length in tokens is estimated as one token per four characters.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tgi_autoscaler_dev.sim.model import Completion, GenerationRequest, InvalidRequest, ReplicaConfig

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "DeserializeError",
    "GenerateParameters",
    "ParsedRequest",
    "error_body",
    "estimate_tokens",
    "generate_response",
    "generated_text",
    "parse_request",
    "stream_event",
    "timing_headers",
    "token_at",
    "validate",
]

# TGI's serde default when ``max_new_tokens`` is absent from ``parameters``.
DEFAULT_MAX_NEW_TOKENS = 100

_VOCABULARY = (
    " the", " queue", " scales", " with", " load", " and", " every", " replica", " answers",
    " a", " token", " at", " its", " own", " pace", ".", " Deep", " learning", " is", " fun",
)  # fmt: skip


class DeserializeError(ValueError):
    """The body is not a GenerateRequest (axum's Json extractor rejects it before the handler)."""

    def __init__(self, message: str, *, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class GenerateParameters:
    best_of: int | None = None
    temperature: float | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    typical_p: float | None = None
    do_sample: bool = False
    max_new_tokens: int | None = DEFAULT_MAX_NEW_TOKENS
    return_full_text: bool | None = None
    stop: tuple[str, ...] = ()
    truncate: int | None = None
    watermark: bool = False
    details: bool = False
    decoder_input_details: bool = False
    seed: int | None = None
    top_n_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    inputs: str
    parameters: GenerateParameters = field(default_factory=GenerateParameters)
    stream: bool = False


def _field(obj: Mapping[str, Any], name: str, kinds: tuple[type, ...], *, nullable: bool) -> Any:
    value = obj.get(name)
    if value is None:
        if name in obj and not nullable:
            raise DeserializeError(f"{name}: invalid type: null, expected {kinds[0].__name__}")
        return None
    # bool is an int in Python; JSON booleans are never numbers in serde.
    if isinstance(value, bool) and bool not in kinds:
        raise DeserializeError(f"{name}: invalid type: boolean `{value}`, expected {kinds[0].__name__}")
    if not isinstance(value, kinds):
        raise DeserializeError(
            f"{name}: invalid type: {type(value).__name__} {value!r}, expected {kinds[0].__name__}"
        )
    return value


def _uint(obj: Mapping[str, Any], name: str) -> int | None:
    value = _field(obj, name, (int,), nullable=True)
    if value is not None and value < 0:
        raise DeserializeError(f"{name}: invalid value: integer `{value}`, expected an unsigned integer")
    return None if value is None else int(value)


def _float(obj: Mapping[str, Any], name: str) -> float | None:
    value = _field(obj, name, (int, float), nullable=True)
    return None if value is None else float(value)


def _bool(obj: Mapping[str, Any], name: str, default: bool) -> bool:
    value = _field(obj, name, (bool,), nullable=False)
    return default if value is None else bool(value)


def parse_request(body: Any, *, allow_stream_flag: bool = False) -> ParsedRequest:
    """Deserialize a GenerateRequest (or CompatGenerateRequest when ``allow_stream_flag``)."""
    prefix = "Failed to deserialize the JSON body into the target type: "
    if not isinstance(body, dict):
        raise DeserializeError(f"{prefix}invalid type: expected struct GenerateRequest")
    try:
        if "inputs" not in body:
            raise DeserializeError("missing field `inputs`")
        inputs = _field(body, "inputs", (str,), nullable=False)
        raw = body.get("parameters")
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise DeserializeError("parameters: invalid type, expected struct GenerateParameters")
        stop = raw.get("stop")
        if stop is None:
            stop = []
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise DeserializeError("parameters.stop: invalid type, expected a sequence of strings")
        max_new_tokens = _uint(raw, "max_new_tokens") if "max_new_tokens" in raw else DEFAULT_MAX_NEW_TOKENS
        params = GenerateParameters(
            best_of=_uint(raw, "best_of"),
            temperature=_float(raw, "temperature"),
            repetition_penalty=_float(raw, "repetition_penalty"),
            frequency_penalty=_float(raw, "frequency_penalty"),
            top_k=_field(raw, "top_k", (int,), nullable=True),
            top_p=_float(raw, "top_p"),
            typical_p=_float(raw, "typical_p"),
            do_sample=_bool(raw, "do_sample", False),
            max_new_tokens=max_new_tokens,
            return_full_text=_field(raw, "return_full_text", (bool,), nullable=True),
            stop=tuple(stop),
            truncate=_uint(raw, "truncate"),
            watermark=_bool(raw, "watermark", False),
            details=_bool(raw, "details", False),
            decoder_input_details=_bool(raw, "decoder_input_details", False),
            seed=_uint(raw, "seed"),
            top_n_tokens=_uint(raw, "top_n_tokens"),
        )
        stream = _bool(body, "stream", False) if allow_stream_flag else False
    except DeserializeError as exc:
        raise DeserializeError(f"{prefix}{exc}") from None
    return ParsedRequest(inputs=inputs, parameters=params, stream=stream)


def estimate_tokens(text: str) -> int:
    """Token count of ``text`` without a tokenizer: ~4 characters per token, at least 1."""
    return max(1, math.ceil(len(text) / 4))


def validate(
    request: ParsedRequest, config: ReplicaConfig, *, stream: bool
) -> GenerationRequest | InvalidRequest:
    """TGI's request validation, in the router's order, with its messages."""
    p = request.parameters
    problems: list[str] = []
    if p.best_of is not None and p.best_of != 1:
        if stream:
            problems.append("`best_of` != 1 is not supported when streaming tokens")
        elif p.best_of == 0 or p.best_of > config.max_best_of:
            problems.append(f"`best_of` must be > 0 and <= {config.max_best_of}. Given: {p.best_of}")
    if stream and p.decoder_input_details:
        problems.append("`decoder_input_details` == true is not supported when streaming tokens")
    if p.temperature is not None and p.temperature <= 0:
        problems.append("`temperature` must be strictly positive")
    if p.repetition_penalty is not None and p.repetition_penalty <= 0:
        problems.append("`repetition_penalty` must be strictly positive")
    if p.frequency_penalty is not None and not -2.0 <= p.frequency_penalty <= 2.0:
        problems.append("`frequency_penalty` must be >= -2.0 and <= 2.0")
    if p.top_p is not None and not 0.0 < p.top_p <= 1.0:
        problems.append("`top_p` must be > 0.0 and < 1.0")
    if p.typical_p is not None and not 0.0 < p.typical_p <= 1.0:
        problems.append("`typical_p` must be > 0.0 and < 1.0")
    if p.top_k is not None and p.top_k <= 0:
        problems.append("`top_k` must be strictly positive")
    if p.max_new_tokens == 0:
        problems.append("`max_new_tokens` must be strictly positive")
    if len(p.stop) > config.max_stop_sequences:
        problems.append(
            f"`stop` supports up to {config.max_stop_sequences} stop sequences. Given: {len(p.stop)}"
        )
    if p.top_n_tokens is not None and p.top_n_tokens > config.max_top_n_tokens:
        problems.append(
            f"`top_n_tokens` must be >= 0 and <= {config.max_top_n_tokens}. Given: {p.top_n_tokens}"
        )
    if problems:
        return InvalidRequest(problems[0])

    if not request.inputs:
        return InvalidRequest("`inputs` cannot be empty")
    input_tokens = estimate_tokens(request.inputs)
    if p.truncate is not None:
        if p.truncate == 0 or p.truncate > config.max_input_tokens:
            return InvalidRequest(
                f"`truncate` must be strictly positive and less than {config.max_input_tokens}. "
                f"Given: {p.truncate}"
            )
        input_tokens = min(input_tokens, p.truncate)
    max_new_tokens = (
        p.max_new_tokens if p.max_new_tokens is not None else max(config.max_total_tokens - input_tokens, 1)
    )
    if input_tokens + max_new_tokens > config.max_total_tokens:
        return InvalidRequest(
            f"`inputs` tokens + `max_new_tokens` must be <= {config.max_total_tokens}. "
            f"Given: {input_tokens} `inputs` tokens and {max_new_tokens} `max_new_tokens`"
        )
    if input_tokens > config.max_input_tokens:
        return InvalidRequest(
            f"`inputs` must have less than {config.max_input_tokens} tokens. Given: {input_tokens}"
        )
    return GenerationRequest(input_tokens=input_tokens, max_new_tokens=max_new_tokens)


def token_at(seed: int, index: int) -> dict[str, Any]:
    """The ``index``-th (1-based) fake token of a request; deterministic for a given seed."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=4).digest()
    word = int.from_bytes(digest, "big")
    text = _VOCABULARY[word % len(_VOCABULARY)]
    return {
        "id": 1000 + word % 31000,
        "text": text,
        "logprob": -round((word % 1000) / 1000.0, 4),
        "special": False,
    }


def generated_text(seed: int, tokens: int) -> str:
    return "".join(token_at(seed, i)["text"] for i in range(1, tokens + 1))


def _prefill(inputs: str, input_tokens: int) -> list[dict[str, Any]]:
    size = max(1, math.ceil(len(inputs) / input_tokens))
    pieces = [inputs[i * size : (i + 1) * size] for i in range(input_tokens)]
    return [
        {"id": 100 + i, "text": piece, "logprob": None if i == 0 else -1.0} for i, piece in enumerate(pieces)
    ]


def generate_response(
    request: ParsedRequest, valid: GenerationRequest, done: Completion, token_seed: int
) -> dict[str, Any]:
    """Body of a successful ``POST /generate``."""
    p = request.parameters
    text = generated_text(token_seed, done.generated_tokens)
    if p.return_full_text:
        text = request.inputs + text
    body: dict[str, Any] = {"generated_text": text}
    if p.details or p.decoder_input_details:
        body["details"] = {
            "finish_reason": "length",
            "generated_tokens": done.generated_tokens,
            "seed": p.seed,
            "prefill": _prefill(request.inputs, valid.input_tokens) if p.decoder_input_details else [],
            "tokens": [token_at(token_seed, i) for i in range(1, done.generated_tokens + 1)],
        }
    return body


def stream_event(
    request: ParsedRequest, index: int, token_seed: int, done: Completion | None
) -> dict[str, Any]:
    """One ``StreamResponse``; the last one carries ``generated_text`` (and ``details``)."""
    p = request.parameters
    event: dict[str, Any] = {
        "index": index,
        "token": token_at(token_seed, index),
        "generated_text": None,
        "details": None,
    }
    if done is not None:
        text = generated_text(token_seed, done.generated_tokens)
        event["generated_text"] = request.inputs + text if p.return_full_text else text
        if p.details:
            event["details"] = {
                "finish_reason": "length",
                "generated_tokens": done.generated_tokens,
                "seed": p.seed,
                "input_length": done.input_tokens,
            }
    return event


def error_body(message: str, error_type: str) -> dict[str, str]:
    """TGI's ``ErrorResponse``."""
    return {"error": message, "error_type": error_type}


def timing_headers(done: Completion, *, characters: int) -> dict[str, str]:
    """The ``x-*`` headers TGI sets on a non-streaming response (times in milliseconds)."""

    def ms(seconds: float) -> str:
        return str(int(seconds * 1000))

    return {
        "x-compute-type": "gpu+optimized",
        "x-compute-time": repr(done.total_duration),
        "x-compute-characters": str(characters),
        "x-total-time": ms(done.total_duration),
        "x-validation-time": "0",
        "x-queue-time": ms(done.queue_duration),
        "x-inference-time": ms(done.inference_duration),
        "x-time-per-token": ms(done.time_per_token),
        "x-prompt-tokens": str(done.input_tokens),
        "x-generated-tokens": str(done.generated_tokens),
    }
