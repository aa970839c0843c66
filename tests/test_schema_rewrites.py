"""Every exact rewrite of liftdeploy.runtime.schema_rewrite keeps the schema's meaning: the
original and the rewritten schema accept the same instances (jsonschema, as the guard validates),
checked on instances hypothesis builds from the schema's own names, constants and bounds (random
JSON alone would almost never reach the interesting cases). Each rewrite also has to matter:
llguidance refuses the original and compiles the rewrite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liftdeploy.runtime.guard import validator_for
from liftdeploy.runtime.schema_rewrite import _compile, exact_rewrites, plan_for_guidance

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "shared" / "jsonschemabench"

DEPENDENCIES_LIST = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}, "c": {"type": "string"}},
    "dependencies": {"a": ["b", "c"], "c": ["a"]},
}
DEPENDENCIES_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "dependencies": {"a": {"properties": {"b": {"minimum": 3}}, "required": ["b"]}},
}
DEPENDENT_REQUIRED = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"const": 1}},
    "dependentRequired": {"b": ["a"]},
    "anyOf": [{"required": ["a"]}, {"required": ["b"]}],
}
ONEOF_TYPES = {
    "oneOf": [
        {"type": "string", "maxLength": 3},
        {"type": "integer"},
        {"type": "array", "items": {"type": "boolean"}},
    ]
}
ONEOF_CONSTS = {
    "type": "object",
    "properties": {"v": {"oneOf": [{"const": 1}, {"const": 2}, {"enum": ["x", 1.5]}]}},
}
ONEOF_RANGES = {
    "oneOf": [
        {"type": "integer", "maximum": 0},
        {"type": "number", "minimum": 1, "maximum": 5},
        {"type": "integer", "exclusiveMinimum": 5},
    ]
}
ONEOF_DISCRIMINATED = {
    "oneOf": [
        {
            "type": "object",
            "properties": {"kind": {"const": "a"}, "n": {"type": "integer"}},
            "required": ["kind"],
        },
        {
            "type": "object",
            "properties": {"kind": {"enum": ["b", "c"]}, "n": {"type": "integer"}},
            "required": ["kind", "n"],
        },
        {"$ref": "#/definitions/leaf"},
    ],
    "definitions": {"leaf": {"type": "string"}},
}
ONEOF_WITH_ANYOF = {"oneOf": [{"const": 1}, {"const": 2}], "anyOf": [{"const": 2}, {"const": 3}]}
UNKNOWN_FORMAT = {
    "type": "object",
    "properties": {
        "v": {"type": "string", "format": "semver"},
        "u": {"type": "string", "format": "url", "maxLength": 4},
    },
}
REF_SIBLINGS_DRAFT4 = {
    "$schema": "http://json-schema.org/draft-04/schema#",
    "type": "object",
    "properties": {
        "next": {"$ref": "#", "type": "string", "description": "ignored in draft 4"},
        "n": {"type": "integer"},
    },
}
REF_ANNOTATIONS_2020 = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "child": {"$ref": "#/$defs/node", "description": "a child", "title": "Child"},
                "n": {"type": "integer", "format": "uuid-ish"},
            },
        }
    },
    "$ref": "#/$defs/node",
}

REWRITES = {
    "dependencies, list form": (DEPENDENCIES_LIST, "dependencies"),
    "dependencies, schema form (draft 7)": (DEPENDENCIES_SCHEMA, "dependencies"),
    "dependentRequired beside anyOf": (DEPENDENT_REQUIRED, "dependentRequired"),
    "oneOf of different types": (ONEOF_TYPES, "oneOf -> anyOf"),
    "oneOf of distinct consts/enums": (ONEOF_CONSTS, "oneOf -> anyOf"),
    "oneOf of disjoint ranges": (ONEOF_RANGES, "oneOf -> anyOf"),
    "oneOf with a discriminator and a $ref": (ONEOF_DISCRIMINATED, "oneOf -> anyOf"),
    "oneOf beside anyOf": (ONEOF_WITH_ANYOF, "oneOf -> anyOf"),
    "unknown formats": (UNKNOWN_FORMAT, "unknown format"),
    "$ref siblings, draft 4": (REF_SIBLINGS_DRAFT4, "next to $ref"),
    "$ref annotations, 2020-12": (REF_ANNOTATIONS_2020, "next to $ref"),
}
COMPILED_AS_IS = {"oneOf of different types", "$ref annotations, 2020-12"}
"""llguidance proves these branches disjoint itself; the rewrite is exact all the same."""


def _atoms(schema: Any) -> tuple[list[str], list[Any]]:
    """Property names and scalar values the schema mentions (with numbers next to its bounds)."""
    names: set[str] = set()
    values: list[Any] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in (
                    "properties",
                    "patternProperties",
                    "dependencies",
                    "dependentRequired",
                    "dependentSchemas",
                ) and isinstance(value, dict):
                    names.update(value)
                if key == "required" and isinstance(value, list):
                    names.update(v for v in value if isinstance(v, str))
                if key in ("const",):
                    values.append(value)
                if key == "enum" and isinstance(value, list):
                    values.extend(value)
                if key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum") and (
                    isinstance(value, (int, float)) and not isinstance(value, bool)
                ):
                    values.extend([value - 1, value - 0.5, value, value + 0.5, value + 1])
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(schema)
    return sorted(names) or ["a"], values


def instances(schema: Any) -> st.SearchStrategy[Any]:
    names, values = _atoms(schema)
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-3, 8),
        st.sampled_from([0.5, 1.0]),
        st.sampled_from(["", "x", "abcd", "1.2.3"]),
        *([st.sampled_from(values)] if values else []),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3),
            st.dictionaries(st.sampled_from(names), inner, max_size=len(names)),
        ),
        max_leaves=8,
    )


def _equivalent(original: Any, rewritten: Any, instance: Any) -> None:
    expected = validator_for(original).is_valid(instance)
    assert validator_for(rewritten).is_valid(instance) == expected, (
        f"{json.dumps(instance)}: original {'accepts' if expected else 'refuses'} it, "
        f"the rewrite does not: {json.dumps(rewritten)}"
    )


@pytest.mark.parametrize("name", list(REWRITES))
def test_rewrite_is_needed_and_compiles(name: str) -> None:
    schema, marker = REWRITES[name]
    rewritten, applied = exact_rewrites(schema)
    assert any(marker in text for text in applied), applied
    if name not in COMPILED_AS_IS:
        assert _compile(schema, any_whitespace=False)[0] is not None, "llguidance takes it as is"
    assert _compile(rewritten, any_whitespace=False)[0] is None
    assert plan_for_guidance(schema).mode == "exact"


@pytest.mark.parametrize("name", list(REWRITES))
def test_rewrite_accepts_exactly_what_the_original_accepts(name: str) -> None:
    schema, _ = REWRITES[name]
    rewritten, _ = exact_rewrites(schema)
    both_seen = {True: 0, False: 0}

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(instances(schema))
    def check(instance: Any) -> None:
        _equivalent(schema, rewritten, instance)
        both_seen[validator_for(schema).is_valid(instance)] += 1

    check()
    assert both_seen[True] and both_seen[False], f"instances never reached both sides: {both_seen}"


@pytest.mark.parametrize(
    "schema",
    [
        {"oneOf": [{"type": "integer"}, {"type": "number"}]},
        {"oneOf": [{"enum": [1, 2]}, {"enum": [2.0, 3]}]},
        {"oneOf": [{"type": "number", "maximum": 1}, {"type": "number", "minimum": 1}]},
        {
            "oneOf": [
                {"properties": {"k": {"const": 1}}, "required": ["k"]},
                {"properties": {"k": {"const": 2}}, "required": ["k"]},
            ]
        },
        {"oneOf": [{"const": True}, {"const": 1}, {"type": "string"}, {}]},
    ],
)
def test_overlapping_oneof_is_not_rewritten(schema: dict[str, Any]) -> None:
    """Branches that can share an instance (1 and 1.0, a shared bound, no type to rule out
    non-objects, an empty branch) keep oneOf: anyOf would accept what matches two."""
    _, applied = exact_rewrites(schema)
    assert not [text for text in applied if "oneOf" in text]


def _sample_rewritten() -> list[Path]:
    if not SAMPLE_DIR.is_dir():
        pytest.skip(f"the JSONSchemaBench sample is not at {SAMPLE_DIR}")
    return [
        path
        for path in sorted(SAMPLE_DIR.glob("*/*.json"))
        if exact_rewrites(json.loads(path.read_text()))[1]
    ]


def test_rewrites_of_the_sample_keep_meaning() -> None:
    """Every sample schema the rewrites change: same verdict on generated instances."""
    paths = _sample_rewritten()
    assert len(paths) >= 20
    for path in paths:
        schema = json.loads(path.read_text())
        rewritten, _ = exact_rewrites(schema)

        @settings(
            max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        @given(instances(schema))
        def check(instance: Any) -> None:
            _equivalent(schema, rewritten, instance)  # noqa: B023 - check() runs right here

        check()
