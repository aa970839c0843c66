"""`check` and `render .` use the template version a service records (issue 15, item 1).

The scenario a new user runs: `copier copy --vcs-ref v0.1.0` of a tagged git repo of the
template, a hand edit committed, a template change released as v0.2.0, `copier update`; then
`liftdeploy check .` with the installed liftdeploy (0.1.0). Real Copier, real git repos.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_regenerate import REPO_ROOT, commit_all, copier, git

from liftdeploy import __version__
from liftdeploy.errors import RenderError
from liftdeploy.render.service import check, render
from liftdeploy.render.template_version import pip_requirement

COMMENT_EDIT = "# Operated by the ML platform team; page #ml-oncall.\n"
V2_LINE = "HOURS = 60 * MINUTES\n"


@pytest.fixture
def template_repo(tmp_path: Path) -> Path:
    """A git repo of the template as released at the installed version (tag v0.1.0)."""
    assert __version__ == "0.1.0", "the scenario's first release is the installed version"
    # Not tmp_path/liftdeploy: copier runs with cwd tmp_path, where that folder would shadow
    # the installed package as a namespace package.
    repo = tmp_path / "git" / "liftdeploy"
    repo.mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "copier.yml", repo / "copier.yml")
    shutil.copytree(REPO_ROOT / "template", repo / "template")
    shutil.copytree(
        REPO_ROOT / "examples", repo / "examples", ignore=shutil.ignore_patterns("rendered")
    )
    git(repo, "init", "-q", "-b", "main")
    commit_all(repo, "template")
    git(repo, "tag", "v0.1.0")
    return repo


@pytest.fixture
def service(tmp_path: Path, template_repo: Path) -> Path:
    """`copier copy --vcs-ref v0.1.0`, then a comment-only hand edit, each committed."""
    proc = copier(
        "copy",
        "--trust",
        "--defaults",
        "--quiet",
        "--vcs-ref",
        "v0.1.0",
        "--data",
        "preset=qwen3-next-80b",
        str(template_repo),
        "svc",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    svc = tmp_path / "svc"
    git(svc, "init", "-q", "-b", "main")
    commit_all(svc, "copier copy")
    app = svc / "app.py"
    app.write_text(app.read_text() + COMMENT_EDIT)
    commit_all(svc, "hand edit")
    return svc


def release_v2(template_repo: Path, service: Path) -> None:
    """A template change released as v0.2.0, applied to the service by `copier update`."""
    jinja = template_repo / "template" / "app.py.jinja"
    jinja.write_text(
        jinja.read_text().replace(
            "MINUTES = 60  # seconds\n", "MINUTES = 60  # seconds\n" + V2_LINE, 1
        )
    )
    commit_all(template_repo, "template: HOURS")
    git(template_repo, "tag", "v0.2.0")
    proc = copier("update", "--trust", "--defaults", "--quiet", cwd=service)
    assert proc.returncode == 0, proc.stderr
    app = (service / "app.py").read_text()
    assert V2_LINE in app and COMMENT_EDIT in app and "<<<<<<<" not in app
    assert "_commit: v0.2.0" in (service / ".copier-answers.yml").read_text()
    commit_all(service, "copier update")


def test_check_after_copier_update_renders_the_recorded_release(
    template_repo: Path, service: Path
) -> None:
    release_v2(template_repo, service)
    notes: list[str] = []
    assert check(service, notes=notes) == []
    assert len(notes) == 1
    assert "records template v0.2.0" in notes[0] and f"liftdeploy {__version__}" in notes[0]
    assert pip_requirement(str(template_repo), "v0.2.0") in notes[0]
    assert "copier update --trust --vcs-ref v0.1.0" in notes[0]

    # The CLI exits 0 and says the same in one note.
    proc = subprocess.run(
        [sys.executable, "-m", "liftdeploy.cli.main", "check", str(service)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "note:" in proc.stderr and "records template v0.2.0" in proc.stderr


def test_render_dot_keeps_the_update(template_repo: Path, service: Path) -> None:
    release_v2(template_repo, service)
    notes: list[str] = []
    render(service / "deployment.yaml", service, notes=notes)
    app = (service / "app.py").read_text()
    assert V2_LINE in app and COMMENT_EDIT in app
    assert "_commit: v0.2.0" in (service / ".copier-answers.yml").read_text()
    assert notes and "v0.2.0" in notes[0]


def test_unreadable_recorded_release_is_a_version_message_not_drift(
    template_repo: Path, service: Path
) -> None:
    release_v2(template_repo, service)
    shutil.rmtree(template_repo)
    with pytest.raises(RenderError) as caught:
        check(service)
    message = str(caught.value)
    assert "\n" not in message
    assert "rendered from template v0.2.0" in message and "cannot be read here" in message
    assert "pip install" in message and "copier update --trust --vcs-ref v0.1.0" in message
    assert "hand edits conflict" not in message


def test_comment_edit_on_the_installed_release_is_not_drift_offline(
    template_repo: Path, service: Path
) -> None:
    # The service records v0.1.0, the installed version: its source is not needed.
    shutil.rmtree(template_repo)
    notes: list[str] = []
    assert check(service, notes=notes) == []
    assert notes == []


def test_unreadable_development_commit_says_so_instead_of_blaming_hand_edits(
    tmp_path: Path, template_repo: Path
) -> None:
    # A template at an untagged commit (Copier records a hash), then gone.
    (template_repo / "template" / "app.py.jinja").write_text(
        (template_repo / "template" / "app.py.jinja").read_text() + "# development line\n"
    )
    commit_all(template_repo, "work in progress")
    proc = copier(
        "copy",
        "--trust",
        "--defaults",
        "--quiet",
        "--vcs-ref",
        "HEAD",
        "--data",
        "preset=qwen3-next-80b",
        str(template_repo),
        "dev",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    service = tmp_path / "dev"
    assert "_commit: v0.1.0-1-g" in (service / ".copier-answers.yml").read_text()
    git(service, "init", "-q", "-b", "main")
    commit_all(service, "copier copy")
    shutil.rmtree(template_repo)
    drift = check(service)
    assert [entry.split(":")[0] for entry in drift] == [str(service / "app.py")]
    assert "cannot be read to tell your edits from template changes" in drift[0]
    assert "hand edits conflict" not in drift[0]
