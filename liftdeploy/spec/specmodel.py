"""SpecModel, the base of every spec section: strict about shape, its field docstrings become
the JSON schema's descriptions, and a spec built in Python fails with the CLI's one-line error."""

from __future__ import annotations

import ast
import functools
import inspect
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic._internal._model_construction import ModelMetaclass  # BaseModel's metaclass

from liftdeploy.errors import SpecError
from liftdeploy.spec.messages import format_validation_error


def _describe_fields(schema: dict[str, Any], cls: type) -> None:
    """JSON-schema hook: the docstring under each field becomes its description.

    Read from the source only when a schema is generated. (pydantic's use_attribute_docstrings
    reads it for every class at import instead: a fifth of `liftdeploy validate`'s start-up.)
    """
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        filename = getattr(sys.modules.get(klass.__module__), "__file__", None)
        if issubclass(klass, SpecModel) and filename:
            docs |= _docstrings_by_class(filename).get(klass.__name__, {})
    for name, prop in schema.get("properties", {}).items():
        if name in docs:
            prop.setdefault("description", docs[name])


@functools.cache
def _docstrings_by_class(filename: str) -> dict[str, dict[str, str]]:
    """One parse of a module: class name -> {field: the docstring under it}."""
    try:
        tree = ast.parse(Path(filename).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError):  # no source shipped: no descriptions
        return {}
    found: dict[str, dict[str, str]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        docs = found.setdefault(node.name, {})
        for statement, following in zip(node.body, node.body[1:]):
            if (
                isinstance(statement, ast.AnnAssign)
                and isinstance(statement.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[statement.target.id] = inspect.cleandoc(following.value.value)
    return found


def _lone_surrogate(data: Any, path: str) -> str | None:
    """The dotted path of the first string (value or key) holding a lone surrogate, or None."""
    if isinstance(data, str):
        return path if any("\ud800" <= char <= "\udfff" for char in data) else None
    if isinstance(data, dict):
        for key, value in data.items():
            here = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and _lone_surrogate(key, "") is not None:
                return f"{path or 'the spec'}: the key {ascii(key)}"  # never print the key as is
            if (found := _lone_surrogate(value, here)) is not None:
                return found
    elif isinstance(data, list | tuple):
        for index, value in enumerate(data):
            if (found := _lone_surrogate(value, f"{path}[{index}]")) is not None:
                return found
    return None


class _SpecModelType(ModelMetaclass):
    """Specs built in Python (`ModelDeployment(...)`) get the CLI's one-line SpecError, with
    did-you-mean for a misspelt field, instead of pydantic's raw "Extra inputs are not
    permitted". Only a direct call comes here: model_validate and nested sections keep raising
    ValidationError, which the file loader formats with line numbers."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except ValidationError as exc:
            raise SpecError(format_validation_error(exc, (cls,))) from None


class SpecModel(BaseModel, metaclass=_SpecModelType):
    """Base for every spec section: unknown keys are errors, docstrings describe fields."""

    # strict: a spec file's `count: "2"` or `trust_remote_code: "yes"` is a mistake to report,
    # not a value to coerce.
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        allow_inf_nan=False,  # `.inf` or `.nan` would turn every cost figure into nonsense
        validate_assignment=True,
        json_schema_extra=_describe_fields,
    )

    @model_validator(mode="before")
    @classmethod
    def _text_is_unicode(cls, data: Any) -> Any:
        # A YAML escape such as "\ud800" (half of a surrogate pair) is no character: it would
        # pass every other check and then fail when a file or argv is written.
        if (where := _lone_surrogate(data, "")) is not None:
            raise ValueError(
                f"{where or 'the spec'} holds a lone surrogate escape (such as \\ud800), which is "
                f"not a character; remove it, or write the character itself or its 8-digit "
                f"escape (\\U0001F600, not the pair \\ud83d\\ude00)"
            )
        return data
