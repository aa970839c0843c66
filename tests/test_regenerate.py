"""Regenerating a service after a spec or template change keeps the user's hand edits.

Two paths, both on real git repositories: `copier update` from a tagged git repo of the template,
and `liftdeploy render .` (three-way merge against the last render kept in the service). The
installed-wheel variant of the second path is in test_wheel.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from liftdeploy.errors import RenderError, SpecError
from liftdeploy.render.regenerate import PRISTINE_DIR
from liftdeploy.render.service import check, render
from liftdeploy.spec.specfile import set_values

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = REPO_ROOT / "examples" / "qwen3-next-80b.yaml"
HAND_EDIT = 'MINUTES = 60  # seconds\nTEAM = "ml-platform"  # hand edit: who runs this service\n'


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def copier(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "copier", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.parts
    }


def hand_edit(app: Path) -> None:
    text = app.read_text()
    assert "MINUTES = 60  # seconds\n" in text
    app.write_text(text.replace("MINUTES = 60  # seconds\n", HAND_EDIT, 1))


@pytest.fixture
def template_repo(tmp_path: Path) -> Path:
    """A git repo of liftdeploy's template (copier.yml, template/, the preset examples), tagged."""
    repo = tmp_path / "liftdeploy-template"
    repo.mkdir()
    shutil.copy2(REPO_ROOT / "copier.yml", repo / "copier.yml")
    shutil.copytree(REPO_ROOT / "template", repo / "template")
    (repo / "examples").mkdir()
    for spec in (REPO_ROOT / "examples").glob("*.yaml"):
        shutil.copy2(spec, repo / "examples" / spec.name)
    git(repo, "init", "-q", "-b", "main")
    commit_all(repo, "template")
    git(repo, "tag", "v1.0.0")
    return repo


@pytest.fixture
def rendered_service(tmp_path: Path) -> Path:
    """A service made by `liftdeploy render`, committed in its own git repo."""
    service = render(EXAMPLE, tmp_path / "svc")
    git(service, "init", "-q", "-b", "main")
    commit_all(service, "render")
    return service


