"""The planner's checks: each problem visible before a GPU is rented, with a verdict and a fix."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from liftdeploy.planner import gpu_support
from liftdeploy.planner.arch import Architecture
from liftdeploy.planner.memory import (
    BLOCK_TOKENS,
    GIB,
    MemoryEstimate,
    default_batched_tokens,
    estimate_memory,
    resolved_dtype,
)
from liftdeploy.spec import catalog
from liftdeploy.spec.model import HOURS_PER_MONTH

if TYPE_CHECKING:
    from liftdeploy.spec.model import ModelDeployment, ResolvedDeployment

Level = Literal["ok", "warning", "error"]
SAFE_UTILIZATION = 0.95
"""Highest gpu_memory_utilization the planner suggests; above it vLLM's profile leaves too
little slack for fragmentation and other processes."""


@dataclass(frozen=True)
class Verdict:
    """One finding: what is wrong (or fine) and what to change."""

    level: Level
    message: str
    fix: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"level": self.level, "message": self.message, "fix": self.fix}


@dataclass(frozen=True)
class Layout:
    """How the model is spread over one container's GPUs."""

    gpu: str
    count: int
    tp: int
    expert_ranks: int
    """Ranks experts are spread over (1: every expert sliced `tp` ways)."""
    pp: int = 1
    """Pipeline stages; tp x pp = count."""


def layout_of(resolved: ResolvedDeployment, gpu_type: str | None = None) -> Layout:
    gpu = resolved.gpu
    ep = gpu.tp if gpu.expert_parallel else 1
    return Layout(
        gpu=gpu_type or gpu.type,
        count=gpu.count,
        tp=gpu.tp,
        expert_ranks=ep,
        pp=gpu.pipeline_parallel_size,
    )


def batched_tokens(resolved: ResolvedDeployment, gpu_type: str) -> int:
    """max_num_batched_tokens: from engine.extra_args when set there, else vLLM's default."""
    args = resolved.engine.extra_args
    for i, arg in enumerate(args):
        name, _, value = arg.partition("=")
        if name == "--max-num-batched-tokens":
            text = value or (args[i + 1] if i + 1 < len(args) else "")
            if text.isdigit():
                return int(text)
    return default_batched_tokens(catalog.cuda_memory_gib(gpu_type), gpu_type)


def estimate_for(
    resolved: ResolvedDeployment,
    arch: Architecture,
    layout: Layout,
    *,
    utilization: float | None = None,
    max_model_len: int | None = None,
) -> MemoryEstimate:
    """The memory estimate for this deployment on `layout` (other settings from the spec)."""
    return estimate_memory(
        arch,
        gpu_memory_gib=catalog.cuda_memory_gib(layout.gpu),
        utilization=utilization or resolved.gpu.memory_utilization,
        tp=layout.tp,
        expert_ranks=layout.expert_ranks,
        pp=layout.pp,
        max_model_len=max_model_len or resolved.model.max_model_len,
        batched_tokens=batched_tokens(resolved, layout.gpu),
        num_seqs=resolved.runtime.max_concurrent_requests,
        dtype=resolved_dtype(arch, resolved.model.dtype, gpu_support.capability(layout.gpu)),
        kv_cache_dtype=resolved.model.kv_cache_dtype,
        enforce_eager=resolved.engine.enforce_eager,
    )


