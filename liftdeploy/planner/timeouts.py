"""How long a stopping container keeps serving: the exit grace period, sized from the plan.

When Modal stops a container (scale-down, rolling deploy) the requests in flight finish within
the grace period; a longer one is cut. The longest realistic request is one generating up to
max_model_len tokens at the plan's per-sequence decode speed with a full batch (with a margin:
the speed is a bound), and no request
outlives runtime.request_timeout_s (the service stops it there), so the default is the smaller
of the two, within Modal's limit.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from liftdeploy.errors import PlanError
from liftdeploy.spec.model import MINUTES, MODAL_MAX_EXIT_GRACE_S

if TYPE_CHECKING:
    from liftdeploy.planner.report import Plan
    from liftdeploy.spec.model import ResolvedDeployment

MIN_EXIT_GRACE_S = 30
"""The shortest default grace: stopping the engine and its workers takes seconds by itself."""
SPEED_MARGIN = 2
"""Real decode stays below the bandwidth bound (compute, scheduling, other requests' prefill):
the default grace allows twice the bound's time. A long grace costs nothing when the container
is idle: the drain ends as soon as the last request is answered."""


def exit_grace_period_s(resolved: ResolvedDeployment, plan: Plan | None = None) -> int:
    """The spec's runtime.exit_grace_period_s, or the longest realistic request (see module)."""
    if resolved.runtime.exit_grace_period_s is not None:
        return resolved.runtime.exit_grace_period_s
    limit = min(resolved.runtime.request_timeout_s, MODAL_MAX_EXIT_GRACE_S)
    generation_s = longest_generation_s(resolved, plan)
    if generation_s is None:
        return limit  # speed unknown: as long as a request may run
    rounded = math.ceil(SPEED_MARGIN * generation_s / MINUTES) * MINUTES  # whole minutes: readable in the app
    return max(MIN_EXIT_GRACE_S, min(rounded, limit))


def longest_generation_s(resolved: ResolvedDeployment, plan: Plan | None = None) -> float | None:
    """Seconds to decode max_model_len tokens per sequence with a full batch at the plan's speed
    bound; None when the model's architecture is unknown or no batch fits."""
    if plan is None:
        from liftdeploy.planner.report import plan as make_plan

        try:
            plan = make_plan(resolved)
        except PlanError:
            return None
    speed = plan.speed
    if speed.feasible_batch == 0 or speed.tokens_per_s_aggregate <= 0:
        return None
    per_sequence = speed.tokens_per_s_aggregate / speed.feasible_batch
    return resolved.model.max_model_len / per_sequence
