"""The first CLI commands (validate, show, set, schema) as a user runs them, in subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from liftdeploy.planner.report import plan
from liftdeploy.spec.specfile import load_spec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples").glob("*.yaml"))
HEAVY = ("modal", "copier", "vllm", "torch", "transformers", "openai")


def liftdeploy(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "liftdeploy.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_validate_examples() -> None:
    result = liftdeploy("validate", *EXAMPLES)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "✓ examples/qwen25-coder-32b.yaml: lift-sys-inference (production, staging, development)",
        "✓ examples/qwen3-coder-480b.yaml: qwen3-coder-480b (production, staging)",
        "✓ examples/qwen3-next-80b.yaml: qwen3-next-80b (production, staging, development)",
    ]
    assert "warning: model.revision is not set" in result.stderr


def test_validate_json_reports_every_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad_Name\n", encoding="utf-8")
    result = liftdeploy("validate", "--json", EXAMPLES[0], str(bad))
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert [entry["valid"] for entry in report] == [True, False]
    assert report[0]["environments"] == ["production", "staging", "development"]
    assert "name 'Bad_Name' is not DNS-safe" in report[1]["error"]


# Each bad input: exit 2, one line on stderr naming the problem, no traceback.
BAD_INPUTS = {
    "missing-file": (None, "missing.yaml: no such file; check the path"),
    "directory-without-spec": ("<dir>", "empty-dir: directory has no deployment.yaml"),
    "malformed-yaml": ("name: svc\nmodel: {id: x\n", "bad.yaml:3:1: YAML syntax error"),
    "empty-file": (
        "",
        "a spec must be a YAML mapping with at least name, model and gpu; got an empty document",
    ),
    "list-not-mapping": ("- name: svc\n- gpu: H100\n", "got a list"),
    "wrong-types": (
        "name: svc\nmodel: {id: x/y, max_model_len: long}\ngpu: {type: H100, count: [1]}\n",
        "model.max_model_len (line 2): expected a whole number, got 'long'; write it without quotes; "
        "gpu.count (line 3): expected a whole number, got [1]",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
@pytest.mark.parametrize("command", ["validate", "show"])
def test_bad_inputs_give_one_clear_line_and_exit_2(tmp_path: Path, case: str, command: str) -> None:
    text, expected = BAD_INPUTS[case]
    if case == "missing-file":
        target = "missing.yaml"
    elif text == "<dir>":
        (tmp_path / "empty-dir").mkdir()
        target = "empty-dir"
    else:
        target = "bad.yaml"
        (tmp_path / target).write_text(text, encoding="utf-8")
    result = liftdeploy(command, target, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert result.stdout == ""


def test_show_resolves_an_environment() -> None:
    result = liftdeploy("show", "examples/qwen25-coder-32b.yaml", "--env", "staging")
    assert result.returncode == 0, result.stderr
    assert "app_name: lift-sys-inference-staging\n" in result.stdout
    assert "  enforce_eager: true\n" in result.stdout
    # Base names get the environment's suffix (the shared weights Volume excepted).
    assert "  hf_token_secret: huggingface-staging\n" in result.stdout
    assert "    - name: lift-sys-torch-cache-staging\n" in result.stdout


def test_show_json_carries_derived_values() -> None:
    result = liftdeploy("show", "examples/qwen3-coder-480b.yaml", "--json")
    data = json.loads(result.stdout)
    assert data["app_name"] == "qwen3-coder-480b"
    assert data["environment"] == "production"
    assert data["gpu"]["tensor_parallel_size"] == 8
    resolved = load_spec(ROOT / "examples" / "qwen3-coder-480b.yaml").resolve()
    planned = plan(resolved)
    assert data["runtime"]["startup_timeout_s"] == planned.startup_timeout_s >= 10 * 60
    assert data["runtime"]["exit_grace_period_s"] == planned.exit_grace_period_s


def test_show_unknown_environment_lists_the_valid_ones() -> None:
    result = liftdeploy("show", "examples/qwen3-coder-480b.yaml", "--env", "prod")
    assert result.returncode == 2
    assert result.stderr == (
        "error: unknown environment 'prod'; this spec defines: production, staging; pick one of "
        "them or add 'prod' under environments\n"
    )


def test_set_through_the_cli(tmp_path: Path) -> None:
    spec = tmp_path / "deployment.yaml"
    spec.write_bytes((ROOT / "examples" / "qwen25-coder-32b.yaml").read_bytes())
    result = liftdeploy(
        "set", str(tmp_path), "runtime.min_containers=1", "environments.staging.gpu.type=H100"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{spec}: runtime.min_containers: 0 -> 1",
        f'{spec}: environments.staging.gpu.type: null -> "H100"',
    ]
    text = spec.read_text(encoding="utf-8")
    assert "  min_containers: 1          # 1 would cost about $1,825/month" in text


def test_set_name_moves_the_names_derived_from_it(tmp_path: Path) -> None:
    """Issue 28 item 5: `set name=` renames the Volumes, Dicts and Secrets `init` named after
    the service, line by line, and says plainly what Modal keeps under the old names."""
    made = liftdeploy(
        "init",
        "old-svc",
        "--model-id",
        "Qwen/Qwen2.5-Coder-32B-Instruct",
        "--dicts",
        "prefs",
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    spec = tmp_path / "old-svc" / "deployment.yaml"
    untouched = spec.read_text(encoding="utf-8")
    result = liftdeploy("set", str(spec), "name=new-svc")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    derived = "(named after the service)"
    assert result.stdout.splitlines() == [
        f'{spec}: name: "old-svc" -> "new-svc"',
        f'{spec}: model.hf_token_secret: "old-svc-huggingface" -> "new-svc-huggingface" {derived}',
        f'{spec}: storage.volumes.0.name: "old-svc-weights" -> "new-svc-weights" {derived}',
        f'{spec}: storage.volumes.1.name: "old-svc-compile-cache" -> "new-svc-compile-cache" '
        f"{derived}",
        f'{spec}: storage.dicts.0: "old-svc-prefs" -> "new-svc-prefs" {derived}',
    ]
    warnings = result.stderr.splitlines()
    assert len(warnings) == 2, result.stderr
    assert "app old-svc" in warnings[0] and "modal app stop old-svc" in warnings[0]
    assert "not renamed: old-svc-huggingface, old-svc-weights" in warnings[1]
    assert "liftdeploy bootstrap" in warnings[1] and "download the weights again" in warnings[1]
    assert f"set {spec} storage.volumes.0.name=old-svc-weights" in warnings[1]
    text = spec.read_text(encoding="utf-8")
    assert "old-svc" not in text
    # Comments and layout stay: only the names changed.
    assert text == untouched.replace("old-svc", "new-svc")
    shown = json.loads(liftdeploy("show", str(spec), "--env", "production", "--json").stdout)
    assert "old-svc" not in json.dumps(shown)

    # A value the same `set` assigns is kept: the old weights stay in use.
    result = liftdeploy("set", str(spec), "name=third", "storage.volumes.0.name=old-svc-weights")
    assert result.returncode == 0, result.stderr
    assert 'storage.volumes.1.name: "new-svc-compile-cache" -> "third-compile-cache"' in (
        result.stdout
    )
    assert "- {name: old-svc-weights," in spec.read_text(encoding="utf-8")


def test_set_refusal_through_the_cli(tmp_path: Path) -> None:
    spec = tmp_path / "deployment.yaml"
    spec.write_bytes((ROOT / "examples" / "qwen25-coder-32b.yaml").read_bytes())
    result = liftdeploy("set", str(spec), "runtime.target_concurrent_requests=99")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {spec}: not changed, the result would be invalid: ")
    assert spec.read_bytes() == (ROOT / "examples" / "qwen25-coder-32b.yaml").read_bytes()


def test_schema_prints_the_committed_schema() -> None:
    result = liftdeploy("schema")
    assert result.returncode == 0
    assert json.loads(result.stdout)["title"] == "ModelDeployment"
    assert result.stdout == (ROOT / "liftdeploy.schema.json").read_text(encoding="utf-8")


def test_no_command_prints_help_and_exits_2() -> None:
    result = liftdeploy()
    assert result.returncode == 2
    assert "validate" in result.stdout and "Traceback" not in result.stderr


# Runs main() in a fresh interpreter, then reports which heavy libraries got imported.
_PROBE = """
import json, sys
from liftdeploy.cli.main import main
try:
    main(sys.argv[2:])
