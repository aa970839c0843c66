"""health, warmup, smoke and loadtest over real HTTP: the local twin (real vLLM), one short-lived
second twin for the warmup that starts before its server, and the scripted HTTP server from
test_client for 503s and refused credentials."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from test_client import ScriptedServer, scripted  # noqa: F401 - `scripted` is a fixture

from liftdeploy.cli.main import main
from liftdeploy.client.api import AuthError, Client, Health
from liftdeploy.client.endpoints import ENDPOINT_URL_ENV
from liftdeploy.errors import ClientError
from liftdeploy.ops.http import (
    SMOKE_SCHEMA,
    LoadReport,
    WarmupResult,
    WarmupTimeout,
    loadtest,
    smoke,
    warmup,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
SPEC = str(REPO_ROOT / "examples" / "qwen25-coder-32b.yaml")


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, twin: Any) -> list[str]:
    """CLI arguments and environment for the twin as the example's staging environment."""
    monkeypatch.delenv(ENDPOINT_URL_ENV, raising=False)
    monkeypatch.setenv("LIFTDEPLOY_API_KEY", twin.api_key)
    return [SPEC, "--env", "staging", "--url", twin.url]


def _closed_port_url() -> str:
    from liftdeploy.twin.local import free_port

    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


# -- health -----------------------------------------------------------------------------------


