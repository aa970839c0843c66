"""CLI start-up cost: `liftdeploy validate examples/*.yaml` beside importing its two libraries.

The floor for any command that validates YAML with pydantic is starting Python and importing
pydantic and ruamel.yaml; everything liftdeploy adds (its own modules, building the spec's
validators, validating three specs with all their environments) shows up as the ratio.
Target: ratio <= 3. Each command runs several times in a fresh interpreter, in turns (so a
burst of other work on the machine hits all of them alike); the median counts. Wall time is the
target; CPU time (user + sys of the child) is printed beside it: it moves less when other work
shares the machine, so a busy machine shows as a gap between the two ratios.

    .venv/bin/python bench/cli_startup.py [--repeat N]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 3.0


def _liftdeploy_command() -> list[str]:
    """The installed console script beside this interpreter, as a user runs it."""
    script = Path(sys.executable).parent / "liftdeploy"
    if script.exists():
        return [str(script)]
    found = shutil.which("liftdeploy")
    return [found] if found else [sys.executable, "-m", "liftdeploy.cli.main"]


def _child_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_s(command: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run of `command`."""
    start, start_cpu = time.perf_counter(), _child_cpu_s()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start, _child_cpu_s() - start_cpu


def _medians_s(commands: dict[str, list[str]], repeat: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds per command, after one untimed warm-up round (file cache)."""
    runs: dict[str, list[tuple[float, float]]] = {label: [] for label in commands}
    for attempt in range(repeat + 1):
        for label, command in commands.items():
            result = _run_s(command)
            if attempt:
                runs[label].append(result)
    return {
        label: (statistics.median(w for w, _ in times), statistics.median(c for _, c in times))
        for label, times in runs.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="timed runs per command (default 9)")
    args = parser.parse_args()

    examples = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples").glob("*.yaml"))
    liftdeploy = _liftdeploy_command()
    commands = {
        "python -c 'import pydantic, ruamel.yaml'": [
            sys.executable,
            "-c",
            "import pydantic, ruamel.yaml",
        ],
        "liftdeploy --help": [*liftdeploy, "--help"],
        f"liftdeploy validate examples/*.yaml ({len(examples)} specs)": [
            *liftdeploy,
            "validate",
            *examples,
        ],
    }
    results = _medians_s(commands, args.repeat)
    (base_wall, base_cpu), *_, (wall, cpu) = results.values()
    width = max(map(len, results))
    print(f"median of {args.repeat} runs each (python {sys.version.split()[0]})")
    print(f"  {'':<{width}}  {'wall':>17}  {'CPU':>17}")
    for label, (wall_s, cpu_s) in results.items():
        print(
            f"  {label:<{width}}  {wall_s * 1000:6.1f} ms ({wall_s / base_wall:.2f}x)"
            f"  {cpu_s * 1000:6.1f} ms ({cpu_s / base_cpu:.2f}x)"
        )
    ratio = wall / base_wall
    verdict = "ok" if ratio <= TARGET_RATIO else "ABOVE TARGET"
    print(
        f"ratio validate / import baseline: {ratio:.2f} wall, {cpu / base_cpu:.2f} CPU "
        f"(target <= {TARGET_RATIO:g}): {verdict}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
