"""What one CI run costs, and whether a push starts a container to check what it deployed.

Probing a service scaled to zero starts a container: it loads the model (up to the startup
timeout) and then idles until the scale-down window ends, every GPU billed throughout. That
cold start is what a push's warmup, health and smoke cost; `budget.ci_warmup_max_usd` bounds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from liftdeploy.spec.model import ResolvedDeployment

__all__ = ["CiWarmup", "ci_warmup", "cold_start_seconds", "cold_start_usd"]

SECONDS_PER_HOUR = 3600


def cold_start_seconds(resolved: ResolvedDeployment, startup_s: int | None = None) -> int:
    """Billed seconds of one cold start at most: loading (the startup timeout, `startup_s` when
    the caller has it) plus the idle window."""
    if startup_s is None:
        from liftdeploy.planner.timeouts import startup_timeout_s

        startup_s = startup_timeout_s(resolved)
    return startup_s + resolved.runtime.scaledown_window_s


def cold_start_usd(resolved: ResolvedDeployment, usd_per_hour: float | None = None,
                   startup_s: int | None = None) -> float:
    """One cold start's cost at most, for a container billed `usd_per_hour` (default: the
    spec's price for all its GPUs)."""
    hourly = resolved.gpu_hour_usd * resolved.gpu.count if usd_per_hour is None else usd_per_hour
    return hourly * cold_start_seconds(resolved, startup_s) / SECONDS_PER_HOUR


@dataclass(frozen=True)
class CiWarmup:
    """Whether a push's CI run starts a container, and why."""

    warmup: bool
    cold_start_usd: float
    reason: str


def ci_warmup(resolved: ResolvedDeployment) -> CiWarmup:
    """Warm up (and health- and smoke-check) after a push when a cold start is within
    budget.ci_warmup_max_usd; without that limit, only for a single-GPU service."""
    cost = cold_start_usd(resolved)
    limit = resolved.budget.ci_warmup_max_usd
    what = (f"a cold start of {resolved.app_name} costs up to ${cost:,.2f} "
            f"({resolved.gpu.count} x {resolved.gpu.type} for {cold_start_seconds(resolved)} s: "
            f"loading within the startup timeout, then the idle window)")
    if limit is None:
        warm = resolved.gpu.count == 1
        rule = ("single-GPU, so CI checks it" if warm else
                "multi-GPU, so a push deploys without starting it; set "
                "budget.ci_warmup_max_usd to check it on every push")
        return CiWarmup(warm, cost, f"{what}; {rule}")
    warm = cost <= limit
    verdict = "within" if warm else "above"
    return CiWarmup(warm, cost, f"{what}, {verdict} budget.ci_warmup_max_usd ${limit:,.2f}")
