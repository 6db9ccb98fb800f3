"""TGI request parsing, validation and response bodies."""

from __future__ import annotations

from typing import Any

import pytest

from tgi_autoscaler_dev.sim.model import Completion, GenerationRequest, InvalidRequest, ReplicaConfig
from tgi_autoscaler_dev.sim.protocol import (
    DEFAULT_MAX_NEW_TOKENS,
    DeserializeError,
    estimate_tokens,
    generate_response,
    parse_request,
    stream_event,
    validate,
)

pytestmark = pytest.mark.unit

CONFIG = ReplicaConfig(max_input_tokens=100, max_total_tokens=200)
DONE = Completion(queued_at=0.0, started_at=0.5, finished_at=1.5, generated_tokens=4, input_tokens=3)


def check(body: dict[str, Any], *, stream: bool = False) -> GenerationRequest | InvalidRequest:
    return validate(parse_request(body), CONFIG, stream=stream)


def test_parameters_default_like_tgi() -> None:
    parsed = parse_request({"inputs": "Hello"})
    assert parsed.parameters.max_new_tokens == DEFAULT_MAX_NEW_TOKENS == 100
    assert parsed.parameters.details is False
    assert parsed.stream is False


def test_compat_route_reads_the_stream_flag_but_generate_ignores_it() -> None:
    assert parse_request({"inputs": "x", "stream": True}, allow_stream_flag=True).stream is True
    assert parse_request({"inputs": "x", "stream": True}).stream is False


def test_unknown_fields_are_ignored_like_serde() -> None:
    parsed = parse_request({"inputs": "x", "parameters": {"max_new_tokens": 3, "novel": 1}, "x": 2})
    assert parsed.parameters.max_new_tokens == 3


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"input": "typo"}, "missing field `inputs`"),
        ({"inputs": 3}, "inputs: invalid type"),
        ({"inputs": "x", "parameters": {"max_new_tokens": -1}}, "max_new_tokens: invalid value"),
        ({"inputs": "x", "parameters": {"details": "yes"}}, "details: invalid type"),
        ({"inputs": "x", "parameters": {"stop": "END"}}, "parameters.stop"),
        ([1, 2], "expected struct GenerateRequest"),
    ],
)
def test_bodies_that_do_not_deserialize_are_422_with_a_message(body: Any, message: str) -> None:
    with pytest.raises(DeserializeError, match=message) as info:
        parse_request(body)
    assert info.value.status == 422
    assert str(info.value).startswith("Failed to deserialize the JSON body into the target type: ")


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"max_new_tokens": 0}, "`max_new_tokens` must be strictly positive"),
        ({"temperature": 0}, "`temperature` must be strictly positive"),
        ({"top_p": 0}, "`top_p` must be > 0.0 and < 1.0"),
        ({"top_k": 0}, "`top_k` must be strictly positive"),
        ({"repetition_penalty": -1}, "`repetition_penalty` must be strictly positive"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "`stop` supports up to 4 stop sequences. Given: 5"),
        ({"best_of": 2}, "`best_of` must be > 0 and <= 1. Given: 2"),
        ({"truncate": 101}, "`truncate` must be strictly positive and less than 100. Given: 101"),
        (
            {"max_new_tokens": 199},
            "`inputs` tokens + `max_new_tokens` must be <= 200. Given: 2 `inputs` tokens and 199 "
            "`max_new_tokens`",
        ),
    ],
)
def test_invalid_parameters_get_tgi_validation_messages(parameters: dict[str, Any], message: str) -> None:
    assert check({"inputs": "Hello", "parameters": parameters}) == InvalidRequest(message)


def test_empty_and_too_long_inputs_are_invalid() -> None:
    assert check({"inputs": ""}) == InvalidRequest("`inputs` cannot be empty")
    result = check({"inputs": "x" * 404, "parameters": {"max_new_tokens": 10}})
    assert result == InvalidRequest("`inputs` must have less than 100 tokens. Given: 101")


def test_streaming_rejects_best_of_and_decoder_input_details() -> None:
    assert check({"inputs": "x", "parameters": {"best_of": 2}}, stream=True) == InvalidRequest(
        "`best_of` != 1 is not supported when streaming tokens"
    )
    body = {"inputs": "x", "parameters": {"decoder_input_details": True}}
    assert check(body, stream=True) == InvalidRequest(
        "`decoder_input_details` == true is not supported when streaming tokens"
    )


def test_a_valid_request_carries_its_token_counts() -> None:
    assert check({"inputs": "Hello world!", "parameters": {"max_new_tokens": 7}}) == GenerationRequest(
        input_tokens=3, max_new_tokens=7
    )
    # null max_new_tokens fills the rest of max_total_tokens
    assert check({"inputs": "abcd", "parameters": {"max_new_tokens": None}}) == GenerationRequest(1, 199)


def test_input_tokens_are_estimated_at_four_characters_each() -> None:
    assert [estimate_tokens(s) for s in ("a", "abcd", "abcde", "x" * 400)] == [1, 1, 2, 100]


def test_generate_response_has_details_only_when_asked() -> None:
    plain = parse_request({"inputs": "Hi"})
    body = generate_response(plain, GenerationRequest(1, 4), DONE, token_seed=1)
    assert set(body) == {"generated_text"}
    detailed = parse_request({"inputs": "Hi", "parameters": {"details": True, "seed": 42}})
    body = generate_response(detailed, GenerationRequest(1, 4), DONE, token_seed=1)
    details = body["details"]
    assert details["finish_reason"] == "length"
    assert details["generated_tokens"] == 4
    assert details["seed"] == 42
    assert len(details["tokens"]) == 4
    assert body["generated_text"] == "".join(t["text"] for t in details["tokens"])
    assert set(details["tokens"][0]) == {"id", "text", "logprob", "special"}


def test_return_full_text_prepends_the_prompt() -> None:
    parsed = parse_request({"inputs": "Prompt:", "parameters": {"return_full_text": True}})
    body = generate_response(parsed, GenerationRequest(2, 4), DONE, token_seed=1)
    assert body["generated_text"].startswith("Prompt:")


def test_stream_events_carry_generated_text_only_on_the_last_token() -> None:
    parsed = parse_request({"inputs": "Hi", "parameters": {"details": True}})
    middle = stream_event(parsed, 2, token_seed=5, done=None)
    assert middle["index"] == 2
    assert middle["generated_text"] is None
    assert middle["details"] is None
    last = stream_event(parsed, 4, token_seed=5, done=DONE)
    assert last["generated_text"] == "".join(
        stream_event(parsed, i, 5, None)["token"]["text"] for i in range(1, 5)
    )
    assert last["details"] == {
        "finish_reason": "length",
        "generated_tokens": 4,
        "seed": None,
        "input_length": 3,
    }
