"""Operations over a service's HTTP API: wait for it to be ready, smoke-test it, load-test it.

Everything goes through `liftdeploy.client.api.Client`, so the URL, credentials and retry policy
are the same as any caller's. Reports are plain dataclasses with `to_dict()` for `--json`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from liftdeploy.client.api import Answer, Client, Health
from liftdeploy.errors import ClientError

SMOKE_PROMPT = "Report the service status as JSON."
SMOKE_SCHEMA: dict[str, Any] = {
    "title": "smoke",
    "type": "object",
    "properties": {
        "status": {"enum": ["ok", "degraded"]},
        # A pattern bounds the string (a random or confused model cannot ramble) and avoids
        # minLength/maxLength, which XGrammar 0.2.8 mishandles.
        "label": {"type": "string", "pattern": "^[a-z]{1,16}$"},
        "ready": {"type": "boolean"},
    },
    "required": ["status", "label", "ready"],
    "additionalProperties": False,
}
"""A small schema every grammar backend compiles; answers are short whatever the model."""

DEFAULT_MAX_TOKENS = 128


class WarmupTimeout(ClientError):
    """The service did not become healthy before the warmup timeout."""


@dataclass
class WarmupResult:
    ready_after_s: float
    """Seconds from the first probe to the first healthy answer: the cold start, as seen."""
    probes: int
    last: Health


def warmup(
    client: Client,
    *,
    timeout_s: float,
    initial_interval_s: float = 1.0,
    max_interval_s: float = 5.0,
    probe_timeout_s: float = 10.0,
    on_wait: Callable[[float, Health], None] | None = None,
) -> WarmupResult:
    """Poll /health until it answers 200. 503 (and other 5xx) and connection errors mean "not
    yet" (a container is starting); the interval grows 1.5x up to `max_interval_s`, which bounds
    how late the reported cold-start time can be. Wrong credentials, or a 4xx that says this is
    not the service's URL, raise at once: waiting would not fix them."""
    started = time.monotonic()
    deadline = started + timeout_s
    interval, probes = initial_interval_s, 0
    while True:
        probes += 1
        probe_s = min(probe_timeout_s, max(1.0, deadline - time.monotonic()))
        health = client.health(timeout_s=probe_s)
        now = time.monotonic()
        if health.ok:
            return WarmupResult(ready_after_s=now - started, probes=probes, last=health)
        if health.status_code is not None and health.status_code < 500:
            raise ClientError(
                f"{client.base_url}/health answered {health.detail}, which waiting will not "
                f"change; check the URL (--url, MODAL_ENDPOINT_URL) and that the app is deployed"
            )
        if now + interval > deadline:
            raise WarmupTimeout(
                f"{client.base_url} was not healthy after {now - started:.0f} s ({probes} probes, "
                f"last: {health.detail}); raise --timeout (a cold start loads the weights first) "
                f"or read the logs (`liftdeploy logs`)"
            )
        if on_wait:
            on_wait(now - started, health)
        time.sleep(interval)
        interval = min(max_interval_s, interval * 1.5)


