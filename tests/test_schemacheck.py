"""`liftdeploy.client.schemacheck` and `liftdeploy schema-check`: local compiles with the backends' own
libraries (xgrammar, llguidance). Agreement with a running server is in test_structured.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from liftdeploy.cli.main import main
from liftdeploy.client.schemacheck import SchemaCheckError, check_schema, check_schema_all

PLAIN = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}},
    "required": ["name"],
}
UNIQUE_ITEMS = {"type": "array", "items": {"type": "integer"}, "uniqueItems": True}
NOT_DISJOINT_PATTERNS = {
    "type": "object",
    "patternProperties": {"name": {"type": "string"}, "tags": {"type": "integer"}},
}
DEPENDENCIES = {
    "type": "object",
    "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
    "dependencies": {"a": ["b"]},
}


def test_plain_schema_is_supported_by_both_backends() -> None:
    results = check_schema_all(PLAIN)
    assert [(r.backend, r.supported, r.reason) for r in results] == [
        ("xgrammar", True, None),
        ("guidance", True, None),
    ]
    assert results[1].served == "exact" and results[1].summary == "supported"


@pytest.mark.parametrize(
    ("schema", "served", "says"),
    [
        ({"type": "string", "format": "semver"}, "exact", "unknown format 'semver' dropped"),
        (DEPENDENCIES, "exact", "dependencies -> anyOf"),
        ({"oneOf": [{"const": 1}, {"const": 2}]}, "exact", "oneOf -> anyOf"),
        (UNIQUE_ITEMS, "relaxed", "the guard enforces uniqueItems"),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "integer"}},
                "propertyNames": {"maxLength": 3},
                "minProperties": 1,
            },
            "relaxed",
            "propertyNames, minProperties/maxProperties",
        ),
        (
            {"if": {"type": "string"}, "then": {"maxLength": 3}, "not": {"const": "x"}},
            "relaxed",
            "not",
        ),
    ],
)
def test_guidance_serves_what_llguidance_refuses(schema: dict, served: str, says: str) -> None:
    """Before: each of these was `unsupported` (llguidance's compile error, a 400 at the server)."""
    result = check_schema(schema, "guidance")
    assert (result.supported, result.served) == (True, served), result
    assert says in result.summary, result.summary


@pytest.mark.parametrize(
    ("schema", "backend", "feature"),
    [
        (UNIQUE_ITEMS, "xgrammar", "uniqueItems"),
        ({"type": "number", "multipleOf": 5}, "xgrammar", "multipleOf"),
        ({"type": "string", "pattern": "^a+$", "maxLength": 4}, "xgrammar", "minLength/maxLength"),
        ({"allOf": [{"type": "string"}, {"enum": ["yes", "no"]}]}, "xgrammar", "allOf"),
        ({"type": "string", "format": "semver"}, "xgrammar", "'semver'"),
        (NOT_DISJOINT_PATTERNS, "guidance", "make the patternProperties patterns disjoint"),
    ],
)
def test_unsupported_schema_names_the_feature(schema: dict, backend: str, feature: str) -> None:
    result = check_schema(schema, backend)
    assert not result.supported
    assert feature in result.reason


@pytest.mark.parametrize("backend", ["xgrammar", "guidance"])
def test_schema_the_guard_cannot_evaluate_is_unsupported(backend: str) -> None:
    """Before: called supported, then every answer came back 502 "retry"."""
    result = check_schema({"$ref": "#"}, backend)
    assert not result.supported and "guard cannot check answers" in result.reason
    recursive = {"type": "object", "properties": {"child": {"$ref": "#"}}}
    assert check_schema(recursive, backend).supported  # recursion through data is fine


def test_nested_unsupported_feature_is_found() -> None:
    schema = {"type": "object", "properties": {"tags": UNIQUE_ITEMS}}
    assert check_schema(schema, "xgrammar").reason.startswith(
        "xgrammar does not support uniqueItems"
    )


def test_schema_text_is_accepted_and_bad_text_is_a_clear_error() -> None:
    assert check_schema(json.dumps(PLAIN), "guidance").supported
    with pytest.raises(SchemaCheckError, match="not valid JSON"):
        check_schema("{nope", "guidance")


def test_unknown_backend_is_a_clear_error() -> None:
    with pytest.raises(
        SchemaCheckError, match="unknown structured-output backend 'outlines'.*xgrammar, guidance"
    ):
        check_schema(PLAIN, "outlines")


def _write(tmp_path: Path, name: str, schema: object) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(schema))
    return str(path)


def test_cli_reports_each_schema_per_backend(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    plain, unique = _write(tmp_path, "plain.json", PLAIN), _write(tmp_path, "u.json", UNIQUE_ITEMS)
    assert main(["schema-check", plain]) == 0
    out = capsys.readouterr().out
    assert "xgrammar  supported" in out and "guidance  supported" in out
    assert main(["schema-check", plain, unique, "--backend", "xgrammar"]) == 1
    out = capsys.readouterr().out
    assert "unsupported: xgrammar does not support uniqueItems on arrays" in out
    assert "guidance" not in out


def test_cli_json_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = _write(tmp_path, "d.json", DEPENDENCIES)
    assert main(["schema-check", "--json", path]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report[0]["schema"] == path
    by_backend = {r["backend"]: r for r in report[0]["backends"]}
    assert by_backend["xgrammar"] == {
        "backend": "xgrammar",
        "supported": True,
        "reason": None,
        "served": None,
        "enforced_by_guard": [],
        "rewrites": [],
        "summary": "supported",
    }
    assert by_backend["guidance"]["supported"] is True
    assert by_backend["guidance"]["served"] == "exact"
    assert "dependencies -> anyOf" in by_backend["guidance"]["rewrites"][0]


def test_cli_says_relaxed_and_refused_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    unique = _write(tmp_path, "u.json", UNIQUE_ITEMS)
    patterns = _write(tmp_path, "p.json", NOT_DISJOINT_PATTERNS)
    assert main(["schema-check", "--backend", "guidance", unique, patterns]) == 1
    out = capsys.readouterr().out
    assert "guidance  supported, relaxed: the guard enforces uniqueItems" in out
    assert "unsupported: llguidance cannot compile the schema" in out
    assert "make the patternProperties patterns disjoint" in out


def test_cli_bad_file_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["schema-check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: not valid JSON") and "Traceback" not in err
    assert main(["schema-check", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: no such file; check the path" in capsys.readouterr().err
