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
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from liftdeploy import __version__
from liftdeploy.errors import RenderError
from liftdeploy.render.regenerate import ANSWERS_FILE

__all__ = ["Template", "at_root", "checkout", "for_service", "installed", "is_git_root",
           "is_release", "pip_requirement", "recorded"]

_RELEASE = re.compile(r"^v?\d+\.\d+(\.\d+)*([abc]|rc|\.post|\.dev)?\d*$")
_LS_REMOTE_TIMEOUT_S = 60


@dataclass(frozen=True)
class Template:
    """A template Copier can render: its source and the git ref to check out; for a release
    other than the installed one, what to tell the user and how to match versions."""

    source: str
    vcs_ref: str | None
    note: str | None = None
    fix: str | None = None


def installed() -> Template:
    """The installed liftdeploy's template; a git checkout renders its working tree (HEAD plus
    uncommitted work), not its latest tag."""
    from liftdeploy.render.service import template_source

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
    fix = (f"install that version (pip install '{pip_requirement(source, version)}') or move "
           f"the service to the installed one (copier update --trust --vcs-ref v{__version__})")
    unreadable = _unreadable(source, version)
    if unreadable:
        raise RenderError(
            f"{service}: rendered from template {version} ({source}), which cannot be read here "
            f"({unreadable}), and liftdeploy {__version__} is installed, so template changes "
            f"cannot be told from hand edits; {fix}"
        )
    return Template(source, version, fix=fix, note=(
        f"{service}: records template {version}; liftdeploy {__version__} is installed, so "
        f"{version}'s template from {source} was rendered with it; to match exactly, {fix}"
    ))


def checkout(template: Template, into: Path) -> Path:
    """A plain copy of the template at its ref (its presets decide a spec's answers)."""
    url = _git_url(template.source)
    proc = subprocess.run(["git", "clone", "--quiet", "--depth", "1", "--branch",
                           str(template.vcs_ref), url, str(into)], capture_output=True, text=True)
    if proc.returncode:
        raise RenderError(f"cannot read template {template.vcs_ref} from {template.source}: "
                          f"{(proc.stderr.strip().splitlines() or ['git clone failed'])[-1]}")
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


def _git_url(source: str) -> str:
    return pip_requirement(source, "").split("git+", 1)[1].rsplit("@", 1)[0]


def _unreadable(source: str, tag: str) -> str | None:
    """Why git cannot read tag `tag` of `source`, or None when it can."""
    try:
        proc = subprocess.run(["git", "ls-remote", "--exit-code", "--tags", _git_url(source), tag],
                              capture_output=True, text=True, timeout=_LS_REMOTE_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if proc.returncode == 0:
        return None
    lines = proc.stderr.strip().splitlines()
    return lines[0] if lines else f"no tag {tag}"


def is_git_root(path: Path) -> bool:
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=path,
                             capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return False
    return Path(top).resolve() == path.resolve()
