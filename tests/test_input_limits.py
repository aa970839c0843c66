"""Careless or hostile input files and options: each gets one clear line and an exit status,
never a hang, a memory blow-up, a traceback or a silent change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from liftdeploy.cli.main import main
from liftdeploy.spec.specfile import MAX_FILE_BYTES, MAX_YAML_VALUES

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = REPO_ROOT / "examples" / "qwen25-coder-32b.yaml"
LIFTDEPLOY = [sys.executable, "-m", "liftdeploy.cli.main"]
BILLION_LAUGHS = (
    "\n".join(
        [f'l0: &l0 ["{"lol" * 3}"]']
        + [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, 10)]
        + ["name: laughs"]
    )
    + "\n"
)


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own, so a hang fails the test instead of stalling it."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [*LIFTDEPLOY, *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def one_clear_line(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def test_fifo_spec_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    for command in (["validate", str(fifo)], ["schema-check", str(fifo)]):
        one_clear_line(run(*command, timeout=30), "is not a regular file")


def test_device_behind_a_symlink_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "deployment.yaml"
    link.symlink_to("/dev/zero")
    one_clear_line(run("validate", str(link), timeout=30), "is not a regular file")
    # loadtest reads its --schema before sending anything (nothing listens on port 9)
    one_clear_line(
        run(
            "loadtest",
            str(EXAMPLE),
            "--env",
            "staging",
            "--url",
            "http://127.0.0.1:9",
            "--schema",
            str(link),
            timeout=30,
        ),
        "is not a regular file",
    )


def test_oversized_files_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(EXAMPLE.read_text() + "#" * MAX_FILE_BYTES)
    schema = tmp_path / "big.json"
    schema.write_text(json.dumps({"description": "x" * MAX_FILE_BYTES}))
    assert main(["validate", str(big)]) == 2
    assert main(["schema-check", str(schema)]) == 2


def test_alias_bomb_stops_at_the_value_limit(tmp_path: Path) -> None:
    spec = tmp_path / "laughs.yaml"
    spec.write_text(BILLION_LAUGHS)
    one_clear_line(run("validate", str(spec), timeout=30), f"{MAX_YAML_VALUES:,} values", "aliases")
    cycle = tmp_path / "cycle.yaml"
    cycle.write_text("a: &a [*a]\nname: x\n")
    one_clear_line(run("validate", str(cycle), timeout=30))


def test_ordinary_aliases_still_load(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace("  max_containers: 2", "  max_containers: &cap 2")
    text = text.replace(
        "runtime: {min_containers: 0, max_containers: 1}",
        "runtime: {min_containers: 0, max_containers: *cap}",
        1,
    )
    spec = tmp_path / "aliases.yaml"
    spec.write_text(text)
    assert "*cap" in text and main(["validate", str(spec)]) == 0


def test_nan_and_infinity_are_refused_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (
        ["plan", str(EXAMPLE), "--json", "--price", "nan"],
        ["plan", str(EXAMPLE), "--price", "inf"],
        [
            "warmup",
            str(EXAMPLE),
            "--env",
            "staging",
            "--url",
            "http://127.0.0.1:9",
            "--timeout",
            "nan",
        ],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert "is not a positive, finite number" in capsys.readouterr().err
    spec = tmp_path / "inf.yaml"
    spec.write_text(EXAMPLE.read_text() + "pricing: {gpu_hour_usd: .inf}\n")
    assert main(["plan", str(spec), "--json"]) == 2
    captured = capsys.readouterr()
    assert "Infinity" not in captured.out and "finite number" in captured.err


def test_set_with_an_empty_value_keeps_the_cost_cap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "deployment.yaml"
    spec.write_text(EXAMPLE.read_text())
    assert main(["set", str(spec), "runtime.max_containers="]) == 2
    assert "has no value" in capsys.readouterr().err
    assert spec.read_text() == EXAMPLE.read_text()
    assert main(["set", str(spec), "runtime.max_containers=null"]) == 0  # said explicitly


def test_unusable_paths_and_ports_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["render", str(EXAMPLE), "-o", "/proc/self/x"]) != 0
    err = capsys.readouterr().err
    assert "cannot write" in err and "nothing was changed" in err and err.count("\n") == 1
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    assert main(["tiny-model", str(a_file)]) != 0
    assert "is a file; give a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", str(EXAMPLE), "--local", "--port", "70000"])
    assert exit_info.value.code == 2
    assert "70000 is not a port number (1 to 65535)" in capsys.readouterr().err


def test_a_password_in_the_url_is_refused_and_never_echoed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        main(
            ["health", str(EXAMPLE), "--env", "staging", "--url", "http://user:hunter2@127.0.0.1:9"]
        )
        != 0
    )
    err = capsys.readouterr().err
    assert "holds a user name or password" in err and "hunter2" not in err
