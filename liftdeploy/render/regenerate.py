"""Regenerate a rendered service and keep the user's hand edits: a three-way merge per file.

The base is the last pristine render, kept in the service under `.liftdeploy/last-render/`; ours
is what is on disk (hand edits included); theirs is a fresh render of the current spec and
template. `git merge-file` does the merge, so conflicts carry the standard markers. Nothing is
written until every file has merged: a conflict leaves the service as it was (or, when asked,
with conflict markers), never half-updated.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from liftdeploy.errors import RenderError
from liftdeploy.files import StagedWrites, refuse_symlinked_dirs
from liftdeploy.spec.specfile import SPEC_FILE

PRISTINE_DIR = Path(".liftdeploy") / "last-render"
"""Where a service keeps its last render, the base of the next three-way merge."""

ANSWERS_FILE = ".copier-answers.yml"
# Always taken from the fresh render, never merged: the spec is the render's input and the
# answers file is Copier's record of it.
NOT_MERGED = (SPEC_FILE, ANSWERS_FILE)

_LABELS = ("yours", "last render", "new render")
# Answers-file keys that say where and when a service was rendered, not what.
STAMP_KEYS = ("_src_path", "_commit", "_liftdeploy_pip")  # + where CI installs liftdeploy from


@dataclass
class Conflict:
    """One file whose hand edits and template/spec changes touch the same lines."""

    path: str
    hunks: list[tuple[int, list[str], list[str]]]
    """(line in the merged file, your lines, the new render's lines) per conflicting hunk."""

    def describe(self) -> str:
        lines = [f"{self.path}: {len(self.hunks)} conflicting hunk(s)"]
        for line, mine, new in self.hunks:
            lines.append(f"  at line {line}:")
            lines += [f"    yours:      {text}" for text in mine or ["(nothing)"]]
            lines += [f"    new render: {text}" for text in new or ["(nothing)"]]
        return "\n".join(lines)


@dataclass
class MergeResult:
    """What regenerating would write (path -> text, None = delete) and what conflicted."""

    files: dict[str, str | None] = field(default_factory=dict)
    conflicts: list[Conflict] = field(default_factory=list)

    def report(self) -> str:
        return "\n".join(conflict.describe() for conflict in self.conflicts)


def rendered_files(root: Path) -> dict[str, str]:
    """Every file of a render (relative path -> text), the pristine copy excluded."""
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_file() and rel.parts[0] != ".liftdeploy" and "__pycache__" not in rel.parts:
            files[rel.as_posix()] = path.read_text(encoding="utf-8")
    return files


def last_render(service: Path) -> dict[str, str] | None:
    """The pristine copy of the service's last render, if it keeps one."""
    pristine_root = service / PRISTINE_DIR
    return rendered_files(pristine_root) if pristine_root.is_dir() else None


def merge(
    service: Path,
    fresh: dict[str, str],
    *,
    base: dict[str, str] | None = None,
    overwrite: bool = False,
) -> MergeResult:
    """Three-way merge of a fresh render into a service dir (nothing written), against `base`
    (default: the last render kept in the service). `overwrite` takes the fresh render for
    every file, dropping hand edits."""
    base = base if base is not None else last_render(service)
    result = MergeResult()
    for rel in sorted(set(fresh) | set(base or {})):
        ours_path = service / rel
        ours = ours_path.read_text(encoding="utf-8") if ours_path.is_file() else None
        theirs = fresh.get(rel)
        old = (base or {}).get(rel)
        if (
            rel == ANSWERS_FILE
            and ours is not None
            and theirs is not None
            and without_stamps(ours) == without_stamps(theirs)
        ):
            continue  # only where/when it was rendered differs: keep the file as it is
        if ours is None and old is not None and not overwrite and rel not in NOT_MERGED:
            continue  # the user deleted a rendered file: it stays deleted
        if rel in NOT_MERGED or overwrite or ours is None or ours == theirs:
            if theirs is not None or ours == old or overwrite:
                result.files[rel] = theirs
            continue
        if base is None:  # a service made by `copier copy`, or files from elsewhere
            result.conflicts.append(
                Conflict(
                    rel, [(1, ["(differs; no last render to merge against)"], ["(the new render)"])]
                )
            )
            continue
        if theirs is None:  # the template no longer renders it
            if ours == old:
                result.files[rel] = None
            else:
                result.conflicts.append(
                    Conflict(rel, [(1, ["(edited by you)"], ["(no longer rendered)"])])
                )
            continue
        merged, hunks = _merge_file(ours, old or "", theirs)
        result.files[rel] = merged
        if hunks:
            result.conflicts.append(Conflict(rel, hunks))
    return result


def write(service: Path, result: MergeResult, fresh: dict[str, str]) -> list[str]:
    """Write merged files and the new pristine copy; returns changed paths. Whole or not at
    all: every file is written beside its target first and renamed in only when all are (a
    full disk leaves the service as it was), and nothing goes through a symlinked directory."""
    changed = []
    with StagedWrites(service) as staged:
        for rel, text in result.files.items():
            path = service / rel
            if text is None:
                if path.exists() or path.is_symlink():
                    staged.delete(rel)
                    changed.append(rel)
                continue
            if path.is_file() and path.read_text(encoding="utf-8") == text:
                continue
            staged.write(rel, text)
            changed.append(rel)
        staged.replace_directory(
            PRISTINE_DIR.as_posix(),
            {rel: text for rel, text in fresh.items() if rel not in NOT_MERGED},
        )
    return changed


def refuse_links(service: Path, fresh: dict[str, str]) -> None:
    """Refuse, before anything is read or merged, a service where a directory a render writes
    into (`.liftdeploy/`, `liftdeploy_runtime/`...) is a symbolic link."""
    refuse_symlinked_dirs(service, [*fresh, f"{PRISTINE_DIR.as_posix()}/x"])


def without_stamps(answers: str) -> str:
    """The answers file without its source and commit stamps: what was answered."""
    return "".join(
        line
        for line in answers.splitlines(keepends=True)
        if not line.startswith(tuple(f"{key}:" for key in STAMP_KEYS))
    )


def dirty_paths(service: Path, paths: list[str]) -> list[str]:
    """Which of these service files have uncommitted changes (or are untracked) in git.
    Empty when the service is not in a git work tree: there is nothing to compare with."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all", "--", *paths],
            cwd=service,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    top = git_toplevel(service)
    if top is None:
        return []
    dirty = []
    for line in out.splitlines():
        name = line[3:].split(" -> ")[-1].strip('"')
        dirty.append(os.path.relpath(top / name, service.resolve()))
    return sorted(dirty)


def git_toplevel(path: Path) -> Path | None:
    """The root of the git work tree holding `path`, or None outside git."""
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return Path(top)


def _merge_file(
    ours: str, base: str, theirs: str
) -> tuple[str, list[tuple[int, list[str], list[str]]]]:
    with tempfile.TemporaryDirectory(prefix="liftdeploy-merge-") as tmp:
        paths = []
        for name, text in (("ours", ours), ("base", base), ("theirs", theirs)):
            path = Path(tmp) / name
            path.write_text(text, encoding="utf-8")
            paths.append(str(path))
        labels = [arg for label in _LABELS for arg in ("-L", label)]
        try:
            proc = subprocess.run(
                ["git", "merge-file", "-p", *labels, *paths], capture_output=True, text=True
            )
        except OSError as exc:
            raise RenderError(f"cannot run git merge-file ({exc}); install git") from None
    if proc.returncode < 0 or proc.returncode > 127:
        raise RenderError(f"git merge-file failed: {proc.stderr.strip()}")
    return proc.stdout, _conflict_hunks(proc.stdout) if proc.returncode else []


def _conflict_hunks(merged: str) -> list[tuple[int, list[str], list[str]]]:
    hunks, mine, new, state, start = [], [], [], None, 0
    for number, line in enumerate(merged.splitlines(), 1):
        if line.startswith("<<<<<<< "):
            state, start, mine, new = "mine", number, [], []
        elif line.startswith("=======") and state == "mine":
            state = "new"
        elif line.startswith(">>>>>>> ") and state == "new":
            hunks.append((start, mine, new))
            state = None
        elif state == "mine":
            mine.append(line)
        elif state == "new":
            new.append(line)
    return hunks