except SystemExit:
    pass
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(json.loads(sys.argv[1])))
sys.stdout.write('\\nHEAVY=' + json.dumps(heavy))
"""


@pytest.mark.parametrize(
    "args",
    [["--help"], ["validate", *EXAMPLES], ["show", EXAMPLES[0]]],
    ids=["help", "validate", "show"],
)
def test_cli_start_imports_no_heavy_library(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(HEAVY), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    marker = result.stdout.rsplit("HEAVY=", 1)
    assert len(marker) == 2, result.stdout + result.stderr
    assert json.loads(marker[1]) == [], f"liftdeploy {' '.join(args)} imported heavy libraries"


def test_the_probe_sees_heavy_imports() -> None:
    """The import check can fail: the same probe notices a heavy library when one is imported."""
    probe = _PROBE.replace(
        "from liftdeploy.cli.main import main", "import jsonschema\nmain = print"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, json.dumps(["jsonschema"])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(result.stdout.rsplit("HEAVY=", 1)[1]) == ["jsonschema"]


# --- `set` of invalid values into sections the file does not have yet --------------------------

MINIMAL_SPEC = """\
version: 2
name: sweep
model:
  id: org/model
  revision: 0123456789abcdef0123456789abcdef01234567
  max_model_len: 4096
gpu:
  type: L4