def sharding_problems(arch: Architecture, layout: Layout) -> list[Verdict]:
    """TP must divide the heads, and FP8 block-quantised slices must align with the blocks."""
    tp = layout.tp
    found: list[Verdict] = []
    if arch.num_heads % tp:
        found.append(
            Verdict(
                "error",
                f"tensor parallel {tp} does not divide the {arch.num_heads} attention heads",
                f"use a TP that divides {arch.num_heads}: {_divisors(arch.num_heads)}",
            )
        )
    kv = arch.num_kv_heads
    if tp > 1 and (kv % tp if kv >= tp else tp % kv):
        found.append(
            Verdict(
                "error",
                f"tensor parallel {tp} and the {kv} KV heads do not split evenly (vLLM needs one to "
                f"divide the other)",
                f"use a TP among "
                f"{[d for d in _divisors(arch.num_heads) if kv % d == 0 or d % kv == 0]}",
            )
        )
    width = arch.moe_intermediate_size
    if arch.is_moe and layout.expert_ranks == 1 and tp > 1 and width % tp:
        found.append(
            Verdict(
                "error",
                f"tensor parallel {tp} does not divide the experts' width {width} "
                f"(moe_intermediate_size): every expert is sliced {tp} ways",
                f"set gpu.expert_parallel: true (whole experts per GPU), or use a TP in "
                f"{[d for d in _divisors(arch.num_heads) if width % d == 0]}",
            )
        )
    block = arch.quantization.block_size
    if tp == 1 or not block:  # fp8 and compressed-tensors block scales
        return found
    for what, width in _block_quantized_widths(arch, layout):
        if width % tp or (width // tp) % block[0]:
            good_tps = [t for t in (1, 2, 4, 8) if width % t == 0 and (width // t) % block[0] == 0]
            fix = (
                f"use a tensor parallel size in {good_tps} (gpu.tensor_parallel_size, with "
                f"gpu.pipeline_parallel_size making up gpu.count)"
            )
            if what.startswith("expert"):
                fix = f"set gpu.expert_parallel: true (whole experts per GPU), or {fix}"
            found.append(
                Verdict(
                    "error",
                    f"FP8 block-quantised {what} of width {width} splits into {width / tp:g}-wide "
                    f"slices at TP {tp}, not a multiple of the {block[0]}-wide blocks; vLLM refuses "
                    f"to load it",
                    fix,
                )
            )
    return found


def layout_problem(
    model_id: str,
    revision: str | None,
    *,
    tp: int,
    expert_parallel: bool,
    pp: int = 1,
) -> str | None:
    """Why vLLM would refuse to split this model `tp` ways (heads, KV heads, expert widths,
    block-quantized widths), from whatever config is known offline: a local directory, the
    Hugging Face cache, liftdeploy's cache of Hub configs or the catalog. None when it splits,
    or when no config is known without the network (`plan` then reads it)."""
    if tp == 1:
        return None
    from liftdeploy.errors import PlanError
    from liftdeploy.planner.arch import load_architecture

    try:
        arch = load_architecture(model_id, revision, fetch=False)
    except PlanError:  # no config offline, or a broken one: `plan` says which
        return None
    if arch.num_heads % tp:
        return (
            f"gpu.tensor_parallel_size {tp} does not divide {model_id}'s {arch.num_heads} "
            f"attention heads; use one of "
            f"{[d for d in range(1, 9) if arch.num_heads % d == 0]}"
        )
    layout = Layout(gpu="", count=tp * pp, tp=tp, expert_ranks=tp if expert_parallel else 1, pp=pp)
    for verdict in sharding_problems(arch, layout):
        return f"{model_id} at gpu.tensor_parallel_size {tp}: {verdict.message}; {verdict.fix}"
    return None


def check_layouts(spec: ModelDeployment, *, source: str | None = None) -> None:
    """Raise SpecError when an environment's tensor parallelism does not split the model the
    way vLLM needs. `validate` (every CLI command's load) and the Python API run it: the spec's
    own validation sees only the catalog's heads, the planner reads any config known offline."""
    from liftdeploy.errors import SpecError

    for env in spec.environments:
        resolved = spec.resolve(env)
        gpu = resolved.gpu
        if problem := layout_problem(
            resolved.model.id,
            resolved.model.revision,
            tp=gpu.tp,
            expert_parallel=gpu.expert_parallel,
            pp=gpu.pipeline_parallel_size,
        ):
            raise SpecError(f"in environment {env!r}: {problem}", source=source)


def _block_quantized_widths(arch: Architecture, layout: Layout) -> list[tuple[str, int]]:
    widths = [("attention projections", arch.num_heads * arch.head_dim)]
    if arch.intermediate_size and not arch.is_moe:
        widths.append(("MLP intermediate", arch.intermediate_size))
    if arch.is_moe and layout.expert_ranks == 1:
        widths.append(("expert intermediate (moe_intermediate_size)", arch.moe_intermediate_size))
    if arch.shared_expert_intermediate_size:
        widths.append(("shared-expert intermediate", arch.shared_expert_intermediate_size))
    return widths


def _divisors(n: int) -> list[int]:
    return [d for d in (1, 2, 4, 8) if n % d == 0]


def memory_problems(
    resolved: ResolvedDeployment,
    arch: Architecture,
    layout: Layout,
    memory: MemoryEstimate,
) -> list[Verdict]:
    """What vLLM refuses on this GPU, weights that do not fit, or a KV cache that cannot hold
    one max_model_len sequence."""
    if refused := capability_problems(resolved, arch, layout.gpu):
        return refused
    util = resolved.gpu.memory_utilization
    max_len = resolved.model.max_model_len
    name = f"{layout.gpu} x{layout.count}"
    if memory.weights_gib > memory.requested_gib:
        return [
            Verdict(
                "error",
                f"weights need {memory.weights_gib:.1f} GiB per GPU but {name} at "
                f"gpu.memory_utilization {util} gives vLLM {memory.requested_gib:.1f} GiB per GPU: "
                f"the model cannot load",
                _suggest_gpus(resolved, arch, layout),
            )
        ]
    need_gib = (max_len * memory.kv_bytes_per_token + memory.state_bytes_per_sequence) / GIB
    if memory.available_kv_gib >= need_gib:
        return []
    return [
        Verdict(
            "error",
            f"the KV cache cannot hold one {max_len:,}-token sequence: it needs {need_gib:.2f} GiB "
            f"per GPU and {max(memory.available_kv_gib, 0):.2f} GiB is left after weights and "
            f"overheads (vLLM refuses to start)",
            _kv_fix(resolved, arch, layout, memory, need_gib),
        )
    ]


def capability_problems(
    resolved: ResolvedDeployment,
    arch: Architecture,
    gpu_type: str,
) -> list[Verdict]:
    """The dtype or quantization vLLM refuses on this GPU (gpu_support's rules)."""
    dtype = resolved_dtype(arch, resolved.model.dtype, gpu_support.capability(gpu_type))
    found = gpu_support.refusal(gpu_type, dtype, arch.quantization.method)
    if found is None:
        return []
    why, fix = found
    others = (
        [c.gpu for c in fitting_layouts(resolved, arch)][:3]
        if gpu_type == resolved.gpu.type
        else []
    )
    if others:
        fix = f"{fix}; GPUs this spec fits on: {', '.join(others)}"
    return [Verdict("error", why, fix)]


def _kv_fix(
    resolved: ResolvedDeployment,
    arch: Architecture,
    layout: Layout,
    memory: MemoryEstimate,
    need_gib: float,
) -> str:
    options = []
    shortfall = need_gib - memory.available_kv_gib
    util = resolved.gpu.memory_utilization + shortfall / memory.gpu_memory_gib
    if util <= SAFE_UTILIZATION:
        options.append(f"raise gpu.memory_utilization to {math.ceil(util * 100) / 100:.2f}")
    per_token = memory.kv_bytes_per_token
    room = max(memory.available_kv_gib, 0) * GIB - memory.state_bytes_per_sequence
    fitting_len = int(room // per_token) // BLOCK_TOKENS * BLOCK_TOKENS
    if fitting_len >= 1024:
        options.append(f"lower model.max_model_len to {fitting_len:,} or less")
    options.append(_suggest_gpus(resolved, arch, layout))
    return "; or ".join(options)


def _suggest_gpus(resolved: ResolvedDeployment, arch: Architecture, layout: Layout) -> str:
    """The GPU types/counts on which this spec loads and holds one full sequence, best first."""
    fits = fitting_layouts(resolved, arch, expert_parallel=layout.expert_ranks > 1)
    if not fits:
        return (
            "no single-container GPU layout in the catalog fits; use a quantized checkpoint "
            "(FP8 or 4-bit) or a smaller max_model_len"
        )
    shown = ", ".join(c.label for c in fits[:4])
    return (
        f"use a GPU layout that fits, {ranking_note(resolved)}: {shown} (set gpu.type and "
        f"gpu.count)"
    )


@dataclass(frozen=True)
class Candidate:
    """One GPU layout that fits, with what it costs at the spec's workload."""

    usd_per_hour: float
    """One container of it running."""
    gpu: str
    count: int
    containers: int = 1
    """Containers the demand (workload.requests_per_minute) needs; 1 without a demand."""
    usd_per_million: float | None = None
    """$ per million output tokens at that demand; None without one."""

    @property
    def label(self) -> str:
        if self.usd_per_million is None:
            return f"{self.gpu} x{self.count} (${self.usd_per_hour:.2f}/h)"
        return (
            f"{self.gpu} x{self.count} (${self.usd_per_million:,.2f}/M tokens: "
            f"{self.containers} x ${self.usd_per_hour:.2f}/h)"
        )


SATURATION_SEQS = 1024
"""vLLM's API-server max_num_seqs default: the most sequences one container decodes at once
when only its KV cache limits them."""


def ranking_note(resolved: ResolvedDeployment) -> str:
    """How fitting_layouts ranks, for every list of GPUs shown to the user."""
    rpm = resolved.workload.requests_per_minute
    if rpm is None:
        return (
            "cheapest per hour first (set workload.requests_per_minute to rank by $ per "
            "million tokens at your demand)"
        )
    return (
        f"cheapest per million output tokens first at workload.requests_per_minute {rpm:g} "
        f"of {resolved.workload.completion_tokens:,} output tokens"
    )


def demand_tokens_per_s(resolved: ResolvedDeployment) -> float | None:
    """Output tokens per second the workload asks for; None when no demand is set."""
    rpm = resolved.workload.requests_per_minute
    return None if rpm is None else rpm / 60 * resolved.workload.completion_tokens


def cost_at_demand(
    resolved: ResolvedDeployment,
    arch: Architecture,
    layout: Layout,
    memory: MemoryEstimate,
    usd_per_hour: float,
) -> tuple[int, float] | None:
    """(containers, $ per million output tokens) for the workload's demand on `layout`:
    containers = ceil(demanded tokens/s / one container's tokens/s at the concurrency its KV
    cache serves, the planner's bandwidth bound); None without a demand or a speed."""
    from liftdeploy.planner.speed import decode_speed

    demand = demand_tokens_per_s(resolved)
    if demand is None:
        return None
    saturated = resolved.model_copy(
        update={
            "runtime": resolved.runtime.model_copy(
                update={"max_concurrent_requests": SATURATION_SEQS}
            )
        }
    )
    per_container = decode_speed(saturated, arch, layout, memory).tokens_per_s_aggregate
    if per_container <= 0:
        return None
    containers = max(1, math.ceil(demand / per_container))
    return containers, containers * usd_per_hour / (demand * 3600) * 1e6


def fitting_layouts(
    resolved: ResolvedDeployment,
    arch: Architecture,
    *,
    expert_parallel: bool = False,
    gpu_types: list[str] | None = None,
) -> list[Candidate]:
    """Each GPU type's smallest count that vLLM starts on (dtype and quantization supported)
    and on which this spec loads and holds one max_model_len sequence: cheapest per million
    output tokens at workload.requests_per_minute first when the spec sets a demand, else
    cheapest per hour first (ranking_note says which)."""
    fits = []
    for info in catalog.gpus().values():
        if gpu_types is not None and info.name not in gpu_types:
            continue
        if _refused_here(resolved, arch, info.name):  # vLLM would not start there
            continue
        for count in (1, 2, 4, 8):
            if count > info.max_count:
                continue
            candidate = Layout(
                gpu=info.name, count=count, tp=count, expert_ranks=count if expert_parallel else 1
            )
            if sharding_problems(arch, candidate):
                continue
            memory = estimate_for(resolved, arch, candidate)
            need = (
                resolved.model.max_model_len * memory.kv_bytes_per_token
                + memory.state_bytes_per_sequence
            )
            if memory.weights_gib <= memory.requested_gib and memory.available_kv_gib * GIB >= need:
                hourly = count * info.price_usd_hour
                at_demand = cost_at_demand(resolved, arch, candidate, memory, hourly)
                fits.append(Candidate(hourly, info.name, count, *(at_demand or ())))
                break  # the smallest count of this type is enough
    if demand_tokens_per_s(resolved) is not None:
        return sorted(
            fits, key=lambda c: (c.usd_per_million is None, c.usd_per_million or 0, c.usd_per_hour)
        )
    return sorted(fits, key=lambda c: (c.usd_per_hour, c.gpu, c.count))


def _refused_here(resolved: ResolvedDeployment, arch: Architecture, gpu_type: str) -> bool:
    dtype = resolved_dtype(arch, resolved.model.dtype, gpu_support.capability(gpu_type))
    return gpu_support.refusal(gpu_type, dtype, arch.quantization.method) is not None


def concurrency_problems(
    resolved: ResolvedDeployment,
    memory: MemoryEstimate,
) -> list[Verdict]:
    """max_concurrent_requests above what the KV cache serves at the typical request size."""
    workload = resolved.workload
    tokens = min(workload.prompt_tokens + workload.completion_tokens, resolved.model.max_model_len)
    servable = int(memory.concurrency_at(tokens))
    wanted = resolved.runtime.max_concurrent_requests
    if memory.available_kv_gib <= 0 or wanted <= servable:
        return []
    return [
        Verdict(
            "warning",
            f"runtime.max_concurrent_requests {wanted} is above the {servable} requests of "
            f"{tokens:,} tokens (workload.prompt_tokens + completion_tokens) the KV cache holds at "
            f"once; vLLM will queue or preempt the rest",
            f"lower runtime.max_concurrent_requests to {max(servable, 1)}, or give the KV cache more "
            f"memory (more GPUs, a larger GPU, kv_cache_dtype fp8)",
        )
    ]


def spec_problems(resolved: ResolvedDeployment, arch: Architecture) -> list[Verdict]:
    """Settings the architecture contradicts, and open-ended cost."""
    found = []
    limit = arch.max_position_embeddings
    if limit and resolved.model.max_model_len > limit:
        found.append(
            Verdict(
                "error",
                f"model.max_model_len {resolved.model.max_model_len:,} is above the model's "
                f"max_position_embeddings {limit:,}; vLLM refuses it",
                f"lower model.max_model_len to {limit:,} or less",
            )
        )
    if resolved.runtime.max_containers is None:
        found.append(
            Verdict(
                "warning",
                "runtime.max_containers is not set: the worst-case bill has no ceiling",
                "set runtime.max_containers to cap spend",
            )
        )
    experts, ranks = arch.num_experts, resolved.gpu.tp
    if resolved.gpu.expert_parallel and arch.is_moe and experts % ranks:
        found.append(
            Verdict(
                "warning",
                f"{experts} experts do not spread evenly over {ranks} expert-parallel GPUs",
                f"use a GPU count that divides {experts}",
            )
        )
    return found


def budget_problems(
    resolved: ResolvedDeployment,
    usd_per_hour: float,
    always_on_usd_per_month: float,
) -> list[Verdict]:
    """The month's certain cost (always-on) and worst case (max_containers busy all month)
    against budget.max_monthly_usd."""
    limit = resolved.budget.max_monthly_usd
    if limit is None:
        return []
    runtime = resolved.runtime
    if always_on_usd_per_month > limit:
        return [
            Verdict(
                "error",
                f"always-on capacity alone costs ${always_on_usd_per_month:,.0f}/month "
                f"(runtime.min_containers {runtime.min_containers}), above budget.max_monthly_usd "
                f"${limit:,.0f}",
                "lower runtime.min_containers or raise budget.max_monthly_usd",
            )
        ]
    affordable = int(limit // (usd_per_hour * HOURS_PER_MONTH))
    cap_fix = (
        f"runtime.max_containers {affordable} (worst case "
        f"${affordable * usd_per_hour * HOURS_PER_MONTH:,.0f}/month) stays within it"
        if affordable
        else f"the budget pays for {limit / usd_per_hour:,.0f} container-hours a month, less "
        f"than one container all month: keep the scaledown window short and watch "
        f"`liftdeploy spend`"
    )
    if runtime.max_containers is None:
        return [
            Verdict(
                "warning",
                f"budget.max_monthly_usd ${limit:,.0f} has no ceiling to hold it: "
                f"runtime.max_containers is not set",
                cap_fix,
            )
        ]
    worst = runtime.max_containers * usd_per_hour * HOURS_PER_MONTH
    if worst > limit:
        return [
            Verdict(
                "warning",
                f"worst case ${worst:,.0f}/month (runtime.max_containers {runtime.max_containers} "
                f"busy all month) is above budget.max_monthly_usd ${limit:,.0f}",
                f"{cap_fix}; or raise budget.max_monthly_usd",
            )
        ]
    return [
        Verdict(
            "ok", f"worst case ${worst:,.0f}/month is within budget.max_monthly_usd ${limit:,.0f}"
        )
    ]