@pytest.mark.twin
def test_health_of_a_running_server(cli_env: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["health", *cli_env, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["healthy"] is True and report["status_code"] == 200


def test_health_of_a_stopped_server(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["health", SPEC, "--env", "staging", "--url", _closed_port_url()]) == 1
    assert "✗" in capsys.readouterr().out


def test_health_refuses_a_local_url_for_production(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["health", SPEC, "--url", "http://127.0.0.1:8000"]) != 0
    assert "production" in capsys.readouterr().err


# -- warmup -----------------------------------------------------------------------------------


def test_warmup_waits_through_503_until_healthy(
    scripted: type[ScriptedServer],  # noqa: F811 - the fixture imported above
) -> None:
    server = scripted({"/health": [(503, {}), (503, {}), (200, {})]})
    waits: list[Health] = []
    result = warmup(
        Client(server.url),
        timeout_s=30,
        initial_interval_s=0.05,
        on_wait=lambda _s, health: waits.append(health),
    )
    assert result.probes == 3
    assert [h.status_code for h in waits] == [503, 503]


def test_warmup_gives_up_at_its_timeout(scripted: type[ScriptedServer]) -> None:  # noqa: F811
    server = scripted({"/health": [(503, {})]})
    with pytest.raises(WarmupTimeout, match="--timeout"):
        warmup(Client(server.url), timeout_s=1.0, initial_interval_s=0.1, max_interval_s=0.2)
    assert 2 <= server.count("/health") <= 12


def test_warmup_stops_at_once_on_refused_credentials(
    scripted: type[ScriptedServer],  # noqa: F811
) -> None:
    server = scripted({"/health": [(401, {"error": "missing credentials"})]})
    with pytest.raises(AuthError):
        warmup(Client(server.url), timeout_s=30)
    assert server.count("/health") == 1


def test_warmup_stops_at_once_on_a_wrong_url(scripted: type[ScriptedServer]) -> None:  # noqa: F811
    server = scripted({"/health": [(404, {"detail": "Not Found"})]})
    with pytest.raises(ClientError, match="404.*check the URL"):
        warmup(Client(server.url), timeout_s=30)
    assert server.count("/health") == 1


@pytest.mark.twin
def test_warmup_started_before_the_server_ends_when_it_is_ready(
    twin_supported: None,
    tiny_model_path: Path,
) -> None:
    """The one test that starts a second server: warmup must outlast a real cold start."""
    from liftdeploy.spec.specfile import load_spec
    from liftdeploy.twin.local import free_port, start_twin

    port = free_port()
    client = Client(f"http://127.0.0.1:{port}")
    waits: list[Health] = []
    outcome: list[WarmupResult | BaseException] = []

    def run() -> None:
        try:
            outcome.append(
                warmup(
                    client,
                    timeout_s=600,
                    initial_interval_s=0.5,
                    max_interval_s=2.0,
                    on_wait=lambda _s, h: waits.append(h),
                )
            )
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    server = start_twin(load_spec(SPEC).resolve("staging"), tiny_model_path, port)
    try:
        thread.join(timeout=60)
        assert outcome, "warmup did not notice the server was ready"
        result = outcome[0]
        assert isinstance(result, WarmupResult), result
        assert waits and waits[0].status_code is None  # first probes: nothing listening yet
        assert result.probes == len(waits) + 1
        assert result.ready_after_s > 1.0  # it waited through the cold start
        assert client.health().ok
    finally:
        server.stop()


# -- smoke ------------------------------------------------------------------------------------


@pytest.mark.twin
def test_smoke_returns_a_validated_answer(twin: Any) -> None:
    answer = smoke(Client(twin.url, model=twin.model_name, api_key=twin.api_key))
    jsonschema.validate(answer.value, SMOKE_SCHEMA)


@pytest.mark.twin
def test_smoke_command(
    cli_env: list[str],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    schema = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
        "additionalProperties": False,
    }
    schema_path = tmp_path / "schema.json"
    schema_path.write_text(json.dumps(schema))
    assert main(["smoke", *cli_env, "--schema", str(schema_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    jsonschema.validate(report["answer"], schema)


@pytest.mark.twin
def test_smoke_command_without_the_api_key_fails_naming_it(
    cli_env: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("LIFTDEPLOY_API_KEY")
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    assert main(["smoke", *cli_env]) != 0
    assert "LIFTDEPLOY_API_KEY" in capsys.readouterr().err


# -- loadtest ---------------------------------------------------------------------------------


def _assert_counts_add_up(report: LoadReport) -> None:
    assert report.sent + report.not_sent == report.requested
    assert report.succeeded + report.failed == report.sent
    assert sum(report.errors.values()) == report.failed
    assert set(report.error_examples) == set(report.errors)


@pytest.mark.twin
def test_a_short_loadtest_whose_counts_add_up(twin: Any) -> None:
    progress: list[int] = []
    client = Client(twin.url, model=twin.model_name, api_key=twin.api_key)
    report = loadtest(
        client,
        requests=12,
        concurrency=3,
        container_hour_usd=2.5,
        on_progress=lambda done, _total, _errors, _s: progress.append(done),
    )
    _assert_counts_add_up(report)
    assert (report.sent, report.not_sent) == (12, 0)
    assert sorted(progress) == list(range(1, 13))  # one progress call per finished request
    assert report.succeeded >= 9, report.error_examples
    assert report.latency_s.p50 <= report.latency_s.p95 <= report.latency_s.p99
    assert report.ttft_s.p50 is not None and report.ttft_s.p50 <= report.latency_s.p99
    assert report.output_tokens > 0 and report.output_tokens_per_s > 0
    expected_cost = 2.5 / 3600 / report.output_tokens_per_s * 1e6
    assert report.usd_per_million_output_tokens == pytest.approx(expected_cost)


@pytest.mark.twin
def test_loadtest_command_stops_starting_requests_at_its_duration(
    cli_env: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        [
            "loadtest",
            *cli_env,
            "--requests",
            "100000",
            "--concurrency",
            "2",
            "--duration",
            "2",
            "--json",
        ]
    )
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert code == (0 if report["failed"] == 0 else 1)
    assert 0 < report["sent"] < 100000 and report["not_sent"] > 0
    assert report["sent"] + report["not_sent"] == 100000
    assert report["succeeded"] + report["failed"] == report["sent"]
    from liftdeploy.spec.specfile import load_spec

    staging = load_spec(SPEC).resolve("staging")
    assert report["container_hour_usd"] == pytest.approx(staging.gpu_hour_usd * staging.gpu.count)
    assert "done" in captured.err  # progress while it ran


def test_loadtest_duration_bounds_requests_in_flight(scripted: type[ScriptedServer]) -> None:
    """--duration bounds the run in time: requests still in flight after the deadline and its
    grace are abandoned and counted, not waited for up to the request timeout."""
    import time

    server = scripted({"/v1/chat/completions": [("hang", 5)]})
    started = time.monotonic()
    with Client(server.url, model="m") as client:
        report = loadtest(
            client,
            requests=4,
            concurrency=2,
            container_hour_usd=1.0,
            duration_s=0.5,
            deadline_grace_s=0.5,
        )
    assert time.monotonic() - started < 10
    assert report.sent == 2 and report.succeeded == 0
    assert report.errors == {"CutByDeadline": 2} and report.failed == 2
    assert report.not_sent == 2
