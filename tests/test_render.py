"""Rendering through the real Copier template: `liftdeploy render`, `copier copy`, `check`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from liftdeploy.cli.main import main
from liftdeploy.errors import RenderError, SpecError
from liftdeploy.render.regenerate import PRISTINE_DIR, rendered_files
from liftdeploy.render.service import check, render, template_source
from liftdeploy.spec.specfile import set_values

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples"
NAMES = ["qwen25-coder-32b", "qwen3-next-80b", "qwen3-coder-480b"]
STAMPS = re.compile(r"^(_src_path|_commit): .*\n", re.MULTILINE)


def copier_copy(dst: Path, *data: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The copier command line a user runs (the checkout as template, its working tree)."""
    args = [arg for item in data for arg in ("--data", item)]
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "copier",
            "copy",
            "--trust",
            "--defaults",
            "--quiet",
            "--vcs-ref",
            "HEAD",
            *args,
            str(REPO_ROOT),
            str(dst),
        ],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def without_stamps(files: dict[str, str]) -> dict[str, str]:
    return {rel: STAMPS.sub("", text) for rel, text in files.items()}


def test_template_source_is_the_checkout() -> None:
    assert template_source() == REPO_ROOT
    assert (template_source() / "copier.yml").is_file()


def test_examples_are_in_sync() -> None:
    assert check(EXAMPLES) == []


def test_copier_copy_equals_liftdeploy_render(tmp_path: Path) -> None:
    proc = copier_copy(tmp_path / "copied", "preset=qwen3-next-80b")
    assert proc.returncode == 0, proc.stderr
    render(EXAMPLES / "qwen3-next-80b.yaml", tmp_path / "rendered")
    copied = rendered_files(tmp_path / "copied")
    rendered = rendered_files(tmp_path / "rendered")
    assert without_stamps(copied) == without_stamps(rendered)
    assert copied["deployment.yaml"] == (EXAMPLES / "qwen3-next-80b.yaml").read_text()
    assert "preset: qwen3-next-80b" in copied[".copier-answers.yml"]


def test_copier_answers_change_the_spec_and_the_app(tmp_path: Path) -> None:
    proc = copier_copy(
        tmp_path / "svc",
        "preset=qwen3-coder-480b",
        "name=coder-big",
        "min_containers=0",
        "max_containers=3",
    )
    assert proc.returncode == 0, proc.stderr
    spec = (tmp_path / "svc" / "deployment.yaml").read_text()
    assert "name: coder-big" in spec and "max_containers: 3" in spec
    assert "# Qwen3-Coder-480B-A35B (MoE, FP8) on eight H100s." in spec  # comments kept
    app = (tmp_path / "svc" / "app.py").read_text()
    assert '"production": "coder-big",' in app or 'APP_NAME = "coder-big"' in app
    assert 'GPU = "H100!:8"' in app
    assert check(tmp_path / "svc") == []


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (["preset=qwen25-coder-32b", "gpu_count=3"], "does not divide"),
        (["preset=qwen25-coder-32b", "name=Bad_Name"], "is not DNS-safe"),
    ],
)
def test_invalid_answer_stops_copier_with_the_spec_message(
    tmp_path: Path, answers: list[str], message: str
) -> None:
    proc = copier_copy(tmp_path / "svc", *answers)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "svc").exists()


