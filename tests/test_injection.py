"""Hostile spec values never become code: every free-text field, through `liftdeploy render` and
`copier copy`, with the classes of text that end a string, a docstring or a comment.

Each rendered service must compile, keep the value intact (read back from the imported module),
and importing its app the way `modal deploy` does must run nothing of the value."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_render import REPO_ROOT, copier_copy

from liftdeploy.cli.main import main
from liftdeploy.errors import RenderError, SpecError
from liftdeploy.render.literals import comment_text, docstring_text, py
from liftdeploy.render.service import render
from liftdeploy.spec.specfile import spec_from_data

EXAMPLE = REPO_ROOT / "examples" / "qwen25-coder-32b.yaml"
CODE = 'open("PWNED", "w").write("ran")'
# The classes of text that end or bend a literal, a docstring or a comment.
PAYLOADS = {
    "triple-quotes": f'Docs."""; {CODE}; """',
    "single-triple-quotes": f"Docs.'''; {CODE}; '''",
    "backslashes": "C:\\Users\\new\\x41\\N{X} ends with \\",
    "newline": f"first line\n{CODE}\n#",
    "carriage-return": f"first\r{CODE}\r\n",
    "hash": f"x # {CODE}",
    "jinja": "{{ 7 * 7 }} {% if true %}" + CODE + "{% endif %} {# c #}",
    "line-separators": f"a\u2028{CODE}\u2029b\x85c\x0cd\x0be",
    "controls-and-bidi": "nul\x00 esc\x1b rtl\u202e tab\t",
    "json-quotes": '{"a": "b\'"}',
    # No whitespace, for the fields that refuse it (mount paths, origins).
    "path-shaped": '/x"""+open("PWNED","w").write("ran")+"""#\\{{x}}',
    "origin-shaped": 'https://a"""+open("PWNED","w").write("ran")+"""#\\',
}
# Where free text can go in a spec (the value is set at this path, or appended to this list).
FIELDS: dict[str, Any] = {
    "description": ("description",),
    "model.id": ("model", "id"),
    "model.revision": ("model", "revision"),
    "model.served_model_name": ("model", "served_model_name"),
    "storage.volumes.mount_path": ("storage", "volumes", 0, "mount_path"),
    "storage.secrets": ("storage", "secrets", 0),
    "storage.dicts": ("storage", "dicts", 0),
    "cors.allowed_origins": ("cors", "allowed_origins", 0),
    "engine.extra_args": ("engine", "extra_args", 1),
    "environments.staging.modal_environment": ("environments", "staging", "modal_environment"),
    "name": ("name",),
}


def _with(data: dict[str, Any], path: tuple[Any, ...], value: str) -> dict[str, Any]:
    changed = copy.deepcopy(data)
    changed.setdefault("engine", {}).setdefault("extra_args", ["--seed", "0"])
    node: Any = changed
    for key, after in zip(path, path[1:]):
        empty: Any = [] if isinstance(after, int) else {}
        node = node.setdefault(key, empty) if isinstance(key, str) else node[key]
    if isinstance(node, list) and path[-1] >= len(node):
        node.append(value)
    else:
        node[path[-1]] = value
    return changed


def _hostile_spec(payload: str) -> tuple[dict[str, Any], list[str]]:
    """The example with the payload in every field that accepts it, and those fields' names."""
    data = yaml.safe_load(EXAMPLE.read_text())
    accepted = []
    for name, path in FIELDS.items():
        candidate = _with(data, path, payload)
        try:
            spec_from_data(candidate)
        except SpecError:
            continue  # refused with the spec's own message: nothing to render
        data, accepted = candidate, [*accepted, name]
    return data, accepted


