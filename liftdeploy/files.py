"""Every file liftdeploy writes is written whole or not at all, never through a symlinked directory.

- `write_atomic(path, data)`: one file (a spec edited by `set` or `pin`, a report).
- `write_inside(root, rel, data)`: one file inside a tree it must not leave (a workflow added
  to a repository).
- `StagedWrites(root)`: many files inside one directory tree (a service being regenerated). Each
  file is first written to a temporary file beside it and flushed to disk; only when every one
  is written are they renamed into place. A full disk therefore fails while staging, and the
  staged files are removed: the tree is left exactly as it was.
- `new_directory(target)`: a directory built whole beside its target (same parent, so the same
  file system) and renamed into place at the end; on failure nothing is left.

Inside a root, a path whose directories include a symbolic link is refused: writing or deleting
through it would change files outside the root (`.liftdeploy -> /somewhere/else`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from liftdeploy.errors import FileWriteError, LiftdeployError

TEMP_SUFFIX = ".liftdeploy-tmp"
"""Every temporary name liftdeploy creates beside a target ends so (and starts with a dot)."""


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Replace (or create) the file at path with data, whole or not at all; its mode is kept.
    A symlink at path is followed: the file it names is the one replaced, the link stays."""
    target = Path(os.path.realpath(path))
    temp = _write_temp(target, data)
    try:
        os.replace(temp, target)
    except OSError as exc:
        _remove_quietly(temp)
        raise _write_error(target, exc) from None
    _sync_directory(target.parent)


def write_inside(root: str | Path, rel: str, data: str | bytes) -> Path:
    """Write root/rel whole or not at all, refusing a symlinked directory between root and it
    (a file liftdeploy adds to a repository or service); returns the path written."""
    with StagedWrites(root) as staged:
        staged.write(rel, data)
    return Path(root) / rel


def refuse_symlinked_dirs(root: Path, relative_paths: Iterable[str | PurePosixPath]) -> None:
    """Raise when a directory between root and any of these paths is a symbolic link (or the
    path leaves root): liftdeploy would write or delete outside root through it."""
    checked: set[Path] = set()
    for rel in relative_paths:
        parts = PurePosixPath(rel).parts
        if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
            raise FileWriteError(
                f"{root / rel}: not a path inside {root}; liftdeploy writes only inside it"
            )
        directory = root
        for part in parts[:-1]:
            directory = directory / part
            if directory in checked:
                continue
            checked.add(directory)
            if directory.is_symlink():
                raise FileWriteError(
                    f"{directory}: is a symbolic link (to {os.readlink(directory)}); liftdeploy "
                    f"never writes or deletes through a link inside {root}, since that changes "
                    f"files elsewhere. Replace the link with a real directory, then run again"
                )
            if directory.exists() and not directory.is_dir():
                raise FileWriteError(
                    f"{directory}: is a file where the service needs a "
                    f"directory; move it away, then run again"
                )