def smoke(
    client: Client,
    *,
    prompt: str = SMOKE_PROMPT,
    schema: dict[str, Any] | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> Answer:
    """One schema-constrained request; the answer is returned only if complete and valid."""
    return client.answer(prompt, schema or SMOKE_SCHEMA, max_tokens=max_tokens)


@dataclass
class Percentiles:
    p50: float | None
    p95: float | None
    p99: float | None

    @classmethod
    def of(cls, samples: list[float]) -> Percentiles:
        ordered = sorted(samples)
        return cls(*(_percentile(ordered, q) for q in (50, 95, 99)))


@dataclass
class LoadReport:
    """What a load test measured. sent = succeeded + failed; requested = sent + not_sent."""

    url: str
    requested: int
    concurrency: int
    duration_limit_s: float | None
    sent: int
    succeeded: int
    failed: int
    not_sent: int
    """Requests never sent because the duration limit came first."""
    errors: dict[str, int]
    """Failed requests by error kind (the ClientError class name)."""
    error_examples: dict[str, str]
    """The first message of each error kind."""
    retries: int
    """Retries the client made (429/503/connection) inside the sent requests."""
    elapsed_s: float
    latency_s: Percentiles
    """End-to-end latency of successful requests, retries included."""
    ttft_s: Percentiles
    """Time to first token of successful requests (streamed)."""
    output_tokens: int
    """Output tokens of successful answers."""
    output_tokens_per_s: float
    """output_tokens / elapsed_s: the throughput the whole test achieved."""
    container_hour_usd: float
    """The environment's price of one container-hour (GPU-hour price x GPU count)."""
    usd_per_million_output_tokens: float | None
    """Cost of a million valid output tokens at this throughput, one container busy all along."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_index: int = 0
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    output_tokens: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    error_examples: dict[str, str] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return len(self.latencies) + sum(self.errors.values())


ProgressCallback = Callable[[int, int, dict[str, int], float], None]
"""Called after each request with (done, requested, errors so far, seconds since the start)."""


DEADLINE_GRACE_S = 30.0
"""How long a load test waits for requests in flight once its --duration is over."""


def loadtest(
    client: Client,
    *,
    requests: int,
    concurrency: int,
    container_hour_usd: float,
    duration_s: float | None = None,
    prompt: str = SMOKE_PROMPT,
    schema: dict[str, Any] | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    on_progress: ProgressCallback | None = None,
    deadline_grace_s: float = DEADLINE_GRACE_S,
) -> LoadReport:
    """Send up to `requests` streamed requests, `concurrency` at a time, starting none after
    `duration_s` and waiting at most `deadline_grace_s` more for those in flight; every answer
    is validated like any client call."""
    if requests < 1 or concurrency < 1:
        raise ClientError("--requests and --concurrency must be at least 1")
    schema = schema or SMOKE_SCHEMA
    client.check_schema(schema)  # once, before the clock starts: a bad schema fails fast
    tally = _Tally()
    started = time.monotonic()
    deadline = started + duration_s if duration_s else math.inf
    stop = threading.Event()
    retries_before = client.stats.retries

    def worker() -> None:
        while not stop.is_set():
            with tally.lock:
                if tally.next_index >= requests or time.monotonic() >= deadline:
                    return
                tally.next_index += 1
            try:
                outcome = _one_request(client, prompt, schema, max_tokens)
            except Exception:
                if stop.is_set():
                    return  # abandoned after the deadline: its client may be closed by now
                raise
            with tally.lock:
                if isinstance(outcome, Answer):
                    tally.latencies.append(outcome.latency_s)
                    if outcome.first_token_s is not None:
                        tally.ttfts.append(outcome.first_token_s)
                    tally.output_tokens += outcome.output_tokens or 0
                else:
                    kind = type(outcome).__name__
                    tally.errors[kind] += 1
                    tally.error_examples.setdefault(kind, str(outcome))
                done, errors = tally.done, dict(tally.errors)
            if on_progress:
                on_progress(done, requests, errors, time.monotonic() - started)

    threads = [
        threading.Thread(target=worker, daemon=True) for _ in range(min(concurrency, requests))
    ]
    for thread in threads:
        thread.start()
    # With --duration the run is bounded in time too: requests still in flight
    # DEADLINE_GRACE_S after the deadline are abandoned and counted as cut by the deadline.
    hard_stop = deadline + deadline_grace_s
    try:
        for thread in threads:
            while thread.is_alive() and time.monotonic() < hard_stop:
                thread.join(timeout=0.5)  # short joins keep Ctrl-C responsive
    except KeyboardInterrupt:
        stop.set()
        raise
    stop.set()
    elapsed = time.monotonic() - started

    with tally.lock:
        sent = tally.next_index
        if sent > tally.done:
            tally.errors["CutByDeadline"] += sent - tally.done
            tally.error_examples.setdefault(
                "CutByDeadline", f"still running {deadline_grace_s:.0f} s after --duration ended"
            )
        tokens_per_s = tally.output_tokens / elapsed if elapsed > 0 else 0.0
        return LoadReport(
            url=client.base_url,
            requested=requests,
            concurrency=concurrency,
            duration_limit_s=duration_s,
            sent=sent,
            succeeded=len(tally.latencies),
            failed=sum(tally.errors.values()),
            not_sent=requests - sent,
            errors=dict(sorted(tally.errors.items())),
            error_examples=dict(tally.error_examples),
            retries=client.stats.retries - retries_before,
            elapsed_s=elapsed,
            latency_s=Percentiles.of(tally.latencies),
            ttft_s=Percentiles.of(tally.ttfts),
            output_tokens=tally.output_tokens,
            output_tokens_per_s=tokens_per_s,
            container_hour_usd=container_hour_usd,
            usd_per_million_output_tokens=(
                container_hour_usd / 3600 / tokens_per_s * 1_000_000 if tokens_per_s > 0 else None
            ),
        )


def _one_request(
    client: Client, prompt: str, schema: dict[str, Any], max_tokens: int
) -> Answer | ClientError:
    """The validated answer, or the error that stopped it."""
    stream = client.stream_generate(prompt, schema, max_tokens=max_tokens)
    try:
        for _ in stream:
            pass
    except ClientError as exc:
        return exc
    assert stream.answer is not None
    return stream.answer


def format_load_report(report: LoadReport) -> str:
    """The report as a few readable lines."""

    def ms(p: Percentiles) -> str:
        return " ".join(
            f"{name} {'-' if v is None else f'{v * 1000:.0f} ms'}"
            for name, v in (("p50", p.p50), ("p95", p.p95), ("p99", p.p99))
        )

    lines = [
        f"load test of {report.url}: {report.sent}/{report.requested} requests sent at "
        f"concurrency {report.concurrency} in {report.elapsed_s:.1f} s"
        + (
            f" ({report.not_sent} not sent: duration limit {report.duration_limit_s:g} s)"
            if report.not_sent
            else ""
        ),
        f"  succeeded {report.succeeded}, failed {report.failed}"
        + (
            " (" + ", ".join(f"{k} {v}" for k, v in report.errors.items()) + ")"
            if report.errors
            else ""
        )
        + f", client retries {report.retries}",
        *(f"  first {kind}: {message}" for kind, message in report.error_examples.items()),
        f"  latency     {ms(report.latency_s)}",
        f"  first token {ms(report.ttft_s)}",
        f"  output      {report.output_tokens} tokens, {report.output_tokens_per_s:.1f} tokens/s",
    ]
    cost = report.usd_per_million_output_tokens
    lines.append(
        f"  cost        ${cost:,.2f} per million output tokens at "
        f"${report.container_hour_usd:.2f}/container-hour (one container, busy throughout)"
        if cost is not None
        else "  cost        - (no output tokens)"
    )
    return "\n".join(lines)


def _percentile(ordered: list[float], q: float) -> float | None:
    """Linear-interpolated percentile of sorted samples (None when there are none)."""
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
