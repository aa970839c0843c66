"""Start, health-check and stop a vLLM server process.

One implementation for both places a server runs: the rendered Modal app's `@modal.enter` /
`@modal.exit` hooks and the local CPU twin (`liftdeploy serve --local`). Standard library only,
so the Modal image needs nothing beyond vLLM to use it.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from liftdeploy.runtime.lifecycle import DRAIN_FILE_ENV

LOG_TAIL_LINES = 40
DEFAULT_GRACE_S = 30.0
"""How long `stop` lets the server drain when the caller names no grace period."""
GROUP_STOP_S = 5.0
"""Of the grace period, the last seconds kept for ending the rest of the process group."""
DRAIN_POLL_S = 0.2
"""How often `stop` asks /health how many requests are still in flight."""
_LOG_CONFIG_ENV = "VLLM_LOGGING_CONFIG_PATH"
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_NO_ANSWER = -1  # _drain_state: /health did not answer


class ServerDied(RuntimeError):
    """The server process exited (or never became healthy); the message has its last log lines."""


def json_logging_config() -> dict[str, object]:
    """vLLM logging config: one JSON object per line with an ISO timestamp (python-json-logger,
    which vLLM already depends on)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                "rename_fields": {"asctime": "timestamp", "levelname": "level"},
                "datefmt": "%Y-%m-%dT%H:%M:%S%z",
            }
        },
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stdout",
            }
        },
        "loggers": {
            "vllm": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
            "uvicorn": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
            "liftdeploy": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
        },
    }


def as_json_line(line: str) -> str:
    """`line` if it is already a JSON log record, else wrapped in one (with a timestamp).

    vLLM's loggers write JSON (see json_logging_config), but a few start-up lines bypass
    logging (Python warnings, C++ and progress-bar prints); wrapping them keeps every line of
    the log one JSON object, so log search and parsing never trip over them.
    """
    if line.startswith("{") and line.endswith("}"):
        return line
    level = "WARNING" if "warn" in line.lower() else "INFO"
    return json.dumps(
        {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "level": level,
            "name": "output",
            "message": line,
        }
    )


def _readable(line: str) -> str:
    """A log line for people (error messages): a JSON record's level, logger and message."""
    if not line.startswith("{"):
        return line
    try:
        record = json.loads(line)
        return f"{record['level']} {record['name']}: {record['message']}"
    except (ValueError, KeyError, TypeError):
        return line


