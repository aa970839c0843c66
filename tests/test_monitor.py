"""The scheduled monitor's logic (liftdeploy.runtime.monitor): metrics read from the twin's real
vLLM /metrics and from prometheus_client's own exposition, Modal's ServerStats type, incidents
kept in a mapping between runs, alerts posted to a local HTTP receiver."""

from __future__ import annotations

import dataclasses
import json
import math
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Any

import pytest
from receivers import Receiver

from liftdeploy.runtime.monitor import (
    STATE_KEY,
    AlertNotSent,
    Monitor,
    Thresholds,
    TrafficWindow,
    engine_counters,
    evaluate,
    parse_metrics,
    percentile,
    post_alert,
    window_between,
    window_from_modal_stats,
)
from liftdeploy.spec.model import AlertsSection

LATENCY_BUCKETS = (0.5, 1.0, 5.0, 20.0)


def exposition(ok: int, bad_4xx: int, bad_5xx: int, latencies: list[float]) -> str:
    """Metrics text as prometheus_client (vLLM's exporter) writes it, with vLLM's names."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    registry = CollectorRegistry()
    requests = Counter(
        "http_requests", "requests", ["handler", "method", "status"], registry=registry
    )
    requests.labels("/v1/chat/completions", "POST", "2xx").inc(ok)
    requests.labels("/v1/chat/completions", "POST", "4xx").inc(bad_4xx)
    requests.labels("/v1/models", "GET", "5xx").inc(bad_5xx)
    latency = Histogram(
        "vllm:e2e_request_latency_seconds",
        "latency",
        ["model_name"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    for seconds in latencies:
        latency.labels('a "quoted" model').observe(seconds)
    return generate_latest(registry).decode()


def test_metrics_text_is_read_as_prometheus_writes_it() -> None:
    samples = parse_metrics(exposition(3, 2, 1, [0.2, 3.0]))
    assert (
        "http_requests_total",
        {"handler": "/v1/models", "method": "GET", "status": "5xx"},
        1.0,
    ) in samples
    buckets = {
        labels["le"]: value
        for name, labels, value in samples
        if name == "vllm:e2e_request_latency_seconds_bucket"
    }
    assert buckets == {"0.5": 1.0, "1.0": 1.0, "5.0": 2.0, "20.0": 2.0, "+Inf": 2.0}
    assert {s[1]["model_name"] for s in samples if "model_name" in s[1]} == {'a "quoted" model'}
    counters = engine_counters(exposition(3, 2, 1, []))
    assert (counters["requests"], counters["errors"], counters["throttled"]) == (6, 3, 0)


def test_window_between_two_scrapes_and_after_a_restart() -> None:
    before = engine_counters(exposition(10, 1, 0, [0.2] * 10))
    after = engine_counters(exposition(30, 6, 4, [0.2] * 10 + [3.0] * 19 + [30.0]))
    window = window_between(before, after)
    assert (window.requests, window.errors, window.throttled) == (29, 9, 0)
    assert window.p95_latency_s == 5.0  # 19 of 20 new observations are within the 5 s bucket
    restarted = window_between(after, engine_counters(exposition(2, 1, 0, [0.2])))
    assert (restarted.requests, restarted.errors, restarted.p95_latency_s) == (3, 1, 0.5)


def test_percentile_edges() -> None:
    assert percentile({}, 0.95) is None
    assert percentile({"1.0": 0.0, "+Inf": 0.0}, 0.95) is None
    assert math.isinf(percentile({"1.0": 1.0, "+Inf": 10.0}, 0.95))
    assert percentile({"1.0": 95.0, "2.0": 99.0, "+Inf": 100.0}, 0.95) == 1.0


def test_each_threshold_and_the_request_floor() -> None:
    t = Thresholds(
        min_requests=10,
        error_rate=0.1,
        p95_latency_s=2.0,
        throttled_rate=0.1,
        start_failures=2,
        daily_spend_usd=100.0,
    )
    quiet = TrafficWindow("test", requests=9, errors=9, throttled=9, p95_latency_s=60.0)
    assert evaluate(quiet, t) == {}  # too few requests to judge a rate
    busy = TrafficWindow(
        "test",
        requests=20,
        errors=3,
        throttled=3,
        p95_latency_s=2.5,
        start_failures=2,
        spend_today_usd=120.0,
    )
    assert set(evaluate(busy, t)) == {
        "error_rate",
        "throttled_rate",
        "p95_latency",
        "start_failures",
        "daily_spend",
    }
    fine = dataclasses.replace(
        busy, errors=2, throttled=2, p95_latency_s=2.0, start_failures=1, spend_today_usd=99.0
    )
    assert evaluate(fine, t) == {}
    assert "3 of 20 requests failed (15% > 10%" in evaluate(busy, t)["error_rate"]


def test_thresholds_are_the_spec_fields() -> None:
    spec_fields = set(AlertsSection.model_fields) - {"webhook_secret", "check_every_s"}
    runtime_fields = {f.name for f in dataclasses.fields(Thresholds)} - {"daily_spend_usd"}
    assert spec_fields == runtime_fields
    defaults = AlertsSection(webhook_secret="alerts").model_dump(include=spec_fields)
    assert dataclasses.asdict(Thresholds(**defaults)) == {**defaults, "daily_spend_usd": None}


def test_modal_server_stats_make_a_window() -> None:
    from modal.types import ServerStats, StatsPercentile, StatsPercentileDistribution

    now = datetime.now(timezone.utc)
    latency = StatsPercentileDistribution(
        unit="s",
        percentiles=[
            StatsPercentile(50.0, 1.0),
            StatsPercentile(90.0, 3.0),
            StatsPercentile(99.0, 9.0),
        ],
    )
    stats = ServerStats(
        since=now,
        until=now,
        request_count=100,
        request_count_by_status_code={200: 80, 429: 12, 400: 3, 502: 5},
        request_rate_per_second=0.3,
        request_percentile_stats={},
        container_started_count=2,
        container_error_count=1,
        container_creating_at_end_count=0,
        container_total_count=2,
        container_percentile_stats={},
        inference=ServerStats.InferenceStats(
            engine="vllm",
            status="available",
            percentile_stats={"end_to_end_latency": latency},
            scalar_stats={},
        ),
    )
    window = window_from_modal_stats(stats)
    assert window == TrafficWindow(
        "Modal", requests=100, errors=8, throttled=12, p95_latency_s=9.0, start_failures=1
    )
    no_inference = window_from_modal_stats(dataclasses.replace(stats, inference=None))
    assert no_inference.p95_latency_s is None


def test_scrape_only_a_container_that_others_keep_busy() -> None:
    watch = Monitor("svc", Thresholds(), {})
    assert not watch.should_scrape(0, 50)  # nothing running: never wake one
    assert not watch.should_scrape(1, 0)  # idle container: a scrape would keep it billed
    assert watch.should_scrape(1, 1)
    watch.engine_window(exposition(1, 0, 0, []))
    assert not watch.should_scrape(1, 1)  # the one request was our own last scrape
    assert watch.should_scrape(1, 2)


def test_each_window_starts_at_the_last_check_at_most_an_hour_back() -> None:
    state: dict[str, Any] = {}
    assert Monitor("svc", Thresholds(), state).since(10_000.0, 300) == 9_700.0
    Monitor("svc", Thresholds(), state).check([], print, now=10_000.0)
    assert Monitor("svc", Thresholds(), state).since(10_300.0, 300) == 10_000.0
    assert Monitor("svc", Thresholds(), state).since(90_000.0, 300) == 90_000.0 - 3600


def test_an_incident_is_posted_once_and_resolved_across_runs() -> None:
    state: dict[str, Any] = {}  # what a modal.Dict keeps between scheduled runs
    failing = TrafficWindow("test", requests=20, errors=10)
    with Receiver() as webhook:

        def run(window: TrafficWindow, now: float) -> list[str]:
            watch = Monitor("svc", Thresholds(), state)  # each run starts from the state only
            return watch.check([window], lambda text: post_alert(webhook.url, text), now=now)

        assert run(failing, now=1000.0) == webhook.texts()
        assert run(failing, now=1300.0) == []
        run(TrafficWindow("test"), now=1600.0)
        run(TrafficWindow("test"), now=1900.0)
    first, resolved = webhook.texts()
    assert first.startswith("[svc] ALERT error_rate: 10 of 20 requests failed")
    assert resolved.startswith("[svc] RESOLVED error_rate after 10 min: 10 of 20")
    assert json.loads(json.dumps(state))[STATE_KEY]["incidents"] == {}  # plain data only


def test_an_alert_the_webhook_refuses_is_sent_again_next_run() -> None:
    state: dict[str, Any] = {}
    failing = TrafficWindow("test", requests=20, errors=10)
    with Receiver(status=500) as webhook:
        watch = Monitor("svc", Thresholds(), state)
        with pytest.raises(AlertNotSent, match="answered 500"):
            watch.check([failing], lambda text: post_alert(webhook.url, text))
        assert state[STATE_KEY]["incidents"] == {}
        webhook.status = 200
        Monitor("svc", Thresholds(), state).check([failing], lambda t: post_alert(webhook.url, t))
    assert len(webhook.texts()) == 2 and set(state[STATE_KEY]["incidents"]) == {"error_rate"}


def test_a_webhook_that_is_not_a_url_is_one_clear_error() -> None:
    with pytest.raises(AlertNotSent, match="not an http"):
        post_alert("hooks.slack.com/services/x", "hello")


def _call(twin: Any, path: str, body: dict[str, Any] | None = None) -> int:
    request = urllib.request.Request(
        twin.url + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {twin.api_key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _load(twin: Any, *, good: int, bad: int) -> None:
    for _ in range(good):
        assert _call(twin, "/v1/models") == 200
    invalid = {
        "model": twin.model_name,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": -1,
    }
    for _ in range(bad):
        assert _call(twin, "/v1/chat/completions", invalid) == 400


@pytest.mark.twin
def test_errors_at_the_twin_alert_once_and_resolve_when_the_load_stops(twin: Any) -> None:
    state: dict[str, Any] = {}
    thresholds = Thresholds(min_requests=5, error_rate=0.2)
    with Receiver() as webhook:

        def scheduled_run() -> list[str]:
            with urllib.request.urlopen(twin.url + "/metrics", timeout=30) as response:
                metrics = response.read().decode()
            watch = Monitor("twin", thresholds, state)
            return watch.check(
                [watch.engine_window(metrics)], lambda text: post_alert(webhook.url, text)
            )

        assert scheduled_run() == []  # the first scrape is the baseline
        _load(twin, good=8, bad=1)  # 1 error in 9: under the threshold
        assert scheduled_run() == [] and webhook.texts() == []
        _load(twin, good=2, bad=8)  # 8 errors in 10: an incident
        alert = scheduled_run()
        assert webhook.texts() == alert and len(alert) == 1
        assert alert[0].startswith("[twin] ALERT error_rate: 8 of 10 requests failed")
        _load(twin, good=0, bad=6)  # still failing: no second message
        assert scheduled_run() == []
        assert scheduled_run()[0].startswith("[twin] RESOLVED error_rate")  # load stopped
    assert len(webhook.texts()) == 2
