"""Pydantic validation errors as one readable line: field, line number, what is wrong, the fix.

Kept apart from the models so that the models (which format errors of their own overlays) and
the file loader (which adds line numbers) both use it without importing each other.
"""

from __future__ import annotations

from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import ValidationError
from ruamel.yaml.comments import CommentedMap, CommentedSeq

_MAX_SHOWN = 60
"""Longest repr of a bad value quoted in a message."""


def format_validation_error(
    exc: ValidationError, models: tuple[type, ...], *, data: Any = None
) -> str:
    """One readable clause per problem: `field (line N): what is wrong; how to fix it`.

    `models` are the spec classes the error may come from (the first is the default); the one
    named by the error supplies field names for "did you mean" hints.
    """
    model = next((m for m in models if m.__name__ == exc.title), models[0])
    clauses = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        message = _message(error, model)
        if not loc:  # a check across fields: its message names the fields itself
            clauses.append(message)
            continue
        field = ".".join(str(part) for part in loc)
        line = _line_of(data, loc) if data is not None else None
        if message.startswith((f"{field}.", f"{field} ")):  # the check names its field already
            clauses.append(f"line {line}: {message}" if line else message)
        else:
            clauses.append(f"{field} (line {line}): {message}" if line else f"{field}: {message}")
    return "; ".join(clauses)


_EXPECTED = {
    "int_type": "a whole number",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
}


def _message(error: Any, model: type) -> str:
    kind, msg, value = error["type"], str(error["msg"]), error.get("input")
    ctx = error.get("ctx") or {}
    field = str(error["loc"][-1]) if error["loc"] else ""
    if kind == "extra_forbidden":
        suggestion = _did_you_mean(field, _fields_at(model, error["loc"][:-1]))
        return f"unknown field {field!r}; remove it or check the spelling{suggestion}"
    if kind == "missing":
        return "required field is missing; add it"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {shown(value)}{_quoting_hint(kind, value)}"
    for bound, words in (
        ("le", "of at most"),
        ("lt", "below"),
        ("ge", "of at least"),
        ("gt", "above"),
    ):
        if bound in ctx:
            limit = f"{ctx[bound]}{_unit(field, ctx[bound])}"
            return f"{shown(value)} is out of range; use a value {words} {limit}"
    return f"{msg} (got {shown(value)})"


def _quoting_hint(kind: str, value: Any) -> str:
    """YAML's usual slip: `count: "2"` is a string, `revision: 2024` (or 0.32) is a number."""
    if kind in ("int_type", "float_type", "bool_type") and isinstance(value, str):
        return "; write it without quotes"
    if kind == "string_type" and isinstance(value, int | float):
        return f'; put it in quotes ("{value}") to make it a string'
    return ""


def _unit(field: str, limit: Any) -> str:
    """` s (24 h)` for a limit on a field in seconds, so the bound reads as a duration."""
    if not field.endswith("_s") or not isinstance(limit, int):
        return ""
    hours, rest = divmod(limit, 3600)
    return f" s ({hours} h)" if hours and not rest else " s"


def shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"


def _did_you_mean(name: str, candidates: set[str]) -> str:
    import difflib  # only on this error path: its import is a cost at every start

    close = difflib.get_close_matches(name, sorted(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fields_at(model: Any, loc: tuple[Any, ...]) -> set[str]:
    """Field names of the pydantic model found by following loc (best effort)."""
    current = model
    for part in loc:
        origin = get_origin(current)
        if origin in (dict, list):  # part is a key or an index: step to the value type
            current = get_args(current)[-1]
        else:
            fields = getattr(current, "model_fields", None)
            if not fields or part not in fields:
                return set()
            current = fields[part].annotation
        if get_origin(current) in (Union, UnionType):  # `X | None` -> X
            current = next(a for a in get_args(current) if a is not type(None))
    return set(getattr(current, "model_fields", {}))


def _line_of(data: Any, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest key of loc that exists in round-trip YAML data."""
    node, line = data, None
    for part in loc:
        found = (
            isinstance(node, CommentedMap)
            and part in node
            or (isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node))
        )
        if not found:
            break
        # Mappings and lists added by set_values have no recorded positions at all.
        positions = getattr(node.lc, "data", None) or {}
        position = positions.get(part)
        line = position[0] + 1 if position else line
        node = node[part]
    return line
