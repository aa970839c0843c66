"""How long a container may take to start and how long a stopping one keeps serving, sized
from the plan.

Startup: Modal fails a container that is not serving within `startup_timeout`. Loading reads
every GPU's share of the weights from the Volume, and a cold compile cache adds torch.compile
and CUDA-graph capture (not with enforce_eager); the default allows that, with a margin, on top
of the container's own boot. Modal's clock starts at boot, before the enter hook runs, so the
enter hook's own wait for /health ends STARTUP_MARGIN_S earlier: liftdeploy then reports vLLM's
last log lines instead of Modal killing the container silently.

Exit grace: when Modal stops a container (scale-down, rolling deploy) the requests in flight
finish within the grace period; a longer one is cut. No request outlives
runtime.request_timeout_s (the service stops it there), so the default grace lets a request that
began just before the stop run to its limit, plus STOP_MARGIN_S to stop vLLM and let Modal
commit the Volumes, within Modal's 3,600 s cap. An idle container still stops at once: the
drain ends as soon as no request is in flight. (A decode-speed estimate is an upper bound on
speed, so a grace sized from it cut real generations on every deploy.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from liftdeploy.spec.model import MINUTES, MODAL_MAX_EXIT_GRACE_S, MODAL_MAX_TIMEOUT_S

if TYPE_CHECKING:
    from liftdeploy.planner.checks import Layout
    from liftdeploy.planner.memory import MemoryEstimate
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
VOLUME_COMMIT_S = 20
"""Of the exit grace period, what the exit hook leaves Modal to commit the Volumes (the compile
cache) after it returns: Modal commits only then, and cuts the commit at the deadline."""
STOP_MARGIN_S = 5 + VOLUME_COMMIT_S
"""Beyond the drain, the grace period's time for ending vLLM's process group (the server
wrapper's GROUP_STOP_S) and for Modal's Volume commit."""


@dataclass(frozen=True)
class Lifecycle:
    """How long one environment's containers take to start and to stop, in seconds."""

    startup_timeout_s: int
    """Modal's startup_timeout (the spec's, or sized from the plan)."""
    healthy_within_s: int
    """How long the enter hook waits for /health: a margin under startup_timeout_s."""
    exit_grace_period_s: int
    """How long a stopping container lets requests in flight finish (the spec's, or sized)."""
    drain_s: int
    """Of the exit grace, how long the exit hook waits for requests in flight."""
    request_timeout_s: int
    """The service's limit on one request (504 past it)."""
    cold_start_wait_s: int
    """How long liftdeploy's client retries 503s while a container starts from zero (0: one
    is always warm)."""


def lifecycle(
    resolved: ResolvedDeployment, memory: MemoryEstimate | None = None, layout: Layout | None = None
) -> Lifecycle:
    """Every timeout of `resolved`: sized from the planner's memory estimate and layout when
    given, else (a model the planner cannot size) the defaults for an unknown model."""
    startup = startup_timeout_s(resolved, memory, layout)
    grace = exit_grace_period_s(resolved)
    return Lifecycle(
        startup_timeout_s=startup,
        healthy_within_s=healthy_within_s(startup),
        exit_grace_period_s=grace,
        drain_s=drain_s(grace),
        request_timeout_s=resolved.runtime.request_timeout_s,
        cold_start_wait_s=cold_start_wait_s(resolved, startup),
    )


def startup_timeout_s(
    resolved: ResolvedDeployment, memory: MemoryEstimate | None = None, layout: Layout | None = None
) -> int:
    """The spec's runtime.startup_timeout_s, else the estimate (see module) in whole minutes
    from the planner's memory estimate and layout, else UNKNOWN_MODEL_STARTUP_S."""
    if resolved.runtime.startup_timeout_s is not None:
        return resolved.runtime.startup_timeout_s
    if memory is None or layout is None:
        return UNKNOWN_MODEL_STARTUP_S
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


def exit_grace_period_s(resolved: ResolvedDeployment) -> int:
    """The spec's runtime.exit_grace_period_s, or the request limit plus STOP_MARGIN_S within
    Modal's cap (see module); it needs no plan."""
    if resolved.runtime.exit_grace_period_s is not None:
        return resolved.runtime.exit_grace_period_s
    return min(resolved.runtime.request_timeout_s + STOP_MARGIN_S, MODAL_MAX_EXIT_GRACE_S)


def drain_s(exit_grace_s: int) -> int:
    """How long the exit hook lets requests in flight finish: the grace period less the time
    Modal needs to commit the Volumes afterwards (at least half the grace, for short ones)."""
    return max(exit_grace_s - VOLUME_COMMIT_S, math.ceil(exit_grace_s / 2))


def cold_start_wait_s(resolved: ResolvedDeployment, startup_timeout: int) -> int:
    """How long a caller may get 503s while Modal starts a container from zero: the startup
    timeout (past it Modal fails the container, so waiting longer is pointless) when
    runtime.min_containers is 0; 0 when a container is always warm."""
    return 0 if resolved.runtime.min_containers > 0 else startup_timeout
