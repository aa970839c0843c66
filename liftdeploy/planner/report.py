"""The capacity and cost planner: will it fit, how much KV cache, how fast, what it costs.

`plan(resolved)` sizes one resolved environment before any GPU is rented, with the same
quantities vLLM logs at startup ("Model loading took", "Available KV cache memory", "GPU KV
cache size", "Maximum concurrency"), a decode-speed upper bound from memory bandwidth, the
bill, and verdicts with fixes. Pure arithmetic: no vllm, torch or modal imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from liftdeploy.errors import PlanError
from liftdeploy.planner.arch import Architecture, load_architecture, with_spec_quantization
from liftdeploy.planner.checks import (
    Layout,
    Verdict,
    budget_problems,
    concurrency_problems,
    estimate_for,
    layout_of,
    memory_problems,
    sharding_problems,
    spec_problems,
)
from liftdeploy.planner.ci import cold_start_usd
from liftdeploy.planner.download import DownloadEstimate, estimate_download
from liftdeploy.planner.memory import MemoryEstimate, Reservation, server_reservation
from liftdeploy.planner.prices import observability_costs
from liftdeploy.planner.speed import Speed, decode_speed
from liftdeploy.planner.timeouts import Lifecycle, lifecycle
from liftdeploy.spec import catalog
from liftdeploy.spec.model import HOURS_PER_MONTH

if TYPE_CHECKING:
    from liftdeploy.spec.model import ResolvedDeployment

__all__ = [
    "Cost",
    "Plan",
    "Speed",
    "Verdict",
    "format_plan",
    "gpu_hour_price",
    "plan",
    "planned",
    "planned_lifecycle",
]


@dataclass(frozen=True)
class Cost:
    """The bill, in US dollars."""

    gpu_hour_usd: float
    price_source: str
    usd_per_hour: float
    """One container running (all its GPUs)."""
    always_on_usd_per_month: float
    """min_containers billed 24/7 for 730 hours."""
    worst_case_usd_per_hour: float | None
    """All max_containers running; None when max_containers is not set (no ceiling)."""
    usd_per_million_output_tokens: float | None
    """At the aggregate speed bound: real cost per token is at least this."""
    cold_start_usd: float
    """One container started from zero, at most: loading plus the idle window (what one CI
    check after a deploy costs; liftdeploy.planner.ci)."""


@dataclass(frozen=True)
class Plan:
    """Everything the planner found out about one environment of a spec, settled in one pass:
    what render, CI and the client use (timeouts, reservation, download limit) comes from here."""

    environment: str
    app_name: str
    model_id: str
    architecture: Architecture
    layout: Layout
    memory: MemoryEstimate
    max_model_len: int
    workload_tokens: int
    max_concurrent_requests: int
    speed: Speed
    cost: Cost
    verdicts: list[Verdict]
    lifecycle: Lifecycle
    """Startup timeout, exit grace, request limit, cold-start wait (liftdeploy.planner.timeouts)."""
    reservation: Reservation
    """Host CPU and memory reserved for each server container (the spec's, or sized)."""
    download: DownloadEstimate
    """The weights download: checkpoint size, assumed throughput, its time limit."""
    nonpreemptible: bool = False
    """Whether Modal is asked never to preempt the container (CPU and memory at 3x)."""
    monthly_budget_usd: float | None = None
    """budget.max_monthly_usd, which the worst case was checked against."""
    observability: list[str] = field(default_factory=list)
    """What the service will send where (errors, traces, alerts), one line each."""

    @property
    def startup_timeout_s(self) -> int:
        return self.lifecycle.startup_timeout_s

    @property
    def healthy_within_s(self) -> int:
        return self.lifecycle.healthy_within_s

    @property
    def exit_grace_period_s(self) -> int:
        return self.lifecycle.exit_grace_period_s

    @property
    def request_timeout_s(self) -> int:
        return self.lifecycle.request_timeout_s

    @property
    def cold_start_wait_s(self) -> int:
        return self.lifecycle.cold_start_wait_s

    @property
    def fits(self) -> bool:
        """True when no verdict is an error."""
        return not any(v.level == "error" for v in self.verdicts)

    def to_dict(self) -> dict[str, Any]:
        arch, mem = self.architecture, self.memory
        return {
            "environment": self.environment,
            "app_name": self.app_name,
            "model": self.model_id,
            "fits": self.fits,
            "architecture": {
                "source": arch.source,
                "weights_source": arch.weights_source,
                "layers": arch.num_layers,
                "kv_layers": arch.kv_layers,
                "hidden_size": arch.hidden_size,
                "attention_heads": arch.num_heads,
                "kv_heads": arch.num_kv_heads,
                "head_dim": arch.head_dim,
                "experts": arch.num_experts,
                "experts_per_token": arch.experts_per_token,
                "quantization": arch.quantization.method,
                "dtype": arch.torch_dtype,
            },
            "gpu": {
                "type": self.layout.gpu,
                "count": self.layout.count,
                "tensor_parallel_size": self.layout.tp,
                "expert_parallel": self.layout.expert_ranks > 1,
                "cuda_memory_gib": round(mem.gpu_memory_gib, 2),
            },
            "memory_per_gpu_gib": {
                "requested": round(mem.requested_gib, 2),
                "weights": round(mem.weights_gib, 2),
                "activation_peak": round(mem.activation_gib, 2),
                "non_torch": round(mem.non_torch_gib, 2),
                "cuda_graphs": round(mem.cuda_graph_gib, 2),
                "available_kv_cache": round(mem.available_kv_gib, 2),
            },
            "kv_cache": {
                "bytes_per_token_per_gpu": mem.kv_bytes_per_token,
                "state_bytes_per_sequence_per_gpu": mem.state_bytes_per_sequence,
                "tokens": mem.kv_cache_tokens,
                "max_model_len": self.max_model_len,
                "max_concurrency_at_max_model_len": round(mem.max_concurrency, 2),
                "workload_tokens": self.workload_tokens,
                "max_concurrency_at_workload": round(mem.concurrency_at(self.workload_tokens), 2),
                "max_concurrent_requests": self.max_concurrent_requests,
            },
            "speed_bound": {
                "bandwidth_gb_s": self.speed.bandwidth_gb_s,
                "tokens_per_s_batch1": round(self.speed.tokens_per_s_batch1, 1),
                "feasible_batch": self.speed.feasible_batch,
                "tokens_per_s_aggregate": round(self.speed.tokens_per_s_aggregate, 1),
                "context_tokens": self.speed.context_tokens,
            },
            "cost_usd": {
                "gpu_hour": self.cost.gpu_hour_usd,
                "price_source": self.cost.price_source,
                "per_hour": round(self.cost.usd_per_hour, 2),
                "always_on_per_month": round(self.cost.always_on_usd_per_month, 2),
                "worst_case_per_hour": _round(self.cost.worst_case_usd_per_hour),
                "per_million_output_tokens": _round(self.cost.usd_per_million_output_tokens),
                "cold_start": round(self.cost.cold_start_usd, 2),
                "monthly_budget": self.monthly_budget_usd,
            },
            "lifecycle_s": {
                "startup_timeout": self.startup_timeout_s,
                "healthy_within": self.healthy_within_s,
                "exit_grace_period": self.exit_grace_period_s,
                "request_timeout": self.request_timeout_s,
                "cold_start_wait": self.cold_start_wait_s,
            },
            "reservation": {"cpu": self.reservation.cpu, "memory_mib": self.reservation.memory_mib},
            "nonpreemptible": self.nonpreemptible,
            "verdicts": [v.to_dict() for v in self.verdicts],
            "weights_download": self.download.to_dict(),
            "observability": self.observability,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def plan(
    resolved: ResolvedDeployment,
    *,
    gpu_hour_usd: float | None = None,
    arch: Architecture | None = None,
    price_source: str | None = None,
) -> Plan:
    """Size one resolved environment.

    `gpu_hour_usd` overrides every other price (the CLI's --price or live Modal rates, named
    by `price_source`); else the spec's pricing.gpu_hour_usd; else the catalog. `arch` skips
    the config.json/catalog lookup.
    """
    checkpoint = arch or load_architecture(resolved.model.id, resolved.model.revision)
    arch = with_spec_quantization(checkpoint, resolved.model.quantization)
    layout = layout_of(resolved)
    verdicts = sharding_problems(arch, layout)
    memory = estimate_for(resolved, arch, layout)
    verdicts += memory_problems(resolved, arch, layout, memory)
    for fallback in resolved.gpu.fallback:
        alt = layout_of(resolved, fallback)
        for found in memory_problems(resolved, arch, alt, estimate_for(resolved, arch, alt)):
            verdicts.append(
                Verdict(
                    found.level,
                    f"fallback GPU {fallback}: {found.message}",
                    f"remove {fallback} from gpu.fallback, or {found.fix}",
                )
            )
    verdicts += concurrency_problems(resolved, memory)
    verdicts += spec_problems(resolved, arch)
    workload = resolved.workload
    workload_tokens = min(
        workload.prompt_tokens + workload.completion_tokens, resolved.model.max_model_len
    )
    speed = decode_speed(resolved, arch, layout, memory)
    timeouts = lifecycle(resolved, memory, layout)
    startup_s = timeouts.startup_timeout_s
    cost = _cost(resolved, speed, gpu_hour_usd, price_source, startup_s)
    verdicts += budget_problems(resolved, cost.usd_per_hour, cost.always_on_usd_per_month)
    verdicts += _cold_start_problems(resolved, startup_s, cost.usd_per_hour)
    if not any(v.level == "error" for v in verdicts):
        verdicts.insert(
            0,
            Verdict(
                "ok",
                f"fits: {memory.weights_gib:.1f} GiB weights and {memory.available_kv_gib:.1f} GiB "
                f"KV cache per GPU, {memory.max_concurrency:.1f} sequences of "
                f"{resolved.model.max_model_len:,} tokens at once",
            ),
        )
    return Plan(
        environment=resolved.environment,
        app_name=resolved.app_name,
        model_id=resolved.model.id,
        architecture=arch,
        layout=layout,
        memory=memory,
        max_model_len=resolved.model.max_model_len,
        workload_tokens=workload_tokens,
        max_concurrent_requests=resolved.runtime.max_concurrent_requests,
        speed=speed,
        cost=cost,
        verdicts=verdicts,
        lifecycle=timeouts,
        reservation=reservation(resolved, memory.weights_gib),
        download=estimate_download(checkpoint),
        nonpreemptible=resolved.runtime.nonpreemptible,
        monthly_budget_usd=resolved.budget.max_monthly_usd,
        observability=(
            resolved.observability.summary()
            + _metrics_read(resolved)
            + observability_costs(resolved.observability)
        ),
    )


def planned(resolved: ResolvedDeployment) -> Plan | None:
    """The plan, or None when the planner cannot size the model (its architecture is unknown:
    not in the catalog, no config.json); callers then use the defaults for an unknown model."""
    try:
        return plan(resolved)
    except PlanError:
        return None


def planned_lifecycle(resolved: ResolvedDeployment) -> Lifecycle:
    """The timeouts of `resolved`, for a command that needs nothing else from the plan: planned
    only when the spec leaves the startup timeout to the planner (the defaults for a model the
    planner cannot size)."""
    if resolved.runtime.startup_timeout_s is None and (found := planned(resolved)):
        return found.lifecycle
    return lifecycle(resolved)


def _metrics_read(resolved: ResolvedDeployment) -> list[str]:
    """Whether the alerts monitor can read vLLM's /metrics: through Modal's proxy auth only
    with a proxy token in its Secret (liftdeploy.runtime.monitor.metrics_headers)."""
    alerts = resolved.observability.alerts
    if alerts is None or not resolved.auth.proxy_auth:
        return []
    return [
        f"alerts: the server is proxy-authed, so the monitor reads vLLM's /metrics (engine "
        f"gauges) only if Secret {alerts.webhook_secret} also holds MODAL_PROXY_KEY and "
        f"MODAL_PROXY_SECRET (`modal workspace proxy-tokens create`); without them it "
        f"checks Modal's counts only"
    ]


def _cold_start_problems(
    resolved: ResolvedDeployment, startup_s: int, usd_per_hour: float
) -> list[Verdict]:
    """A scale-to-zero service whose cold start outlasts runtime.cold_start_patience_s: the
    first request after an idle period waits (503s, retried) up to the startup timeout."""
    patience = resolved.runtime.cold_start_patience_s
    if resolved.runtime.min_containers > 0 or startup_s <= patience:
        return []
    return [
        Verdict(
            "warning",
            f"scales to zero and a cold start may take up to {startup_s:,} s (startup_timeout), "
            f"longer than runtime.cold_start_patience_s ({patience:,} s): the first request after "
            f"an idle period waits that long (liftdeploy's client retries its 503s for it)",
            f"set runtime.min_containers: 1 (always on: ${usd_per_hour * HOURS_PER_MONTH:,.0f}/"
            f"month), or runtime.cold_start_patience_s: {startup_s} if callers can wait",
        )
    ]


def reservation(resolved: ResolvedDeployment, weights_gib_per_gpu: float | None) -> Reservation:
    """The server container's CPU and memory: runtime.cpu / runtime.memory_mib where the spec
    sets them, else `server_reservation`'s rule."""
    sized = server_reservation(resolved.gpu.count, weights_gib_per_gpu)
    return Reservation(
        cpu=resolved.runtime.cpu or sized.cpu,
        memory_mib=resolved.runtime.memory_mib or sized.memory_mib,
    )


def gpu_hour_price(
    resolved: ResolvedDeployment,
    override_usd: float | None = None,
    source: str | None = None,
) -> tuple[float, str]:
    """One GPU-hour's price and where it comes from: the override (--price, live rates), else
    the spec's pricing.gpu_hour_usd, else the catalog."""
    if override_usd is not None:
        return override_usd, source or "command line (--price)"
    if resolved.pricing.gpu_hour_usd is not None:
        return resolved.pricing.gpu_hour_usd, "spec (pricing.gpu_hour_usd)"
    return catalog.gpu(resolved.gpu.type).price_usd_hour, f"catalog: {catalog.prices_source()}"


def _cost(
    resolved: ResolvedDeployment,
    speed: Speed,
    override_usd: float | None,
    source: str | None,
    startup_s: int,
) -> Cost:
    price, where = gpu_hour_price(resolved, override_usd, source)
    hourly = resolved.container_hour_usd(price)
    runtime = resolved.runtime
    worst = None if runtime.max_containers is None else hourly * runtime.max_containers
    per_million = None
    if speed.tokens_per_s_aggregate > 0:
        per_million = hourly / (speed.tokens_per_s_aggregate * 3600) * 1e6
    return Cost(
        gpu_hour_usd=price,
        price_source=where,
        usd_per_hour=hourly,
        always_on_usd_per_month=hourly * runtime.min_containers * HOURS_PER_MONTH,
        worst_case_usd_per_hour=worst,
        usd_per_million_output_tokens=per_million,
        cold_start_usd=cold_start_usd(resolved, startup_s, hourly),
    )


_MARKS = {"ok": "✓", "warning": "!", "error": "✗"}


def format_plan(p: Plan) -> str:
    """A readable report of one plan (one environment)."""
    arch, mem, layout, speed, cost = p.architecture, p.memory, p.layout, p.speed, p.cost
    kind = (
        f"MoE {arch.num_experts} experts, {arch.experts_per_token} per token"
        if arch.is_moe
        else "dense"
    )
    if arch.is_hybrid:
        kind += f", hybrid: {arch.kv_layers} of {arch.num_layers} layers keep KV"
    quant = arch.quantization.method if arch.quantization.method != "none" else arch.torch_dtype
    parallel = f"TP {layout.tp}" + (", expert parallel" if layout.expert_ranks > 1 else "")
    worst = (
        "unbounded (max_containers not set)"
        if cost.worst_case_usd_per_hour is None
        else f"${cost.worst_case_usd_per_hour:,.2f}/h"
    )
    per_m = (
        "n/a"
        if cost.usd_per_million_output_tokens is None
        else f"${cost.usd_per_million_output_tokens:,.2f}"
    )
    rows = [
        f"{p.app_name} [{p.environment}]  {p.model_id} on {layout.gpu} x{layout.count} "
        f"({parallel})",
        f"  architecture      {arch.num_layers} layers, {arch.num_heads} heads / "
        f"{arch.num_kv_heads} KV heads x {arch.head_dim}, {kind}, {quant}",
        f"                    from {arch.source}",
        f"                    weights counted from {arch.weights_source}",
        "  memory per GPU    (what vLLM logs at startup)",
        f"    usable          {mem.gpu_memory_gib:6.2f} GiB x "
        f"{mem.requested_gib / mem.gpu_memory_gib:.2f} = {mem.requested_gib:6.2f} GiB",
        f'    weights         {mem.weights_gib:6.2f} GiB   ("Model loading took")',
        f"    activation peak {mem.activation_gib:6.2f} GiB",
        f"    non-torch       {mem.non_torch_gib:6.2f} GiB",
        f"    CUDA graphs     {mem.cuda_graph_gib:6.2f} GiB",
        f'    KV cache        {mem.available_kv_gib:6.2f} GiB   ("Available KV cache memory")',
        f"  KV cache          {mem.kv_bytes_per_token / 1024:,.1f} KiB/token per GPU"
        + (
            f" + {mem.state_bytes_per_sequence / 2**20:,.1f} MiB state/sequence"
            if mem.state_bytes_per_sequence
            else ""
        )
        + f' -> {mem.kv_cache_tokens:,} tokens ("GPU KV cache size")',
        f"  concurrency       {mem.max_concurrency:.2f}x at {p.max_model_len:,} tokens "
        f'("Maximum concurrency"); {mem.concurrency_at(p.workload_tokens):.1f} requests of '
        f"{p.workload_tokens:,} tokens; max_concurrent_requests {p.max_concurrent_requests}",
        f"  speed bound       {speed.tokens_per_s_batch1:,.0f} tok/s per sequence at batch 1; "
        f"{speed.tokens_per_s_aggregate:,.0f} tok/s total at batch {speed.feasible_batch} "
        f"({speed.bandwidth_gb_s:,.0f} GB/s HBM)",
        f"  cost              ${cost.usd_per_hour:,.2f}/h running; "
        f"${cost.always_on_usd_per_month:,.0f}/month always-on; worst case {worst}; "
        f"{per_m} per M output tokens at the bound; ${cost.cold_start_usd:,.2f} per cold start",
        f"                    ${cost.gpu_hour_usd:.2f}/GPU-hour from {cost.price_source}",
        f"  lifecycle         starts within {p.startup_timeout_s:,} s (startup_timeout; vLLM's "
        f"log is reported after {p.healthy_within_s:,} s); a request is stopped (504) after "
        f"{p.request_timeout_s:,} s",
        "                    "
        + (
            f"scales to zero: the client retries 503s for up to {p.cold_start_wait_s:,} s "
            f"while a container starts"
            if p.cold_start_wait_s
            else "a container is always warm (runtime.min_containers)"
        ),
        f"                    a deploy or scale-down stops a busy container once its requests "
        f"finish: it drains for up to {p.exit_grace_period_s:,} s (exit grace); an idle one "
        f"stops at once",
        "                    "
        + (
            "non-preemptible: CPU and memory at 3x Modal's list price (GPUs unchanged)"
            if p.nonpreemptible
            else "preemptible: Modal may preempt a container, losing requests that outlive the drain "
            "(runtime.nonpreemptible: true prevents it; CPU and memory then cost 3x)"
        ),
        *_reservation_rows(p.reservation),
        *_download_rows(p.download),
        "  verdicts",
    ]
    for v in p.verdicts:
        rows.append(f"    {_MARKS[v.level]} {v.level}: {v.message}")
        if v.fix:
            rows.append(f"      fix: {v.fix}")
    if p.observability:
        rows.append("  observability")
        rows += [f"    {line}" for line in p.observability]
    return "\n".join(rows)


def _reservation_rows(reserved: Reservation | None) -> list[str]:
    if reserved is None:
        return []
    return [
        f"  host reservation  {reserved.cpu:g} CPU cores, {reserved.memory_mib / 1024:g} GiB "
        f"memory per server container (runtime.cpu, runtime.memory_mib)"
    ]


def _download_rows(download: DownloadEstimate | None) -> list[str]:
    if download is None or download.expected_s is None or download.checkpoint_bytes is None:
        return []
    return [
        f"  weights download  {download.checkpoint_bytes / 1e9:,.0f} GB: about "
        f"{download.expected_s / 60:,.0f} min at an assumed {download.throughput_mb_s} MB/s; "
        f"limit {download.timeout_s / 60:,.0f} min per attempt, {download.retries} retries",
    ]