def test_copier_update_keeps_hand_edit_and_applies_new_value(
    tmp_path: Path, template_repo: Path
) -> None:
    proc = copier(
        "copy",
        "--trust",
        "--defaults",
        "--quiet",
        "--data",
        "preset=qwen3-next-80b",
        str(template_repo),
        "svc",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    service = tmp_path / "svc"
    assert "_commit: v1.0.0" in (service / ".copier-answers.yml").read_text()
    git(service, "init", "-q", "-b", "main")
    commit_all(service, "copier copy")
    hand_edit(service / "app.py")
    commit_all(service, "hand edit")

    proc = copier(
        "update", "--trust", "--defaults", "--quiet", "--data", "gpu_count=4", cwd=service
    )
    assert proc.returncode == 0, proc.stderr
    app = (service / "app.py").read_text()
    assert 'GPU = "H100!:4"' in app and '"--tensor-parallel-size", "4",' in app
    assert HAND_EDIT in app
    assert "count: 4" in (service / "deployment.yaml").read_text()
    assert "<<<<<<<" not in app
    commit_all(service, "update")

    # A new template release (tag v1.1.0) changes app.py; the edit survives that too.
    jinja = template_repo / "template" / "app.py.jinja"
    jinja.write_text(
        jinja.read_text().replace(
            "MINUTES = 60  # seconds\n", "MINUTES = 60  # seconds\nHOURS = 60 * MINUTES\n", 1
        )
    )
    commit_all(template_repo, "template: HOURS")
    git(template_repo, "tag", "v1.1.0")
    proc = copier("update", "--trust", "--defaults", "--quiet", cwd=service)
    assert proc.returncode == 0, proc.stderr
    app = (service / "app.py").read_text()
    assert "HOURS = 60 * MINUTES" in app and 'TEAM = "ml-platform"' in app
    assert 'GPU = "H100!:4"' in app
    assert "_commit: v1.1.0" in (service / ".copier-answers.yml").read_text()


def test_copier_update_with_an_invalid_value_changes_nothing(
    tmp_path: Path, template_repo: Path
) -> None:
    proc = copier(
        "copy",
        "--trust",
        "--defaults",
        "--quiet",
        "--data",
        "preset=qwen3-next-80b",
        str(template_repo),
        "svc",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    service = tmp_path / "svc"
    git(service, "init", "-q", "-b", "main")
    commit_all(service, "copier copy")
    before = snapshot(service)
    proc = copier(
        "update", "--trust", "--defaults", "--quiet", "--data", "gpu_count=3", cwd=service
    )
    assert proc.returncode != 0
    assert "does not divide" in proc.stderr and "Traceback" not in proc.stderr
    assert snapshot(service) == before
    assert git(service, "status", "--porcelain") == ""


def test_render_keeps_hand_edit_and_applies_spec_change(rendered_service: Path) -> None:
    service = rendered_service
    hand_edit(service / "app.py")
    commit_all(service, "hand edit")
    set_values(service / "deployment.yaml", ["gpu.count=4"])  # uncommitted: the render's input
    render(service / "deployment.yaml", service)
    app = (service / "app.py").read_text()
    assert 'GPU = "H100!:4"' in app and HAND_EDIT in app
    assert 'GPU = "H100!:4"' in (service / PRISTINE_DIR / "app.py").read_text()
    assert "TEAM" not in (service / PRISTINE_DIR / "app.py").read_text()
    assert check(service) == []


def test_conflict_is_reported_and_nothing_is_lost(rendered_service: Path) -> None:
    service = rendered_service
    app = service / "app.py"
    app.write_text(
        app.read_text().replace(
            'GPU = "H100!:2"\n', 'GPU = "H100!:2"  # two is enough, see ticket 42\n', 1
        )
    )
    commit_all(service, "hand edit on the GPU line")
    set_values(service / "deployment.yaml", ["gpu.count=4"])
    before = snapshot(service)

    with pytest.raises(RenderError) as caught:
        render(service / "deployment.yaml", service)
    report = str(caught.value)
    assert "nothing was written" in report
    assert "app.py: 1 conflicting hunk(s)" in report
    assert 'yours:      GPU = "H100!:2"  # two is enough, see ticket 42' in report
    assert 'new render: GPU = "H100!:4"' in report
    assert snapshot(service) == before

    with pytest.raises(RenderError, match="wrote conflict markers"):
        render(service / "deployment.yaml", service, conflict_markers=True)
    text = app.read_text()
    assert "<<<<<<< yours" in text and ">>>>>>> new render" in text
    assert 'GPU = "H100!:2"  # two is enough, see ticket 42' in text and 'GPU = "H100!:4"' in text
    assert '"--tensor-parallel-size", "4",' in text  # the lines without conflict did merge


def test_dirty_service_is_refused_unless_forced(rendered_service: Path) -> None:
    service = rendered_service
    hand_edit(service / "app.py")  # not committed
    before = snapshot(service)
    with pytest.raises(RenderError, match=r"uncommitted changes in app\.py.*--force"):
        render(service / "deployment.yaml", service)
    assert snapshot(service) == before
    set_values(service / "deployment.yaml", ["runtime.max_containers=3"])
    render(service / "deployment.yaml", service, force=True)
    app = (service / "app.py").read_text()
    assert HAND_EDIT in app and '"production": 3,' in app


def test_invalid_spec_changes_nothing(rendered_service: Path) -> None:
    service = rendered_service
    spec = service / "deployment.yaml"
    spec.write_text(spec.read_text().replace("count: 2 ", "count: 3 "))
    before = snapshot(service)
    with pytest.raises(SpecError, match="does not divide"):
        render(spec, service)
    assert snapshot(service) == before


def test_user_deleted_file_stays_deleted_and_new_files_arrive(rendered_service: Path) -> None:
    service = rendered_service
    (service / "RUNBOOK.md").unlink()
    (service / PRISTINE_DIR / "README.md").unlink()  # as if README.md were new in this release
    (service / "README.md").unlink()
    commit_all(service, "drop the runbook")
    render(service / "deployment.yaml", service)
    assert not (service / "RUNBOOK.md").exists()
    assert (service / "README.md").is_file()


def test_render_over_a_copier_made_service_merges_against_its_recorded_answers(
    tmp_path: Path, template_repo: Path
) -> None:
    proc = copier(
        "copy",
        "--trust",
        "--defaults",
        "--quiet",
        "--data",
        "preset=qwen3-next-80b",
        str(template_repo),
        "svc",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    service = tmp_path / "svc"
    assert not (service / PRISTINE_DIR).exists()
    git(service, "init", "-q", "-b", "main")
    hand_edit(service / "app.py")
    commit_all(service, "copier copy + hand edit")
    assert check(service) == []  # the hand edit is not drift
    set_values(service / "deployment.yaml", ["gpu.count=4"])
    render(service / "deployment.yaml", service)
    app = (service / "app.py").read_text()
    assert 'GPU = "H100!:4"' in app and HAND_EDIT in app
    assert (service / PRISTINE_DIR / "app.py").is_file()  # from now on, merges use it


def test_copier_update_of_a_custom_service_says_to_render_in_one_line(
    tmp_path: Path,
    template_repo: Path,
) -> None:
    spec = tmp_path / "spec.yaml"
    shutil.copy2(EXAMPLE, spec)
    set_values(spec, ["model.max_model_len=16384"])  # no longer the example: preset custom
    service = render(spec, tmp_path / "svc")
    answers = service / ".copier-answers.yml"
    text = answers.read_text()
    assert "preset: custom" in text
    answers.write_text(
        "".join(
            f"_src_path: {template_repo}\n"
            if line.startswith("_src_path:")
            else "_commit: v1.0.0\n"
            if line.startswith("_commit:")
            else line
            for line in text.splitlines(keepends=True)
        )
    )
    git(service, "init", "-q", "-b", "main")
    commit_all(service, "render")
    readme = template_repo / "template" / "README.md.jinja"
    readme.write_text(readme.read_text() + "\nA new release.\n")
    commit_all(template_repo, "template: README")
    git(template_repo, "tag", "v1.1.0")
    before = snapshot(service)

    proc = copier("update", "--trust", "--defaults", "--quiet", cwd=service)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "this service was rendered by `liftdeploy render` from a spec of its own, which "
        "Copier's answers do not hold; regenerate it with `liftdeploy render .`"
    ]
    assert snapshot(service) == before


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "liftdeploy.cli.main", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _assignment(lines: list[str], name: str) -> list[str]:
    """The lines that assign `name` at module level: one line, or a literal to its closing line
    (per-environment values render as a dict)."""
    (start,) = [i for i, line in enumerate(lines) if line.startswith(f"{name} = ")]
    end = start
    if lines[start].rstrip().endswith(("{", "[", "(")):
        while not lines[end].startswith(("}", "]", ")")):
            end += 1
    return lines[start : end + 1]


def test_a_comment_above_a_spec_controlled_line_survives_render(tmp_path: Path) -> None:
    """Issue 28 item 5: a comment above the lines a spec value renders, then `set` that value
    and `render .`: no conflict, the comment stays, the new value is applied."""
    (tmp_path / "init").mkdir()
    made = _cli(
        "init", "commented", "--model-id", "Qwen/Qwen2.5-Coder-32B-Instruct", cwd=tmp_path / "init"
    )
    assert made.returncode == 0, made.stderr
    # Rendered by liftdeploy, so the merge base is the kept last render (a Copier-made
    # service's base is re-rendered from its recorded template commit).
    service = tmp_path / "commented"
    rendered = _cli(
        "render", str(tmp_path / "init" / "commented"), "-o", str(service), cwd=tmp_path
    )
    assert rendered.returncode == 0, rendered.stderr
    git(service, "init", "-q", "-b", "main")
    commit_all(service, "init")
    app = service / "app.py"
    lines = app.read_text().splitlines()
    before = _assignment(lines, "MAX_CONTAINERS")  # what runtime.max_containers renders
    comment = "# hand note: raised for the launch week, see ticket OPS-12"
    lines.insert(lines.index(before[0]), comment)
    app.write_text("\n".join(lines) + "\n")
    commit_all(service, "a comment")
    changed = _cli("set", ".", "runtime.max_containers=3", cwd=service)
    assert changed.returncode == 0, changed.stderr
    rendered = _cli("render", ".", cwd=service)
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    fresh = _assignment(
        (service / PRISTINE_DIR / "app.py").read_text().splitlines(), "MAX_CONTAINERS"
    )
    assert fresh != before  # the spec change reached the render
    merged = app.read_text().splitlines()
    at = merged.index(comment)
    assert merged[at + 1 : at + 1 + len(fresh)] == fresh
