"""Requests that try to hang, crash or confuse the server's guard and gate (liftdeploy.runtime).

The pure decisions are checked directly; the server's behaviour on the shared twin (the `twin`
fixture: the primary example, guidance backend, API key set): a schema whose `pattern`
backtracks catastrophically is answered within the guard's time budget while /health keeps
answering, deep JSON and oversized chunked bodies get clear 4xx answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from liftdeploy.runtime.auth import MAX_BODY_BYTES
from liftdeploy.runtime.guard import (
    VALIDATION_BUDGET_S,
    VERDICT_HEADER,
    _true,
    _withheld_message,
    judge_answer,
)
from liftdeploy.twin.local import LocalTwin

# Catastrophic backtracking in Python's and `regex`'s engines: 27 characters force the
# `a{26}!` branch, after 2^26 ways of failing the first one.
REDOS_SCHEMA = {
    "type": "object",
    "properties": {
        "s": {
            "type": "string",
            "pattern": "^(?:(a|a)+b{40}|a+!)$",
            "minLength": 27,
            "maxLength": 27,
        }
    },
    "required": ["s"],
    "additionalProperties": False,
}
REDOS_ANSWER = json.dumps({"s": "a" * 26 + "!"})


def test_costly_pattern_is_unchecked_within_the_budget() -> None:
    started = time.monotonic()
    verdict = judge_answer(REDOS_ANSWER, REDOS_SCHEMA, "stop", budget_s=0.5)
    took = time.monotonic() - started
    assert verdict.kind == "unchecked" and verdict.rejected
    assert "too expensive to check" in (verdict.problem or "")
    assert took < 5, f"the budget did not stop the check ({took:.1f} s)"


def test_one_slow_keyword_on_a_large_answer_is_stopped_by_the_budget() -> None:
    """Before: uniqueItems under allOf (unseen by vLLM's xgrammar check) compared 4,000 objects
    pairwise in one keyword call for 18-40 s, past any budget, then answered "valid"."""
    # 40,000 distinct objects: even the linear check takes seconds (3 s measured here), far
    # past the 0.05 s budget on any machine; the quadratic one it replaced never finished.
    items = [{"id": i, **{f"field{k}": f"value {i} {k}" for k in range(20)}} for i in range(40_000)]
    schema = {
        "type": "object",
        "properties": {"xs": {"allOf": [{"type": "array"}, {"uniqueItems": True}]}},
    }
    started = time.monotonic()
    verdict = judge_answer(json.dumps({"xs": items}), schema, "stop", budget_s=0.05)
    took = time.monotonic() - started
    assert verdict.kind == "unchecked" and "too expensive" in (verdict.problem or "")
    assert took < 60, f"the budget did not stop uniqueItems ({took:.1f} s)"


def test_unique_items_compares_as_json_schema_does() -> None:
    unique = {"uniqueItems": True}
    distinct = (
        '[1, true, 0, false, null, "1", [1], [true], {"a": 1}, {"a": true}, {"a": 1, "b": 2}]'
    )
    assert judge_answer(distinct, unique, "stop").kind == "valid"
    for repeated in (
        "[1, 1.0]",
        '[{"a": 1, "b": [2]}, {"b": [2.0], "a": 1}]',
        "[[false], [false]]",
    ):
        verdict = judge_answer(repeated, unique, "stop")
        assert verdict.kind == "schema_violation" and "repeats" in (verdict.problem or ""), repeated


def test_additional_properties_patterns_are_bounded_by_the_budget() -> None:
    """Before: additionalProperties matched patternProperties with `re` (no deadline, and the
    GIL held meanwhile), so one answer key pinned the whole server while it backtracked."""
    schema = {
        "type": "object",
        "additionalProperties": False,
        "patternProperties": {"^(a|a)+$": {}},
    }
    started = time.monotonic()
    # 2**32 ways to backtrack: hours for an unbounded matcher, the budget for the guard's.
    verdict = judge_answer(json.dumps({"a" * 32 + "!": 1}), schema, "stop", budget_s=0.3)
    took = time.monotonic() - started
    assert verdict.kind == "unchecked"
    assert took < 60, f"the budget did not stop additionalProperties ({took:.1f} s)"
    assert judge_answer('{"aa": 1}', schema, "stop").kind == "valid"
    refused = judge_answer('{"aa": 1, "b": 2}', schema, "stop")
    assert refused.kind == "schema_violation" and "'b'" in (refused.problem or "")


def test_schemas_and_answers_that_recurse_are_verdicts_not_crashes() -> None:
    self_ref = judge_answer('{"a": 1}', {"$ref": "#"}, "stop", budget_s=5)
    assert self_ref.kind == "unchecked" and "cannot evaluate" in (self_ref.problem or "")
    deep = judge_answer("[" * 100_000 + "]" * 100_000, True, "stop", budget_s=5)
    assert deep.kind == "invalid_json"
    recursive_but_fine = {"type": "object", "properties": {"child": {"$ref": "#"}}}
    assert judge_answer('{"child": {"child": {}}}', recursive_but_fine, "stop").kind == "valid"


def test_request_flags_read_as_vllm_reads_them() -> None:
    assert [_true(v) for v in ("false", "False", "0", "no", "off", "", False, None, 0)] == [
        False
    ] * 9
    assert [_true(v) for v in ("true", "1", "yes", "on", True, 1)] == [True] * 6


def test_withheld_message_gives_the_step_that_helps() -> None:
    unchecked = _withheld_message(["choice 0: the schema is too expensive"], True, "guidance")
    assert "retry will not help" in unchecked and "retry the request" not in unchecked
    on_guidance = _withheld_message(["choice 0: breaks"], False, "guidance")
    assert "retry the request" in on_guidance and "guidance backend" not in on_guidance
    on_xgrammar = _withheld_message(["choice 0: breaks"], False, "xgrammar")
    assert "structured_output_backend: guidance" in on_xgrammar


def _headers(twin: LocalTwin) -> dict[str, str]:
    return {"Authorization": f"Bearer {twin.api_key}"}


def _chat(twin: LocalTwin, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "model": twin.model_name,
        "messages": [{"role": "user", "content": "Answer in JSON."}],
        "max_tokens": 40,
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
        **extra,
    }


@pytest.mark.twin
def test_costly_schema_never_stalls_health(twin: LocalTwin) -> None:
    """Before: validating on the event loop froze every request for about 28 s."""
    with httpx.Client(base_url=twin.url, headers=_headers(twin), timeout=120) as http:

        def constrained() -> httpx.Response:
            return http.post("/v1/chat/completions", json=_chat(twin, REDOS_SCHEMA))

        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(constrained)
            latencies = []
            while not future.done():
                started = time.monotonic()
                assert http.get("/health", timeout=30).status_code == 200
                latencies.append(time.monotonic() - started)
                time.sleep(0.1)
            reply = future.result()
    assert reply.status_code == 502, reply.text
    assert reply.headers[VERDICT_HEADER.decode()] == "unchecked"
    message = reply.json()["error"]["message"]
    assert "too expensive to check" in message and "retry will not help" in message
    assert "guidance backend" not in message  # the twin already runs guidance
    assert latencies and max(latencies) < VALIDATION_BUDGET_S, latencies


@pytest.mark.twin
def test_deep_json_body_is_a_clear_400(twin: LocalTwin) -> None:
    body = (
        json.dumps(_chat(twin, {"type": "object"}))[:-1]
        + ', "x": '
        + "[" * 50_000
        + "]" * 50_000
        + "}"
    )
    reply = httpx.post(
        f"{twin.url}/v1/chat/completions",
        content=body,
        timeout=60,
        headers={**_headers(twin), "content-type": "application/json"},
    )
    assert reply.status_code == 400, reply.text
    assert "nests JSON too deeply" in reply.json()["error"]["message"]


@pytest.mark.twin
def test_stream_false_as_a_string_is_not_refused(twin: LocalTwin) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}},
        "required": ["n"],
        "additionalProperties": False,
    }
    reply = httpx.post(
        f"{twin.url}/v1/chat/completions",
        headers=_headers(twin),
        timeout=120,
        json=_chat(twin, schema, stream="false"),
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers[VERDICT_HEADER.decode()] in ("valid", "repaired", "incomplete")


@pytest.mark.twin
def test_chunked_body_over_the_cap_is_413(twin: LocalTwin) -> None:
    def chunks() -> Iterator[bytes]:
        piece = b" " * (1024 * 1024)
        yield b'{"model": "x", "messages": []' + b","
        for _ in range(MAX_BODY_BYTES // len(piece) + 2):
            yield piece
        yield b'"pad": 1}'

    reply = httpx.post(
        f"{twin.url}/v1/chat/completions",
        content=chunks(),
        timeout=120,
        headers={**_headers(twin), "content-type": "application/json"},
    )
    assert reply.status_code == 413, reply.text
    assert "too large" in reply.json()["error"]["message"]
