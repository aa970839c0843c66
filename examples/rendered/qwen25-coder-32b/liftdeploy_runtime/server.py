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
from pathlib import Path

LOG_TAIL_LINES = 40
_LOG_CONFIG_ENV = "VLLM_LOGGING_CONFIG_PATH"


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
            "stdout": {"class": "logging.StreamHandler", "formatter": "json",
                       "stream": "ext://sys.stdout"}
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
    return json.dumps({"timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "level": level,
                       "name": "output", "message": line})


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
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.command = [python, "-m", "vllm.entrypoints.openai.api_server", *args]
        self._tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._echo = echo
        self._log_file = open(log_path, "a", encoding="utf-8") if log_path else None  # noqa: SIM115
        self._config_dir = tempfile.TemporaryDirectory(prefix="liftdeploy-log-")
        config_path = Path(self._config_dir.name) / "logging.json"
        config_path.write_text(json.dumps(json_logging_config()))
        full_env = {**os.environ, **(env or {}), _LOG_CONFIG_ENV: str(config_path),
                    "VLLM_CONFIGURE_LOGGING": "1", "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(  # noqa: S603 - argv built by liftdeploy, no shell
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=full_env,
            text=True,
            bufsize=1,
            start_new_session=True,  # Ctrl-C in the terminal reaches us, we stop the group
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
                sys.stdout.write(line)
                sys.stdout.flush()

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
                raise ServerDied(self.died_message(f"exited with status {code} before it was healthy"))
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

    def stop(self, grace_s: float = 20.0) -> int | None:
        """SIGTERM the process group, wait up to grace_s, then SIGKILL. Returns the exit code.

        The whole group is signalled even when the leader already exited: vLLM's engine core
        runs in a child process that would otherwise be orphaned (and keep the GPU)."""
        _signal_group(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        _signal_group(self.process.pid, signal.SIGKILL)  # stragglers of the group, if any
        self._reader.join(timeout=2)
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        self._config_dir.cleanup()
        return self.process.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(pid: int, sig: int) -> None:
    """Signal the process group the server leads (start_new_session: its id is the pid)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _health_ok(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=2) as response:  # noqa: S310
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False
