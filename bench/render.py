"""Time rendering: the three examples through `liftdeploy render`, `liftdeploy check examples/`,
and a bare `copier copy` of one example, in one run.

    .venv/bin/python bench/render.py

Each figure is wall-clock seconds of one cold-ish run in a fresh temporary directory (the
checkout is the template source, so Copier clones it, as `liftdeploy render` does from a
checkout; an installed wheel skips the clone).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ["qwen25-coder-32b", "qwen3-next-80b", "qwen3-coder-480b"]


def _timed(label: str, action: object) -> float:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    took = time.perf_counter() - started
    print(f"{label:<44} {took:6.2f} s")
    return took


def main() -> None:
    from liftdeploy.render.service import check, render

    with tempfile.TemporaryDirectory(prefix="liftdeploy-bench-") as tmp:
        out = Path(tmp)

        def render_all() -> None:
            for name in EXAMPLES:
                render(REPO_ROOT / "examples" / f"{name}.yaml", out / "render" / name)

        def bare_copier_copy() -> None:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "copier",
                    "copy",
                    "--trust",
                    "--defaults",
                    "--quiet",
                    "--vcs-ref",
                    "HEAD",
                    "--data",
                    "preset=qwen3-next-80b",
                    str(REPO_ROOT),
                    str(out / "copier"),
                ],
                check=True,
                capture_output=True,
            )

        def check_examples() -> None:
            drift = check(REPO_ROOT / "examples")
            if drift:
                print("  (examples/rendered is out of date:", len(drift), "files)")

        total = _timed("liftdeploy render, 3 examples", render_all)
        print(f"{'  per example':<44} {total / len(EXAMPLES):6.2f} s")
        _timed("liftdeploy check examples/ (3 services)", check_examples)
        _timed("bare copier copy, 1 example (CLI process)", bare_copier_copy)


if __name__ == "__main__":
    main()
