"""The single place where liftdeploy starts the `modal` CLI.

`run_modal` runs a `Command` and turns any failure (modal not installed, not logged in, non-zero
exit) into an `OpsError` carrying the command's last stderr lines.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

from liftdeploy.errors import OpsError
from liftdeploy.ops.modal_commands import MODAL, Command

STDERR_TAIL_LINES = 12
"""How many of a failed command's last stderr lines an OpsError quotes."""


class ModalCommandError(OpsError):
    """A `modal` command exited non-zero; carries its last stderr lines."""

    def __init__(
        self, command: Command, returncode: int, stderr_tail: str, *, echoed: bool = False
    ) -> None:
        self.command = command
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        message = f"`{shlex.join(command.argv)}` failed with exit code {returncode}"
        if "token missing" in stderr_tail.lower():
            message += (
                " — not logged in to Modal: run `modal token new` (or set MODAL_TOKEN_ID "
                "and MODAL_TOKEN_SECRET) and retry"
            )
        if echoed:
            message += " (its error output is above)"
        else:
            message += ":\n" + (stderr_tail.strip() or "(no output on stderr)")
        super().__init__(message)


def modal_executable() -> str:
    """The `modal` CLI: on PATH, else the one installed beside this Python (an unactivated venv)."""
    found = shutil.which(MODAL) or shutil.which(MODAL, path=str(Path(sys.executable).parent))
    if found is None:
        raise OpsError("the `modal` CLI is not installed; install it with `pip install modal`")
    return found


def run_modal(
    command: Command,
    *,
    capture: bool = False,
    line_filter: Callable[[str], bool] | None = None,
) -> str:
    """Run one command; the single place where liftdeploy starts `modal`.

    With `capture`, stdout is returned (and not shown); otherwise stdout lines that pass
    `line_filter` are printed as they come and stderr is passed through. Either way the last
    stderr lines are kept for the error raised on a non-zero exit.
    """
    argv = list(command.argv)
    if argv[0] == MODAL:
        argv[0] = modal_executable()
    try:
        process = subprocess.Popen(
            argv,
            cwd=command.cwd,
            env={**os.environ, **command.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        raise OpsError(f"cannot run `{argv[0]}`: {exc.strerror or exc}; is it installed?") from None

    tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    echo_stderr = not capture

    def drain_stderr(stream: Iterable[str]) -> None:
        for line in stream:
            tail.append(line.rstrip("\n"))
            if echo_stderr:
                sys.stderr.write(line)
                sys.stderr.flush()

    reader = threading.Thread(target=drain_stderr, args=(process.stderr,), daemon=True)
    reader.start()
    captured: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if capture:
                captured.append(line)
            elif line_filter is None or line_filter(line):
                sys.stdout.write(line)
                sys.stdout.flush()
        returncode = process.wait()
    except KeyboardInterrupt:
        process.terminate()
        process.wait()
        raise
    reader.join()
    if returncode != 0:
        raise ModalCommandError(command, returncode, "\n".join(tail), echoed=echo_stderr)
    return "".join(captured)
