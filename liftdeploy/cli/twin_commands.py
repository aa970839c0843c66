"""tiny-model, serve --local, demo: the local CPU twin from the command line."""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from liftdeploy.cli import common
from liftdeploy.render.vllm_args import SERVER_PORT

if TYPE_CHECKING:
    pass


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "tiny-model", help="build the twin's tiny random-init model (no download, under 2 MB)"
    )
    p.add_argument("path", metavar="PATH", help="directory to write the model to")
    p.set_defaults(handler=tiny_model)

    p = subparsers.add_parser(
        "serve", help="run the spec's vLLM server locally on CPU with a tiny model (the twin)"
    )
    common.add_spec_argument(p)
    common.add_env_option(p)
    p.add_argument(
        "--local",
        action="store_true",
        help="run on this machine (the only mode; deploy to Modal with `deploy`)",
    )
    p.add_argument(
        "--model",
        metavar="PATH",
        help="local model directory (default: the tiny model, built on first use "
        "in ~/.cache/liftdeploy/tiny-model)",
    )
    p.add_argument(
        "--port",
        type=common.port_number,
        default=SERVER_PORT,
        help=f"port on 127.0.0.1 (default {SERVER_PORT}, as in the container)",
    )
    p.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="name of an environment variable holding the API key clients must send "
        "(the key itself never goes on the command line)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="do not echo the server's log")
    p.set_defaults(handler=serve)

    p = subparsers.add_parser(
        "demo", help="plan and render the examples, start the twin, send constrained requests"
    )
    p.add_argument("--port", type=int, help="port for the twin (default: a free one)")
    p.add_argument(
        "--model", metavar="PATH", help="model directory (default: ~/.cache/liftdeploy/tiny-model)"
    )
    p.set_defaults(handler=demo)


def tiny_model(args: argparse.Namespace) -> int:
    from liftdeploy.twin.tinymodel import build_tiny_model

    path = build_tiny_model(args.path)
    size_kb = sum(f.stat().st_size for f in path.iterdir() if f.is_file()) / 1024
    print(f"tiny model in {path} ({size_kb:.0f} KB)")
    common.note(f"serve it: liftdeploy serve SPEC --local --model {path}")
    return 0


def serve(args: argparse.Namespace) -> int:
    from liftdeploy.errors import TwinError
    from liftdeploy.twin.local import LocalTwin, StartupProgress, require_supported

    if not args.local:
        raise TwinError(
            "serve runs the local CPU twin only: add --local "
            "(to run on Modal, use `liftdeploy deploy`)"
        )
    require_supported()
    resolved = common.resolve(args.spec, args.env)
    api_key = _api_key_from_env(args.api_key_env)
    model_path = _model_dir(args.model)
    _interrupt_on_stop_signals()
    common.note(
        f"starting the local twin of {resolved.app_name} ({resolved.environment}) on port "
        f"{args.port} with {model_path}"
    )
    progress = StartupProgress() if args.quiet else None  # the echoed log shows progress
    twin = LocalTwin.start(
        resolved, model_path, args.port, api_key=api_key, echo=not args.quiet, on_wait=progress
    )
    try:
        if progress:
            progress.finish()
        auth = "  (send the API key as a Bearer token)" if api_key else ""
        print(
            f"ready: {twin.url}  OpenAI base URL: {twin.base_url}  model: {twin.model_name}" + auth,
            flush=True,
        )
        common.note("Ctrl-C stops the server (requests in flight finish first)")
        code = twin.server.process.wait()
        twin.server.kill()  # the rest of its group; collects the last output lines
        raise TwinError(twin.server.died_message(f"stopped unexpectedly with status {code}"))
    except KeyboardInterrupt:
        _note_if_possible(
            "draining: requests in flight finish, new ones get 503 (Ctrl-C again stops at once)…"
        )
        twin.stop()  # a second Ctrl-C interrupts the drain and kills the server at once
        _note_if_possible("server stopped")
        return 0
    finally:
        twin.server.kill()  # no-op after a stop; never leaves a server behind


def demo(args: argparse.Namespace) -> int:
    from liftdeploy.twin.demo import run_demo

    _interrupt_on_stop_signals()  # the demo's own cleanup then stops its server
    return run_demo(port=args.port, model_dir=Path(args.model) if args.model else None)


def _model_dir(value: str | None) -> Path:
    """The model directory to serve: the one given (it must exist), else the cached tiny one."""
    from liftdeploy.errors import TwinError
    from liftdeploy.twin.local import DEFAULT_TINY_MODEL_DIR
    from liftdeploy.twin.tinymodel import build_tiny_model

    if value is None:
        return build_tiny_model(DEFAULT_TINY_MODEL_DIR)
    path = Path(value).expanduser()
    if not (path / "config.json").is_file():
        raise TwinError(
            f"--model {value}: no model there (no config.json); build the tiny model with "
            f"`liftdeploy tiny-model {value}`"
        )
    return path


def _api_key_from_env(var: str | None) -> str | None:
    from liftdeploy.errors import TwinError

    if var is None:
        return None
    key = os.environ.get(var, "")
    if not key:
        raise TwinError(
            f"--api-key-env {var}: the environment variable {var} is not set or empty; "
            f"export it first (export {var}=...)"
        )
    return key


def _note_if_possible(message: str) -> None:
    """A note that never stops the cleanup: after SIGHUP the terminal may be gone (EIO)."""
    try:
        common.note(message)
    except OSError:
        pass


def _interrupt_on_stop_signals() -> None:
    """SIGTERM (a supervisor, `kill`, `timeout`) and SIGHUP (the terminal closed) stop the
    command the way Ctrl-C does, so its cleanup stops the server; a crash or SIGKILL is
    covered by the twin's watchdog (`liftdeploy.twin.local.GroupWatchdog`)."""
    for stop_signal in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop_signal, _raise_keyboard_interrupt)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