def _import_apps(apps: list[Path], cwd: Path) -> list[dict[str, Any]]:
    """Import each app module as `modal deploy` does (no token), in cwd; what each holds."""
    script = """
import json, runpy, sys
out = []
for path in sys.argv[1:]:
    module = runpy.run_path(path, run_name="app")
    out.append({"doc": module["__doc__"], "model_id": module["MODEL_ID"],
                "revision": module["MODEL_REVISION"], "args": module["VLLM_ARGS"],
                "volumes": module["VOLUMES"]})
print(json.dumps(out))
"""
    env = {
        "PATH": "/usr/bin:/bin",
        "LIFTDEPLOY_ENV": "production",
        "HOME": str(cwd),
        "PYTHONPATH": str(REPO_ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-c", script, *map(str, apps)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_escapes_are_literals_python_reads_back() -> None:
    for payload in PAYLOADS.values():
        assert eval(py(payload)) == payload  # noqa: S307 - our own literal
        assert eval('"""' + docstring_text(payload) + '\n"""') == payload + "\n"  # noqa: S307
        assert "\n" not in comment_text(payload) and "\r" not in comment_text(payload)
        assert compile("# " + comment_text(payload) + "\nx = 1\n", "c", "exec")


def test_every_free_text_field_renders_as_data(tmp_path: Path) -> None:
    apps, expected = [], []
    for label, payload in PAYLOADS.items():
        data, accepted = _hostile_spec(payload)
        assert "description" in accepted and "model.id" in accepted, label
        spec = tmp_path / f"{label}.yaml"
        spec.write_text(yaml.safe_dump(data, allow_unicode=False))
        out = tmp_path / label
        assert main(["render", str(spec), "-o", str(out)]) == 0, label
        for path in out.rglob("*.py"):
            compile(path.read_text(encoding="utf-8"), str(path), "exec", dont_inherit=True)
        for path in [*out.rglob("*.yml"), *out.rglob("*.yaml")]:
            yaml.safe_load(path.read_text(encoding="utf-8"))
        apps.append(out / "app.py")
        expected.append((label, payload, accepted))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for (label, payload, accepted), module in zip(expected, _import_apps(apps, run_dir)):
        assert payload in module["doc"], label
        assert module["model_id"] == payload, label
        if "model.revision" in accepted:
            assert module["revision"] == payload, label
        if "engine.extra_args" in accepted:
            assert module["args"][-1] == payload, label
        if "storage.volumes.mount_path" in accepted:
            assert payload in module["volumes"], label
    assert not list(run_dir.iterdir()), "importing a rendered app ran code from the spec"
    assert not (REPO_ROOT / "PWNED").exists()


def test_copier_copy_answers_render_as_data(tmp_path: Path) -> None:
    answers = {  # what `copier copy` asks as free text, each with a different class
        "description": PAYLOADS["triple-quotes"] + PAYLOADS["backslashes"] + PAYLOADS["jinja"],
        "model_id": PAYLOADS["newline"] + PAYLOADS["line-separators"],
        # A revision is a git ref name, so a hostile one is refused (below); this one is odd but valid.
        "model_revision": "release/v1.2_rc-3",
    }
    proc = copier_copy(
        tmp_path / "svc",
        "preset=qwen25-coder-32b",
        *(f"{key}={value}" for key, value in answers.items()),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    service = tmp_path / "svc"
    spec = yaml.safe_load((service / "deployment.yaml").read_text())
    assert spec["description"] == answers["description"]
    assert spec["model"]["id"] == answers["model_id"]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    [module] = _import_apps([service / "app.py"], run_dir)
    assert answers["description"] in module["doc"]
    assert module["model_id"] == answers["model_id"]
    assert module["revision"] == answers["model_revision"]
    assert not list(run_dir.iterdir()), "importing the copied app ran code from an answer"
    refused = copier_copy(
        tmp_path / "svc2",
        "preset=qwen25-coder-32b",
        f"model_revision={PAYLOADS['hash'] + PAYLOADS['single-triple-quotes']}",
    )
    assert refused.returncode != 0 and "model.revision" in refused.stderr
    assert not (tmp_path / "svc2").exists()


def test_render_refuses_python_that_does_not_compile(tmp_path: Path) -> None:
    template = tmp_path / "template-copy"
    template.mkdir()
    shutil.copy(REPO_ROOT / "copier.yml", template)
    for folder in ("template", "examples"):
        shutil.copytree(REPO_ROOT / folder, template / folder)
    app = template / "template" / "app.py.jinja"
    app.write_text(app.read_text().replace("MINUTES = 60  # seconds", "MINUTES = (60  # seconds"))
    with pytest.raises(RenderError, match="would not be valid Python.*Nothing was written"):
        render(EXAMPLE, tmp_path / "out", template=template)
    assert not (tmp_path / "out").exists()
