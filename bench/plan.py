"""CPU time of `liftdeploy plan` on the three examples (target: under 0.5 s of CPU).

Each example, then all three together, is planned in a fresh interpreter, every environment;
the child process's user + system CPU time is measured (interpreter start-up included), and
the heavy libraries the command must not import are listed.

    .venv/bin/python bench/plan.py [--repeat N]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
TARGET_CPU_S = 0.5
_CHILD = (
    "import sys\n"
    "from liftdeploy.cli.main import main\n"
    "for path in sys.argv[1:]:\n"
    "    main(['plan', path, '--all-envs'])\n"
    "heavy = [m for m in ('vllm', 'torch', 'modal', 'transformers') if m in sys.modules]\n"
    "print('HEAVY', ','.join(heavy), file=sys.stderr)\n"
)


def _child_cpu_s(paths: list[Path]) -> tuple[float, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *map(str, paths)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    heavy = next(
        (line.split(" ", 1)[1] for line in done.stderr.splitlines() if line.startswith("HEAVY")),
        "?",
    )
    return cpu, heavy.strip() or "none"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    worst = 0.0
    for label, paths in [*((p.name, [p]) for p in EXAMPLES), ("all three", EXAMPLES)]:
        runs = [_child_cpu_s(paths) for _ in range(args.repeat)]
        median = statistics.median(cpu for cpu, _ in runs)
        worst = max(worst, median)
        print(
            f"{label:28} median CPU {median:.3f} s over {args.repeat} runs; "
            f"heavy imports: {runs[0][1]}"
        )
    print(
        f"worst median {worst:.3f} s (target < {TARGET_CPU_S} s): "
        f"{'OK' if worst < TARGET_CPU_S else 'OVER'}"
    )
    return 0 if worst < TARGET_CPU_S else 1


if __name__ == "__main__":
    sys.exit(main())
