"""`plan --suggest`: settings that fit the workload, each with its reason.

From one environment's plan: an fp8 KV cache where the GPU computes FP8 natively and the KV
cache limits concurrency, vLLM's default memory share when a lower one starves the KV cache,
a max_concurrent_requests the KV cache serves at the typical request (workload), a target
below it so Modal adds a container before requests meet the cap (when there is room for one),
and a max_containers ceiling on the bill. Each suggestion names the spec key, so `liftdeploy set` applies it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from liftdeploy.spec import catalog

if TYPE_CHECKING:
    from liftdeploy.planner.arch import Architecture
    from liftdeploy.spec.model import ResolvedDeployment

VLLM_DEFAULT_UTILIZATION = 0.90
"""vLLM's own gpu_memory_utilization default: a lower share only shrinks the KV cache."""
TARGET_SHARE = 0.8
"""Modal starts another container at this share of max_concurrent_requests in flight."""


@dataclass(frozen=True)
class Suggestion:
    """One setting to change (a dotted spec key), its value, and why."""

    key: str
    value: Any
    current: Any
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "value": self.value,
            "current": self.current,
            "reason": self.reason,
        }


def suggest(resolved: ResolvedDeployment, arch: Architecture | None = None) -> list[Suggestion]:
    """Settings for this environment that `plan` then accepts without a warning."""
    from liftdeploy.planner.report import plan

    found: list[Suggestion] = []
    current = plan(resolved, arch=arch)
    if not current.fits:  # the plan's fix, in its order, as settings; then the rest on them
        found, resolved = _to_fit(resolved, current)
        if not found:
            return found
        current = plan(resolved, arch=current.architecture)
    arch = current.architecture
    found += _cheaper_gpu(resolved, current)
    wanted = resolved.runtime.max_concurrent_requests

    def servable(r: ResolvedDeployment) -> int:
        return int(plan(r, arch=arch).memory.concurrency_at(current.workload_tokens))

    now = servable(resolved)
    request = f"requests of {current.workload_tokens:,} tokens (workload)"
    if (
        now < wanted
        and resolved.model.kv_cache_dtype == "auto"
        and catalog.has_fp8(resolved.gpu.type)
    ):
        trial = _with(resolved, "model", kv_cache_dtype="fp8")
        after = servable(trial)
        if after > now:
            found.append(
                Suggestion(
                    "model.kv_cache_dtype",
                    "fp8",
                    "auto",
                    f"{resolved.gpu.type} computes FP8 natively: half the KV bytes per token, "
                    f"{now} -> {after} {request} at once",
                )
            )
            resolved, now = trial, after
    util = resolved.gpu.memory_utilization
    if now < wanted and util < VLLM_DEFAULT_UTILIZATION:
        trial = _with(resolved, "gpu", memory_utilization=VLLM_DEFAULT_UTILIZATION)
        after = servable(trial)
        found.append(
            Suggestion(
                "gpu.memory_utilization",
                VLLM_DEFAULT_UTILIZATION,
                util,
                f"{util} leaves the KV cache short; vLLM's default {VLLM_DEFAULT_UTILIZATION} "
                f"serves {now} -> {after} {request} at once",
            )
        )
        resolved, now = trial, after
    if now < wanted:
        new_max = max(now, 1)
        found.append(
            Suggestion(
                "runtime.max_concurrent_requests",
                new_max,
                wanted,
                f"the KV cache holds {now} {request} at once; above that vLLM queues or preempts "
                f"while Modal keeps routing requests to this container",
            )
        )
        wanted = new_max
    target = resolved.runtime.target_concurrent_requests
    good_target = max(1, math.floor(wanted * TARGET_SHARE))
    ceiling = resolved.runtime.max_containers
    can_scale = ceiling is None or ceiling > max(resolved.runtime.min_containers, 1)
    if can_scale and wanted > 1 and (target is None or target >= wanted):
        found.append(
            Suggestion(
                "runtime.target_concurrent_requests",
                good_target,
                target,
                f"Modal adds a container at {good_target} requests in flight, before this one "
                f"reaches its cap of {wanted} and answers 429",
            )
        )
    if resolved.runtime.max_containers is None:
        count = max(resolved.runtime.min_containers, 1) + 1
        hourly = current.cost.usd_per_hour
        found.append(
            Suggestion(
                "runtime.max_containers",
                count,
                None,
                f"caps the worst case at {count} x ${hourly:,.2f}/h = ${count * hourly:,.2f}/h; "
                f"without it the bill has no ceiling",
            )
        )
    return found


