"""Tell a person when the service breaks: the scheduled monitor's logic.

The rendered app's `monitor` function (CPU only, on a schedule) gathers what happened since its
last run — Modal's own request and container counts for the server, and vLLM's Prometheus
`/metrics` when a container is running anyway — as `Window`s, checks them against `Thresholds`
and posts to a Slack-compatible webhook once when an incident opens and once when it clears.
What it must remember between runs (open incidents, the last scrape) lives in a mapping the app
passes in (a `modal.Dict`; a plain dict in tests). Standard library only.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

ALERT_WEBHOOK_ENV = "LIFTDEPLOY_ALERT_WEBHOOK_URL"
"""The variable the alerts Secret sets: a Slack-compatible incoming webhook URL."""
STATE_KEY = "monitor"
"""The one key the monitor keeps in its state mapping."""
LATENCY_HISTOGRAM = "vllm:e2e_request_latency_seconds"
"""vLLM's end-to-end request latency histogram (its `_bucket` series give the p95)."""
REQUESTS_COUNTER = "http_requests_total"
"""Responses by handler and status class, counted by vLLM's Prometheus instrumentator."""
MAX_WINDOW_S = 3600
"""The longest window a check looks back over."""
THROTTLED = 429
"""Modal's answer when every container is at its concurrency cap: counted apart from errors."""


class AlertNotSent(RuntimeError):
    """The webhook did not accept an alert; the message says why."""


@dataclass(frozen=True)
class Thresholds:
    """When a window is an incident (the spec's observability.alerts, field for field)."""

    min_requests: int = 10
    error_rate: float = 0.05
    p95_latency_s: float = 120.0
    throttled_rate: float = 0.05
    start_failures: int = 1
    daily_spend_usd: float | None = None
    """Hook for the spend report: alert when `Window.spend_today_usd` is above it."""


@dataclass(frozen=True)
class Window:
    """What happened between two checks, from one source (Modal's counts or vLLM's metrics)."""

    source: str
    requests: int = 0
    errors: int = 0
    """Responses with status 4xx or 5xx, 429 excepted."""
    throttled: int = 0
    p95_latency_s: float | None = None
    start_failures: int = 0
    spend_today_usd: float | None = None


def evaluate(window: Window, thresholds: Thresholds) -> dict[str, str]:
    """The thresholds this window crosses: incident name -> one readable line."""
    breaches = {}
    busy = window.requests >= thresholds.min_requests
    if busy and window.errors / window.requests > thresholds.error_rate:
        share = window.errors / window.requests
        breaches["error_rate"] = (
            f"{window.errors} of {window.requests} requests failed "
            f"({share:.0%} > {thresholds.error_rate:.0%}, {window.source})"
        )
    if busy and window.throttled / window.requests > thresholds.throttled_rate:
        breaches["throttled_rate"] = (
            f"{window.throttled} of {window.requests} requests got 429: every container was at "
            f"its concurrency cap ({window.throttled / window.requests:.0%} > "
            f"{thresholds.throttled_rate:.0%}; raise max_containers or max_concurrent_requests)"
        )
    p95 = window.p95_latency_s
    if busy and p95 is not None and p95 > thresholds.p95_latency_s:
        shown = "above the largest bucket" if math.isinf(p95) else f"{p95:g} s"
        breaches["p95_latency"] = (
            f"p95 latency {shown} > {thresholds.p95_latency_s:g} s ({window.source})"
        )
    if window.start_failures >= thresholds.start_failures:
        breaches["start_failures"] = (
            f"{window.start_failures} container(s) failed to start ({window.source}); "
            f"see `liftdeploy logs --errors`"
        )
    spend, budget = window.spend_today_usd, thresholds.daily_spend_usd
    if spend is not None and budget is not None and spend > budget:
        breaches["daily_spend"] = (
            f"spent ${spend:,.2f} today, above the ${budget:,.2f} daily budget"
        )
    return breaches


# ## vLLM's /metrics


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Prometheus text exposition -> (name, labels, value) per sample; comments skipped."""
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if not match or line.startswith("#"):
            continue
        name, labels, value = match.groups()
        try:
            number = float(value)
        except ValueError:
            continue
        parsed = {key: _unescape(raw) for key, raw in _LABEL.findall(labels or "")}
        samples.append((name, parsed, number))
    return samples


def _unescape(value: str) -> str:
    return value.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")


_ZERO_COUNTERS: dict[str, Any] = {"requests": 0.0, "errors": 0.0, "throttled": 0.0, "buckets": {}}


def engine_counters(text: str) -> dict[str, Any]:
    """The counters a window is computed from, as plain JSON data (kept between runs)."""
    counters: dict[str, Any] = {**_ZERO_COUNTERS, "buckets": {}}
    for name, labels, value in parse_metrics(text):
        if name == REQUESTS_COUNTER:
            status = labels.get("status", "")
            counters["requests"] += value
            if status == str(THROTTLED):
                counters["throttled"] += value
            elif status[:1] in ("4", "5"):  # "4xx"/"5xx" (grouped) or exact codes
                counters["errors"] += value
        elif name == LATENCY_HISTOGRAM + "_bucket":
            bound = labels.get("le", "+Inf")
            counters["buckets"][bound] = counters["buckets"].get(bound, 0.0) + value
    return counters


def window_between(previous: dict[str, Any], current: dict[str, Any]) -> Window:
    """What happened between two scrapes. A counter that went down means the server restarted:
    then everything since the restart is the window."""
    restarted = current["requests"] < previous["requests"]
    base = _ZERO_COUNTERS if restarted else previous

    def delta(key: str) -> int:
        return int(current[key] - base[key])

    buckets = {le: count - base["buckets"].get(le, 0.0) for le, count in current["buckets"].items()}
    return Window(
        source="vLLM /metrics",
        requests=delta("requests"),
        errors=delta("errors"),
        throttled=delta("throttled"),
        p95_latency_s=percentile(buckets, 0.95),
    )


def percentile(buckets: dict[str, float], quantile: float) -> float | None:
    """Upper bound of the histogram bucket holding the quantile (cumulative `le` counts);
    None with no observations, inf when it lies above the largest finite bucket."""
    ordered = sorted((float(le), count) for le, count in buckets.items())
    total = ordered[-1][1] if ordered else 0.0
    if total <= 0:
        return None
    return next(bound for bound, count in ordered if count >= quantile * total)


# ## Modal's counts


def window_from_modal_stats(stats: Any) -> Window:
    """A window from `modal.Server.stats(since=..., until=...)` (modal.types.ServerStats):
    what Modal's proxy saw (429s included, which vLLM never sees) and container failures.
    The latency is vLLM's end-to-end p95 as Modal reports it, else the next percentile above."""
    by_status = stats.request_count_by_status_code
    throttled = by_status.get(THROTTLED, 0)
    errors = sum(count for code, count in by_status.items() if code >= 400 and code != THROTTLED)
    p95 = None
    inference = stats.inference
    if inference is not None and "end_to_end_latency" in inference.percentile_stats:
        above = sorted(
            (p.percentile, p.value)
            for p in inference.percentile_stats["end_to_end_latency"].percentiles
            if p.percentile >= 95
        )
        p95 = above[0][1] if above else None
    return Window(
        source="Modal",
        requests=stats.request_count,
        errors=errors,
        throttled=throttled,
        p95_latency_s=p95,
        start_failures=stats.container_error_count,
    )


