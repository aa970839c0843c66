"""Spec files: YAML errors with file:line:column, migration, round-trip editing, fuzzing."""

from __future__ import annotations

import copy
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from liftdeploy.errors import SpecError, SpecFileError
from liftdeploy.spec import specfile
from liftdeploy.spec.specfile import load_spec, parse_yaml, read_yaml, set_values, spec_from_data

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
EXAMPLE_32B = ROOT / "examples" / "qwen25-coder-32b.yaml"

MINIMAL = """\
version: 1
name: svc
model:
  id: Qwen/Qwen2.5-Coder-32B-Instruct
  max_model_len: 8192
gpu:
  type: H100
"""


@pytest.fixture
def spec_copy(tmp_path: Path) -> Path:
    """A writable copy of the 32B example."""
    path = tmp_path / "deployment.yaml"
    path.write_bytes(EXAMPLE_32B.read_bytes())
    return path


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path) -> str:
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    return str(caught.value)


# --- reading -------------------------------------------------------------------------------


def test_yaml_syntax_error_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "runtime:\n  timeout_s: [1, 2\n  min_containers: 0\n")
    message = load_error(path)
    # ruamel notices the unclosed list at the next key's colon: line 10, column 17
    assert message.startswith(f"{path}:10:17: YAML syntax error: expected ',' or ']'")
    assert "fix the YAML at that position" in message


def test_tab_indentation_and_duplicate_keys_are_syntax_errors(tmp_path: Path) -> None:
    assert load_error(write(tmp_path, "name: svc\n\tmodel: x\n")).startswith(
        f"{tmp_path / 'spec.yaml'}:2:1: YAML syntax error"
    )
    message = load_error(write(tmp_path, MINIMAL + "name: other\n"))
    assert ':8:1: YAML syntax error: found duplicate key "name"' in message


def test_validation_errors_carry_the_line_of_the_field(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("type: H100", "type: H100\n  count: 9"))
    assert f"{path}: gpu.count (line 8): 9 is out of range" in load_error(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "got an empty document"),
        ("# only a comment\n", "got an empty document"),
        ("- name: svc\n", "got a list"),
        ("just a string\n", "got str 'just a string'"),
    ],
)
def test_documents_that_are_not_mappings(tmp_path: Path, text: str, expected: str) -> None:
    message = load_error(write(tmp_path, text))
    assert "a spec must be a YAML mapping with at least name, model and gpu" in message
    assert expected in message


def test_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SpecFileError, match=r"nope.yaml: no such file; check the path"):
        load_spec(missing)
    with pytest.raises(SpecFileError, match="is a directory; pass a spec file"):
        load_spec(tmp_path)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00name")
    with pytest.raises(SpecFileError, match="is not UTF-8 text .* save it as UTF-8"):
        load_spec(binary)


def test_custom_tags_and_recursive_aliases_are_refused(tmp_path: Path) -> None:
    assert "YAML tag !secret on 'x' is not supported in a spec; remove it" in load_error(
        write(tmp_path, MINIMAL + "description: !secret x\n")
    )
    assert "a spec cannot be recursive" in load_error(
        write(tmp_path, "&root\n" + MINIMAL + "description: *root\n")
    )


def test_anchored_booleans_stay_booleans(tmp_path: Path) -> None:
    # ruamel gives an anchored `true` as ScalarBoolean, an int subclass: it must stay a bool.
    text = MINIMAL + "engine:\n  enforce_eager: &eager true\nauth:\n  proxy_auth: *eager\n"
    deployment = load_spec(write(tmp_path, text))
    assert deployment.engine.enforce_eager is True and deployment.auth.proxy_auth is True


def test_deeply_nested_input_is_an_error_not_a_crash() -> None:
    with pytest.raises(SpecFileError, match="nested too deeply"):
        parse_yaml("[" * 700 + "]" * 700)
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(5000):
        node["x"] = node = {}
    with pytest.raises(SpecError, match="nested too deeply to be a spec"):
        spec_from_data(deep)


# --- versions and migration ----------------------------------------------------------------


def test_version_0_is_refused_with_the_step_to_take(tmp_path: Path) -> None:
    message = load_error(write(tmp_path, MINIMAL.replace("version: 1", "version: 0")))
    assert (
        "version 0: this liftdeploy reads spec version 2 and has no migration from version 0; "
        "rewrite the file in the current format (`liftdeploy schema`, "
        "docs/spec-reference.md) and set version: 2"
    ) in message


def test_a_registered_migration_upgrades_an_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def rename_keep_warm(data: dict[str, Any]) -> dict[str, Any]:
        runtime = dict(data.get("runtime", {}))
        runtime["min_containers"] = runtime.pop("keep_warm", 0)
        return {**data, "runtime": runtime}

    monkeypatch.setitem(specfile.MIGRATIONS, 0, rename_keep_warm)
    text = MINIMAL.replace("version: 1", "version: 0") + "runtime:\n  keep_warm: 2\n"
    deployment = load_spec(write(tmp_path, text))
    assert deployment.version == 2  # 0 -> 1 by the registered step, then 1 -> 2
    assert deployment.runtime.min_containers == 2


