"""Spec files on disk: load, migrate, validate with file:line messages, and edit in place.

Loading uses ruamel.yaml's round-trip mode, so `set_values` changes values and keeps every
comment, key order and blank line of the file; error messages point at the line of the field.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.composer import Composer, ComposerError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.scalarbool import ScalarBoolean

from liftdeploy.errors import SpecError, SpecFileError, first_line
from liftdeploy.files import write_atomic
from liftdeploy.spec.messages import format_validation_error, shown
from liftdeploy.spec.model import SPEC_VERSION, ModelDeployment, ResolvedDeployment

Migration = Callable[[dict[str, Any]], dict[str, Any]]


def _request_timeout_from_timeout(data: dict[str, Any]) -> dict[str, Any]:
    """1 -> 2: `runtime.timeout_s` (which limited requests, the weights download and the exit
    grace together) becomes `runtime.request_timeout_s`, the limit the service enforces on
    each request; in the base spec and in every environment's overlay."""
    sections = [data.get("runtime")]
    environments = data.get("environments")
    if isinstance(environments, dict):
        sections += [
            overlay.get("runtime") for overlay in environments.values() if isinstance(overlay, dict)
        ]
    for runtime in sections:
        if isinstance(runtime, dict) and "timeout_s" in runtime:
            runtime.setdefault("request_timeout_s", runtime.pop("timeout_s"))
    return data


MIGRATIONS: dict[int, Migration] = {1: _request_timeout_from_timeout}
"""Version N -> the step that turns a version-N spec mapping into version N + 1.

Every change of the spec format bumps `spec.SPEC_VERSION` and registers the step from the
previous version here, so old files keep loading."""

SPEC_FILE = "deployment.yaml"
"""The spec's name inside a rendered service directory: its single source of truth."""

_UNVERSIONED = 1
"""The version a file without a `version` key is read as: the first format."""

MAX_FILE_BYTES = 1024 * 1024
"""Largest spec or JSON schema file read (a spec is a few KB, a large schema tens of KB)."""
MAX_YAML_VALUES = 100_000
"""Most values a YAML document may expand to once its aliases are followed ("billion laughs"
stops here instead of filling the memory); a spec has a few hundred."""


class _NameKeysComposer(Composer):
    """ruamel's composer, refusing a list or mapping as a mapping key (`? [a]`, `{[1, [2]]: x}`,
    in any tag's mapping): never a name in a spec, and ruamel fails on some with a TypeError.
    An anchor defined again is YAML (the later one counts), not a warning printed by the CLI."""

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        self.warn_double_anchors = False

    def compose_mapping_node(self, anchor: Any) -> Any:
        node = super().compose_mapping_node(anchor)
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode):
                raise ComposerError(
                    "while reading a mapping",
                    node.start_mark,
                    "a list or mapping is used as a key; keys must be plain names",
                    key_node.start_mark,
                )
        return node


