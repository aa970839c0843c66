"""Schemas llguidance refuses, served anyway on the twin (guidance backend): an exact rewrite,
or a relaxed grammar with the guard judging every answer against the schema the client sent and
resampling the ones that break it; never an invalid answer returned."""

from __future__ import annotations

import json
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from liftdeploy.runtime.guard import (
    AnswerVerdict,
    _truncation_hint,
    parse_strict,
    unbounded_part,
    validator_for,
)
from liftdeploy.twin.local import LocalTwin

# Three distinct items out of three values: a random model repeats one most of the time, and
# llguidance's lenient grammar ignores uniqueItems, so the guard has work to do.
UNIQUE_TRIPLE = {
    "type": "array",
    "items": {"enum": [1, 2, 3]},
    "minItems": 3,
    "maxItems": 3,
    "uniqueItems": True,
}
DEPENDENCIES = {
    "type": "object",
    "properties": {"a": {"type": "integer", "maximum": 9}, "b": {"type": "integer", "maximum": 9}},
    "required": ["a"],
    "additionalProperties": False,
    "dependencies": {"a": ["b"]},
}
NOT_DISJOINT = {
    "type": "object",
    "patternProperties": {"name": {"type": "string"}, "tags": {"type": "integer"}},
}


def _metric(text: str, event: str) -> float:
    match = re.search(
        rf'liftdeploy_structured_grammar_total\{{event="{event}"\}} ([0-9.e+]+)', text
    )
    return float(match.group(1)) if match else 0.0


def _ask(
    http: httpx.Client, twin: LocalTwin, schema: Any, seed: int, **extra: Any
) -> httpx.Response:
    return http.post(
        "/v1/chat/completions",
        json={
            "model": twin.model_name,
            "messages": [{"role": "user", "content": "JSON please"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "a", "schema": schema},
            },
            "seed": seed,
            "max_tokens": 40,
            **extra,
        },
    )


@pytest.mark.twin
def test_relaxed_schema_is_served_resampled_and_never_invalid(twin: LocalTwin) -> None:
    assert twin.deployment.engine.structured_output_backend == "guidance"
    with httpx.Client(
        base_url=twin.url, timeout=300, headers={"Authorization": f"Bearer {twin.api_key}"}
    ) as http:
        before = http.get("/metrics").text
        with ThreadPoolExecutor(4) as pool:
            responses = list(
                pool.map(lambda seed: _ask(http, twin, UNIQUE_TRIPLE, seed), range(12))
            )
        after = http.get("/metrics").text
    outcomes: Counter[str] = Counter()
    for response in responses:
        assert response.headers["x-liftdeploy-grammar"] == "relaxed", response.text
        attempts = int(response.headers["x-liftdeploy-attempts"])
        assert 1 <= attempts <= 3
        if response.status_code == 200:
            content = response.json()["choices"][0]["message"]["content"]
            assert validator_for(UNIQUE_TRIPLE).is_valid(parse_strict(content)), content
            outcomes[f"valid after {attempts}"] += 1
        else:
            assert response.status_code == 502, response.text
            message = response.json()["error"]["message"]
            assert attempts == 3 and "after 3 attempts" in message, message
            assert "the guard alone enforces uniqueItems" in message
            outcomes["withheld after 3"] += 1
    print(f"\n12 relaxed requests: {dict(outcomes)}")
    resamples = sum(int(r.headers["x-liftdeploy-attempts"]) - 1 for r in responses)
    withheld = outcomes["withheld after 3"]
    assert resamples >= 1, f"no answer broke uniqueItems in 12 tries: {dict(outcomes)}"
    assert _metric(after, "relaxed") - _metric(before, "relaxed") == 12
    assert _metric(after, "resample") - _metric(before, "resample") == resamples
    assert (
        _metric(after, "rejected_after_resampling") - _metric(before, "rejected_after_resampling")
    ) == withheld


@pytest.mark.twin
def test_exact_rewrite_and_refusal_with_the_fix(twin: LocalTwin) -> None:
    with httpx.Client(
        base_url=twin.url, timeout=300, headers={"Authorization": f"Bearer {twin.api_key}"}
    ) as http:
        rewritten = _ask(http, twin, DEPENDENCIES, 1)
        refused = _ask(http, twin, NOT_DISJOINT, 1)
    assert rewritten.status_code == 200, rewritten.text
    assert rewritten.headers["x-liftdeploy-grammar"] == "rewritten"
    assert rewritten.headers["x-liftdeploy-attempts"] == "1"
    choice = rewritten.json()["choices"][0]
    if choice["finish_reason"] != "length":
        assert validator_for(DEPENDENCIES).is_valid(json.loads(choice["message"]["content"]))
    assert refused.status_code == 400
    assert "make the patternProperties patterns disjoint" in refused.json()["error"]["message"]


def test_truncation_hint_names_the_unbounded_part_only_without_max_tokens() -> None:
    schema = {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "notes": {"type": "string"}},
    }
    cut = [AnswerVerdict("incomplete", "{")]
    hint = _truncation_hint({}, schema, cut)
    assert hint is not None and "unbounded string at #/properties/notes" in hint
    assert "set max_tokens" in hint
    assert _truncation_hint({"max_tokens": 50}, schema, cut) is None  # the caller's own cut
    assert _truncation_hint({}, schema, [AnswerVerdict("valid", "{}")]) is None
    bounded = {
        "type": "object",
        "properties": {"tags": {"type": "array", "maxItems": 3, "items": {"enum": ["a", "b"]}}},
        "additionalProperties": False,
    }
    assert unbounded_part(bounded) is None
    assert (
        unbounded_part({"type": "array", "items": {"type": "integer"}}) == "an unbounded array at #"
    )
