"""Options and output helpers shared by every command group."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from liftdeploy.spec.model import ModelDeployment, ResolvedDeployment


def add_spec_argument(parser: argparse.ArgumentParser, *, nargs: str | None = None) -> None:
    parser.add_argument(
        "spec",
        nargs=nargs,
        metavar="SPEC",
        help="spec file (deployment.yaml) or a rendered service directory that holds one",
    )


def add_env_option(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """--env; commands that change something in the cloud require it (acting on production by
    default would be the wrong surprise)."""
    parser.add_argument(
        "--env",
        "-e",
        dest="env",
        required=required,
        metavar="ENV",
        help="environment overlay to act on (e.g. staging, production)"
        if required
        else "environment overlay to resolve (default: the production environment)",
    )


def add_env_or_all_option(parser: argparse.ArgumentParser, *, verb: str) -> None:
    """--env ENV or --all-envs, for read-only commands (default: the production environment)."""
    envs = parser.add_mutually_exclusive_group()
    envs.add_argument(
        "--env",
        "-e",
        dest="env",
        metavar="ENV",
        help=f"environment to {verb} (default: the production environment)",
    )
    envs.add_argument("--all-envs", action="store_true", help=f"{verb} every environment")


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a machine-readable JSON report")


def spec_path(value: str) -> Path:
    """A spec file, or a service directory's deployment.yaml."""
    path = Path(value)
    if not path.is_dir():
        return path
    from liftdeploy.spec.specfile import SPEC_FILE  # pydantic: not on the start-up path

    if not (path / SPEC_FILE).is_file():
        from liftdeploy.errors import SpecFileError

        raise SpecFileError(
            f"directory has no {SPEC_FILE}; pass a spec file or a rendered service directory",
            source=str(path),
        )
    return path / SPEC_FILE


def load(value: str) -> ModelDeployment:
    from liftdeploy.planner.checks import check_layouts
    from liftdeploy.spec.specfile import load_spec

    path = spec_path(value)
    spec = load_spec(path)
    check_layouts(spec, source=str(path))
    return spec


def resolve(value: str, env: str | None) -> ResolvedDeployment:
    return load(value).resolve(env)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def note(message: str) -> None:
    """Progress and advice go to stderr so stdout stays clean for YAML/JSON."""
    print(message, file=sys.stderr)


def positive_number(value: str, unit: str = "") -> float:
    """argparse type for an amount: a finite number above zero (never nan or inf)."""
    what = f"number of {unit}" if unit else "number"
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a {what}") from None
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive, finite {what}")
    return number


def positive_seconds(value: str) -> float:
    """argparse type for a duration option: a number of seconds above zero."""
    return positive_number(value, "seconds")


def port_number(value: str) -> int:
    """argparse type for a TCP port: 1..65535."""
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (1 to 65535)")
    return port
