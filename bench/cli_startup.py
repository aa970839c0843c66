"""CLI start-up cost: `liftdeploy validate examples/*.yaml` beside importing its two libraries.

The floor for any command that validates YAML with pydantic is starting Python and importing
pydantic and ruamel.yaml; everything liftdeploy adds (its own modules, building the spec's
validators, validating three specs with all their environments) shows up as the ratio.
Target: ratio <= 3. Each command runs several times in a fresh interpreter; the median counts.
Wall time is the target; CPU time (user + sys of the child) is printed beside it because it
hardly moves when other work shares the machine, so a busy machine shows in the gap between them.

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


def _median_s(command: list[str], repeat: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of `command`, after one untimed warm-up run (file cache)."""
    walls, cpus = [], []
    for attempt in range(repeat + 1):
        start, start_cpu = time.perf_counter(), _child_cpu_s()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        if attempt:
            walls.append(time.perf_counter() - start)
            cpus.append(_child_cpu_s() - start_cpu)
    return statistics.median(walls), statistics.median(cpus)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="timed runs per command (default 9)")
    args = parser.parse_args()

    examples = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples").glob("*.yaml"))
    liftdeploy = _liftdeploy_command()
    commands = {
        "python -c 'import pydantic, ruamel.yaml'": [
            sys.executable, "-c", "import pydantic, ruamel.yaml",
        ],
        "liftdeploy --help": [*liftdeploy, "--help"],
        f"liftdeploy validate examples/*.yaml ({len(examples)} specs)": [
            *liftdeploy, "validate", *examples,
        ],
    }
    results = {label: _median_s(cmd, args.repeat) for label, cmd in commands.items()}
    (base_wall, base_cpu), *_, (wall, cpu) = results.values()
    width = max(map(len, results))
    print(f"median of {args.repeat} runs each (python {sys.version.split()[0]}):"
          f"{'':{width - 22}}wall             CPU")
    for label, (wall_s, cpu_s) in results.items():
        print(f"  {label:<{width}}  {wall_s * 1000:6.1f} ms ({wall_s / base_wall:.2f}x)"
              f"  {cpu_s * 1000:6.1f} ms ({cpu_s / base_cpu:.2f}x)")
    ratio = wall / base_wall
    verdict = "ok" if ratio <= TARGET_RATIO else "ABOVE TARGET"
    print(f"ratio validate / import baseline: {ratio:.2f} wall, {cpu / base_cpu:.2f} CPU "
          f"(target <= {TARGET_RATIO:g}): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
