"""What one CI run costs, and whether a push starts a container to check what it deployed.

Probing a service scaled to zero starts a container: it loads the model (up to the startup
timeout) and then idles until the scale-down window ends, every GPU billed throughout. That
cold start is what a push's warmup, health and smoke cost; `budget.ci_warmup_max_usd` bounds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from liftdeploy.planner.download import DownloadEstimate
    from liftdeploy.spec.model import ResolvedDeployment

__all__ = [
    "CiTimeouts",
    "CiWarmup",
    "ci_timeouts",
    "ci_warmup",
    "cold_start_seconds",
    "cold_start_usd",
]

SECONDS_PER_HOUR = 3600
SETUP_MINUTES = 10
"""Checkout, Python, pip install of liftdeploy, `check` and `bootstrap`."""
DEPLOY_MINUTES = 30
"""`modal deploy`: building the image (vLLM's wheels) and publishing the app."""
CHECKS_MINUTES = 10
"""health, smoke and a rollback, after the warmup's cold start."""
SPEND_MINUTES = 15
"""The daily spend job: install, then Modal's billing report."""
GITHUB_JOB_LIMIT_MINUTES = 360
"""A GitHub-hosted runner stops any job after 6 hours, whatever its timeout-minutes."""


def cold_start_seconds(resolved: ResolvedDeployment, startup_s: int) -> int:
    """Billed seconds of one cold start at most: loading (within the startup timeout
    `startup_s`) plus the idle window."""
    return startup_s + resolved.runtime.scaledown_window_s


def cold_start_usd(
    resolved: ResolvedDeployment, startup_s: int, container_hour_usd: float | None = None
) -> float:
    """One cold start's cost at most, for a container billed `container_hour_usd` (default:
    the spec's price)."""
    hourly = resolved.container_hour_usd() if container_hour_usd is None else container_hour_usd
    return hourly * cold_start_seconds(resolved, startup_s) / SECONDS_PER_HOUR


@dataclass(frozen=True)
class CiWarmup:
    """Whether a push's CI run starts a container, and why."""

    warmup: bool
    cold_start_usd: float
    reason: str


def ci_warmup(resolved: ResolvedDeployment, startup_s: int) -> CiWarmup:
    """Warm up (and health- and smoke-check) after a push when a cold start (within the
    startup timeout `startup_s`) is within budget.ci_warmup_max_usd; without that limit, only
    for a single-GPU service."""
    cost = cold_start_usd(resolved, startup_s)
    limit = resolved.budget.ci_warmup_max_usd
    seconds = cold_start_seconds(resolved, startup_s)
    what = (
        f"a cold start of {resolved.app_name} costs up to ${cost:,.2f} "
        f"({resolved.gpu.count} x {resolved.gpu.type} for {seconds} s: "
        f"loading within the startup timeout, then the idle window)"
    )
    if limit is None:
        warm = resolved.gpu.count == 1
        rule = (
            "single-GPU, so CI checks it"
            if warm
            else "multi-GPU, so a push deploys without starting it; set "
            "budget.ci_warmup_max_usd to check it on every push"
        )
        return CiWarmup(warm, cost, f"{what}; {rule}")
    warm = cost <= limit
    verdict = "within" if warm else "above"
    return CiWarmup(warm, cost, f"{what}, {verdict} budget.ci_warmup_max_usd ${limit:,.2f}")


@dataclass(frozen=True)
class CiTimeouts:
    """`timeout-minutes` of the workflow's download step and deploy job, from the plan: GitHub
    never stops a download its own limit would still let finish, nor a cold start in time."""

    download_minutes: int
    deploy_minutes: int
    planned_download_minutes: int
    """The download's whole limit; above download_minutes when GitHub's job limit cuts it."""
    spend_minutes: int = SPEND_MINUTES

    @property
    def download_cut(self) -> bool:
        """Whether a download at its limit outlasts what a GitHub job may run."""
        return self.planned_download_minutes > self.download_minutes


def ci_timeouts(downloads: list[DownloadEstimate], startup_timeouts_s: list[int]) -> CiTimeouts:
    """The longest any environment needs (its weights download and its startup timeout, from
    its plan): the download's every attempt at its limit, then setup, deploy, the cold start
    (within the startup timeout) and the checks."""
    planned = max(_minutes(d.timeout_s * (d.retries + 1)) for d in downloads)
    rest = (
        SETUP_MINUTES
        + DEPLOY_MINUTES
        + CHECKS_MINUTES
        + max(_minutes(s) for s in startup_timeouts_s)
    )
    download = min(planned, GITHUB_JOB_LIMIT_MINUTES - rest)
    return CiTimeouts(
        download_minutes=download, deploy_minutes=download + rest, planned_download_minutes=planned
    )


def _minutes(seconds: float) -> int:
    return -(-int(seconds) // 60)
