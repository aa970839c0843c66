"""Hostile input to the operations commands (issue 23, items 6 to 9): billing rows whose cost is
not a dollar figure, report files that are FIFOs, devices, huge or nested without end, counters
and saved monitor state that are not counts, and URLs that do not parse or carry secrets.

The CLI runs as a user runs it (a subprocess, under a memory limit so that a regression reading
/dev/zero cannot take the machine down); webhooks are real loopback receivers, which also prove
that nothing was posted."""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from receivers import Receiver
from test_monitor import exposition
from test_spend import SPEC_32B, WINDOW, billing_item, hours, recorded_report

from liftdeploy.errors import OpsError
from liftdeploy.ops import billing, spend
from liftdeploy.runtime.monitor import (
    STATE_KEY,
    AlertNotSent,
    Monitor,
    Thresholds,
    TrafficWindow,
    engine_counters,
    post_alert,
    window_between,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
MEMORY_LIMIT = 3 * 1024**3
"""Address space the CLI may use here: far above what it needs, far below the machine."""
WEBHOOK_ENV = "LIFTDEPLOY_ALERT_WEBHOOK_URL"
SECRET = "T0s3cr3t/B0s3cr3t/xoxs3cr3t"
"""A webhook's path is its secret: no message may show any of it."""
ALERTS_SPEC = """\
version: 1
name: watched
model:
  id: Qwen/Qwen2.5-Coder-32B-Instruct
  max_model_len: 8192
gpu:
  type: A100-80GB
observability:
  alerts:
    webhook_secret: watched-alerts
"""


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "liftdeploy.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
        timeout=timeout,
        preexec_fn=_limit_memory,
    )


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single `error: ...` line a refused command prints; fails on anything else."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _spend(
    report: Path, *extra: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return _cli(
        "spend",
        str(SPEC_32B),
        "--all-envs",
        "--report",
        str(report),
        "--since",
        "2026-11-01",
        "--until",
        "2026-11-04",
        *extra,
        env=env,
        timeout=timeout,
    )


# --- item 6: a cost that is not a dollar figure refuses the report ------------------------------


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    with Receiver() as webhook:
        yield webhook


