"""The three Qwen example specs as Python objects, loaded from the YAML files in `examples/`.

    from liftdeploy.examples import QWEN3_CODER_480B
    print(QWEN3_CODER_480B.gpu)

Each name is loaded on first use from the same file `liftdeploy validate examples/*.yaml` checks,
so the YAML stays the single copy.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from liftdeploy.spec import ModelDeployment

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
"""The repository's examples/ directory (beside the package in a checkout)."""

FILES = {
    "QWEN25_CODER_32B": "qwen25-coder-32b.yaml",
    "QWEN3_NEXT_80B": "qwen3-next-80b.yaml",
    "QWEN3_CODER_480B": "qwen3-coder-480b.yaml",
}
"""Public name -> file name in examples/."""

__all__ = [*FILES, "EXAMPLES_DIR", "FILES"]


@functools.cache
def _load(file_name: str) -> ModelDeployment:
    from liftdeploy.errors import SpecFileError
    from liftdeploy.specfile import load_spec

    path = EXAMPLES_DIR / file_name
    if not path.is_file():
        raise SpecFileError(
            "the example specs live in the liftdeploy source checkout's examples/ directory, "
            "which this installation does not have; clone the repository or install it with "
            "`pip install -e <checkout>`",
            source=str(path),
        )
    return load_spec(path)


def __getattr__(name: str) -> Any:
    if name in FILES:
        return _load(FILES[name])
    raise AttributeError(f"module 'liftdeploy.examples' has no attribute {name!r}")
