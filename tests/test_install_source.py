"""Where CI installs liftdeploy from, decided when a service is rendered (issue 27, items 1-2).

A service is scaffolded three ways; for each, the answers file records the install source and
the workflow's real install step (run as a runner would, with `pip` replaced by a recorder)
installs that requirement or refuses with the fix:

- `copier copy` from a git URL: a real https URL that git maps to a local repository
  (`url.<base>.insteadOf`), so Copier clones over git as it would from a forge;
- `liftdeploy init` from an installed wheel (a path on this machine: refused), and from the
  same wheel installed as a release from an index (`--find-links`: pip records no path);
- `copier copy` from a local path (refused).

And the shipped examples record no path of the machine that rendered them: `copier update`
works in a fresh clone of this repository.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_regenerate import REPO_ROOT, commit_all, copier, git
from test_wheel import Installed, installed  # noqa: F401 - the module-scoped wheel fixture
from test_workflow import install_step, recorders

from liftdeploy import __version__
from liftdeploy.render.template_version import INSTALL_KEY, LOCAL_SOURCE_FIX, PIP_VARIABLE

FORGE_URL = "https://git.example.com/acme/liftdeploy.git"


@pytest.fixture
def template_repo(tmp_path: Path) -> Path:
    """A git repository of liftdeploy's template (what a forge would hold)."""
    repo = tmp_path / "git" / "liftdeploy"
    repo.mkdir(parents=True)
    shutil.copy2(REPO_ROOT / "copier.yml", repo / "copier.yml")
    shutil.copytree(REPO_ROOT / "template", repo / "template")
    shutil.copytree(
        REPO_ROOT / "examples", repo / "examples", ignore=shutil.ignore_patterns("rendered")
    )
    git(repo, "init", "-q", "-b", "main")
    commit_all(repo, "template")
    return repo


def committed(service: Path) -> Path:
    git(service, "init", "-q", "-b", "main")
    commit_all(service, "scaffold")
    return service


def recorded_requirement(service: Path) -> str | None:
    match = re.search(rf"(?m)^{INSTALL_KEY}: *(.+)$", (service / ".copier-answers.yml").read_text())
    return match.group(1).strip("'\"") if match else None


def assert_install_refused(service: Path, bin_dir: Path) -> None:
    run = install_step(service, bin_dir)
    assert run.calls == [], "a refused install must not fall back to any package"
    assert list(run.outcomes.values()) == ["failure"]
    errors = [line for line in run.output.splitlines() if line.startswith("::error::")]
    assert len(errors) == 1 and LOCAL_SOURCE_FIX in errors[0] and PIP_VARIABLE in errors[0]


def test_copier_from_a_git_url_installs_that_repository_at_the_rendered_commit(
    tmp_path: Path, template_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gitconfig"
    config.write_text(f'[url "{template_repo.as_uri()}"]\n\tinsteadOf = {FORGE_URL}\n')
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    proc = copier(
        "copy",
        "--trust",
        "--defaults",
        "--quiet",
        "--vcs-ref",
        "HEAD",
        "--data",
        "preset=qwen3-next-80b",
        FORGE_URL,
        "svc",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    service = committed(tmp_path / "svc")
    commit = git(template_repo, "rev-parse", "HEAD").strip()
    requirement = f"liftdeploy @ git+{FORGE_URL}@{commit}"  # the full hash, not a movable tag
    assert recorded_requirement(service) == requirement
    run = install_step(service, recorders(tmp_path / "bin"))
    assert run.calls == [["pip", "install", "--quiet", requirement]]
    assert list(run.outcomes.values()) == ["success"], run.output


def test_copier_from_a_local_path_is_refused_with_the_fix(
    tmp_path: Path, template_repo: Path
) -> None:
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
        "svc",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    service = committed(tmp_path / "svc")
    assert recorded_requirement(service) is None
    assert_install_refused(service, recorders(tmp_path / "bin"))
    # `check` says so at once (the workflow would refuse), without failing on it.
    checked = subprocess.run(
        [str(Path(sys.executable).parent / "liftdeploy"), "check", str(service)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert PIP_VARIABLE in checked.stderr, checked.stderr


def init(installed: Installed, directory: Path) -> subprocess.CompletedProcess[str]:  # noqa: F811
    return installed.run("liftdeploy", "init", "--preset", "qwen3-next-80b", str(directory))


def test_init_from_an_installed_wheel_file_is_refused_with_the_fix(
    tmp_path: Path,
    installed: Installed,  # noqa: F811
) -> None:
    proc = init(installed, tmp_path / "svc")
    assert proc.returncode == 0, proc.stderr
    service = committed(tmp_path / "svc")
    assert recorded_requirement(service) is None  # the wheel's path is this machine's
    assert_install_refused(service, recorders(tmp_path / "bin"))


def test_init_says_at_once_that_ci_cannot_install_it(
    tmp_path: Path,
    installed: Installed,  # noqa: F811
) -> None:
    proc = init(installed, tmp_path / "svc")
    assert proc.returncode == 0, proc.stderr
    assert LOCAL_SOURCE_FIX in proc.stderr, proc.stderr


def test_init_from_a_release_on_an_index_installs_that_release(
    tmp_path: Path,
    installed: Installed,  # noqa: F811
) -> None:
    # The same wheel installed by name from a package index (a --find-links folder): pip
    # records no direct URL, as for any index release.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    shutil.copy2(next((installed.venv / "lib").glob("python*/site-packages/deps.pth")), site)
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
            "--ignore-installed",
            "--find-links",
            str(installed.venv.parent / "dist"),
            "-q",
            f"liftdeploy=={__version__}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stderr
    proc = init(Installed(venv, tmp_path), tmp_path / "svc")
    assert proc.returncode == 0, proc.stderr
    service = committed(tmp_path / "svc")
    requirement = f"liftdeploy=={__version__}"
    assert recorded_requirement(service) == requirement
    run = install_step(service, recorders(tmp_path / "bin"))
    assert run.calls == [["pip", "install", "--quiet", requirement]]


# --- the shipped examples ------------------------------------------------------------------


EXAMPLE_SERVICES = sorted(
    p.parent.name for p in (REPO_ROOT / "examples" / "rendered").glob("*/.copier-answers.yml")
)


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This repository as a new user clones it (committed files only)."""
    clone = tmp_path_factory.mktemp("clone") / "liftdeploy"
    proc = subprocess.run(
        ["git", "clone", "-q", str(REPO_ROOT), str(clone)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return clone


@pytest.mark.parametrize("example", EXAMPLE_SERVICES)
def test_example_records_a_reachable_source_and_copier_update_works_in_a_fresh_clone(
    example: str, fresh_clone: Path
) -> None:
    service = fresh_clone / "examples" / "rendered" / example
    answers = (service / ".copier-answers.yml").read_text()
    source = re.search(r"(?m)^_src_path: *(.+)$", answers).group(1)
    assert not Path(source).is_absolute(), (
        f"{example} records {source}, a path of the machine that rendered it; re-render the "
        f"examples (see template_version.portable_answers)"
    )
    assert (service / source).resolve() == fresh_clone.resolve()
    assert recorded_requirement(service) == source  # CI installs this checkout's liftdeploy
    proc = copier(
        "update",
        "--trust",
        "--defaults",
        "--quiet",
        "--skip-answered",
        "--vcs-ref",
        "HEAD",
        cwd=service,
    )
    assert proc.returncode == 0, proc.stderr
    status = git(fresh_clone, "status", "--porcelain", "--", str(service))
    assert ".rej" not in status and "<<<<<<<" not in "".join(
        p.read_text() for p in service.rglob("*.py")
    ), status