def test_invalid_spec_renders_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        (EXAMPLES / "qwen25-coder-32b.yaml").read_text().replace("count: 1", "count: 3")
    )
    with pytest.raises(SpecError, match="does not divide"):
        render(spec, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert main(["render", str(spec), "-o", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_no_secret_value_in_any_rendered_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {
        "HF_TOKEN": "hf_" + "Zq8vW3xY" * 4,
        "VLLM_API_KEY": "sk-liftdeploy-" + "R4nd0mV4lue" * 3,
        "MODAL_TOKEN_SECRET": "as-" + "S3cr3tT0k3n" * 3,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    token_shapes = re.compile(r"\b(hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9-]{20,}|as-[A-Za-z0-9]{20,})")
    dirs = [EXAMPLES / "rendered" / name for name in NAMES]
    for name in NAMES:
        dirs.append(render(EXAMPLES / f"{name}.yaml", tmp_path / name))
    scanned = 0
    for directory in dirs:
        for path in directory.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                text = path.read_text()
                scanned += 1
                for value in values.values():
                    assert value not in text, f"{path} holds a secret value"
                assert not token_shapes.search(text), f"{path}: {token_shapes.search(text)}"
    assert scanned > 30
    # The secrets the spec names are referenced by name.
    app = (tmp_path / "qwen25-coder-32b" / "app.py").read_text()
    assert '"huggingface"' in app and "modal.Secret.from_name(name)" in app


def test_check_finds_spec_drift_and_allows_hand_edits(tmp_path: Path) -> None:
    service = render(EXAMPLES / "qwen3-next-80b.yaml", tmp_path / "svc")
    assert (service / PRISTINE_DIR / "app.py").is_file()
    app = service / "app.py"
    app.write_text(
        app.read_text().replace(
            "MINUTES = 60  # seconds", 'MINUTES = 60  # seconds\nTEAM = "ml-platform"  # hand edit'
        )
    )
    assert check(service) == []  # a hand edit is not drift: regenerating keeps it
    set_values(service / "deployment.yaml", ["gpu.count=4"])
    drift = check(service)
    assert any("app.py: differs from a fresh render" in d and 'GPU = "H100!:4"' in d for d in drift)
    assert main(["check", str(service)]) == 1
    render(service / "deployment.yaml", service)
    assert check(service) == [] and main(["check", str(service)]) == 0
    text = app.read_text()
    assert 'GPU = "H100!:4"' in text and 'TEAM = "ml-platform"' in text


def test_check_refuses_hand_edits_that_contradict_the_spec(tmp_path: Path) -> None:
    service = render(EXAMPLES / "qwen3-coder-480b.yaml", tmp_path / "svc")
    app = service / "app.py"
    text = app.read_text()
    app.write_text(
        text.replace('GPU = "H100!:8"', 'GPU = "A10:1"').replace(
            "MAX_CONTAINERS = 1\n", "MAX_CONTAINERS = 50\n"
        )
    )
    drift = check(service)
    assert any("GPU is 'A10:1' but deployment.yaml gives 'H100!:8'" in d for d in drift), drift
    assert any("MAX_CONTAINERS is 50" in d for d in drift), drift
    app.write_text(text.replace("    gpu=GPU,", '    gpu="A10",'))
    assert any("the decorator of Server" in d for d in check(service))
    app.write_text(text.replace("MINUTES = 60  # seconds", "MINUTES = (\n    60\n)  # seconds"))
    assert check(service) == []  # reformatting a value is not drift


def test_check_compares_examples_with_their_services(tmp_path: Path) -> None:
    folder = tmp_path / "examples"
    folder.mkdir()
    spec = folder / "qwen3-next-80b.yaml"
    spec.write_text((EXAMPLES / "qwen3-next-80b.yaml").read_text())
    render(spec, folder / "rendered" / "qwen3-next-80b")
    assert check(folder) == []
    set_values(spec, ["runtime.max_containers=3"])
    assert any("differs from" in d and "qwen3-next-80b.yaml" in d for d in check(folder))


def test_check_without_services_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="no rendered service found"):
        check(tmp_path)


def test_render_without_output_needs_a_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["render", str(EXAMPLES / "qwen3-next-80b.yaml")]) == 1
    assert "pass the directory to render into with -o DIR" in capsys.readouterr().err
    service = tmp_path / "svc"
    assert main(["render", str(EXAMPLES / "qwen3-next-80b.yaml"), "-o", str(service)]) == 0
    assert main(["render", str(service)]) == 0  # a service dir re-renders in place


def test_readme_gives_the_whole_first_path(tmp_path: Path) -> None:
    readme = rendered_files(render(EXAMPLES / "qwen3-next-80b.yaml", tmp_path / "svc"))["README.md"]
    start = readme[readme.index("## Quick start") :]
    steps = [
        f"liftdeploy {verb} deployment.yaml --env staging"
        for verb in ("plan", "bootstrap", "download", "deploy", "smoke")
    ]
    steps += ["liftdeploy pin deployment.yaml", "--env production"]
    positions = [start.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), dict(zip(steps, positions))
