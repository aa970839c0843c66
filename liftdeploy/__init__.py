"""liftdeploy: one ModelDeployment spec in, a production-ready Modal + vLLM app out.

The public API is imported lazily so that `import liftdeploy` (and the CLI) stays fast.
`liftdeploy.api` holds what the CLI does for a spec object or file (plan, render, to_yaml); the
name `liftdeploy.render` is the rendering package, so rendering is `liftdeploy.api.render`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from liftdeploy._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "ModelDeployment": "liftdeploy.spec.model",
    "ResolvedDeployment": "liftdeploy.spec.model",
    "load_spec": "liftdeploy.spec.specfile",
    "plan": "liftdeploy.api",
    "to_yaml": "liftdeploy.api",
    "Plan": "liftdeploy.planner.report",
    "format_plan": "liftdeploy.planner.report",
    "server_args": "liftdeploy.render.vllm_args",
    "Client": "liftdeploy.client.api",
    "LiftdeployError": "liftdeploy.errors",
    "SpecError": "liftdeploy.errors",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from liftdeploy.api import plan, to_yaml
    from liftdeploy.client.api import Client
    from liftdeploy.errors import LiftdeployError, SpecError
    from liftdeploy.planner.report import Plan, format_plan
    from liftdeploy.render.vllm_args import server_args
    from liftdeploy.spec.model import ModelDeployment, ResolvedDeployment
    from liftdeploy.spec.specfile import load_spec


__getattr__ = lazy_exports(__name__, _EXPORTS)
