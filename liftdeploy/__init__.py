"""liftdeploy: one ModelDeployment spec in, a production-ready Modal + vLLM app out.

The public API is imported lazily so that `import liftdeploy` (and the CLI) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "ModelDeployment": "liftdeploy.spec",
    "ResolvedDeployment": "liftdeploy.spec",
    "load_spec": "liftdeploy.specfile",
    "plan": "liftdeploy.planner",
    "Plan": "liftdeploy.planner",
    "format_plan": "liftdeploy.planner",
    "server_args": "liftdeploy.vllm_args",
    "Client": "liftdeploy.client",
    "LiftdeployError": "liftdeploy.errors",
    "SpecError": "liftdeploy.errors",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from liftdeploy.client import Client
    from liftdeploy.errors import LiftdeployError, SpecError
    from liftdeploy.planner import Plan, format_plan, plan
    from liftdeploy.spec import ModelDeployment, ResolvedDeployment
    from liftdeploy.specfile import load_spec
    from liftdeploy.vllm_args import server_args


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'liftdeploy' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
