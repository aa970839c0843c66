"""How long a container may take to start and how long a stopping one keeps serving, sized
from the plan.

Startup: Modal fails a container that is not serving within `startup_timeout`. Loading reads
every GPU's share of the weights from the Volume, and a cold compile cache adds torch.compile
and CUDA-graph capture (not with enforce_eager); the default allows that, with a margin, on top
of the container's own boot. Modal's clock starts at boot, before the enter hook runs, so the
enter hook's own wait for /health ends STARTUP_MARGIN_S earlier: liftdeploy then reports vLLM's
last log lines instead of Modal killing the container silently.

Exit grace: when Modal stops a container (scale-down, rolling deploy) the requests in flight
finish within the grace period; a longer one is cut. The longest realistic request generates
max_model_len tokens at the plan's per-sequence decode speed with a full batch (with a margin:
the speed is a bound), and no request outlives runtime.request_timeout_s (the service stops it
there), so the default is the smaller of the two, within Modal's limit.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from liftdeploy.errors import PlanError
from liftdeploy.spec.model import MINUTES, MODAL_MAX_EXIT_GRACE_S, MODAL_MAX_TIMEOUT_S

if TYPE_CHECKING:
    from liftdeploy.planner.checks import Layout
    from liftdeploy.planner.memory import MemoryEstimate
    from liftdeploy.planner.report import Plan
    from liftdeploy.spec.model import ResolvedDeployment

VOLUME_READ_GB_S = 0.5
"""Assumed read speed of a Modal Volume while the weights load, in GB/s (conservative)."""
BOOT_S = 2 * MINUTES
"""Container boot, imports, CUDA and engine initialisation besides reading the weights."""
COMPILE_S = 5 * MINUTES
"""torch.compile and CUDA-graph capture with a cold compile cache (skipped by enforce_eager)."""
STARTUP_SAFETY = 1.5
"""The default startup timeout allows this multiple of the estimate: a slow start costs only
time, a timeout costs the container."""
UNKNOWN_MODEL_STARTUP_S = 20 * MINUTES
"""The default startup timeout when the model's size is unknown (no architecture)."""
STARTUP_MARGIN_S = MINUTES
"""How much earlier than Modal's startup timeout the enter hook gives up waiting for /health."""
MIN_EXIT_GRACE_S = 30
"""The shortest default grace: stopping the engine and its workers takes seconds by itself."""
SPEED_MARGIN = 2
"""Real decode stays below the bandwidth bound (compute, scheduling, other requests' prefill):
the default grace allows twice the bound's time. A long grace costs nothing when the container
is idle: the drain ends as soon as the last request is answered."""


def startup_timeout_s(resolved: ResolvedDeployment, plan: Plan | None = None) -> int:
    """The spec's runtime.startup_timeout_s, or the estimate (see module) in whole minutes."""
    if resolved.runtime.startup_timeout_s is not None:
        return resolved.runtime.startup_timeout_s
    plan = plan or _plan_or_none(resolved)
    if plan is None:
        return UNKNOWN_MODEL_STARTUP_S
    return sized_startup_timeout_s(resolved, plan.memory, plan.layout)


def sized_startup_timeout_s(resolved: ResolvedDeployment, memory: MemoryEstimate,
                            layout: Layout) -> int:
    """startup_timeout_s from the planner's memory estimate and layout (the planner calls this
    while it builds the plan, whose cold-start cost needs it)."""
    if resolved.runtime.startup_timeout_s is not None:
        return resolved.runtime.startup_timeout_s
    weights_gb = memory.weights.total_bytes * layout.count / 1e9
    estimate_s = BOOT_S + weights_gb / VOLUME_READ_GB_S
    if not resolved.engine.enforce_eager:
        estimate_s += COMPILE_S
    minutes = math.ceil(STARTUP_SAFETY * estimate_s / MINUTES)
    return min(minutes * MINUTES, MODAL_MAX_TIMEOUT_S)


def healthy_within_s(startup_timeout: int) -> int:
    """How long the enter hook waits for /health: STARTUP_MARGIN_S under Modal's limit (at
    least half of it, for short explicit timeouts)."""
    return max(startup_timeout - STARTUP_MARGIN_S, math.ceil(startup_timeout / 2))


def exit_grace_period_s(resolved: ResolvedDeployment, plan: Plan | None = None) -> int:
    """The spec's runtime.exit_grace_period_s, or the longest realistic request (see module)."""
    if resolved.runtime.exit_grace_period_s is not None:
        return resolved.runtime.exit_grace_period_s
    limit = min(resolved.runtime.request_timeout_s, MODAL_MAX_EXIT_GRACE_S)
    generation_s = longest_generation_s(resolved, plan)
    if generation_s is None:
        return limit  # speed unknown: as long as a request may run
    # Whole minutes: readable in the app.
    rounded = math.ceil(SPEED_MARGIN * generation_s / MINUTES) * MINUTES
    return max(MIN_EXIT_GRACE_S, min(rounded, limit))


def longest_generation_s(resolved: ResolvedDeployment, plan: Plan | None = None) -> float | None:
    """Seconds to decode max_model_len tokens per sequence with a full batch at the plan's speed
    bound; None when the model's architecture is unknown or no batch fits."""
    plan = plan or _plan_or_none(resolved)
    if plan is None:
        return None
    speed = plan.speed
    if speed.feasible_batch == 0 or speed.tokens_per_s_aggregate <= 0:
        return None
    per_sequence = speed.tokens_per_s_aggregate / speed.feasible_batch
    return resolved.model.max_model_len / per_sequence


def _plan_or_none(resolved: ResolvedDeployment) -> Plan | None:
    """The plan, or None when the model's architecture is unknown."""
    from liftdeploy.planner.report import plan

    try:
        return plan(resolved)
    except PlanError:
        return None
