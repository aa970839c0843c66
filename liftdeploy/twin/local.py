"""The local CPU twin: the rendered service's own vLLM server, run here on a tiny model.

`cpu_twin` is the one visible place where the twin differs from production, and every
difference is one the CPU forces (no GPU memory, no parallelism, no CUDA graphs, a small local
model). The argv then comes from `liftdeploy.render.vllm_args.server_args` — the function whose output
the Modal app contains — and the process is run by `liftdeploy.runtime.server.ServerProcess`,
the start / wait-for-health / stop code the app's enter and exit hooks use.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from liftdeploy.errors import TwinError
from liftdeploy.twin.support import require_supported
from liftdeploy.twin.tinymodel import TINY_MODEL_MAX_LEN

if TYPE_CHECKING:
    from typing import TextIO

    from liftdeploy.runtime.server import ServerProcess
    from liftdeploy.spec.model import ResolvedDeployment

TWIN_HOST = "127.0.0.1"
"""The twin listens on loopback only: it is a test rig, not a service."""

TWIN_MEMORY_UTILIZATION = 0.1
"""On CPU vLLM reads --gpu-memory-utilization as a share of host RAM: 0.9 fails, 0.1 works."""

TWIN_KVCACHE_GIB = 1
"""KV cache size on CPU (VLLM_CPU_KVCACHE_SPACE, GiB): plenty for a 2048-token tiny model."""

TWIN_EXIT_GRACE_S = 60
"""How long a stopping twin lets requests in flight finish: CPU decode is far slower than the
GPU speed bound the planner sizes production's grace period from."""

TWIN_STARTUP_TIMEOUT_S = 300
"""Ready takes about 25-60 s on 2 cores; a dying server is reported at once regardless."""

DEFAULT_TINY_MODEL_DIR = Path.home() / ".cache" / "liftdeploy" / "tiny-model"
"""Where `demo` builds (and reuses) the tiny model."""

# The watchdog's program, run by a separate small interpreter (standard library only): the one
# process left to end the server when whatever started it is gone, however it went (SIGKILL
# included). Its stdin is a pipe whose only writer is the process that started the server: the
# first line is the server's process group, and end of file (that process exited) SIGKILLs the
# group: the API server and vLLM's engine core, whatever they are doing (in start-up they
# swallow the SIGTERM of the parent-death signal). It leaves on its own once the group is gone,
# so it never signals a later group that reuses the number.
GROUP_WATCHDOG = """
import os, select, signal
signal.signal(signal.SIGINT, signal.SIG_IGN)
line = b""
while not line.endswith(b"\\n"):
    chunk = os.read(0, 64)
    if not chunk:
        raise SystemExit(0)  # gone before the server started: nothing to watch
    line += chunk
pgid = int(line)
def running_member(pid):  # a zombie has ended (an init may be slow to reap it)
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state, _, group = stat.read().rsplit(b")", 1)[1].split()[:3]
    except OSError:
        return False
    return int(group) == pgid and state != b"Z"
def group_alive():
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return running_member(pgid) or any(  # the leader (the API server), else any other
        running_member(pid) for pid in filter(str.isdigit, os.listdir("/proc")))
while group_alive():
    if select.select([0], [], [], 2.0)[0] and not os.read(0, 64):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        break
"""


