"""`liftdeploy stop`, the kill switch: the exact `modal app stop` (parsed by modal's own CLI),
production's confirmation, and the real modal CLI's refusal when logged out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_ops import ENVIRONMENTS, _resolve, _variant, modal_cli_parse, no_modal_token  # noqa: F401

from liftdeploy.ops.modal_commands import stop_command

REPO_ROOT = Path(__file__).resolve().parent.parent
SPEC_32B = REPO_ROOT / "examples" / "qwen25-coder-32b.yaml"


def _cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "liftdeploy.cli.main", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )


@pytest.mark.parametrize(("example", "env", "app_name"), ENVIRONMENTS)
def test_stop_command_per_environment_parses_as_modal_app_stop(
    example: str, env: str, app_name: str
) -> None:
    command = stop_command(_resolve(example, env))
    assert command.argv == ["modal", "app", "stop", app_name, "--yes"]
    name, params = modal_cli_parse(command.argv)
    assert (name, params["app_identifier"], params["yes"]) == ("stop", app_name, True)


def test_stop_goes_to_the_overlays_modal_environment() -> None:
    resolved = _variant("80b", staging={"modal_environment": "stage"})
    name, params = modal_cli_parse(stop_command(resolved).argv)
    assert (name, params["app_identifier"], params["env"]) == (
        "stop",
        "qwen3-next-80b-staging",
        "stage",
    )


@pytest.mark.parametrize(
    ("env", "app_name"),
    [
        ("production", "lift-sys-inference"),
        ("staging", "lift-sys-inference-staging"),
    ],
)
def test_dry_run_prints_the_command_and_asks_nothing(env: str, app_name: str) -> None:
    result = _cli("stop", str(SPEC_32B), "--env", env, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"modal app stop {app_name} --yes\n" and result.stderr == ""


@pytest.mark.parametrize(("answer", "shown"), [("", "no answer"), ("yes\n", "got 'yes'")])
def test_production_is_not_stopped_without_its_name_typed_back(answer: str, shown: str) -> None:
    result = _cli("stop", str(SPEC_32B), "--env", "production", stdin=answer)
    assert result.returncode == 1
    prompt, error, rest = result.stderr.split("\n", 2)
    assert prompt.startswith("stop production app lift-sys-inference?")
    assert error == (
        f"error: not stopped: confirmation needed ({shown}); type "
        f"lift-sys-inference when asked, or pass --yes"
    )
    assert rest == "" and "$ modal" not in result.stderr


@pytest.mark.parametrize(
    ("args", "stdin"),
    [
        (["--env", "production"], "lift-sys-inference\n"),  # confirmed by name
        (["--env", "production", "--yes"], ""),  # no question asked
        (["--env", "staging"], ""),  # only production asks
    ],
)
def test_confirmed_stop_runs_modal_which_stops_at_login(args: list[str], stdin: str) -> None:
    result = _cli("stop", str(SPEC_32B), *args, stdin=stdin)
    assert result.returncode == 1
    assert "$ modal app stop lift-sys-inference" in result.stderr
    assert "modal token new" in result.stderr and "Traceback" not in result.stderr
    assert ("Type lift-sys-inference to confirm" in result.stderr) == (stdin != "")