def test_a_file_without_version_is_read_as_version_1(tmp_path: Path) -> None:
    text = MINIMAL.replace("version: 1\n", "") + "runtime:\n  timeout_s: 90\n"
    deployment = load_spec(write(tmp_path, text))
    assert deployment.version == 2 and deployment.runtime.request_timeout_s == 90


def test_version_1_timeout_becomes_the_request_limit_everywhere(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + "runtime:\n  timeout_s: 1200\n"
        + "environments:\n  production:\n    production: true\n"
        + "  staging:\n    runtime:\n      timeout_s: 300\n"
    )
    deployment = load_spec(write(tmp_path, text))
    assert deployment.version == 2
    assert deployment.runtime.request_timeout_s == 1200
    assert deployment.resolve("staging").runtime.request_timeout_s == 300
    assert deployment.resolve("production").runtime.request_timeout_s == 1200


# --- set: round-trip editing ---------------------------------------------------------------


def lines_except(data: bytes, changed: int) -> list[bytes]:
    """The file's lines, line ends included, without line number `changed`."""
    return [
        line for number, line in enumerate(data.splitlines(keepends=True), 1) if number != changed
    ]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_set_keeps_every_other_line_byte_for_byte(tmp_path: Path, path: Path) -> None:
    target = tmp_path / path.name
    before = path.read_bytes()
    target.write_bytes(before)
    number = next(
        n
        for n, line in enumerate(before.splitlines(), 1)
        if line.strip().startswith(b"scaledown_window_s:")
    )
    changes = set_values(target, ["runtime.scaledown_window_s=900"])
    after = target.read_bytes()
    assert changes == [specfile.Change("runtime.scaledown_window_s", 600, 900)]
    assert lines_except(after, number) == lines_except(before, number)
    old_line, new_line = before.splitlines()[number - 1], after.splitlines()[number - 1]
    assert new_line == old_line.replace(b"600", b"900"), "the line keeps its comment and spacing"
    assert load_spec(target).runtime.scaledown_window_s == 900


COMMENTED = """\
# A spec with comments in the places ruamel attaches them to the key before.
version: 1
name: svc

model:
  id: Qwen/Qwen2.5-Coder-32B-Instruct
  max_model_len: 8192   # explicit: it sizes the KV cache

# The GPU section.
gpu:
  type: H100

environments:
  production:
    production: true
    storage:
      secrets:
        - prod-secrets
  # Staging saves money with eager mode.
  staging:
    engine: {enforce_eager: true}
"""


def test_set_nested_new_keys_keeps_comments_in_place(tmp_path: Path) -> None:
    path = write(tmp_path, COMMENTED)
    set_values(
        path,
        [
            "environments.production.gpu.type=A100-80GB",
            "model.revision=main",
            "environments.staging.runtime.min_containers=0",
        ],
    )
    after = path.read_text(encoding="utf-8")
    # Each new key lands at the end of its own mapping, before the blank lines and comments
    # that introduce what follows (ruamel alone would put it after them).
    assert (
        "  max_model_len: 8192   # explicit: it sizes the KV cache\n  revision: main\n\n# The GPU"
        in after
    )
    assert (
        "        - prod-secrets\n    gpu:\n      type: A100-80GB\n"
        "  # Staging saves money with eager mode.\n"
    ) in after
    assert after.endswith(
        "    engine: {enforce_eager: true}\n    runtime:\n      min_containers: 0\n"
    )
    added = {
        "  revision: main",
        "    gpu:",
        "      type: A100-80GB",
        "    runtime:",
        "      min_containers: 0",
    }
    kept = [line for line in after.splitlines() if line not in added]
    assert kept == COMMENTED.splitlines(), "every original line, comment and blank line kept"
    deployment = load_spec(path)
    assert deployment.resolve("production").gpu.type == "A100-80GB"
    assert deployment.resolve("staging").gpu.type == "H100"


def test_set_into_a_null_overlay_and_a_list_item(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL + "storage:\n  dicts:\n    - a\n    - b\n"
        "environments:\n  production:\n    production: true\n  staging:\n",
    )
    set_values(path, ["environments.staging.runtime.min_containers=0", "storage.dicts.1=c"])
    deployment = load_spec(path)
    assert deployment.storage.dicts == ["a", "c"]
    assert deployment.resolve("staging").runtime.min_containers == 0
    assert "    - c\n" in path.read_text(encoding="utf-8"), "sequence indentation kept"


def test_set_keeps_a_files_own_indentation(tmp_path: Path) -> None:
    text = (
        "version: 1\nname: svc\nmodel:\n    id: Qwen/Qwen2.5-Coder-32B-Instruct\n"
        "    max_model_len: 8192\ngpu:\n    type: H100\nstorage:\n    dicts:\n    - a\n"
        "    - b\n"
    )
    path = write(tmp_path, text)
    set_values(path, ["gpu.count=2"])
    assert path.read_text(encoding="utf-8") == text.replace(
        "    type: H100\n", "    type: H100\n    count: 2\n"
    )


