"""The local twin: vLLM's real CPU server running a service's own argv on a tiny local model.

`local` starts and stops the twin (the CPU adjustments live in `cpu_twin`), `support` decides
whether it can run here (by trying vLLM in a subprocess), `tinymodel` builds a random-init
model with no download, `demo` is what `./dev demo` runs. It may import the spec,
planner, render, client and runtime parts; vllm and torch only inside functions.
"""

from liftdeploy._lazy import lazy_exports

_EXPORTS = {
    "LocalTwin": "liftdeploy.twin.local",
    "start_twin": "liftdeploy.twin.local",
    "cpu_twin": "liftdeploy.twin.local",
    "twin_support": "liftdeploy.twin.support",
    "unsupported_reason": "liftdeploy.twin.support",
    "require_supported": "liftdeploy.twin.support",
    "build_tiny_model": "liftdeploy.twin.tinymodel",
    "run_demo": "liftdeploy.twin.demo",
}

__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
