"""Which template renders an existing service: the version the service records.

Copier records where a service's template came from (`_src_path`) and which version
(`_commit`, `git describe` of the template: `v0.2.0` for a release, `v0.1.0-3-gabc1234` or a
hash for a development commit). `check` and `render .` must re-render with that version, or an
update made by `copier update` looks like drift and `render .` would revert it.

- A release equal to the installed liftdeploy's version, a development commit, or no record:
  the installed template (a development checkout follows its own working tree).
- Another release: that release's template, read from the recorded source, rendered by the
  installed liftdeploy (its Jinja extension), with a note naming the difference and the fix.
- Another release whose source cannot be read: a RenderError naming the fix, never a report
  of drift that is only a version difference.

Where CI installs liftdeploy from is decided here too, when the answers file is rendered
(`install_source`), and recorded there as `_liftdeploy_pip`: the template's git URL at the
rendered commit (`copier copy` from git), pip's record of the installed package (`liftdeploy
render`/`init`: a git URL and commit, or a release from an index), or a path of this service's
own repository. A path on the rendering machine is recorded as nothing: the workflow then
refuses with LOCAL_SOURCE_FIX, never installing a bare package name someone could register.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from liftdeploy import __version__
from liftdeploy.errors import RenderError
from liftdeploy.render.regenerate import ANSWERS_FILE, git_toplevel

__all__ = [
    "INSTALL_KEY",
    "LOCAL_SOURCE_FIX",
    "PIP_VARIABLE",
    "InstallSource",
    "Template",
    "at_root",
    "checkout",
    "for_service",
    "install_source",
    "installed",
    "is_git_root",
    "is_release",
    "local_source_note",
    "package_source",
    "pip_requirement",
    "portable_answers",
    "recorded",
    "recorded_install",
    "repository_folder",
    "workflow_at_root",
    "workflow_move_note",
]

_RELEASE = re.compile(r"^v?\d+\.\d+(\.\d+)*([abc]|rc|\.post|\.dev)?\d*$")
_LS_REMOTE_TIMEOUT_S = 60
_REMOTE_PREFIXES = ("gh:", "gl:", "git+", "git@", "https://", "http://", "ssh://", "git://")

INSTALL_KEY = "_liftdeploy_pip"
"""The answers-file key recording the pip requirement CI installs liftdeploy with."""
PIP_VARIABLE = "LIFTDEPLOY_PIP"
"""The GitHub repository variable that overrides (or, for a local source, supplies) it."""
LOCAL_SOURCE_FIX = (
    f"set the GitHub repository variable {PIP_VARIABLE} to a pip requirement CI can install "
    f"the liftdeploy that rendered this service from, e.g. "
    f"'liftdeploy @ git+https://github.com/OWNER/liftdeploy@COMMIT' (RUNBOOK.md, CI)"
)


@dataclass(frozen=True)
class Template:
    """A template Copier can render: its source and the git ref to check out; for a release
    other than the installed one, what to tell the user and how to match versions."""

    source: str
    vcs_ref: str | None
    note: str | None = None
    fix: str | None = None


def template_source() -> Path:
    """The template root holding copier.yml: the wheel's copy, else the checkout's root."""
    packaged = Path(__file__).parent.parent / "_template"
    if (packaged / "copier.yml").is_file():
        return packaged
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "copier.yml").is_file() and (checkout / "template").is_dir():
        return checkout
    raise RenderError(
        f"liftdeploy's Copier template is missing (looked in {packaged} and {checkout}); "
        f"reinstall liftdeploy (pip install --force-reinstall liftdeploy)"
    )


def installed() -> Template:
    """The installed liftdeploy's template; a git checkout renders its working tree (HEAD plus
    uncommitted work), not its latest tag."""
    return at_root(template_source())


def at_root(root: Path) -> Template:
    """The template in directory `root`; a git checkout renders its working tree."""
    return Template(str(root), "HEAD" if is_git_root(root) else None)


def recorded(service: Path) -> tuple[str, str | None] | None:
    """The template source and version (None: not a git template) a service's answers file
    records; None without a recorded source."""
    from liftdeploy.spec.specfile import parse_yaml

    path = service / ANSWERS_FILE
    if not path.is_file():
        return None
    answers = parse_yaml(path.read_text(encoding="utf-8"), source=str(path))
    if not isinstance(answers, dict) or not answers.get("_src_path"):
        return None
    commit = answers.get("_commit")
    return str(answers["_src_path"]), str(commit) if commit else None


def for_service(service: Path) -> Template:
    """The template that renders `service` as it was rendered (see the module docstring)."""
    record = recorded(service)
    if record is None or not is_release(record[1]) or same_release(record[1], __version__):
        return installed()
    source, version = record[0], str(record[1])
    fix = (
        f"install that version (pip install '{pip_requirement(source, version)}') or move "
        f"the service to the installed one (copier update --trust --vcs-ref v{__version__})"
    )
    unreadable = _unreadable(source, version)
    if unreadable:
        raise RenderError(
            f"{service}: rendered from template {version} ({source}), which cannot be read here "
            f"({unreadable}), and liftdeploy {__version__} is installed, so template changes "
            f"cannot be told from hand edits; {fix}"
        )
    return Template(
        source,
        version,
        fix=fix,
        note=(
            f"{service}: records template {version}; liftdeploy {__version__} is installed, so "
            f"{version}'s template from {source} was rendered with it; to match exactly, {fix}"
        ),
    )


def checkout(template: Template, into: Path) -> Path:
    """A plain copy of the template at its ref (its presets decide a spec's answers)."""
    url = _git_url(template.source)
    proc = subprocess.run(
        [
            "git",
            "clone",
            "--quiet",
            "--depth",
            "1",
            "--branch",
            str(template.vcs_ref),
            url,
            str(into),
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise RenderError(
            f"cannot read template {template.vcs_ref} from {template.source}: "
            f"{(proc.stderr.strip().splitlines() or ['git clone failed'])[-1]}"
        )
    return into


def is_release(version: str | None) -> bool:
    """Whether Copier's `_commit` names a release tag rather than a development commit."""
    return bool(version and _RELEASE.match(version))


def same_release(tag: str, version: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(tag) == Version(version)
    except InvalidVersion:
        return False


def pip_requirement(source: str, ref: str) -> str:
    """A pip requirement for liftdeploy at `ref` of the git repository `source` (the same rules
    as the rendered workflow's install step, which runs before liftdeploy is installed)."""
    if source.startswith("gh:"):
        url = "https://github.com/" + source[3:]
    elif source.startswith("gl:"):
        url = "https://gitlab.com/" + source[3:]
    elif source.startswith("git+"):
        url = source[4:]
    elif source.startswith("git@"):
        url = "ssh://" + source.replace(":", "/", 1)
    elif "://" in source:
        url = source
    else:
        url = Path(source).resolve().as_uri()
    return f"liftdeploy @ git+{url}@{ref}"


@dataclass(frozen=True)
class InstallSource:
    """Where the rendering liftdeploy came from, and the pip requirement CI installs it with
    (None: a path on the rendering machine, which no runner can reach)."""

    requirement: str | None
    origin: str


def install_source(src_path: str, commit_hash: str | None) -> InstallSource:
    """The install source for a service Copier renders from template `src_path` (as recorded
    in `_src_path`) at `commit_hash` (None: not a git template)."""
    if src_path.startswith(_REMOTE_PREFIXES) and not src_path.startswith("git+file:"):
        if not commit_hash:
            return InstallSource(None, f"the template at {src_path}, at no recorded commit")
        return InstallSource(
            pip_requirement(src_path, commit_hash),
            f"the template's git repository {src_path} at {commit_hash}",
        )
    path = Path(src_path).expanduser()
    if path.resolve() == template_source().resolve():
        return package_source()  # `liftdeploy render`/`init`: the installed package's template
    if not path.is_absolute() and is_git_root(path) and _in_repository(Path.cwd(), path):
        # `copier update` run in a service of the template's own repository (the examples):
        # CI installs the same path of the commit it checked out.
        return InstallSource(src_path, f"{src_path} in this service's own repository")
    return InstallSource(None, f"a path on this machine ({src_path})")


def package_source() -> InstallSource:
    """How the installed liftdeploy was installed, from pip's record of it (PEP 610
    direct_url.json): from git (URL and commit), from an index (no record: a release), or from
    a path (a wheel file, a checkout)."""
    from importlib.metadata import distributions

    for dist in distributions(name="liftdeploy"):
        if dist.read_text("INSTALLER") is None:
            continue  # a source tree's egg-info, not an installation
        record = dist.read_text("direct_url.json")
        if record is None:
            return InstallSource(
                f"liftdeploy=={dist.version}", f"liftdeploy {dist.version} from a package index"
            )
        info = json.loads(record)
        url, vcs = str(info.get("url", "")), info.get("vcs_info") or {}
        if vcs.get("vcs") == "git" and vcs.get("commit_id") and not url.startswith("file:"):
            return InstallSource(
                f"liftdeploy @ git+{url}@{vcs['commit_id']}",
                f"liftdeploy installed from {url} at {vcs['commit_id']}",
            )
        return InstallSource(
            None,
            f"liftdeploy installed from a path on this machine ({url.removeprefix('file://')})",
        )
    return InstallSource(None, "liftdeploy run from a source tree that is not installed")


def recorded_install(service: Path) -> str | None:
    """The requirement a service's answers file records for CI (None: nothing reachable)."""
    from liftdeploy.spec.specfile import parse_yaml

    path = service / ANSWERS_FILE
    if not path.is_file():
        return None
    answers = parse_yaml(path.read_text(encoding="utf-8"), source=str(path))
    value = answers.get(INSTALL_KEY) if isinstance(answers, dict) else None
    return str(value) if value else None


def local_source_note(service: Path) -> str | None:
    """What `render`, `init` and `check` say when CI cannot install the liftdeploy that
    rendered `service` from what its answers file records; None when it can."""
    if not (service / ANSWERS_FILE).is_file() or recorded_install(service):
        return None
    return (
        f"{service}: rendered by a liftdeploy CI cannot install (a path on this machine), so "
        f"the workflow refuses to run until you {LOCAL_SOURCE_FIX}"
    )


def portable_answers(text: str, service: Path) -> str:
    """The answers file of a service inside the template's own git repository (the examples)
    with the template recorded as a path relative to the service, not this machine's absolute
    path: `copier update` then works in any clone, and CI installs that path of its checkout."""
    match = re.search(r"(?m)^_src_path: *(.+?) *$", text)
    if not match or not Path(match.group(1)).is_absolute():
        return text
    root = Path(match.group(1))
    try:
        relative = os.path.relpath(service.resolve(), root.resolve())
    except ValueError:
        return text
    if relative.startswith("..") or not is_git_root(root):
        return text
    up = os.path.relpath(root.resolve(), service.resolve())
    text = text[: match.start(1)] + up + text[match.end(1) :]
    text = re.sub(rf"(?m)^{INSTALL_KEY}:.*\n", "", text)
    return text.rstrip("\n") + f"\n{INSTALL_KEY}: {up}\n"


WORKFLOW = ".github/workflows/deploy.yml"


def workflow_at_root(text: str, folder: str, name: str) -> str:
    """The rendered workflow of a service in `folder` of its repository, as it runs from the
    repository root (`.github/workflows/deploy-<name>.yml`): its steps run in `folder`, and a
    push starts it only for that folder's files (and for itself)."""
    text = text.replace(
        "defaults:\n  run:\n    shell: bash\n",
        f"defaults:\n  run:\n    shell: bash\n    working-directory: {folder}\n",
        1,
    )
    head, paths, tail = text.partition("    paths:\n")
    if not paths:
        return text  # no push trigger (no staging environment): nothing to filter
    lines = tail.splitlines(keepends=True)
    count = next((i for i, line in enumerate(lines) if not line.startswith("      - ")), len(lines))
    moved = [f"      - {folder}/{line[8:]}" for line in lines[:count]]
    moved.append(f"      - .github/workflows/deploy-{name}.yml\n")
    return head + paths + "".join(moved) + "".join(lines[count:])


def repository_folder(service: Path) -> tuple[Path, str] | None:
    """The git work tree holding `service` and the service's folder in it ("." at its root);
    None outside git."""
    top = git_toplevel(service)
    if top is None:
        return None
    return top, service.resolve().relative_to(top.resolve()).as_posix()


def workflow_move_note(service: Path) -> str | None:
    """For a service in a subfolder of its git repository: GitHub never runs its workflow
    there; the command that puts it at the root and the changes it needs. None otherwise."""
    import difflib

    from liftdeploy.spec.specfile import load_spec

    workflow = service / WORKFLOW
    place = repository_folder(service)
    if not workflow.is_file() or place is None or place[1] == ".":
        return None
    top, folder = place
    name = load_spec(service / "deployment.yaml").name
    target = f".github/workflows/deploy-{name}.yml"
    text = workflow.read_text(encoding="utf-8")
    diff = difflib.unified_diff(
        text.splitlines(),
        workflow_at_root(text, folder, name).splitlines(),
        f"{folder}/{WORKFLOW}",
        target,
        n=0,
        lineterm="",
    )
    return (
        f"{service} is in {folder}/ of the git repository {top}; GitHub runs workflows only "
        f"from the repository root, so this service deploys only once its workflow is "
        f"there with its steps in {folder}. Run `liftdeploy ci-workflow {folder}` in {top} "
        f"to write {target} (again after each render); it differs from "
        f"{folder}/{WORKFLOW} by:\n" + "\n".join(f"    {line}" for line in diff)
    )


def _in_repository(path: Path, root: Path) -> bool:
    """Whether `path` lies inside the git work tree whose root is `root`."""
    try:
        Path(path).resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _git_url(source: str) -> str:
    return pip_requirement(source, "").split("git+", 1)[1].rsplit("@", 1)[0]


def _unreadable(source: str, tag: str) -> str | None:
    """Why git cannot read tag `tag` of `source`, or None when it can."""
    try:
        proc = subprocess.run(
            ["git", "ls-remote", "--exit-code", "--tags", _git_url(source), tag],
            capture_output=True,
            text=True,
            timeout=_LS_REMOTE_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if proc.returncode == 0:
        return None
    lines = proc.stderr.strip().splitlines()
    return lines[0] if lines else f"no tag {tag}"


def is_git_root(path: Path) -> bool:
    top = git_toplevel(path)
    return top is not None and top.resolve() == path.resolve()