def _yaml(*, mapping: int = 2, sequence: int = 4, offset: int = 2) -> YAML:
    yaml = YAML(typ="rt")
    yaml.Composer = _NameKeysComposer
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap a user's long lines
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file in round-trip mode; syntax errors name the file, line and column."""
    return parse_yaml(read_text(path), source=str(path))


def read_json(
    path: str | Path, *, max_bytes: int = MAX_FILE_BYTES, what: str = "spec or schema file"
) -> Any:
    """A JSON file (a JSON schema, a billing report) read the way spec files are read, parsed
    strictly."""
    try:
        return json.loads(read_text(path, max_bytes=max_bytes, what=what))
    except ValueError as exc:
        raise SpecFileError(f"not valid JSON ({exc}); fix the file", source=str(path)) from None
    except RecursionError:
        raise SpecFileError(
            "JSON nested too deeply to read; flatten it", source=str(path)
        ) from None


def read_text(
    path: str | Path, *, max_bytes: int = MAX_FILE_BYTES, what: str = "spec or schema file"
) -> str:
    """The one way liftdeploy reads a file it is handed (`what`: a spec, a schema, a billing
    report): a regular file (never a FIFO, a device such as /dev/zero, or a socket, which could
    block or never end) of at most `max_bytes`, as UTF-8 text with its line ends as they are (set_values writes them back
    alike)."""
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError
            if not stat.S_ISREG(mode):
                raise SpecFileError(
                    f"is not a regular file (a FIFO, device or socket); pass the {what} itself",
                    source=str(path),
                )
            data = file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise SpecFileError(
                f"is larger than {max_bytes // 1024**2} MiB, far more than a {what} needs; "
                f"check that this is the right file",
                source=str(path),
            )
        return data.decode("utf-8")
    except FileNotFoundError:
        raise SpecFileError(
            f"no such file; check the path (working directory: {Path.cwd()})", source=str(path)
        ) from None
    except IsADirectoryError:
        raise SpecFileError(
            "is a directory; pass a spec file such as deployment.yaml", source=str(path)
        ) from None
    except UnicodeDecodeError as exc:
        raise SpecFileError(
            f"is not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8",
            source=str(path),
        ) from None
    except OSError as exc:
        raise SpecFileError(f"cannot read: {exc.strerror or exc}", source=str(path)) from None


def parse_yaml(text: str, *, source: str = "<string>") -> Any:
    """Parse YAML text in round-trip mode; errors name source:line:column."""
    try:
        data = _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecFileError(
            f"YAML syntax error: {problem}; fix the YAML at that position", source=where
        ) from None
    except YAMLError as exc:
        raise SpecFileError(f"YAML error: {exc}", source=source) from None
    except RecursionError:
        raise SpecFileError("YAML nested too deeply to read; flatten it", source=source) from None
    except Exception as exc:  # noqa: BLE001 - ruamel fails on some hostile documents with
        # plain Python errors (TypeError, ValueError...): still one line, never a traceback
        raise SpecFileError(
            f"cannot read this YAML ({type(exc).__name__}: {first_line(exc)}); "
            f"write plain names as keys and plain values",
            source=source,
        ) from None
    _check_expanded_size(data, source)
    return data


def _check_expanded_size(data: Any, source: str) -> None:
    """Refuses a document whose aliases expand it past MAX_YAML_VALUES (the walk stops there,
    so an alias bomb costs no more than that). Alias cycles are left to `_plain`, which names
    them."""
    seen = 0

    def visit(node: Any, ancestors: set[int]) -> None:
        nonlocal seen
        seen += 1
        if seen > MAX_YAML_VALUES:
            raise SpecFileError(
                f"the YAML expands to more than {MAX_YAML_VALUES:,} values once its aliases "
                f"(*name) are followed; write the values out or use fewer nested aliases",
                source=source,
            )
        if not isinstance(node, (dict, list)) or id(node) in ancestors:
            return
        ancestors.add(id(node))
        for child in [*node.keys(), *node.values()] if isinstance(node, dict) else node:
            visit(child, ancestors)
        ancestors.discard(id(node))

    try:
        visit(data, set())
    except RecursionError:
        raise SpecFileError("YAML nested too deeply to read; flatten it", source=source) from None


def spec_from_data(data: Any, *, source: str = "<spec>") -> ModelDeployment:
    """Validate parsed YAML (or a plain dict) as a ModelDeployment, migrating old versions."""
    if not isinstance(data, dict):
        raise SpecError(
            f"a spec must be a YAML mapping with at least name, model and gpu; got "
            f"{_kind(data)} (see examples/ for a complete spec)",
            source=source,
        )
    try:
        plain = migrate(_plain(data, source=source), source=source)
        return ModelDeployment.model_validate(plain)
    except ValidationError as exc:
        raise SpecError(
            format_validation_error(exc, (ModelDeployment, ResolvedDeployment), data=data),
            source=source,
        ) from None
    except RecursionError:
        raise SpecError("nested too deeply to be a spec; flatten it", source=source) from None


def load_spec(path: str | Path) -> ModelDeployment:
    """Read, migrate and validate one spec file."""
    return spec_from_data(read_yaml(path), source=str(path))


def migrate(data: dict[str, Any], *, source: str = "<spec>") -> dict[str, Any]:
    """Bring an older spec mapping up to SPEC_VERSION, or refuse with the step to take."""
    version = data.get("version", _UNVERSIONED)
    if type(version) is not int or version >= SPEC_VERSION:
        return data  # wrong types and versions from the future are the model's to report
    while version < SPEC_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise SpecError(
                f"version {version}: this liftdeploy reads spec version {SPEC_VERSION} and has no "
                f"migration from version {version}; rewrite the file in the current format "
                f"(`liftdeploy schema`, docs/spec-reference.md) and set version: {SPEC_VERSION}",
                source=source,
            )
        data = {**step(data), "version": version + 1}
        version += 1
    return data


def _kind(value: Any) -> str:
    if value is None:
        return "an empty document"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {shown(value)}"


def _plain(data: Any, *, source: str, _parents: tuple[int, ...] = ()) -> Any:
    """Round-trip YAML values -> plain dicts, lists and scalars (what pydantic validates)."""
    if isinstance(data, dict | list):
        if id(data) in _parents:
            raise SpecError(
                "a YAML alias (*name) refers to a mapping or list that contains it; a spec "
                "cannot be recursive, so write the value out",
                source=source,
            )
        parents = (*_parents, id(data))
        if isinstance(data, dict):
            for key in data:
                if not isinstance(key, str):
                    _refuse_key(data, key, source)
            return {str(k): _plain(v, source=source, _parents=parents) for k, v in data.items()}
        return [_plain(v, source=source, _parents=parents) for v in data]
    if isinstance(data, TaggedScalar):
        raise SpecError(
            f"YAML tag {data.tag.value} on {data.value!r} is not supported in a spec; remove it",
            source=source,
        )
    if isinstance(data, ScalarBoolean):  # an anchored true/false; it subclasses int
        return bool(data)
    if type(data).__module__.startswith("ruamel"):  # ScalarFloat, ScalarInt, quoted strings...
        for plain_type in (int, float, str):
            if isinstance(data, plain_type):
                return plain_type(data)
    return data


def _refuse_key(mapping: dict[Any, Any], key: Any, source: str) -> None:
    """A key that YAML reads as something other than text (1.5, true, null, a list as a tuple):
    a spec's keys are names, so say where and how to write it as one."""
    where = source
    if isinstance(mapping, CommentedMap):
        with contextlib.suppress(Exception):  # a key without a recorded position
            line, column = mapping.lc.key(key)
            where = f"{source}:{line + 1}:{column + 1}"
    kind = (
        "null (no value)"
        if key is None
        else "true/false"
        if isinstance(key, bool)
        else "a number"
        if isinstance(key, int | float)
        else type(key).__name__
    )
    raise SpecError(
        f"this key is read as {kind}, not as a name; keys in a spec are names, so "
        f"put the key in quotes if you mean that text",
        source=where,
    )


