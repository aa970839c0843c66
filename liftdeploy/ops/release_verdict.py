"""The release verdict: the candidate against production over the same window.

The numbers come from Modal's own counts: `modal.Server.stats(since=, until=)` (modal 1.6.4's
`ServerStats`) gives requests by status code as Modal's proxy saw them (429s included, which
vLLM never sees) and, for a vLLM server, the engine's end-to-end latency percentiles
(`inference.percentile_stats["end_to_end_latency"]`). Without those, the proxy's own
`request_percentile_stats` latency is used. vLLM's /metrics (counters since each server
started) is the other source, for servers that are not on Modal (`release status --source
metrics`): the same counters and histogram the monitor reads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from liftdeploy.runtime.monitor import (
    THROTTLED,
    engine_counters,
    percentile,
    window_between,
    window_from_modal_stats,
)
from liftdeploy.spec.model import ReleaseSection

ENGINE_LATENCY = "end_to_end_latency"
Outcome = Literal["pass", "fail", "wait"]


@dataclass(frozen=True)
class ReleaseWindow:
    """One side's numbers over the release window."""

    source: str
    requests: int
    errors: int
    """Responses 4xx/5xx, 429 apart."""
    throttled: int
    p50_latency_s: float | None
    p95_latency_s: float | None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def throttled_rate(self) -> float | None:
        return self.throttled / self.requests if self.requests else None

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "error_rate": self.error_rate,
            "throttled_rate": self.throttled_rate,
        }


def window_from_server_stats(stats: Any) -> ReleaseWindow:
    """A window from `modal.Server.stats(...)`: counts as the monitor reads them, p50/p95 from
    the engine's latency percentiles, else from the proxy's."""
    counts = window_from_modal_stats(stats)
    distribution = None
    source = "Modal Server.stats"
    if stats.inference is not None:
        distribution = stats.inference.percentile_stats.get(ENGINE_LATENCY)
    if distribution is None:
        distribution = next(
            (value for name, value in stats.request_percentile_stats.items() if "latency" in name),
            None,
        )
        source += " (proxy latency)" if distribution is not None else " (no latency)"
    return ReleaseWindow(
        source=source,
        requests=counts.requests,
        errors=counts.errors,
        throttled=counts.throttled,
        p50_latency_s=_at_or_above(distribution, 50),
        p95_latency_s=_at_or_above(distribution, 95),
    )


def _at_or_above(distribution: Any, quantile: float) -> float | None:
    """The first reported percentile at or above `quantile` (never an optimistic one below)."""
    if distribution is None:
        return None
    above = sorted(
        (p.percentile, p.value) for p in distribution.percentiles if p.percentile >= quantile
    )
    return above[0][1] if above else None


def window_from_metrics(text: str) -> ReleaseWindow:
    """A window from vLLM's /metrics: everything since the server started."""
    counters = engine_counters(text)
    counts = window_between(engine_counters(""), counters)
    return ReleaseWindow(
        source="vLLM /metrics",
        requests=counts.requests,
        errors=counts.errors,
        throttled=counts.throttled,
        p50_latency_s=percentile(counters["buckets"], 0.50),
        p95_latency_s=counts.p95_latency_s,
    )


@dataclass(frozen=True)
class ReleaseVerdict:
    outcome: Outcome
    reasons: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(
    candidate: ReleaseWindow, production: ReleaseWindow, thresholds: ReleaseSection
) -> ReleaseVerdict:
    """pass, fail or wait (too few candidate requests to judge). A rate fails only when it is
    above its threshold and above production's own (a bad hour for both is not the release's
    fault); latency fails when the candidate's p95 is more than the ratio times production's."""
    if candidate.requests < thresholds.min_requests:
        return ReleaseVerdict(
            "wait",
            [
                f"the candidate served {candidate.requests} requests, fewer than "
                f"release.min_requests {thresholds.min_requests}; send it more traffic (raise "
                f"release.share_percent, or `liftdeploy loadtest --url` it) and ask again"
            ],
        )
    reasons = []
    for what, limit, ours, theirs in (
        ("error rate", thresholds.max_error_rate, candidate.error_rate, production.error_rate),
        (
            f"{THROTTLED} rate",
            thresholds.max_throttled_rate,
            candidate.throttled_rate,
            production.throttled_rate,
        ),
    ):
        assert ours is not None
        if ours > limit and ours > (theirs or 0.0):
            reasons.append(
                f"{what} {ours:.1%} is above the threshold {limit:.1%} and "
                f"production's {theirs or 0.0:.1%}"
            )
    p95, base = candidate.p95_latency_s, production.p95_latency_s
    ratio = thresholds.max_p95_latency_ratio
    if p95 is not None and base:
        if p95 > ratio * base:
            reasons.append(
                f"p95 latency {p95:.3g} s is {p95 / base:.2f}x production's "
                f"{base:.3g} s (allowed {ratio:g}x)"
            )
    if reasons:
        return ReleaseVerdict("fail", reasons)
    note = "" if p95 is not None and base else "; latency not compared (no p95 on one side)"
    return ReleaseVerdict(
        "pass", [f"within every threshold over {candidate.requests} candidate requests{note}"]
    )


def format_table(candidate: ReleaseWindow, production: ReleaseWindow) -> str:
    """The side-by-side table `release status` prints."""

    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value:.2%}"

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f} s"

    rows = [
        ("", "candidate", "production"),
        ("requests", str(candidate.requests), str(production.requests)),
        ("error rate", rate(candidate.error_rate), rate(production.error_rate)),
        ("429 rate", rate(candidate.throttled_rate), rate(production.throttled_rate)),
        ("p50 latency", seconds(candidate.p50_latency_s), seconds(production.p50_latency_s)),
        ("p95 latency", seconds(candidate.p95_latency_s), seconds(production.p95_latency_s)),
        ("source", candidate.source, production.source),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows
    )
