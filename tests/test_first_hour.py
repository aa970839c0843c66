"""A new service's first hour, through the CLI as a user types it: init, plan, set, render .,
check, bootstrap/download/deploy --dry-run, stop --dry-run. No traceback, no other service's
names, and a clean `check` apart from the pin warning. The transcript is written to
$LIFTDEPLOY_FIRST_HOUR_TRANSCRIPT when set (for the issue's closing note)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

MODEL = "Qwen/Qwen2.5-Coder-32B-Instruct"  # an example's model: init must not borrow its names
OTHER_SERVICES = (
    "lift-sys",
    "prod-modal-secrets",
    "staging-modal-secrets",
    "qwen3-next-80b",
    "qwen3-coder-480b",
    "lift-sys.vercel.app",
)


@pytest.fixture(autouse=True)
def logged_out(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(tmp_path_factory.mktemp("modal") / "m.toml"))
    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_PROFILE", "MODAL_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)


def git(directory: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=directory,
        check=True,
        capture_output=True,
    )


def test_first_hour_of_a_new_service(tmp_path: Path) -> None:
    transcript: list[str] = []

    def run(*args: str, ok: bool = True, cwd: Path = tmp_path) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "liftdeploy.cli.main", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=300,
        )
        where = "my-coder$ " if cwd != tmp_path else "$ "
        transcript.append(
            f"{where}liftdeploy {' '.join(args)}  # exit {result.returncode}\n"
            f"{result.stdout}{result.stderr}"
        )
        output = result.stdout + result.stderr
        assert "Traceback" not in output, output
        leaked = [name for name in OTHER_SERVICES if name in output]
        assert not leaked, (leaked, output)
        if ok:
            assert result.returncode == 0, output
        return result

    try:
        run("init", "my-coder", "--model-id", MODEL)
        service = tmp_path / "my-coder"
        for path in service.rglob("*"):
            if path.is_file() and ".git" not in path.parts:
                text = path.read_text(errors="replace")
                assert not [n for n in OTHER_SERVICES if n in text], path
        run("plan", "my-coder", "--env", "staging")
        run("set", "my-coder", "runtime.max_containers=2", "budget.max_monthly_usd=1500")
        bad = run("set", "my-coder", "auth.api_key_secret=sk-0123456789abcdef", ok=False)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1
        git(service, "init", "-q")
        git(service, "add", ".")
        git(service, "commit", "-q", "-m", "init")
        run("render", ".", cwd=service)  # after `set`, as the RUNBOOK says
        checked = run("check", "my-coder")
        assert "matches its spec" in checked.stderr and "out of date" not in checked.stderr
        run("check", "my-coder", "--env", "staging")
        run("bootstrap", "my-coder", "--env", "staging", "--dry-run")
        run("download", "my-coder", "--env", "staging", "--dry-run")
        deploy = run("deploy", "my-coder", "--env", "staging", "--dry-run")
        assert "--name my-coder-staging" in deploy.stdout
        stop = run("stop", "my-coder", "--env", "production", "--dry-run")
        assert stop.stdout == "modal app stop my-coder --yes\n"
    finally:
        if target := os.environ.get("LIFTDEPLOY_FIRST_HOUR_TRANSCRIPT"):
            Path(target).write_text("\n".join(transcript))