# ## Incidents


class Monitor:
    """One service's checks, with what must survive between scheduled runs kept in `state`."""

    def __init__(
        self, service: str, thresholds: Thresholds, state: MutableMapping[str, Any]
    ) -> None:
        self.service = service
        self.thresholds = thresholds
        self.state = state
        self.record: dict[str, Any] = dict(state.get(STATE_KEY) or {})

    def since(self, now: float, every_s: float) -> float:
        """Start of this check's window: the last check (at most MAX_WINDOW_S back, so a monitor
        that was off does not report old news), or one period ago on the first run."""
        return max(float(self.record.get("last_check", now - every_s)), now - MAX_WINDOW_S)

    def should_scrape(self, running_containers: int, requests_since_last_check: int) -> bool:
        """A request to a container resets its idle timer, so scraping an idle one would keep a
        GPU billed: scrape only a container that is running and that others used since the last
        check (the monitor's own last scrape excepted)."""
        own = 1 if self.record.get("scraped") else 0
        return running_containers > 0 and requests_since_last_check > own

    def engine_window(self, metrics_text: str | None) -> Window | None:
        """The window since the last check's scrape (None without one), remembering this one.
        None for `metrics_text` records that no scrape was made: windows span one check only."""
        if metrics_text is None:
            self.record.pop("engine", None)
            self.record["scraped"] = False
            return None
        current = engine_counters(metrics_text)
        previous = self.record.get("engine")
        self.record.update(engine=current, scraped=True)
        return window_between(previous, current) if previous else None

    def check(
        self,
        windows: Iterable[Window | None],
        notify: Callable[[str], None],
        *,
        now: float | None = None,
    ) -> list[str]:
        """Open an incident (and notify once) for each threshold crossed in any window, resolve
        (and notify) those no window crosses any more, save the state. Returns what was sent.
        A notification that fails is retried at the next check; the first failure is raised
        after the state is saved."""
        now = time.time() if now is None else now
        breaches: dict[str, str] = {}
        for window in windows:
            if window is not None:
                breaches = {**evaluate(window, self.thresholds), **breaches}
        incidents: dict[str, Any] = dict(self.record.get("incidents", {}))
        messages = {
            name: f"[{self.service}] ALERT {name}: {text}"
            for name, text in breaches.items() if name not in incidents
        }
        for name, incident in incidents.items():
            if name not in breaches:
                minutes = (now - incident["since"]) / 60
                messages[name] = (f"[{self.service}] RESOLVED {name} after {minutes:.0f} min: "
                                  f"{incident['text']}")
        sent, failure = [], None
        for name, message in messages.items():
            try:
                notify(message)
            except AlertNotSent as exc:
                failure = failure or exc
                continue
            sent.append(message)
            if name in breaches:
                incidents[name] = {"since": now, "text": breaches[name]}
            else:
                del incidents[name]
        self.record.update(incidents=incidents, last_check=now)
        self.state[STATE_KEY] = self.record
        if failure:
            raise failure
        return sent


def post_alert(webhook_url: str, text: str, *, timeout_s: float = 10.0) -> None:
    """POST `{"text": ...}` (Slack's incoming-webhook shape) to the webhook."""
    if not webhook_url.startswith(("https://", "http://")):
        raise AlertNotSent(f"{ALERT_WEBHOOK_ENV} is not an http(s) URL; store the webhook's "
                           f"full https://... address in the alerts Secret")
    request = urllib.request.Request(
        webhook_url, data=json.dumps({"text": text}).encode(),
        headers={"Content-Type": "application/json"}, method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            response.read()
    except urllib.error.HTTPError as exc:
        raise AlertNotSent(f"the alert webhook answered {exc.code} {exc.reason}; check the URL "
                           f"in {ALERT_WEBHOOK_ENV}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AlertNotSent(f"the alert webhook could not be reached ({reason}); check the URL in "
                           f"{ALERT_WEBHOOK_ENV}") from None
