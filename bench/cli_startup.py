"""CLI start-up cost: `liftdeploy validate examples/*.yaml` beside importing its two libraries.

The floor for any command that validates YAML with pydantic is starting Python and importing
pydantic and ruamel.yaml; everything liftdeploy adds (its own modules, building the spec's
validators, validating three specs with all their environments) shows up as the ratio.
Target: ratio <= 3. Each command runs several times in a fresh interpreter; the median counts.

    .venv/bin/python bench/cli_startup.py [--repeat N]
"""

from __future__ import annotations

import argparse
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


def _median_wall_s(command: list[str], repeat: int) -> float:
    """Median wall time of `command`, after one untimed warm-up run (fills the OS file cache)."""
    times = []
    for attempt in range(repeat + 1):
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        if attempt:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


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
    results = {label: _median_wall_s(cmd, args.repeat) for label, cmd in commands.items()}
    baseline, *_, validate = results.values()
    width = max(map(len, results))
    print(f"median wall time of {args.repeat} runs each (python {sys.version.split()[0]}):")
    for label, seconds in results.items():
        print(f"  {label:<{width}}  {seconds * 1000:7.1f} ms  ({seconds / baseline:.2f}x)")
    ratio = validate / baseline
    verdict = "ok" if ratio <= TARGET_RATIO else "ABOVE TARGET"
    print(f"ratio validate / import baseline: {ratio:.2f} (target <= {TARGET_RATIO:g}): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
