"""Checks across sections and the warnings a valid spec may still deserve: attention heads
against the tensor-parallel degree, the always-on budget, pinned weights for production."""

from __future__ import annotations

from typing import TYPE_CHECKING

from liftdeploy.spec import catalog
from liftdeploy.spec.sections import HOURS_PER_MONTH

if TYPE_CHECKING:
    from liftdeploy.spec.model import DeploymentSettings, ResolvedDeployment


def check_heads_divide(settings: DeploymentSettings) -> None:
    """The catalog's heads only: the planner (`planner.checks.check_layouts`, run by every CLI
    load and the Python API) checks every split vLLM needs, from any config known offline."""
    arch = catalog.model_arch(settings.model.id)
    tp = settings.gpu.tp
    if arch is None or tp == 1:
        return
    heads = arch.num_attention_heads
    if heads % tp:
        divisors = [d for d in range(1, 9) if heads % d == 0]
        raise ValueError(
            f"gpu.tensor_parallel_size {tp} does not divide {settings.model.id}'s {heads} "
            f"attention heads; use one of {divisors}"
        )


def check_budget(settings: DeploymentSettings) -> None:
    """The always-on capacity (min_containers) within budget.max_monthly_always_on_usd."""
    limit = settings.budget.max_monthly_always_on_usd
    cost = settings.always_on_monthly_usd
    if limit is not None and cost > limit:
        raise ValueError(
            f"always-on capacity costs ${cost:,.0f}/month (runtime.min_containers "
            f"{settings.runtime.min_containers} x {settings.gpu.count} {settings.gpu.type} x "
            f"${settings.gpu_hour_usd:.2f}/h x {HOURS_PER_MONTH} h), above "
            f"budget.max_monthly_always_on_usd ${limit:,.0f}; lower min_containers or raise the budget"
        )


def pinning_problem(resolved: ResolvedDeployment, spec_path: str = "SPEC") -> str | None:
    """Why this environment may not go to production with its weights, or None.

    Production must name the exact commit it serves: a branch moves under a running service,
    and the next cold start would silently load other weights. A local directory has no
    revisions; `model.unpinned_reason` is the spec's explicit, visible exception.
    """
    model = resolved.model
    if (
        not resolved.production
        or model.revision_is_pinned
        or model.unpinned_reason
        or model.id.startswith(("/", "."))
    ):
        return None
    now = f"{model.revision!r}, a branch or tag" if model.revision else "not set"
    return (
        f"production environment {resolved.environment!r} serves {model.id} unpinned "
        f"(model.revision is {now}); run `liftdeploy pin {spec_path}` to write the commit hash "
        f"into the spec, or say why in model.unpinned_reason"
    )


def revision_warnings(resolved: ResolvedDeployment) -> list[str]:
    """Why this environment's weights may change under it (`pin` fixes it), if they may."""
    notes = []
    revision = resolved.model.revision
    if revision is not None and not resolved.model.revision_is_pinned:
        notes.append(
            f"model.revision {revision!r} is a branch or tag name, which can move under a running "
            f"deployment; pin the 40-character commit hash instead (`liftdeploy pin`)"
        )
    if resolved.model.revision is None and not resolved.model.id.startswith(("/", ".")):
        notes.append(
            "model.revision is not set: the weights follow the default branch; pin a commit hash "
            "(`liftdeploy pin`)"
        )
    reason = resolved.model.unpinned_reason
    if resolved.production and reason and not resolved.model.revision_is_pinned:
        notes.append(f"production serves unpinned weights: {reason}")
    return notes


def advisories(resolved: ResolvedDeployment) -> list[str]:
    """Warnings that do not make a spec invalid but that a careful user wants to see."""
    notes = revision_warnings(resolved)
    if resolved.engine.structured_output_backend == "xgrammar":
        notes.append(
            "engine.structured_output_backend xgrammar (0.2.8/0.2.9) emits raw control "
            "characters inside strings that carry minLength/maxLength (invalid JSON) and "
            "sometimes breaks other schema keywords; the service guard repairs the former "
            "visibly and withholds the rest with a 502 — set engine.structured_output_backend: "
            "guidance, the measured default (docs/structured-output.md)"
        )
    return notes