def dump_yaml(data: Any, *, layout: tuple[int, int, int] = (2, 4, 2)) -> str:
    """YAML text of data; layout is (mapping indent, sequence indent, dash offset)."""
    stream = io.StringIO()
    mapping, sequence, offset = layout
    _yaml(mapping=mapping, sequence=sequence, offset=offset).dump(data, stream)
    return stream.getvalue()


def _keep_unchanged_lines(original: str, dumped: str) -> bytes:
    """The dumped text, with every line that only ruamel normalised restored byte for byte.

    ruamel drops a document's `---`, trailing spaces and CRLF line ends; lines equal up to
    those come from the original, so an edit shows in a diff as the changed lines only.
    """
    import difflib  # only when writing a file: its import is a cost at every start

    old = original.splitlines(keepends=True)
    new = dumped.splitlines(keepends=True)
    newline = "\r\n" if original.endswith("\r\n") or "\r\n" in original[:200] else "\n"
    if old and old[0].rstrip() == "---" and (not new or new[0].rstrip() != "---"):
        new.insert(0, "---\n")
    matcher = difflib.SequenceMatcher(
        None, [line.rstrip() for line in old], [line.rstrip() for line in new], autojunk=False
    )
    out: list[str] = []
    for tag, old_start, old_end, new_start, new_end in matcher.get_opcodes():
        if tag == "equal":
            out += old[old_start:old_end]
        else:
            out += [line.rstrip("\r\n") + newline for line in new[new_start:new_end]]
    return "".join(out).encode("utf-8")


