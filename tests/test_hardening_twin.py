"""Nothing the twin starts outlives the command that started it, whatever signal ends that
command: SIGKILL included, at any moment of the server's start-up (issue 23, item 4).

The processes are found in /proc: every descendant of the command is recorded while it runs
(the API server, vLLM's engine core, the watchdog), and after the kill each one must be gone.
Whatever a failing test leaves running is killed by the test itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_lifecycle import LIFTDEPLOY, PRIMARY, _group_members, _wait_until

from liftdeploy.twin.local import free_port

GONE_WITHIN_S = 30
"""After the kill: a SIGKILLed group is gone at once; vLLM's own SIGTERM handling takes
about 10 s when it works at all, so this also tells the two apart."""
STARTUP_EVENT_S = 600
"""A loaded 2-core machine imports vLLM and spawns its engine in 1-3 minutes."""


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    state: str
    started: int
    """Start time in clock ticks since boot: tells a pid apart from a later one reusing it."""
    argv: tuple[str, ...]


def _processes() -> dict[int, Proc]:
    """Every process, from /proc."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            argv = (stat.parent / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        pid = int(stat.parent.name)
        table[pid] = Proc(pid, int(fields[1]), fields[0], int(fields[19]), tuple(argv))
    return table


def _descendants(root: int, table: dict[int, Proc]) -> list[Proc]:
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [proc for proc in table.values() if proc.ppid == parent]
        found += children
        frontier += [child.pid for child in children]
    return found


def _alive(recorded: dict[int, Proc]) -> list[Proc]:
    """The recorded processes still running (a zombie has ended; a reused pid is another)."""
    table = _processes()
    return [
        proc
        for pid, proc in recorded.items()
        if pid in table and table[pid].started == proc.started and table[pid].state != "Z"
    ]


def _is_api_server(proc: Proc) -> bool:
    return "vllm.entrypoints.openai.api_server" in proc.argv


def _is_engine(proc: Proc, table: dict[int, Proc]) -> bool:
    """vLLM's engine core: the API server's child spawned by multiprocessing (the other child,
    multiprocessing's resource tracker, is not it), renamed VLLM::EngineCore once it runs."""
    parent = table.get(proc.ppid)
    return (
        parent is not None
        and _is_api_server(parent)
        and (
            any("multiprocessing.spawn" in arg for arg in proc.argv)
            or proc.argv[0].startswith("VLLM::")
        )
    )