def test_set_keeps_what_ruamel_would_normalise(tmp_path: Path) -> None:
    # A document start, trailing spaces, quotes, a long line and CRLF line ends all survive.
    text = (
        "---\n# head\n"
        + MINIMAL.replace("name: svc", 'name: "svc"   ')
        + "description: '"
        + "long " * 30
        + "'\n\n# tail\n"
    )
    for newline in ("\n", "\r\n"):
        path = tmp_path / f"spec{len(newline)}.yaml"
        path.write_bytes(text.replace("\n", newline).encode())
        set_values(path, ["gpu.count=2", "gpu.tensor_parallel_size=2"])
        expected = text.replace(
            "  type: H100\n", "  type: H100\n  count: 2\n  tensor_parallel_size: 2\n"
        )
        assert path.read_bytes() == expected.replace("\n", newline).encode()


def test_set_refuses_an_invalid_result_and_leaves_the_file_untouched(spec_copy: Path) -> None:
    before = spec_copy.read_bytes()
    mtime = spec_copy.stat().st_mtime_ns
    with pytest.raises(SpecError) as caught:
        set_values(spec_copy, ["runtime.min_containers=1", "gpu.count=3"])
    message = str(caught.value)
    assert message.startswith(f"{spec_copy}: not changed, the result would be invalid: ")
    assert "gpu.tensor_parallel_size 3 does not divide" in message
    assert spec_copy.read_bytes() == before
    assert spec_copy.stat().st_mtime_ns == mtime


def test_set_applies_assignments_together(spec_copy: Path) -> None:
    # Each alone is invalid (TP 2 != 1 GPU; 2 GPUs with TP 1); together they are fine.
    set_values(spec_copy, ["gpu.count=2", "gpu.tensor_parallel_size=2"])
    assert load_spec(spec_copy).gpu.tp == 2


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("runtime.min_containers", "expected KEY=VALUE with a dotted key"),
        ("runtime..x=1", "expected KEY=VALUE with a dotted key"),
        (
            "name.first=x",
            "name is 'lift-sys-inference', not a mapping or list, so it has no 'first'",
        ),
        ("storage.volumes.7.name=x", "storage.volumes is a list of 2; use an index from 0 to 1"),
        ("runtime.request_timeout_s=[1, 2", "value of runtime.request_timeout_s:1:"),
    ],
)
def test_set_refuses_malformed_assignments(spec_copy: Path, assignment: str, expected: str) -> None:
    before = spec_copy.read_bytes()
    with pytest.raises(SpecError) as caught:
        set_values(spec_copy, [assignment])
    assert expected in str(caught.value)
    assert spec_copy.read_bytes() == before


def test_set_value_types_come_from_yaml(spec_copy: Path) -> None:
    set_values(
        spec_copy,
        [
            "engine.enforce_eager=true",
            "cors.allowed_origins=[https://a.example]",
            "runtime.max_containers=null",
        ],
    )
    deployment = load_spec(spec_copy)
    assert deployment.engine.enforce_eager is True
    assert deployment.cors.allowed_origins == ["https://a.example"]
    assert deployment.runtime.max_containers is None


# --- fuzzing: nothing but the library's own error ------------------------------------------

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=True)
    | st.text(max_size=30)
    | st.sampled_from(["H100", "A10G", "production", "--max-num-seqs", "1"])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=12) | st.integers() | st.none(), inner, max_size=4)
    ),
    max_leaves=12,
)
EXAMPLE_DATA = [specfile._plain(read_yaml(path), source=str(path)) for path in EXAMPLES]


def accepts_or_spec_error(data: Any) -> None:
    try:
        spec_from_data(data)
    except SpecError:
        pass


@FUZZ
@given(values)
def test_random_data_gives_a_spec_error_or_a_spec(data: Any) -> None:
    accepts_or_spec_error(data)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


@FUZZ
@given(st.data())
def test_examples_with_one_value_broken_give_a_spec_error(data: st.DataObject) -> None:
    example = copy.deepcopy(data.draw(st.sampled_from(EXAMPLE_DATA)))
    path = data.draw(st.sampled_from(_paths(example)))
    parent = example
    for part in path[:-1]:
        parent = parent[part]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(values)
    accepts_or_spec_error(example)


yaml_text = st.text(
    alphabet=string.ascii_letters + string.digits + " :-[]{}#&*!|>'\",?%@`\n\t.", max_size=200
)


@FUZZ
@given(yaml_text)
def test_random_yaml_text_gives_a_spec_error(text: str) -> None:
    try:
        accepts_or_spec_error(parse_yaml(text, source="fuzz.yaml"))
    except SpecFileError:
        pass


@FUZZ
@given(st.data())
def test_example_text_with_random_edits_gives_a_spec_error(data: st.DataObject) -> None:
    text = data.draw(st.sampled_from(EXAMPLES)).read_text(encoding="utf-8")
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 8))
        text = text[:at] + data.draw(yaml_text.filter(lambda t: len(t) < 6)) + text[at + cut :]
    try:
        accepts_or_spec_error(parse_yaml(text, source="fuzz.yaml"))
    except SpecFileError:
        pass