class Change(NamedTuple):
    """One value changed by `set_values`."""

    key: str
    old: Any
    new: Any
    follows_name: bool = False
    """A Volume, Dict or Secret named after the service, renamed with it (`set name=...`)."""


def set_values(path: str | Path, assignments: Sequence[str]) -> list[Change]:
    """Apply `dotted.key=value` assignments to a spec file, keeping comments and layout.

    Values are parsed as YAML (so `1`, `true`, `[a, b]` keep their types); missing mappings on
    the way are created (`environments.staging.gpu.type=H100`); a number steps into a list
    (`storage.volumes.0.name=x`). All assignments are applied together and the whole spec is
    validated before anything is written: an invalid result leaves the file untouched.
    """
    path = Path(path)
    text = read_text(path)
    data = parse_yaml(text, source=str(path))
    if not isinstance(data, CommentedMap):
        raise SpecError(
            f"the file holds {_kind(data)}, not a mapping; cannot set keys in it", source=str(path)
        )
    changes = [_assign(data, assignment) for assignment in assignments]
    changes += _follow_the_name(data, changes)
    try:
        spec_from_data(data, source=str(path))
    except SpecError as exc:
        problem = str(exc).removeprefix(f"{exc.source}: ") if exc.source else str(exc)
        raise SpecError(
            f"not changed, the result would be invalid: {problem}", source=str(path)
        ) from None
    # Whole or not at all: a full disk must not leave a truncated spec.
    write_atomic(path, _keep_unchanged_lines(text, dump_yaml(data, layout=_guess_layout(text))))
    return changes


# Where a spec names a Modal Volume, Dict or Secret (in the base or an environment's overlay).
_RESOURCE_NAME = re.compile(
    r"(^|\.)(\w+_secret|storage\.volumes\.\d+\.name|storage\.(dicts|secrets|shared)\.\d+)$"
)


def _follow_the_name(data: CommentedMap, changes: list[Change]) -> list[Change]:
    """After `name` changed, rename what the blank preset derived from it: each Volume, Dict
    or Secret named `<old name>-...` (`-weights`, `-compile-cache`, `-huggingface`, a Dict)
    becomes `<new name>-...`, except where the same `set` assigns that value itself."""
    renamed = [
        c
        for c in changes
        if c.key == "name" and isinstance(c.old, str) and isinstance(c.new, str) and c.old != c.new
    ]
    if not renamed:
        return []
    old, new = renamed[-1].old, renamed[-1].new
    assigned = {c.key for c in changes}
    follows: list[Change] = []

    def walk(node: Any, path: str) -> None:
        items = (
            node.items()
            if isinstance(node, CommentedMap)
            else enumerate(node)
            if isinstance(node, CommentedSeq)
            else ()
        )
        for key, value in items:
            dotted = f"{path}.{key}" if path else str(key)
            if (
                isinstance(value, str)
                and value.startswith(f"{old}-")
                and dotted not in assigned
                and _RESOURCE_NAME.search(dotted)
            ):
                node[key] = new + value[len(old) :]
                follows.append(Change(dotted, value, node[key], follows_name=True))
            else:
                walk(value, dotted)

    walk(data, "")
    return follows