environments:
  production:
    production: true
  staging: {}
"""
# Values no field takes all of: a negative number, a mapping, a list of lists, a secret value.
INVALID_VALUES = ("-5", "{bogus_key: 1}", "[[1]]", "sk-liftdeploy-0123456789abcdef")


def _leaf_fields(model: type, prefix: str = "") -> list[str]:
    """Dotted paths of every field under a section model, nested sections included."""
    from typing import get_args

    from liftdeploy.spec.model import SpecModel

    paths = []
    for name, info in model.model_fields.items():
        nested = [
            a
            for a in (info.annotation, *get_args(info.annotation))
            if isinstance(a, type) and issubclass(a, SpecModel)
        ]
        paths += _leaf_fields(nested[0], f"{prefix}{name}.") if nested else [f"{prefix}{name}"]
    return paths


def _every_spec_field() -> list[str]:
    from liftdeploy.spec.model import SECTIONS, ModelDeployment

    fields = ModelDeployment.model_fields
    return [
        f"{section}.{leaf}"
        for section in SECTIONS
        for leaf in _leaf_fields(fields[section].annotation)
    ]


def test_set_sweep_of_invalid_values_into_absent_sections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every spec field, base and staging overlay, set to values it refuses: one line, never a
    traceback (the error formatter once looked up line numbers of mappings `set` had just made)."""
    from liftdeploy.cli.main import main

    spec = tmp_path / "deployment.yaml"
    paths = _every_spec_field()
    assert len(paths) > 60 and "auth.api_key_secret" in paths
    refused = 0
    for path in [*paths, *(f"environments.staging.{p}" for p in paths)]:
        for value in INVALID_VALUES:
            spec.write_text(MINIMAL_SPEC)
            code = main(["set", str(spec), f"{path}={value}"])
            out, err = capsys.readouterr()
            if code == 0:  # a value the field takes (e.g. a dict field and a mapping)
                continue
            refused += 1
            assert code == 2 and spec.read_text() == MINIMAL_SPEC, (path, value, err)
            assert err.startswith(f"error: {spec}: not changed") and err.count("\n") == 1, (
                path,
                value,
                err,
            )
            assert "Traceback" not in err and "Extra inputs" not in err, (path, value, err)
    assert refused > len(paths)
