"""The spec's JSON schema: every field described; the generated reference and schema in step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest

from liftdeploy.spec import docs as docs_gen
from liftdeploy.spec.specfile import _plain, read_yaml

ROOT = Path(__file__).resolve().parent.parent


def _objects(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every object schema with properties: the root and each $defs entry."""
    return [("ModelDeployment", schema), *schema.get("$defs", {}).items()]


def _undescribed(schema: dict[str, Any]) -> list[str]:
    return [
        f"{name}.{field}"
        for name, entry in _objects(schema)
        for field, prop in entry.get("properties", {}).items()
        if not prop.get("description", "").strip()
    ]


def test_every_field_in_the_schema_has_a_description() -> None:
    schema = docs_gen.schema()
    assert _undescribed(schema) == []
    assert all(entry.get("description") for _, entry in _objects(schema)), "every section too"
    fields = sum(len(entry.get("properties", {})) for _, entry in _objects(schema))
    assert fields > 60, "the walk really visited the sections"


def test_the_description_check_can_fail() -> None:
    from liftdeploy.spec.model import SpecModel

    class Section(SpecModel):
        """A section."""

        documented: int = 1
        """Has a description."""
        bare: int = 2

    class Root(SpecModel):
        """The root."""

        section: Section
        """Nested."""

    assert _undescribed(Root.model_json_schema()) == ["Section.bare"]


def test_unknown_keys_are_closed_in_the_schema_too() -> None:
    for name, entry in _objects(docs_gen.schema()):
        assert entry.get("additionalProperties") is False, name


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.stem)
def test_examples_validate_against_the_json_schema(path: Path) -> None:
    data = _plain(read_yaml(path), source=str(path))
    jsonschema.Draft202012Validator(docs_gen.schema()).validate(data)


def test_generated_files_are_up_to_date() -> None:
    stale = [
        str(path.relative_to(ROOT))
        for path, text in docs_gen.generated_files().items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    ]
    assert stale == [], f"run `python -m liftdeploy.spec.docs` to regenerate {stale}"


def test_reference_lists_every_field() -> None:
    reference = docs_gen.reference_markdown()
    for _, entry in _objects(docs_gen.schema()):
        for field in entry.get("properties", {}):
            assert f"| `{field}` |" in reference


def test_check_mode_reports_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "spec-reference.md"
    stale.write_text("old\n", encoding="utf-8")
    monkeypatch.setattr(docs_gen, "REFERENCE_PATH", stale)
    monkeypatch.setattr(docs_gen, "SCHEMA_PATH", tmp_path / "liftdeploy.schema.json")
    monkeypatch.setattr(docs_gen, "ROOT", tmp_path)
    assert docs_gen.main(["--check"]) == 1
    assert stale.read_text(encoding="utf-8") == "old\n"
    assert docs_gen.main([]) == 0
    assert docs_gen.main(["--check"]) == 0