class ServerProcess:
    """A running vLLM OpenAI-compatible server whose output is kept (tail) and echoed."""

    def __init__(
        self,
        args: list[str],
        *,
        port: int,
        env: dict[str, str] | None = None,
        echo: bool = True,
        log_path: str | os.PathLike[str] | None = None,
        python: str = sys.executable,
        die_with_parent: bool = False,
    ) -> None:
        """Start the server. `die_with_parent` asks Linux to SIGTERM it when the thread that
        started it ends (a crash or SIGKILL of the caller included): for the local twin, whose
        caller is a terminal command; the thread must live as long as the server."""
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.command = [python, "-m", "vllm.entrypoints.openai.api_server", *args]
        self._tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._echo = echo
        self._log_file = open(log_path, "a", encoding="utf-8") if log_path else None  # noqa: SIM115
        self._config_dir = tempfile.TemporaryDirectory(prefix="liftdeploy-log-")
        config_path = Path(self._config_dir.name) / "logging.json"
        config_path.write_text(json.dumps(json_logging_config()))
        self._drain_file = Path(self._config_dir.name) / "draining"
        full_env = {
            **os.environ,
            **(env or {}),
            _LOG_CONFIG_ENV: str(config_path),
            DRAIN_FILE_ENV: str(self._drain_file),
            "VLLM_CONFIGURE_LOGGING": "1",
            "PYTHONUNBUFFERED": "1",
        }
        self.process = subprocess.Popen(  # noqa: S603 - argv built by liftdeploy, no shell
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=full_env,
            text=True,
            bufsize=1,
            start_new_session=True,  # Ctrl-C in the terminal reaches us, we stop the group
            preexec_fn=_parent_death_signal(os.getpid()) if die_with_parent else None,
        )
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            if not raw.strip():
                continue  # progress bars leave blank lines
            text = raw.rstrip("\n")
            line = as_json_line(text) + "\n"
            self._tail.append(_readable(text))
            log_file = self._log_file  # stop() may close it meanwhile; never write after that
            if log_file is not None and not log_file.closed:
                try:
                    log_file.write(line)
                    log_file.flush()
                except ValueError:  # closed between the check and the write
                    pass
            if self._echo:
                _echo(line)

    @property
    def log_tail(self) -> list[str]:
        return list(self._tail)

    def wait_healthy(self, timeout_s: float, *, on_wait: object = None) -> float:
        """Poll /health until 200; fail at once if the process exits. Returns seconds taken."""
        started = time.monotonic()
        deadline = started + timeout_s
        while True:
            code = self.process.poll()
            if code is not None:
                self._reader.join(timeout=2)
                raise ServerDied(
                    self.died_message(f"exited with status {code} before it was healthy")
                )
            if _health_ok(self.url):
                return time.monotonic() - started
            if time.monotonic() > deadline:
                self.stop()
                raise ServerDied(self.died_message(f"was not healthy after {timeout_s:.0f} s"))
            if callable(on_wait):
                on_wait(time.monotonic() - started)
            time.sleep(0.5)

    def died_message(self, what: str) -> str:
        """`vLLM server <what>.` followed by its last log lines."""
        tail = "\n".join(f"    {line}" for line in self.log_tail[-20:]) or "    (no output)"
        return f"vLLM server {what}. Last log lines:\n{tail}"

    def stop(self, grace_s: float = DEFAULT_GRACE_S) -> int | None:
        """Drain, then stop, within `grace_s` (Modal's exit grace period). Returns the API
        server's exit code.

        1. Drain: the lifecycle middleware is told to refuse new requests (503) and the requests
           in flight are left to finish, watched on /health, until none is left.
        2. SIGTERM the API server alone; vLLM stops its engine (anything still running gets
           vLLM's own --shutdown-timeout drain, set a little under the grace period).
        3. SIGTERM the rest of the process group, SIGKILL whatever is left when the grace
           period is over — or at once when this is interrupted (a second Ctrl-C).

        Signalling the whole group at once would cut every request in flight: the engine core
        and tensor-parallel workers exit on SIGTERM at once. The group is still ended at the
        end, even when the API server exited cleanly, so no worker keeps the GPU."""
        deadline = time.monotonic() + max(grace_s, GROUP_STOP_S)
        try:
            if self.process.poll() is None:
                self._drain(until=deadline - GROUP_STOP_S)
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=max(0.0, deadline - GROUP_STOP_S - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            _signal_group(self.process.pid, signal.SIGTERM)
            while _group_alive(self.process.pid) and time.monotonic() < deadline:
                self.process.poll()  # reap the leader, so the group empties
                time.sleep(0.1)
        finally:
            self.kill()
        return self.process.returncode

    def kill(self) -> None:
        """Stop at once: SIGKILL the whole process group, then release the log and config."""
        _signal_group(self.process.pid, signal.SIGKILL)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._reader.join(timeout=2)
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        self._config_dir.cleanup()

    def _drain(self, until: float) -> None:
        """Ask the server to take no new requests and wait, until `until` at most, for those in
        flight to finish. Returns at once if the server has no lifecycle middleware."""
        try:
            self._drain_file.touch()
        except OSError:  # the config directory is gone: stop() already ran
            return
        started, in_flight = time.monotonic(), None
        while time.monotonic() < until and self.process.poll() is None:
            state = _drain_state(self.url)
            if state is None:
                break  # /health is not the middleware's drain answer: nothing to wait for
            if state == _NO_ANSWER:  # busy or slow: ask again, the grace period bounds it
                time.sleep(DRAIN_POLL_S)
                continue
            if in_flight is None:
                self._note(f"draining: {state} request(s) in flight, new requests get 503")
            in_flight = state
            if in_flight == 0:
                break
            time.sleep(DRAIN_POLL_S)
        if in_flight:
            self._note(
                f"drain: {in_flight} request(s) still in flight after "
                f"{time.monotonic() - started:.1f} s; stopping the server"
            )
        elif in_flight == 0:
            self._note(f"drained in {time.monotonic() - started:.1f} s; stopping the server")

    def _note(self, message: str) -> None:
        """A liftdeploy log line beside vLLM's (same JSON shape, same destinations)."""
        line = (
            json.dumps(
                {
                    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "level": "INFO",
                    "name": "liftdeploy.server",
                    "message": message,
                }
            )
            + "\n"
        )
        self._tail.append(f"INFO liftdeploy.server: {message}")
        if self._log_file is not None and not self._log_file.closed:
            self._log_file.write(line)
            self._log_file.flush()
        if self._echo:
            _echo(line)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _parent_death_signal(parent_pid: int) -> Callable[[], None] | None:
    """A preexec_fn: the child gets SIGTERM when its parent dies (Linux prctl
    PR_SET_PDEATHSIG), and exits at once if the parent died before the call. None where
    there is no prctl (not Linux): the caller's signal handlers still stop the server.
    libc is loaded here, before the fork: the child may only make plain calls until it execs."""
    import ctypes

    prctl = getattr(ctypes.CDLL(None), "prctl", None)
    if prctl is None:
        return None

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent was gone before the request was armed
            os._exit(1)

    return arm


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (signal 0 checks without signalling)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _signal_group(pid: int, sig: int) -> None:
    """Signal the process group the server leads (start_new_session: its id is the pid)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _drain_state(base_url: str) -> int | None:
    """Requests still in flight, from the lifecycle middleware's draining /health answer; None
    when /health answers otherwise (no lifecycle middleware); _NO_ANSWER when nothing answered
    in time."""
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=2):  # noqa: S310
            return None  # 200: not draining, so no lifecycle middleware is listening
    except urllib.error.HTTPError as error:
        try:
            return int(json.load(error)["in_flight"]) if error.code == 503 else None
        except (ValueError, KeyError, TypeError):
            return None
    except (urllib.error.URLError, OSError, ValueError):
        return _NO_ANSWER


def _echo(line: str) -> None:
    """Write to our stdout; a closed terminal (SIGHUP) must not stop the log pump."""
    try:
        sys.stdout.write(line)
        sys.stdout.flush()
    except (OSError, ValueError):
        pass


def _health_ok(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=2) as response:  # noqa: S310
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