def cpu_twin(resolved: ResolvedDeployment, model_path: str | Path) -> ResolvedDeployment:
    """The deployment the twin runs: `resolved` with only the CPU-necessary changes.

    Kept from the spec: the served model name (clients use the same name), max concurrent
    sequences, structured-output backend and whitespace rule, CORS, extra args, environment.
    """
    from liftdeploy.spec.model import ResolvedDeployment

    model_path = Path(model_path).expanduser().resolve()
    data = resolved.model_dump()
    data["model"].update(
        id=str(model_path),
        served_model_name=resolved.model.name_for_clients,
        revision=None,  # a local directory has no revisions
        hf_token_secret=None,
        quantization=None,  # fp8/awq kernels are GPU kernels
        trust_remote_code=False,
        dtype="bfloat16",  # the CPU backend's fast path
        kv_cache_dtype="auto",  # fp8 KV cache is GPU-only
        max_model_len=min(resolved.model.max_model_len, _model_max_len(model_path)),
    )
    data["gpu"].update(  # one CPU "device": no tensor, pipeline or expert parallelism
        count=1,
        fallback=[],
        tensor_parallel_size=1,
        pipeline_parallel_size=1,
        expert_parallel=False,
        memory_utilization=TWIN_MEMORY_UTILIZATION,
    )
    data["engine"]["enforce_eager"] = True  # CUDA graphs and torch.compile are GPU start-up work
    # A local server sends nothing off the machine: no traces to production's collector.
    data["observability"].update(otlp_traces_endpoint=None, otlp_headers_secret=None)
    if resolved.runtime.exit_grace_period_s is None:  # the planner's default assumes a GPU
        data["runtime"]["exit_grace_period_s"] = TWIN_EXIT_GRACE_S
    return ResolvedDeployment.model_validate(data)


def twin_env(deployment: ResolvedDeployment, api_key: str | None = None) -> dict[str, str]:
    """The server environment: production's, the CPU KV-cache size, and the API key if any.

    The key goes in VLLM_API_KEY, as the Modal app gets it from a Secret: never on the argv.
    """
    from liftdeploy.render.vllm_args import server_env

    env = {
        **server_env(deployment),
        "VLLM_CPU_KVCACHE_SPACE": str(TWIN_KVCACHE_GIB),
        "HF_HUB_OFFLINE": "1",  # a local directory: never reach for the Hub, fail at once
    }
    # Always set: an empty value switches auth off even when the caller's shell exports a key
    # for its client (VLLM_API_KEY is also a client variable, see docs/client.md).
    env["VLLM_API_KEY"] = api_key or ""
    return env


@dataclass
class LocalTwin:
    """A running twin: where it listens, what it serves, and the process behind it."""

    deployment: ResolvedDeployment
    """The CPU-adjusted deployment the server runs (see `cpu_twin`)."""
    server: ServerProcess
    """The vLLM process (log tail, stop)."""
    api_key: str | None = None
    """The Bearer token the server requires, or None for an open server."""
    log_path: Path | None = None
    """The file the server's whole log (JSON lines) is written to, if one was asked for."""
    watchdog: GroupWatchdog | None = None
    """Ends the server's process group if this process ends first (see `GroupWatchdog`)."""

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def base_url(self) -> str:
        """The OpenAI SDK's base_url."""
        return f"{self.server.url}/v1"

    @property
    def model_name(self) -> str:
        """The model name clients send: the spec's served name."""
        return self.deployment.model.name_for_clients

    @classmethod
    def start(
        cls,
        resolved: ResolvedDeployment,
        model_path: str | Path,
        port: int,
        *,
        api_key: str | None = None,
        echo: bool = False,
        log_path: str | os.PathLike[str] | None = None,
        timeout_s: float = TWIN_STARTUP_TIMEOUT_S,
        on_wait: Callable[[float], None] | None = None,
    ) -> LocalTwin:
        """Start the twin and wait for /health; a server that dies is a TwinError with its
        last log lines, raised as soon as the process exits."""
        from liftdeploy.render.vllm_args import server_args
        from liftdeploy.runtime.server import ServerDied, ServerProcess

        require_supported()
        _check_port_free(port)
        deployment = cpu_twin(resolved, model_path)
        watchdog = GroupWatchdog()  # a crashed or killed caller never leaves a server behind
        try:
            server = ServerProcess(
                server_args(deployment, port=port, host=TWIN_HOST),
                port=port,
                env=twin_env(deployment, api_key),
                echo=echo,
                log_path=log_path,
                die_with_parent=True,  # also covers the instant before the watchdog knows it
            )
        except BaseException:
            watchdog.release()
            raise
        try:
            watchdog.watch(server.process.pid)
            server.wait_healthy(timeout_s, on_wait=on_wait)
        except ServerDied as exc:
            server.stop()
            watchdog.release()
            raise TwinError(f"the local twin did not start: {exc}") from None
        except BaseException:  # Ctrl-C while waiting: never leave a server behind
            server.stop()
            watchdog.release()
            raise
        return cls(
            deployment=deployment,
            server=server,
            api_key=api_key,
            log_path=Path(log_path) if log_path else None,
            watchdog=watchdog,
        )

    def stop(self) -> int | None:
        """Drain and stop the server, as the Modal app's exit hook does (`ServerProcess.stop`),
        within the deployment's exit grace period."""
        from liftdeploy.planner.timeouts import exit_grace_period_s

        try:
            return self.server.stop(grace_s=exit_grace_period_s(self.deployment))
        finally:
            if self.watchdog is not None:
                self.watchdog.release()

    def __enter__(self) -> LocalTwin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class GroupWatchdog:
    """A watchdog process (`GROUP_WATCHDOG`) that SIGKILLs a server's process group as soon as
    this process ends, however it ends; SIGKILL included, which no handler here can see.

    The parent-death signal alone is not enough: it is a SIGTERM that vLLM's API server swallows
    during start-up, and it never reaches vLLM's engine core, the API server's own child. The
    pipe's write end is held by this process alone (Popen closes it in every child), so the
    kernel closes it, and the watchdog wakes, when this process is gone."""

    _alive: ClassVar[list[GroupWatchdog]] = []
    """Watchdogs not yet released: kept referenced, so dropping a LocalTwin (`start_twin`
    returns only its server) never lets garbage collection end its watch."""

    def __init__(self) -> None:
        read_end, self._write_end = os.pipe()
        try:
            self._process: subprocess.Popen[bytes] | None = subprocess.Popen(  # noqa: S603
                [sys.executable, "-I", "-S", "-c", GROUP_WATCHDOG],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C or a kill of our process group spares it
            )
        except BaseException:
            os.close(self._write_end)
            raise
        finally:
            os.close(read_end)
        GroupWatchdog._alive.append(self)

    def watch(self, pgid: int) -> None:
        """Start watching process group `pgid` (a server started with start_new_session)."""
        os.write(self._write_end, f"{pgid}\n".encode())

    def release(self) -> None:
        """The server is stopped: end the watch (a group still alive is killed) and reap the
        watchdog."""
        if self._process is None:
            return
        os.close(self._write_end)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
        self._process = None
        GroupWatchdog._alive.remove(self)


