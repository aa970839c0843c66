"""The built wheel carries the Copier template: render and regenerate from a plain install.

The wheel is built from a copy of the project's files (so nothing in the checkout's build/
helps it) and installed with --no-deps into a fresh virtual environment; the dependencies
(copier, pydantic, modal...) come from this test run's environment through a path entry, which
does not activate the checkout's editable install. The test asserts that the liftdeploy it runs
is the installed one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from liftdeploy.render.regenerate import rendered_files, without_stamps
from liftdeploy.render.service import render

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = REPO_ROOT / "examples" / "qwen3-next-80b.yaml"
PROJECT_FILES = [
    "pyproject.toml",
    "setup.py",
    "README.md",
    "copier.yml",
    "template",
    "examples",
    "liftdeploy",
]


class Installed:
    def __init__(self, venv: Path, work: Path) -> None:
        self.venv, self.work = venv, work

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / args[0]), *args[1:]],
            cwd=cwd or self.work,
            capture_output=True,
            text=True,
            timeout=300,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "rendered", "_template", "_examples")
    for name in PROJECT_FILES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(root / "dist"),
        ],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    wheel = next((root / "dist").glob("liftdeploy-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    # Dependencies from this environment: a path entry only (its .pth files, including the
    # checkout's editable liftdeploy, are not processed).
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stderr
    work = root / "work"
    work.mkdir()
    yield Installed(venv, work)


def test_the_installed_liftdeploy_is_the_wheel(installed: Installed) -> None:
    proc = installed.run(
        "python",
        "-c",
        "import liftdeploy, liftdeploy.render.service as r; "
        "print(liftdeploy.__file__); print(r.template_source())",
    )
    assert proc.returncode == 0, proc.stderr
    module_file, template = proc.stdout.split()
    assert module_file.startswith(str(installed.venv))
    assert template.startswith(str(installed.venv)) and template.endswith("_template")


def test_render_from_the_wheel_equals_render_from_the_checkout(
    installed: Installed, tmp_path: Path
) -> None:
    proc = installed.run("liftdeploy", "render", str(EXAMPLE), "-o", "svc")
    assert proc.returncode == 0, proc.stderr
    from_wheel = rendered_files(installed.work / "svc")
    from_checkout = rendered_files(render(EXAMPLE, tmp_path / "svc"))
    answers = ".copier-answers.yml"
    assert without_stamps(from_wheel.pop(answers)) == without_stamps(from_checkout.pop(answers))
    assert from_wheel == from_checkout
    assert set(from_wheel) >= {
        "app.py",
        "README.md",
        "RUNBOOK.md",
        "deployment.yaml",
        ".github/workflows/deploy.yml",
        "liftdeploy_runtime/server.py",
    }
    check = installed.run("liftdeploy", "check", "svc")
    assert check.returncode == 0, check.stderr


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def test_regenerate_from_the_wheel_keeps_hand_edits(installed: Installed) -> None:
    service = installed.work / "regen"
    proc = installed.run("liftdeploy", "render", str(EXAMPLE), "-o", str(service))
    assert proc.returncode == 0, proc.stderr
    _git(service, "init", "-q", "-b", "main")
    app = service / "app.py"
    app.write_text(
        app.read_text().replace(
            "MINUTES = 60  # seconds\n", 'MINUTES = 60  # seconds\nTEAM = "ml-platform"\n', 1
        )
    )
    _git(service, "add", "-A")
    _git(service, "commit", "-q", "-m", "render + hand edit")
    assert (
        installed.run("liftdeploy", "set", "deployment.yaml", "gpu.count=4", cwd=service).returncode
        == 0
    )
    proc = installed.run("liftdeploy", "render", ".", cwd=service)
    assert proc.returncode == 0, proc.stderr
    text = app.read_text()
    assert 'GPU = "H100!:4"' in text and 'TEAM = "ml-platform"' in text
    assert not re.search(r"^<<<<<<<", text, re.MULTILINE)
