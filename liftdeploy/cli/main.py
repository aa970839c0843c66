"""Entry point: registers the command groups and turns errors into one line and an exit code.

Heavy libraries (modal, copier, vllm, torch) are imported only inside the commands that use
them, so `liftdeploy --help` and `liftdeploy validate` start instantly.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from liftdeploy import __version__

# Each module exposes `register(subparsers)`. Order is the order of `--help`.
COMMAND_MODULES = (
    "liftdeploy.cli.spec_commands",  # validate, show, set, schema
    "liftdeploy.cli.plan_commands",  # plan
    "liftdeploy.cli.render_commands",  # render, check
    "liftdeploy.cli.twin_commands",  # tiny-model, serve --local, demo
    "liftdeploy.cli.schema_commands",  # schema-check
    "liftdeploy.cli.http_commands",  # health, warmup, smoke, loadtest
    "liftdeploy.cli.ops_commands",  # bootstrap, deploy, status, rollback, logs, stop, audit-endpoints
    "liftdeploy.cli.init_commands",  # init
    "liftdeploy.cli.weights_commands",  # pin, download
    "liftdeploy.cli.ci_commands",  # ci-warmup, ci-workflow
    "liftdeploy.cli.spend_commands",  # spend
    "liftdeploy.cli.alerts_commands",  # alerts test
    "liftdeploy.cli.release_commands",  # release start|status|promote|abort|finish
)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or with `command` only the groups up to the one that defines it.

    Building every group's subparsers costs more start-up than validating a spec; a command
    needs only its own group (and `--help` or an unknown command still gets all of them).
    """
    parser = argparse.ArgumentParser(
        prog="liftdeploy",
        description="One ModelDeployment spec in, a production-ready Modal + vLLM app out.",
    )
    parser.add_argument("--version", action="version", version=f"liftdeploy {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
        if command in subparsers.choices:
            break
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # The top-level options take no values, so the first other word is the command.
    command = next((word for word in argv if not word.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    from liftdeploy.errors import LiftdeployError

    try:
        return int(args.handler(args) or 0)
    except LiftdeployError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`liftdeploy schema | head`): silence the flush at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a path the command could not use: one line, not a traceback
        if args.debug:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(
            f"error: {where}{exc.strerror or exc}; check the path and its permissions "
            f"(--debug shows where)",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