def start_twin(
    resolved: ResolvedDeployment, model_path: str | Path, port: int, **options: object
) -> ServerProcess:
    """Start the twin of `resolved` on `port` and return its healthy server process
    (options as for `LocalTwin.start`)."""
    return LocalTwin.start(resolved, model_path, port, **options).server  # type: ignore[arg-type]


class StartupProgress:
    """An `on_wait` callback showing 'waiting for the vLLM server … N s' while it starts:
    one line updated in place on a terminal, a line every 10 s elsewhere (logs, CI)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._shown_s = -1

    def __call__(self, elapsed_s: float) -> None:
        whole_s = int(elapsed_s)
        if whole_s == self._shown_s or (not self._tty and whole_s % 10):
            return
        self._shown_s = whole_s
        text = f"  waiting for the vLLM server … {whole_s} s"
        print(
            f"\r{text}" if self._tty else text,
            end="" if self._tty else "\n",
            file=self._stream,
            flush=True,
        )

    def finish(self) -> None:
        """End the in-place line, so what follows starts on its own line."""
        if self._tty and self._shown_s >= 0:
            print(file=self._stream, flush=True)


def free_port() -> int:
    """A TCP port free on loopback right now (the OS picks it, so parallel runs do not clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((TWIN_HOST, 0))
        return int(sock.getsockname()[1])


def _check_port_free(port: int) -> None:
    """Refuse a busy port: another server's /health answering would look like ours."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if sock.connect_ex((TWIN_HOST, port)) == 0:
            raise TwinError(
                f"port {port} on {TWIN_HOST} is already in use (another server?); "
                f"stop it or choose another port with --port"
            )


def _model_max_len(model_path: Path) -> int:
    """The model's own context length (config.json), or the tiny model's."""
    try:
        config = json.loads((model_path / "config.json").read_text())
    except (OSError, ValueError):
        return TINY_MODEL_MAX_LEN
    return int(config.get("max_position_embeddings") or TINY_MODEL_MAX_LEN)