def _saved_rows(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "good.json"
    billing.save_report(recorded_report(), path)
    return json.loads(path.read_text())


def _write(tmp_path: Path, rows: Any, name: str = "report.json") -> Path:
    path = tmp_path / name
    path.write_text(rows if isinstance(rows, str) else json.dumps(rows), encoding="utf-8")
    return path


# JSON literal of the cost -> how the error shows it. NaN and Infinity as JSON literals (Python's
# json reads them) and as text, overflowing, negative, above any real row, not numbers at all.
HOSTILE_COSTS = [
    ("NaN", "nan"),
    ('"nan"', "'nan'"),
    ('"sNaN"', "'sNaN'"),
    ("Infinity", "inf"),
    ("-Infinity", "-inf"),
    ("1e999", "inf"),
    ("-0.01", "-0.01"),
    ('"-5.00"', "'-5.00'"),
    ('"1e400"', "'1e400'"),
    ('"99999999"', "'99999999'"),
    ("1e300", "1e+300"),
    ('"abc"', "'abc'"),
    ('"$12.00"', "'$12.00'"),
    ("true", "True"),
    ("null", "None"),
    ("[1]", "a list"),
    ('{"usd": 1}', "a mapping"),
    ('""', "''"),
]


@pytest.mark.parametrize(("cost", "shown"), HOSTILE_COSTS)
def test_a_cost_that_is_not_dollars_refuses_the_report_naming_row_and_value(
    tmp_path: Path,
    receiver: Receiver,
    cost: str,
    shown: str,
) -> None:
    rows = _saved_rows(tmp_path)
    # A staging row: staging is over budget, so a NaN that silenced the verdict would also
    # silence the alert.
    position = next(
        i for i, row in enumerate(rows) if row["description"] == "lift-sys-inference-staging"
    )
    rows[position]["cost"] = "__COST__"
    path = _write(tmp_path, json.dumps(rows).replace('"__COST__"', cost))
    result = _spend(path, "--alert", env={WEBHOOK_ENV: receiver.url + "/hook"})
    line = _one_line_error(result)
    assert f"row {position + 1} ('{rows[position]['object_id']}' at " in line, line
    assert f" cost is {shown}, not a dollar figure" in line, line
    assert result.stdout == ""  # no table with $nan in it
    assert receiver.posts == []


def test_a_garbled_cost_by_resource_or_resource_row_refuses_the_report(
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    rows = _saved_rows(tmp_path)
    rows[3]["cost_by_resource"]["GPU (A100-80GB)"] = "NaN"
    line = _one_line_error(
        _spend(_write(tmp_path, rows), "--alert", env={WEBHOOK_ENV: receiver.url})
    )
    assert "row 4 (" in line and "cost_by_resource['GPU (A100-80GB)'] is 'NaN'" in line
    # `modal billing report --json --show-resources`: one resource a row.
    modal_rows = [
        {
            "object_id": "ap-1",
            "description": "lift-sys-inference",
            "environment": "main",
            "interval_start": "2026-11-02T10:00:00",
            "resource": resource_name,
            "cost": cost,
            "tags": "{}",
        }
        for resource_name, cost in (("GPU (A100-80GB)", "2.5"), ("CPU", "-1e3"))
    ]
    line = _one_line_error(_spend(_write(tmp_path, modal_rows, "modal.json")))
    assert "row 2 ('ap-1' at 2026-11-02T10:00:00) cost is '-1e3'" in line
    assert receiver.posts == []


def test_modal_rows_with_a_nan_cost_are_refused_before_any_total() -> None:
    """Rows fetched from Modal (not a saved file) are checked the same way."""
    from liftdeploy.spec.specfile import load_spec

    rows = [
        billing_item("lift-sys-inference-staging", h, 1, env="staging") for h in hours(2, 0, 23)
    ]
    rows[5] = replace(rows[5], cost=Decimal("NaN"))
    with pytest.raises(
        OpsError,
        match=r"row 'ap-lift-sys-inference-staging' at "
        r"2026-11-02T05:00:00\+00:00: cost is Decimal\('NaN'\)",
    ):
        spend.spend_report(load_spec(SPEC_32B), ["staging"], rows, WINDOW, source="test")
    rows[5] = replace(
        rows[5], cost=Decimal("2.9"), cost_by_resource={"GPU (A100-80GB)": Decimal("-Infinity")}
    )
    with pytest.raises(OpsError, match="'GPU \\(A100-80GB\\)' cost is Decimal\\('-Infinity'\\)"):
        spend.spend_report(load_spec(SPEC_32B), ["staging"], rows, WINDOW, source="test")


# --- item 7: report files go through the one hardened loader -------------------------------------


def test_a_fifo_report_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    line = _one_line_error(_spend(fifo, timeout=60))  # reading it would wait for a writer
    assert "not a regular file" in line and str(fifo) in line


def test_a_device_report_is_refused_without_reading_it() -> None:
    line = _one_line_error(_spend(Path("/dev/zero"), timeout=60))
    assert "/dev/zero" in line and "not a regular file" in line


def test_a_huge_report_is_refused_without_reading_it(tmp_path: Path) -> None:
    huge = tmp_path / "huge.json"
    with huge.open("wb") as out:
        out.truncate(4 * 1024**3)  # sparse: costs no disk, but 4 GiB to read
    line = _one_line_error(_spend(huge, timeout=60))
    assert "is larger than" in line and str(huge) in line


def test_a_month_of_rows_larger_than_a_spec_is_read(tmp_path: Path) -> None:
    """A busy month's report passes the 1 MiB that bounds a spec; the report's own bound is
    larger, so a real report is read, not refused."""
    rows = _saved_rows(tmp_path)
    padded = [dict(row, description=row.get("description", "") + " " * 2000) for row in rows]
    report = _write(tmp_path, padded * (1 + (2 * 1024**2) // len(json.dumps(padded))))
    assert report.stat().st_size > 2 * 1024**2
    result = _spend(report)
    assert "is larger than" not in result.stderr, result.stderr


@pytest.mark.parametrize("depth", [100_000, 3_000])
def test_a_deeply_nested_report_is_one_line(tmp_path: Path, depth: int) -> None:
    path = _write(tmp_path, "[" * depth + "]" * depth)
    line = _one_line_error(_spend(path))
    assert str(path) in line and ("nested too deeply" in line or "JSON list of rows" in line)


def test_deeply_nested_tags_text_is_one_line(tmp_path: Path) -> None:
    rows = _saved_rows(tmp_path)[:2]
    rows[1]["tags"] = "[" * 100_000 + "]" * 100_000  # `modal billing report` writes tags as text
    line = _one_line_error(_spend(_write(tmp_path, rows)))
    assert "row 2 (" in line and "tags are" in line


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("tags", ["liftdeploy-service", "x"], "tags are a list, not a mapping"),
        ("tags", "[1, 2]", "tags are '[1, 2]', not a mapping"),
        ("tags", "{not json", "tags are '{not json', not a mapping"),
        ("tags", 7, "tags are 7, not a mapping"),
        ("tags", {"liftdeploy-service": {"nested": 1}}, "tag 'liftdeploy-service' is a mapping"),
        ("cost_by_resource", [["GPU", "1.0"]], "cost_by_resource is a list, not a mapping"),
        ("cost_by_resource", "GPU=1.0", "cost_by_resource is 'GPU=1.0', not a mapping"),
        ("object_id", {"id": 1}, "object_id is a mapping, not text"),
        ("interval_start", None, "interval_start is None, not text"),
        ("interval_start", "yesterday", "interval_start 'yesterday' is not an ISO time"),
        ("description", ["a"], "description is a list, not text"),
    ],
)
def test_wrong_types_in_a_row_are_one_line(
    tmp_path: Path, field: str, value: Any, expected: str
) -> None:
    rows = _saved_rows(tmp_path)[:3]
    rows[2][field] = value
    line = _one_line_error(_spend(_write(tmp_path, rows)))
    assert "row 3" in line and expected in line, line


@pytest.mark.parametrize(
    "document",
    [
        '{"rows": []}',
        "[1, 2]",
        '"text"',
        "",
        "\x00\xff",
        '[{"object_id": "a"}, {"object_id": "a"}]',
        "[" * 50_000,
        '{"a": ' * 50_000,
    ],
)
def test_a_report_that_is_not_rows_is_one_line(tmp_path: Path, document: str) -> None:
    path = tmp_path / "odd.json"
    path.write_bytes(document.encode("latin-1"))
    _one_line_error(_spend(path))


def test_a_directory_as_report_is_one_line(tmp_path: Path) -> None:
    line = _one_line_error(_spend(tmp_path))
    assert "is a directory" in line


@pytest.mark.parametrize("value", ["NaN", "+Inf", "-Inf", "-3", "1e309"])
def test_a_token_counter_that_is_not_a_count_is_refused(value: str) -> None:
    from liftdeploy.ops.tokens import generation_tokens

    line = f'vllm:generation_tokens_total{{engine="0",model_name="m"}} {value}\n'
    with pytest.raises(OpsError, match="is not a token count"):
        generation_tokens(line)


@pytest.mark.parametrize(
    "reading",
    [
        '{"at": "2026-11-01T00:00:00", "generation_tokens": NaN}',
        '{"at": "2026-11-01T00:00:00", "generation_tokens": -1}',
        '{"at": "2026-11-01T00:00:00", "generation_tokens": 1e999}',
        "[" * 100_000,
    ],
)
def test_saved_token_readings_that_are_not_counts_are_one_line(
    tmp_path: Path,
    reading: str,
) -> None:
    readings = tmp_path / "readings"
    readings.mkdir()
    (readings / "lift-sys-inference-staging.jsonl").write_text(reading + "\n")
    report = tmp_path / "report.json"
    billing.save_report(recorded_report(), report)
    line = _one_line_error(_spend(report, "--readings", str(readings)))
    assert "lift-sys-inference-staging.jsonl:1 is not a token reading" in line


def test_a_fifo_token_reading_log_is_refused_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "lift-sys-inference.jsonl")
    report = tmp_path / "report.json"
    billing.save_report(recorded_report(), report)
    line = _one_line_error(_spend(report, "--readings", str(tmp_path), timeout=60))
    assert "not a regular file" in line


# --- item 8: the monitor reads only counts, and never crashes on a bad one -----------------------

HOSTILE_SAMPLES = [
    'http_requests_total{handler="/v1/x",method="POST",status="5xx"} NaN',
    'http_requests_total{handler="/v1/x",method="POST",status="5xx"} +Inf',
    'http_requests_total{handler="/v1/x",method="POST",status="4xx"} -Inf',
    'http_requests_total{handler="/v1/x",method="POST",status="2xx"} 1e309',
    'http_requests_total{handler="/v1/x",method="POST",status="2xx"} 1e300',
    'http_requests_total{handler="/v1/x",method="POST",status="4xx"} -5',
    'vllm:e2e_request_latency_seconds_bucket{le="2.5",model_name="m"} NaN',
    'vllm:e2e_request_latency_seconds_bucket{le="abc",model_name="m"} 3.0',
    'vllm:e2e_request_latency_seconds_bucket{le="NaN",model_name="m"} 3.0',
    'vllm:e2e_request_latency_seconds_bucket{le="",model_name="m"} 3.0',
    'vllm:e2e_request_latency_seconds_bucket{le="7.5",model_name="m"} 1e999',
]


def test_bad_samples_are_skipped_and_logged_and_the_rest_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state: dict[str, Any] = {}
    good_before = exposition(10, 1, 0, [0.2] * 10)
    good_after = exposition(30, 6, 4, [0.2] * 10 + [3.0] * 19 + [30.0])
    hostile = "\n".join(HOSTILE_SAMPLES) + "\n"
    with caplog.at_level(logging.WARNING, logger="liftdeploy.monitor"):
        first = Monitor("svc", Thresholds(), state)
        first.engine_window(good_before + hostile)
        first.check([], lambda text: None, now=100.0)
        second = Monitor("svc", Thresholds(), state)
        window = second.engine_window(hostile + good_after + hostile)
        second.check([window], lambda text: None, now=400.0)
    # The same window as without the hostile lines (test_monitor's two scrapes).
    assert window is not None
    assert (window.requests, window.errors, window.throttled) == (29, 9, 0)
    assert window.p95_latency_s == 5.0
    assert len(caplog.records) == 3 * len(HOSTILE_SAMPLES)  # each time a line is read
    assert all("skipped" in record.getMessage() for record in caplog.records)
    saved = json.loads(json.dumps(state[STATE_KEY], allow_nan=False))  # plain, finite data
    assert saved["engine"]["requests"] == 40.0


def test_a_counter_that_goes_down_is_a_restart_never_a_negative_count() -> None:
    before = engine_counters(exposition(100, 10, 0, [0.2] * 10))
    # The server restarted and has since served more requests than before, with fewer errors:
    # only the errors counter shows the restart.
    after = engine_counters(exposition(150, 2, 0, [0.2]))
    window = window_between(before, after)
    assert (window.requests, window.errors) == (152, 2)
    # Only the latency histogram goes down.
    after = engine_counters(exposition(120, 10, 0, [3.0]))
    window = window_between(before, after)
    assert (window.requests, window.errors, window.p95_latency_s) == (130, 10, 5.0)
    assert window.errors >= 0 and window.requests >= 0


def _check_runs(state: dict[str, Any], now: float = 10_000.0) -> Monitor:
    """A whole scheduled run over `state`: window start, scrape, check."""
    watch = Monitor("svc", Thresholds(), state)
    since = watch.since(now, 300)
    assert math.isfinite(since) and now - 3600 <= since <= now
    window = watch.engine_window(exposition(30, 6, 4, [3.0] * 20))
    assert window is None or (window.requests >= 0 and window.errors >= 0)
    watch.check([window, TrafficWindow("test", requests=1)], lambda text: None, now=now)
    json.dumps(state[STATE_KEY], allow_nan=False)
    return watch


@pytest.mark.parametrize(
    "saved",
    [
        "garbage",
        [1, 2],
        42,
        float("nan"),
        {"last_check": "abc"},
        {"last_check": float("nan")},
        {"last_check": float("inf")},
        {"last_check": 10**400},
        {"last_check": 10**5000},
        {"last_check": True},
        {"last_check": [1]},
        {"incidents": {10**5000: {"since": 1.0, "text": "t"}}},
        {"engine": "x"},
        {"engine": {"requests": "10"}},
        {"engine": {"requests": float("nan"), "errors": 0, "throttled": 0, "buckets": {}}},
        {"engine": {"requests": 1e309, "errors": 0, "throttled": 0, "buckets": {}}},
        {"engine": {"requests": -3, "errors": 0, "throttled": 0, "buckets": {}}},
        {"engine": {"requests": 1, "errors": 0, "throttled": 0, "buckets": {"abc": 1}}},
        {"engine": {"requests": 1, "errors": 0, "throttled": 0, "buckets": {"1.0": float("nan")}}},
        {"engine": {"requests": 1, "errors": 0, "throttled": 0, "buckets": []}},
        {"incidents": "x"},
        {"incidents": [["error_rate", {}]]},
        {"incidents": {"error_rate": "open"}},
        {"incidents": {"error_rate": {"since": "x"}}},
        {"incidents": {"error_rate": {"since": float("nan"), "text": "t"}}},
        {"scraped": "yes", "engine": None},
    ],
)
def test_corrupt_saved_state_starts_that_part_afresh(
    saved: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state: dict[str, Any] = {STATE_KEY: saved}
    with caplog.at_level(logging.WARNING, logger="liftdeploy.monitor"):
        _check_runs(state)
    assert caplog.records, "a dropped part of the state is logged"
    _check_runs(state, now=10_300.0)  # and the state it saved reads back


def test_good_saved_state_is_kept_whole(caplog: pytest.LogCaptureFixture) -> None:
    state: dict[str, Any] = {}
    with caplog.at_level(logging.WARNING, logger="liftdeploy.monitor"):
        Monitor("svc", Thresholds(), state).check(
            [TrafficWindow("test", requests=20, errors=10)], lambda text: None, now=100.0
        )
        watch = _check_runs(state, now=400.0)
    assert caplog.records == []
    assert watch.since(500.0, 300) == 400.0
    state[STATE_KEY]["last_check"] = 1e12  # a clock that was wrong: never a window from the future
    assert Monitor("svc", Thresholds(), state).since(500.0, 300) == 500.0


# --- item 9: URLs are parsed before use and never shown beyond scheme://host ---------------------

HOSTILE_URLS = [
    f"http://127.0.0.1:9/services/{SECRET.replace('/', ' /')}",  # a space in the secret path
    f"http://[::1/services/{SECRET}",
    "http://[::1",
    f"http://127.0.0.1:99999/services/{SECRET}",
    f"http://127.0.0.1:port/services/{SECRET}",
    f"https://hooks.slack.com/services/{SECRET}\n",  # stripped: fine, see below
    f"https://hooks.slack.com/services/{SECRET}\nX-Injected: 1",
    f"https://hooks.slack.com/services/{SECRET}\t",
    f"https://hooks.slack.com/servi\u00e7es/{SECRET}",
    f"https://user:{SECRET}@hooks.slack.com/services/x",
    f"ftp://hooks.slack.com/services/{SECRET}",
    f"hooks.slack.com/services/{SECRET}",
    f"https:///services/{SECRET}",
]


def _refusing(url: str) -> bool:
    return url.strip() != f"https://hooks.slack.com/services/{SECRET}"


def _assert_no_secret(text: str) -> None:
    for part in ("s3cr3t", "services"):
        assert part not in text, text


@pytest.mark.parametrize("url", [u for u in HOSTILE_URLS if _refusing(u)])
def test_alerts_test_refuses_a_bad_webhook_url_in_one_line_without_its_path(
    tmp_path: Path,
    url: str,
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(ALERTS_SPEC)
    line = _one_line_error(
        _cli("alerts", "test", str(spec), "--env", "production", env={WEBHOOK_ENV: url}, timeout=60)
    )
    assert WEBHOOK_ENV in line
    _assert_no_secret(line)


@pytest.mark.parametrize("url", [u for u in HOSTILE_URLS if _refusing(u)])
def test_spend_alert_refuses_a_bad_webhook_url_before_anything(
    tmp_path: Path,
    url: str,
) -> None:
    report = tmp_path / "report.json"
    billing.save_report(recorded_report(), report)
    result = _spend(report, "--alert", env={WEBHOOK_ENV: url})
    line = _one_line_error(result)
    assert WEBHOOK_ENV in line and result.stdout == ""  # refused before the report
    _assert_no_secret(line)


def test_webhook_errors_after_sending_never_show_the_path() -> None:
    with Receiver(status=404) as refusing:
        with pytest.raises(AlertNotSent) as info:
            post_alert(f"{refusing.url}/services/{SECRET}?token={SECRET}", "hello")
        assert refusing.posts and refusing.posts[0][0].startswith("/services/")
    assert "answered 404" in str(info.value)
    _assert_no_secret(str(info.value))
    # A stray newline around the URL (a copied Secret) is harmless: trimmed, then sent.
    with Receiver() as webhook:
        post_alert(f"\n {webhook.url}/services/{SECRET}\n", "hello")
        assert webhook.texts() == ["hello"]


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1",
        "http://[::1]:99999",
        "http://exa mple.com",
        "http://127.0.0.1:8000/\x1b[2J",
        f"https://x.modal.run/{SECRET}?key={SECRET}",
        f"https://user:{SECRET}@x.modal.run",
        "https://x.modal.run:notaport",
        "http://\u0430pple.modal.run",
    ],
)
def test_health_url_is_parsed_before_use_and_never_echoed(url: str) -> None:
    for args, env in (
        (["--url", url], {}),
        ([], {"MODAL_ENDPOINT_URL": url}),
    ):
        result = _cli("health", str(SPEC_32B), "--env", "staging", *args, env=env, timeout=60)
        line = _one_line_error(result)
        assert "--url" in line or "MODAL_ENDPOINT_URL" in line
        assert "s3cr3t" not in line, line
