"""Spec files on disk: load, validate with file:line messages, and edit in place.

Loading uses ruamel.yaml's round-trip mode, so `set_value` changes one value and keeps every
comment, key order and blank line of the file; error messages point at the line of the field.
"""

from __future__ import annotations

import difflib
import io
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from liftdeploy.errors import SpecError, SpecFileError
from liftdeploy.spec import ModelDeployment


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 100
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file in round-trip mode; syntax errors name the file, line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecFileError(f"no such file; check the path (cwd: {Path.cwd()})", source=str(path))
    except IsADirectoryError:
        raise SpecFileError("is a directory; pass a spec file such as deployment.yaml", source=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecFileError(f"cannot read: {exc}", source=str(path))
    return parse_yaml(text, source=str(path))


def parse_yaml(text: str, *, source: str = "<string>") -> Any:
    try:
        return _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecFileError(f"YAML syntax error: {problem}; fix the YAML at that position",
                            source=where) from None
    except YAMLError as exc:
        raise SpecFileError(f"YAML error: {exc}", source=source) from None


def spec_from_data(data: Any, *, source: str = "<spec>") -> ModelDeployment:
    """Validate parsed YAML (or a plain dict) as a ModelDeployment."""
    if not isinstance(data, dict):
        kind = "empty" if data is None else type(data).__name__
        raise SpecError(
            f"a spec must be a YAML mapping with at least name, model and gpu; got {kind}",
            source=source,
        )
    try:
        return ModelDeployment.model_validate(_plain(data))
    except ValidationError as exc:
        raise SpecError(format_validation_error(exc, data=data), source=source) from None
    except ValueError as exc:  # raised by resolve() during overlay checks
        raise SpecError(str(exc), source=source) from None


def load_spec(path: str | Path) -> ModelDeployment:
    """Read and validate one spec file."""
    return spec_from_data(read_yaml(path), source=str(path))


def format_validation_error(
    exc: ValidationError, *, data: Any = None, prefix: str = ""
) -> str:
    """One readable line per problem: `field (line N): what is wrong; how to fix it`."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"]]
        field = prefix + ".".join(loc) if loc else prefix.rstrip(".") or "spec"
        line = _line_of(data, error["loc"]) if data is not None else None
        where = f"{field} (line {line})" if line else field
        lines.append(f"{where}: {_message(error)}")
    return "; ".join(lines)


def _message(error: Any) -> str:
    kind = error["type"]
    msg = str(error["msg"])
    value = error.get("input")
    if kind == "extra_forbidden":
        name = str(error["loc"][-1])
        return f"unknown field {name!r}; remove it or check the spelling{_did_you_mean(error)}"
    if kind == "missing":
        return "required field is missing; add it"
    if msg.startswith("Value error, "):
        return msg[len("Value error, "):]
    if msg.startswith("Assertion failed, "):
        return msg[len("Assertion failed, "):]
    return f"{msg} (got {value!r})" if not isinstance(value, dict | list) else msg


def _did_you_mean(error: Any) -> str:
    from liftdeploy.spec import ModelDeployment, ResolvedDeployment

    name = str(error["loc"][-1])
    candidates: set[str] = set()
    for model in (ModelDeployment, ResolvedDeployment):
        schema_fields = _fields_at(model, error["loc"][:-1])
        candidates |= schema_fields
    close = difflib.get_close_matches(name, sorted(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fields_at(model: Any, loc: tuple[Any, ...]) -> set[str]:
    """Field names of the pydantic model found by following loc (best effort)."""
    current = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if fields is None or part not in fields:
            return set()
        annotation = fields[part].annotation
        current = next(
            (arg for arg in getattr(annotation, "__args__", (annotation,)) if hasattr(arg, "model_fields")),
            annotation,
        )
    return set(getattr(current, "model_fields", {}))


def _line_of(data: Any, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest key of loc that exists in round-trip YAML data."""
    node, line = data, None
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            try:
                line = node.lc.key(part)[0] + 1
            except (KeyError, TypeError, AttributeError):
                pass
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            try:
                line = node.lc.item(part)[0] + 1
            except (KeyError, TypeError, AttributeError):
                pass
            node = node[part]
        else:
            break
    return line


def _plain(data: Any) -> Any:
    """Round-trip YAML containers -> plain dicts/lists (pydantic wants plain types)."""
    if isinstance(data, dict):
        return {str(k) if not isinstance(k, str) else k: _plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_plain(v) for v in data]
    if type(data).__module__.startswith("ruamel"):
        for plain_type in (bool, int, float, str):
            if isinstance(data, plain_type):
                return plain_type(data)
    return data


def dump_yaml(data: Any) -> str:
    stream = io.StringIO()
    _yaml().dump(data, stream)
    return stream.getvalue()


def set_value(path: str | Path, assignment: str) -> tuple[Any, Any]:
    """Apply `dotted.key=value` to a spec file, keeping comments and layout.

    The value is parsed as YAML (so `1`, `true`, `[a, b]` keep their types). The whole spec is
    validated before anything is written; an invalid result leaves the file untouched.
    Returns (old value, new value).
    """
    if "=" not in assignment:
        raise SpecError(
            f"expected KEY=VALUE such as runtime.min_containers=1, got {assignment!r}"
        )
    dotted, raw = assignment.split("=", 1)
    keys = [k for k in dotted.strip().split(".") if k]
    if not keys:
        raise SpecError(f"empty key in {assignment!r}; write e.g. gpu.count=2")
    data = read_yaml(path)
    if not isinstance(data, CommentedMap):
        raise SpecError("the file is not a YAML mapping; cannot set a key in it", source=str(path))
    value = parse_yaml(raw, source=f"value of {dotted}") if raw.strip() else None
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = CommentedMap()
            node[key] = child
        if not isinstance(child, CommentedMap):
            raise SpecError(f"{dotted}: {key!r} is not a mapping, cannot set a key inside it",
                            source=str(path))
        node = child
    old = node.get(keys[-1])
    node[keys[-1]] = value
    spec_from_data(data, source=str(path))  # validate before writing anything
    Path(path).write_text(dump_yaml(data), encoding="utf-8")
    return old, value
