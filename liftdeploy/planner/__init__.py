"""The planner: will a resolved spec fit its GPUs, how much KV cache, how fast, what it costs.

`report` assembles a `Plan` from `arch` (the model's architecture: config.json, the catalog, or
config.json alone fetched from the Hub by `hub_config`), `memory` (weights, KV bytes, activation and
CUDA-graph estimates), `checks` (verdicts with fixes) and `prices` (live Modal rates); `advice`
turns a plan into settings that fit (`plan --suggest`). Arithmetic over the spec: it imports
only the spec part, never vllm, torch, modal or copier (huggingface_hub only to fetch a
config.json nothing local has).
"""

from liftdeploy._lazy import lazy_exports

_EXPORTS = {
    "plan": "liftdeploy.planner.report",
    "Plan": "liftdeploy.planner.report",
    "format_plan": "liftdeploy.planner.report",
    "Verdict": "liftdeploy.planner.checks",
    "load_architecture": "liftdeploy.planner.arch",
    "suggest": "liftdeploy.planner.advice",
}

__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