def _cheaper_gpu(resolved: ResolvedDeployment, current: Any) -> list[Suggestion]:
    """gpu.type/gpu.count of the layout cheapest per million output tokens at
    workload.requests_per_minute, where it beats the spec's own (no demand: no suggestion,
    a $/hour ranking would only ever pick the slowest GPU)."""
    from liftdeploy.planner.checks import (
        cost_at_demand,
        fitting_layouts,
        layout_of,
        ranking_note,
    )

    if resolved.workload.requests_per_minute is None:
        return []
    fits = fitting_layouts(
        resolved, current.architecture, expert_parallel=resolved.gpu.expert_parallel
    )
    mine = cost_at_demand(
        resolved,
        current.architecture,
        layout_of(resolved),
        current.memory,
        current.cost.usd_per_hour,
    )
    if (
        not fits
        or mine is None
        or fits[0].usd_per_million is None
        or fits[0].usd_per_million >= mine[1]
        or (fits[0].gpu, fits[0].count) == (resolved.gpu.type, resolved.gpu.count)
    ):
        return []
    best = fits[0]
    why = (
        f"{ranking_note(resolved)}: {best.label} against {resolved.gpu.type} "
        f"x{resolved.gpu.count}'s ${mine[1]:,.2f}/M tokens ({mine[0]} x "
        f"${current.cost.usd_per_hour:.2f}/h)"
    )
    found = [Suggestion("gpu.type", best.gpu, resolved.gpu.type, why)]
    found += _gpu_count_change(resolved, best)
    return found


def _gpu_count_change(resolved: ResolvedDeployment, best: Any) -> list[Suggestion]:
    """The gpu.count a proposed GPU layout needs, when it differs from the spec's."""
    if best.count == resolved.gpu.count:
        return []
    return [
        Suggestion(
            "gpu.count",
            best.count,
            resolved.gpu.count,
            f"{best.gpu} holds the model on {best.count}",
        )
    ]


def _to_fit(resolved: ResolvedDeployment, current: Any) -> tuple[list[Suggestion], Any]:
    """The first of the error's fixes (checks.memory_problems) that makes `plan` fit: a
    higher gpu.memory_utilization up to the safe share, a shorter max_model_len (at least
    1,024 tokens), else the first fitting GPU layout; none when nothing does (the plan's fix
    then says why). Each is checked by planning it, so suggestion and plan always agree."""
    from liftdeploy.planner.checks import SAFE_UTILIZATION, fitting_layouts
    from liftdeploy.planner.memory import BLOCK_TOKENS
    from liftdeploy.planner.report import plan

    arch = current.architecture
    error = next(v.message for v in current.verdicts if v.level == "error")

    def fits(r: ResolvedDeployment) -> bool:
        return plan(r, arch=arch).fits

    util = resolved.gpu.memory_utilization
    for step in range(1, round((SAFE_UTILIZATION - util) * 100) + 1):
        trial = _with(resolved, "gpu", memory_utilization=round(util + step / 100, 2))
        if fits(trial):
            return [
                Suggestion(
                    "gpu.memory_utilization",
                    trial.gpu.memory_utilization,
                    util,
                    f"{error}; this share leaves room for it",
                )
            ], trial
    max_len = resolved.model.max_model_len
    low, high = 1024 // BLOCK_TOKENS, max_len // BLOCK_TOKENS - 1  # in blocks
    if high >= low and fits(_with(resolved, "model", max_model_len=low * BLOCK_TOKENS)):
        while low < high:  # the longest that fits
            mid = (low + high + 1) // 2
            low, high = (
                (mid, high)
                if fits(_with(resolved, "model", max_model_len=mid * BLOCK_TOKENS))
                else (low, mid - 1)
            )
        trial = _with(resolved, "model", max_model_len=low * BLOCK_TOKENS)
        return [
            Suggestion(
                "model.max_model_len",
                trial.model.max_model_len,
                max_len,
                f"{error}; the longest sequence this GPU's KV cache holds",
            )
        ], trial
    layouts = fitting_layouts(resolved, arch, expert_parallel=resolved.gpu.expert_parallel)
    if not layouts:
        return [], resolved
    best = layouts[0]
    trial = _with(resolved, "gpu", type=best.gpu, count=best.count)
    found = [
        Suggestion(
            "gpu.type",
            best.gpu,
            resolved.gpu.type,
            f"{error}; {best.label} holds it (the first layout that fits)",
        )
    ]
    found += _gpu_count_change(resolved, best)
    return found, trial


def set_keys(
    resolved: ResolvedDeployment, overlay: dict[str, Any] | None, suggestions: list[Suggestion]
) -> list[str]:
    """`key=value` assignments for `liftdeploy set`: the base spec's key (every environment
    that does not override it), or the environment overlay's key where the overlay sets it."""
    out = []
    for s in suggestions:
        section, _, field = s.key.partition(".")
        in_overlay = field in ((overlay or {}).get(section) or {})
        prefix = f"environments.{resolved.environment}." if in_overlay else ""
        out.append(f"{prefix}{s.key}={_yaml_scalar(s.value)}")
    return out


def _yaml_scalar(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _with(resolved: ResolvedDeployment, section: str, **changes: Any) -> ResolvedDeployment:
    part = getattr(resolved, section).model_copy(update=changes)
    return resolved.model_copy(update={section: part})
