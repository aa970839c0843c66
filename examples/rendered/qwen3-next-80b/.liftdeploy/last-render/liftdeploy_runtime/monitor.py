"""Tell a person when the service breaks: the scheduled monitor's logic.

The rendered app's `monitor` function (CPU only, on a schedule) gathers what happened since its
last run — Modal's own request and container counts for the server, and vLLM's Prometheus
`/metrics` when a container is running anyway — as `TrafficWindow`s, checks them against
`Thresholds` and posts to a Slack-compatible webhook once when an incident opens and once when it
clears.
What it must remember between runs (open incidents, the last scrape) lives in a mapping the app
passes in (a `modal.Dict`; a plain dict in tests). Standard library only.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

ALERT_WEBHOOK_ENV = "LIFTDEPLOY_ALERT_WEBHOOK_URL"
"""The variable the alerts Secret sets: a Slack-compatible incoming webhook URL."""
PROXY_KEY_ENV = "MODAL_PROXY_KEY"
PROXY_SECRET_ENV = "MODAL_PROXY_SECRET"
"""A Modal proxy token in the monitor's Secret (the webhook's): what reads /metrics from a
proxy-authed server (the names liftdeploy's client reads)."""
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
MAX_COUNT = float(2**53)
"""Largest counter value believed: above it a float no longer counts whole requests, so a
larger (or overflowing, infinite) value is a garbled sample, not traffic."""

_log = logging.getLogger("liftdeploy.monitor")


def metrics_headers(environ: Mapping[str, str], *, proxy_auth: bool) -> dict[str, str] | None:
    """Headers for the monitor's GET /metrics: Modal-Key / Modal-Secret from its Secret when the
    server is proxy-authed; None when it is and the Secret holds no token (Modal's proxy would
    answer 401, so only Modal's counts are checked). /metrics itself needs no API key."""
    if not proxy_auth:
        return {}
    key, secret = environ.get(PROXY_KEY_ENV), environ.get(PROXY_SECRET_ENV)
    if not (key and secret):
        return None
    return {"Modal-Key": key, "Modal-Secret": secret}


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
    """Hook for the spend report: alert when `TrafficWindow.spend_today_usd` is above it."""


@dataclass(frozen=True)
class TrafficWindow:
    """What happened between two checks, from one source (Modal's counts or vLLM's metrics)."""

    source: str
    requests: int = 0
    errors: int = 0
    """Responses with status 4xx or 5xx, 429 excepted."""
    throttled: int = 0
    p95_latency_s: float | None = None
    start_failures: int = 0
    spend_today_usd: float | None = None


def evaluate(window: TrafficWindow, thresholds: Thresholds) -> dict[str, str]:
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
_COUNTER_KEYS = ("requests", "errors", "throttled")


def finite_number(value: Any) -> float | None:
    """`value` as a finite float when it is a number (not a bool) that is one, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float
        return None
    return number if math.isfinite(number) else None


def checked_count(value: Any) -> float | None:
    """`value` as a counter reading: a finite number from 0 to MAX_COUNT, else None."""
    number = finite_number(value)
    return number if number is not None and 0 <= number <= MAX_COUNT else None


def checked_bound(le: Any) -> float | None:
    """A histogram bucket's `le` label as a number (+Inf allowed), else None."""
    try:
        bound = float(le)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(bound) else bound


def engine_counters(text: str) -> dict[str, Any]:
    """The counters a window is computed from, as plain JSON data (kept between runs). A sample
    whose value is not a finite count (NaN, Inf, negative, overflowing) or whose bucket bound is
    not a number is skipped and logged: one garbled line must not stop the monitor."""
    counters: dict[str, Any] = {**_ZERO_COUNTERS, "buckets": {}}
    for name, labels, value in parse_metrics(text):
        if name not in (REQUESTS_COUNTER, LATENCY_HISTOGRAM + "_bucket"):
            continue
        count = checked_count(value)
        if count is None:
            _log.warning("skipped %s%s = %r: not a count from 0 to 2**53", name, labels, value)
            continue
        if name == REQUESTS_COUNTER:
            status = labels.get("status", "")
            counters["requests"] += count
            if status == str(THROTTLED):
                counters["throttled"] += count
            elif status[:1] in ("4", "5"):  # "4xx"/"5xx" (grouped) or exact codes
                counters["errors"] += count
        else:
            bound = labels.get("le", "+Inf")
            if checked_bound(bound) is None:
                _log.warning("skipped %s%s: its le bound %r is not a number", name, labels, bound)
                continue
            counters["buckets"][bound] = counters["buckets"].get(bound, 0.0) + count
    return counters


def checked_counters(saved: Any) -> dict[str, Any] | None:
    """Counters read back from saved state when every value is a count (and every bound a
    number), else None: a corrupt record starts a fresh baseline instead of a crash."""
    if not isinstance(saved, dict) or not isinstance(saved.get("buckets"), dict):
        return None
    counts = {key: checked_count(saved.get(key)) for key in _COUNTER_KEYS}
    buckets = {le: checked_count(count) for le, count in saved["buckets"].items()}
    if (
        None in counts.values()
        or None in buckets.values()
        or not all(isinstance(le, str) and checked_bound(le) is not None for le in buckets)
    ):
        return None
    return {**counts, "buckets": buckets}


def window_between(previous: dict[str, Any], current: dict[str, Any]) -> TrafficWindow:
    """What happened between two scrapes. Any counter that went down means the server
    restarted: then everything since the restart is the window (never a negative count)."""
    restarted = any(current[key] < previous[key] for key in _COUNTER_KEYS) or any(
        count < previous["buckets"].get(le, 0.0) for le, count in current["buckets"].items()
    )
    base = _ZERO_COUNTERS if restarted else previous

    def delta(key: str) -> int:
        return int(current[key] - base[key])

    buckets = {le: count - base["buckets"].get(le, 0.0) for le, count in current["buckets"].items()}
    return TrafficWindow(
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


def window_from_modal_stats(stats: Any) -> TrafficWindow:
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
    return TrafficWindow(
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
        self.record: dict[str, Any] = _checked_record(state.get(STATE_KEY))

    def since(self, now: float, every_s: float) -> float:
        """Start of this check's window: the last check (at most MAX_WINDOW_S back, so a monitor
        that was off does not report old news, and never after now), or one period ago on the
        first run."""
        last = self.record.get("last_check", now - every_s)
        return min(now, max(last, now - MAX_WINDOW_S))

    def should_scrape(self, running_containers: int, requests_since_last_check: int) -> bool:
        """A request to a container resets its idle timer, so scraping an idle one would keep a
        GPU billed: scrape only a container that is running and that others used since the last
        check (the monitor's own last scrape excepted)."""
        own = 1 if self.record.get("scraped") else 0
        return running_containers > 0 and requests_since_last_check > own

    def engine_window(self, metrics_text: str | None) -> TrafficWindow | None:
        """The window since the last check's scrape (None without one), remembering this one.
        None for `metrics_text` records that no scrape was made: windows span one check only."""
        if metrics_text is None:
            self.record.pop("engine", None)
            self.record["scraped"] = False
            return None
        current = engine_counters(metrics_text)
        previous = self.record.get("engine")  # checked when the record was read
        self.record.update(engine=current, scraped=True)
        return window_between(previous, current) if previous else None

    def check(
        self,
        windows: Iterable[TrafficWindow | None],
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
            for name, text in breaches.items()
            if name not in incidents
        }
        for name, incident in incidents.items():
            if name not in breaches:
                minutes = (now - incident["since"]) / 60
                messages[name] = (
                    f"[{self.service}] RESOLVED {name} after {minutes:.0f} min: {incident['text']}"
                )
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


def _checked_record(saved: Any) -> dict[str, Any]:
    """The monitor's record as saved by the last run, each part that is not what this module
    wrote (a corrupt or hand-edited state) dropped and logged: the monitor then starts that
    part afresh (a new scrape baseline, an incident opened again) instead of crashing."""
    if saved is None:
        return {}
    if not isinstance(saved, dict):
        _log.warning(
            "saved monitor state is %s, not a mapping; starting afresh", type(saved).__name__
        )
        return {}
    record: dict[str, Any] = {}
    last_check = saved.get("last_check")
    if finite_number(last_check) is not None:
        record["last_check"] = finite_number(last_check)
    elif last_check is not None:
        _log.warning(
            "saved last_check (%s) is not a finite time; dropped", type(last_check).__name__
        )  # its repr may be a 5,000-digit int
    if "engine" in saved:
        engine = checked_counters(saved["engine"])
        if engine is None:
            _log.warning(
                "saved /metrics counters are not counts; the next scrape is a new baseline"
            )
        else:
            record["engine"] = engine
    record["scraped"] = saved.get("scraped") is True
    incidents = saved.get("incidents", {})
    record["incidents"] = {}
    for name, incident in incidents.items() if isinstance(incidents, dict) else ():
        since = finite_number(incident.get("since")) if isinstance(incident, dict) else None
        if isinstance(name, str) and since is not None and isinstance(incident.get("text"), str):
            record["incidents"][name] = {"since": since, "text": incident["text"]}
        else:
            _log.warning(
                "saved incident %s is garbled; dropped",
                ascii(name[:40]) if isinstance(name, str) else type(name).__name__,
            )
    if not isinstance(incidents, dict):
        _log.warning("saved incidents are %s, not a mapping; dropped", type(incidents).__name__)
    return record


class BadURL(ValueError):
    """A URL refused before use; the message shows at most its scheme://host."""


def parse_url(url: str, *, source: str, fix: str) -> urllib.parse.SplitResult:
    """The one way liftdeploy reads a URL it is given (webhooks, service URLs): an http(s) URL
    with a host, a valid port, no user name or password, and no space, control or non-ASCII
    character anywhere (urllib would send those on, or fail with a message that quotes the
    path). Refused with BadURL naming `source`, showing only the URL's scheme://host (a
    webhook's path is its secret, a URL's user and password are credentials), and ending with
    `fix`."""
    url = url.strip()

    def refuse(problem: str) -> BadURL:
        return BadURL(f"{source} ({shown_url(url)}) {problem}; {fix}")

    if not url.isascii() or any(char <= " " or char == "\x7f" for char in url):
        raise refuse(
            "holds a space, control or non-ASCII character (percent-encode it, or "
            "copy the URL again)"
        )
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - reading it checks it: a port must be a number under 65536
    except ValueError:
        raise refuse("is not a valid URL (a bracketed IPv6 host or the port is garbled)") from None
    if parts.scheme not in ("http", "https"):
        raise refuse("is not an http(s) URL")
    if not parts.hostname:
        raise refuse("has no host")
    if "@" in parts.netloc:
        raise refuse(
            "holds a user name or password (credentials go in their own variables, "
            "never in a URL, where logs would keep them)"
        )
    return parts


def shown_url(url: str | urllib.parse.SplitResult) -> str:
    """What of a URL may be shown in a message: scheme://host[:port], without the user name,
    password, path, query and fragment (which can hold secrets). Where the host cannot be told
    apart from a password (an unparsed URL with an "@" outside its host part) only the scheme
    is shown; a port only when it is a number. Never more than one line."""
    text = url.geturl() if isinstance(url, urllib.parse.SplitResult) else url.strip()
    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]{0,15})://([^/?#]*)", text)
    if not match:
        return "…"
    scheme, authority = match[1], match[2]
    if "@" in text[match.end() :]:  # then the "host" may be a user and a password with a "/"
        return f"{scheme}://…"
    host = re.fullmatch(
        r"(\[[0-9A-Fa-f:.]*\]?|[A-Za-z0-9.-]{1,100})(:[0-9]{1,5})?", authority.rpartition("@")[2]
    )
    return f"{scheme}://{host[0] if host else '…'}"


def post_alert(webhook_url: str, text: str, *, timeout_s: float = 10.0) -> None:
    """POST `{"text": ...}` (Slack's incoming-webhook shape) to the webhook. Errors never show
    the webhook's path: that is its secret."""
    try:
        parts = parse_url(
            webhook_url,
            source=ALERT_WEBHOOK_ENV,
            fix="store the webhook's full https://... address in the alerts Secret",
        )
    except BadURL as exc:
        raise AlertNotSent(str(exc)) from None
    request = urllib.request.Request(
        parts.geturl(),
        data=json.dumps({"text": text}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            response.read()
    except urllib.error.HTTPError as exc:
        raise AlertNotSent(
            f"the alert webhook answered {exc.code} {exc.reason} "
            f"({shown_url(parts)}); check the URL in {ALERT_WEBHOOK_ENV}"
        ) from None
    except urllib.error.URLError as exc:
        raise AlertNotSent(
            f"the alert webhook could not be reached ({exc.reason}; "
            f"{shown_url(parts)}); check the URL in {ALERT_WEBHOOK_ENV}"
        ) from None
    except (OSError, ValueError) as exc:  # ValueError: urllib's own URL checks quote the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise AlertNotSent(
            f"the alert webhook could not be reached ({reason}; "
            f"{shown_url(parts)}); check the URL in {ALERT_WEBHOOK_ENV}"
        ) from None