@pytest.fixture
def watched() -> Iterator[Callable[..., dict[int, Proc]]]:
    """Starts `liftdeploy serve --local` and records its descendants until `until` holds; the
    test then kills the command. Afterwards every recorded process still running is killed,
    so a failure never leaves a server eating the CPU the next tests need."""
    recorded: dict[int, Proc] = {}
    commands: list[subprocess.Popen[str]] = []

    def start(
        tiny_model_path: Path, until: Callable[[list[Proc], dict[int, Proc]], bool]
    ) -> dict[int, Proc]:
        command = subprocess.Popen(
            [
                *LIFTDEPLOY,
                "serve",
                str(PRIMARY),
                "--local",
                "--quiet",
                "--model",
                str(tiny_model_path),
                "--port",
                str(free_port()),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        commands.append(command)
        recorded[command.pid] = _processes()[command.pid]

        def reached() -> bool:
            if command.poll() is not None:
                raise AssertionError(f"serve exited with {command.returncode} before the event")
            table = _processes()
            family = _descendants(command.pid, table)
            recorded.update({proc.pid: proc for proc in family})
            return until(family, table)

        _wait_until(reached, STARTUP_EVENT_S, "the start-up moment to kill serve at")
        return recorded

    yield start
    for command in commands:
        command.kill()
        command.wait()
    for proc in _alive(recorded):
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)


def _kill_and_expect_all_gone(recorded: dict[int, Proc], command_pid: int) -> None:
    os.kill(command_pid, signal.SIGKILL)  # unreaped, it is a zombie: ended, as _alive counts
    deadline = time.monotonic() + GONE_WITHIN_S
    while _alive(recorded) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [f"{proc.pid} {' '.join(proc.argv)[:80]}" for proc in _alive(recorded)]
    assert not left, f"still running {GONE_WITHIN_S} s after serve was SIGKILLed: {left}"


@pytest.mark.twin
def test_sigkill_once_the_engine_process_exists_ends_the_server_and_engine(
    twin_supported: None,
    tiny_model_path: Path,
    watched: Callable[..., dict[int, Proc]],
) -> None:
    # The moment vLLM spawns its engine core: the API server swallowed SIGTERM then.
    recorded = watched(
        tiny_model_path, lambda family, table: any(_is_engine(proc, table) for proc in family)
    )
    command_pid = next(iter(recorded))  # recorded first (see `watched`)
    assert any(_is_api_server(proc) for proc in recorded.values())
    _kill_and_expect_all_gone(recorded, command_pid)


@pytest.mark.twin
def test_sigkill_before_the_engine_process_exists_ends_the_server(
    twin_supported: None,
    tiny_model_path: Path,
    watched: Callable[..., dict[int, Proc]],
) -> None:
    # The moment the API server is started, long before it spawns the engine.
    recorded = watched(
        tiny_model_path, lambda family, table: any(_is_api_server(proc) for proc in family)
    )
    command_pid = next(iter(recorded))  # recorded first (see `watched`)
    _kill_and_expect_all_gone(recorded, command_pid)


# -- the watchdog alone, with a stand-in server (no vLLM) -----------------------------------

STAND_IN = """
import os, signal, subprocess, sys
from liftdeploy.twin.local import GroupWatchdog
watchdog = GroupWatchdog()
# A server and its own child in a new session, as ServerProcess starts vLLM; the child ignores
# SIGTERM, as vLLM does while it starts.
server = subprocess.Popen(
    [sys.executable, "-c", "import signal, subprocess, sys, time; "
     "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
     "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
     "signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(600)'], "
     "stdout=sys.stdout); time.sleep(600)"],
    start_new_session=True, stdout=subprocess.PIPE, text=True)
watchdog.watch(server.pid)
server.stdout.readline()  # the grandchild runs
print(server.pid, flush=True)
if sys.argv[1] != "watch":  # the server is stopped here: released, or left as start_twin's
    sys.stdin.readline()  # once the test has seen the watchdog
    os.killpg(server.pid, signal.SIGKILL)
    server.wait()
    if sys.argv[1] == "release":
        watchdog.release()
    print("stopped", flush=True)
sys.stdin.read()  # until the test kills this process
"""


@pytest.mark.parametrize(
    "wrapper_signal", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"]
)
def test_the_watchdog_kills_the_group_when_its_starter_dies(
    wrapper_signal: signal.Signals,
) -> None:
    wrapper = subprocess.Popen(
        [sys.executable, "-c", STAND_IN, "watch"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    pgid = 0
    try:
        assert wrapper.stdout is not None
        pgid = int(wrapper.stdout.readline())
        family = _descendants(wrapper.pid, _processes())
        assert len(family) == 3, family  # the watchdog, the stand-in server and its child
        watchdog = next(proc for proc in family if "-I" in proc.argv)
        wrapper.send_signal(wrapper_signal)
        wrapper.wait()
        _wait_until(lambda: not _group_members(pgid), GONE_WITHIN_S, "the group killed")
        _wait_until(
            lambda: not _alive({watchdog.pid: watchdog}), GONE_WITHIN_S, "the watchdog exited"
        )
    finally:
        wrapper.kill()
        if pgid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)


@pytest.mark.parametrize("ending", ["release", "group-ends"])
def test_a_watchdog_leaves_once_its_server_is_stopped(ending: str) -> None:
    # Released by LocalTwin.stop, or on its own once the group is gone (start_twin's callers
    # stop the server alone): never lingering to signal a later group reusing the number.
    wrapper = subprocess.Popen(
        [sys.executable, "-c", STAND_IN, ending],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert wrapper.stdout is not None
        pgid = int(wrapper.stdout.readline())
        watchdog = next(
            proc for proc in _descendants(wrapper.pid, _processes()) if "-I" in proc.argv
        )
        assert wrapper.stdin is not None
        wrapper.stdin.write("stop\n")  # only now: the watchdog was seen before it can leave
        wrapper.stdin.flush()
        assert wrapper.stdout.readline().strip() == "stopped"
        _wait_until(lambda: not _group_members(pgid), GONE_WITHIN_S, "the group killed")
        _wait_until(
            lambda: not _alive({watchdog.pid: watchdog}), GONE_WITHIN_S, "the watchdog exited"
        )
        if ending == "release":
            assert _descendants(wrapper.pid, _processes()) == [], "release() reaps it"
    finally:
        wrapper.kill()
