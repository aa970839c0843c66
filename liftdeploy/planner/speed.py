"""Decode speed: the memory-bandwidth bound on tokens per second, at batch 1 and at the batch
the KV cache serves. The report shows it; the GPU ranking prices a container's tokens with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from liftdeploy.spec import catalog

if TYPE_CHECKING:
    from liftdeploy.planner.arch import Architecture
    from liftdeploy.planner.checks import Layout
    from liftdeploy.planner.memory import MemoryEstimate
    from liftdeploy.spec.model import ResolvedDeployment


@dataclass(frozen=True)
class Speed:
    """Decode-speed upper bounds from HBM bandwidth (compute and overheads only lower them)."""

    bandwidth_gb_s: float
    """Aggregate HBM bandwidth of the GPUs that hold one copy of the model."""
    bytes_per_token_batch1: float
    """Weights read (active parameters for MoE) plus one sequence's KV, per decoded token."""
    tokens_per_s_batch1: float
    """Per-sequence decode tokens/s at batch 1."""
    feasible_batch: int
    """Sequences decoded together: min(max_concurrent_requests, what the KV cache holds)."""
    tokens_per_s_aggregate: float
    """All sequences together at the feasible batch."""
    context_tokens: int
    """Context length assumed for the KV read (prompt + half the completion)."""


def decode_speed(
    resolved: ResolvedDeployment,
    arch: Architecture,
    layout: Layout,
    memory: MemoryEstimate,
) -> Speed:
    """Bandwidth bound: each decode step reads the (active) weights once and each sequence's KV.

    Pipeline stages run one after another for a single sequence, so batch 1 sees the bandwidth
    of one stage's `tp` GPUs; a full batch keeps every stage busy."""
    per_gpu = catalog.gpu(layout.gpu).bandwidth_gb_s
    bandwidth = per_gpu * layout.count
    workload = resolved.workload
    context = min(
        workload.prompt_tokens + workload.completion_tokens // 2, resolved.model.max_model_len
    )
    # KV and state are per GPU; every rank reads its own share (replicated heads included).
    kv_per_seq = (
        context * memory.kv_bytes_per_token + memory.state_bytes_per_sequence
    ) * layout.count
    weights = memory.weights
    batch1_bytes = weights.active_bytes_per_token + kv_per_seq
    batch1 = per_gpu * layout.tp * 1e9 / batch1_bytes
    servable = int(memory.concurrency_at(context + workload.completion_tokens // 2))
    batch = max(0, min(resolved.runtime.max_concurrent_requests, servable))
    if batch == 0:
        return Speed(bandwidth, batch1_bytes, batch1, 0, 0.0, context)
    step_bytes = (
        _weights_read(arch, weights.active_bytes_per_token, weights.expert_bytes_per_expert, batch)
        + batch * kv_per_seq
    )
    aggregate = batch * bandwidth * 1e9 / step_bytes
    return Speed(bandwidth, batch1_bytes, batch1, batch, aggregate, context)


def _weights_read(arch: Architecture, active_bytes: float, per_expert: float, batch: int) -> float:
    """Weight bytes one decode step reads for `batch` sequences: MoE layers touch the experts
    any sequence routed to (expected distinct experts under uniform routing)."""
    if not arch.is_moe:
        return active_bytes
    k, n = arch.experts_per_token, arch.num_experts
    distinct = n * (1 - (1 - k / n) ** batch)
    return active_bytes - k * per_expert + distinct * per_expert