class StagedWrites:
    """Writes, deletions and directory swaps under root, applied together by `commit`.

    Use as a context manager: leaving it by an exception discards everything staged (temporary
    files and the directories made for them), so root is as it was."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._files: list[tuple[Path, Path]] = []  # (temporary, target)
        self._deletions: list[Path] = []
        self._directories: list[tuple[Path, Path]] = []  # (built, target)
        self._made: list[Path] = []  # directories created to hold staged files

    def __enter__(self) -> StagedWrites:
        return self

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        if kind is None:
            self.commit()
        else:
            self.discard()

    def write(self, rel: str, data: str | bytes) -> None:
        """Stage the file root/rel with data (written and flushed now, renamed at commit)."""
        refuse_symlinked_dirs(self.root, [rel])
        target = self.root / rel
        self._make_parents(target.parent)
        self._files.append((_write_temp(target, data), target))

    def delete(self, rel: str) -> None:
        """Stage the deletion of root/rel (a symlink there is removed, never followed)."""
        refuse_symlinked_dirs(self.root, [rel])
        self._deletions.append(self.root / rel)

    def replace_directory(self, rel: str, files: dict[str, str]) -> None:
        """Stage root/rel as a directory holding exactly these files (relative path -> text)."""
        refuse_symlinked_dirs(self.root, [f"{rel}/x"])
        target = self.root / rel
        self._make_parents(target.parent)
        built = target.with_name(f".{target.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        self._directories.append((built, target))
        built.mkdir()
        for name, text in files.items():
            refuse_symlinked_dirs(built, [name])
            path = built / name
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_new(path, text)

    def commit(self) -> None:
        """Rename every staged file and directory into place and apply the deletions."""
        try:
            for temp, target in self._files:
                os.replace(temp, target)
            for path in self._deletions:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            for built, target in self._directories:
                _swap_directory(built, target)
        except OSError as exc:
            self.discard()
            raise FileWriteError(
                f"{self.root}: renaming the written files into place failed ({exc}); some files "
                f"are new and some old. Fix the cause, then run the command again"
            ) from None
        for directory in {target.parent for _, target in self._files}:
            _sync_directory(directory)

    def discard(self) -> None:
        """Remove everything staged; root is left as it was."""
        for temp, _ in self._files:
            _remove_quietly(temp)
        for built, _ in self._directories:
            shutil.rmtree(built, ignore_errors=True)
        for directory in reversed(self._made):
            with contextlib.suppress(OSError):
                directory.rmdir()  # only when empty: something else may have been put there
        self._files, self._deletions, self._directories, self._made = [], [], [], []

    def _make_parents(self, directory: Path) -> None:
        missing = []
        while not directory.exists() and directory != self.root:
            missing.append(directory)
            directory = directory.parent
        for path in reversed(missing):
            try:
                path.mkdir()
            except OSError as exc:
                raise _write_error(path, exc) from None
            self._made.append(path)


@contextlib.contextmanager
def new_directory(target: str | Path) -> Iterator[Path]:
    """A temporary directory beside target to build in; renamed to target when the block ends
    without an exception (target must be absent or an empty directory), else removed."""
    target = Path(target)
    if target.is_symlink():  # a link to an empty directory: build beside what it names
        target = Path(os.path.realpath(target))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        built = target.with_name(f".{target.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
        built.mkdir()
    except OSError as exc:
        raise _write_error(target, exc) from None
    try:
        yield built
        os.chmod(
            built, stat.S_IMODE(target.stat().st_mode) if target.is_dir() else 0o777 & ~_umask()
        )
        os.replace(built, target)  # over an empty directory too (rename(2) allows it)
        _sync_directory(target.parent)
    except BaseException as exc:
        shutil.rmtree(built, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _write_error(target, exc) from None
        raise


def _write_temp(target: Path, data: str | bytes) -> Path:
    """data in a new temporary file beside target, flushed to disk, with target's mode."""
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    try:
        mode = stat.S_IMODE(target.stat().st_mode) if target.is_file() else None
        _write_new(temp, data, mode=mode)
    except OSError as exc:
        _remove_quietly(temp)
        raise _write_error(target, exc) from None
    return temp


def _write_new(path: Path, data: str | bytes, *, mode: int | None = None) -> None:
    """Create path (never an existing file or a link's target) with data, and flush it."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_directory(built: Path, target: Path) -> None:
    old = target.with_name(f".{target.name}.{secrets.token_hex(4)}.old{TEMP_SUFFIX}")
    if target.is_symlink() or target.exists():
        os.rename(target, old)  # a link is moved aside as a link, never followed
    os.rename(built, target)
    if old.is_symlink() or not old.is_dir():
        old.unlink(missing_ok=True)
    else:
        shutil.rmtree(old, ignore_errors=True)


def _write_error(path: Path, exc: OSError) -> LiftdeployError:
    return FileWriteError(
        f"{path}: cannot write ({exc.strerror or exc}); nothing was changed. Free disk space or "
        f"fix the permissions, then run the command again"
    )


def _remove_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _sync_directory(directory: Path) -> None:
    """Flush a directory's entries (the rename) to disk; not every system allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
