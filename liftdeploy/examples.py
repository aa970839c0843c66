"""The three seed-workload specs as Python objects, loaded from the same YAML as `examples/`.

    from liftdeploy.examples import QWEN3_CODER_480B
    print(QWEN3_CODER_480B.gpu)

In a checkout the files are read from `examples/`; an installed wheel carries copies
(`liftdeploy/_examples/`, added by setup.py), so both give identical objects.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from liftdeploy.spec.model import ModelDeployment

EXAMPLE_FILES = {
    "QWEN25_CODER_32B": "qwen25-coder-32b.yaml",
    "QWEN3_NEXT_80B": "qwen3-next-80b.yaml",
    "QWEN3_CODER_480B": "qwen3-coder-480b.yaml",
}

__all__ = [*EXAMPLE_FILES, "examples_dir", "example_paths"]


def examples_dir() -> Path:
    """Where the example specs live: the wheel's copy, else the checkout's examples/."""
    packaged = Path(__file__).parent / "_examples"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "examples"


def example_paths() -> dict[str, Path]:
    return {name: examples_dir() / file for name, file in EXAMPLE_FILES.items()}


@functools.cache
def _load(name: str) -> ModelDeployment:
    from liftdeploy.spec.specfile import load_spec

    return load_spec(example_paths()[name])


def __getattr__(name: str) -> Any:
    if name in EXAMPLE_FILES:
        return _load(name)
    raise AttributeError(f"module 'liftdeploy.examples' has no attribute {name!r}")