def _assign(data: CommentedMap, assignment: str) -> Change:
    dotted, equals, raw = assignment.partition("=")
    keys = dotted.strip().split(".")
    if not equals or not all(keys):
        raise SpecError(
            f"expected KEY=VALUE with a dotted key, such as runtime.min_containers=1; "
            f"got {assignment!r}"
        )
    if not raw.strip():
        # An empty value reads as null, which unsets a field (max_containers: no cost cap):
        # too easy to do by accident, so "unset" must be written out.
        raise SpecError(
            f"{dotted}= has no value; give one, or write {dotted}=null to unset it (the "
            f"field's default then applies)"
        )
    value = parse_yaml(raw, source=f"value of {dotted}")
    node: Any = data
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        if isinstance(node, CommentedSeq):
            if not re.fullmatch(r"\d+", key) or int(key) >= len(node):
                raise SpecError(
                    f"{dotted}: {'.'.join(keys[:depth])} is a list of {len(node)}; use an index "
                    f"from 0 to {len(node) - 1} at {'.'.join(keys[: depth + 1])}"
                )
            if last:
                old, node[int(key)] = node[int(key)], value
                return Change(dotted, old, value)
            node = node[int(key)]
        elif isinstance(node, CommentedMap):
            if key in node and (last or node[key] is not None):
                if last:
                    old, node[key] = node[key], value
                    return Change(dotted, old, value)
                node = node[key]
                continue
            # A new key (or an empty one): build the rest of the path as nested mappings.
            built = value
            for inner in reversed(keys[depth + 1 :]):
                built = CommentedMap([(inner, built)])
            if key in node:
                node[key] = built
            else:
                _add_key(node, key, built)
            return Change(dotted, None, value)
        else:
            raise SpecError(
                f"{dotted}: {'.'.join(keys[:depth])} is {shown(node)}, not a mapping or list, so "
                f"it has no {key!r}"
            )
    raise AssertionError("unreachable: the loop returns at the last key")


def _add_key(mapping: CommentedMap, key: str, value: Any) -> None:
    """Append key to mapping, keeping blank lines and comments that follow the mapping after it.

    ruamel stores the lines after a block mapping (a blank line, the next section's comment)
    on its last leaf; a plain append would put the new key below them. Move that tail to the
    new key so it keeps following the mapping.
    """
    tail = _tail_comment(mapping)
    mapping[key] = value
    if tail is None:
        return
    eol, newline, rest = tail.value.partition("\n")
    if not rest:
        return
    tail.value = eol + newline
    moved = type(tail)("\n" + rest, tail.start_mark, tail.end_mark)
    holder, slot = _leaf_slot(mapping)
    holder.ca.items.setdefault(slot, [None, None, None, None])
    holder.ca.items[slot][2 if isinstance(holder, CommentedMap) else 0] = moved


def _leaf_slot(node: Any) -> tuple[Any, Any]:
    """The block container and key/index of the last scalar leaf under node."""
    holder, slot = node, None
    while isinstance(node, CommentedMap | CommentedSeq) and len(node):
        if node.fa.flow_style():
            break
        holder = node
        slot = next(reversed(node)) if isinstance(node, CommentedMap) else len(node) - 1
        node = node[slot]
    return holder, slot


def _tail_comment(node: Any) -> Any:
    """The comment token after the last leaf of a block mapping/list, or None."""
    holder, slot = _leaf_slot(node)
    if slot is None:
        return None
    entry = holder.ca.items.get(slot)
    if not entry:
        return None
    return entry[2] if isinstance(holder, CommentedMap) else entry[0]


def _guess_layout(text: str) -> tuple[int, int, int]:
    """(mapping indent, sequence indent, dash offset) as the file writes them."""
    mapping, offset = None, None
    lines = [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    for parent, child in zip(lines, lines[1:], strict=False):
        if not parent.rstrip().endswith(":") or parent.lstrip().startswith("- "):
            continue
        step = _indent(child) - _indent(parent)
        if child.lstrip().startswith("- ") and step >= 0:
            offset = step if offset is None else offset
        elif step > 0 and mapping is None:
            mapping = step
    mapping = mapping or 2
    offset = mapping if offset is None else offset
    return mapping, offset + 2, offset


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))
