"""`liftdeploy release`: start, status, promote, abort, tested up to Modal's boundary.

Every `modal` command a release runs is parsed by modal 1.6.4's own CLI parser (the runner
records it there instead of sending it to Modal); the release record lives in a stand-in with
modal.Dict's methods (its signatures are checked in test_release_routing); the candidate's
health and smoke checks and the traffic run over real HTTP against two loopback servers;
Modal's counts are `modal.types.ServerStats` as the SDK builds them.
"""

from __future__ import annotations

import random
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from test_ops import _cli, _service_in_git, _variant, modal_cli_parse, no_modal_token  # noqa: F401
from test_release_routing import MODEL, DictStandIn, OpenAIShaped

from liftdeploy.client.api import Client
from liftdeploy.client.routing import RELEASE_KEY, ReleaseRouter, RoutedClient
from liftdeploy.errors import OpsError
from liftdeploy.ops import release as rel
from liftdeploy.ops.http import smoke, warmup
from liftdeploy.ops.modal_commands import Command
from liftdeploy.ops.modal_runner import ModalCommandError
from liftdeploy.ops.release_verdict import (
    ReleaseWindow,
    format_table,
    judge,
    window_from_metrics,
    window_from_server_stats,
)
from liftdeploy.ops.service_files import locate_service
from liftdeploy.spec.model import ReleaseSection
from liftdeploy.spec.specfile import load_spec

APP = "lift-sys-inference"


class ModalAtItsParser:
    """Runs nothing: parses each command with modal's CLI, records it, and fails the ones told
    to (as the real CLI would, or with a Ctrl-C)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], Command]] = []
        self.fail: dict[str, BaseException] = {}

    def __call__(self, command: Command) -> str:
        name, params = modal_cli_parse(command.argv)
        self.calls.append((name, params, command))
        if name in self.fail:
            raise self.fail.pop(name)
        return ""

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]


@pytest.fixture
def servers():
    production, candidate = OpenAIShaped(), OpenAIShaped()
    yield production, candidate
    production.close()
    candidate.close()


def local_probe(resolved: Any, url: str, timeout_s: float) -> None:
    """The real warmup and smoke, on a loopback URL (production refuses http URLs)."""
    client = Client(url, model=MODEL)
    warmup(client, timeout_s=timeout_s)
    smoke(client)


def metrics_windows(production: OpenAIShaped, candidate: OpenAIShaped):
    def windows(resolved: Any, since: float, until: float):
        return (
            window_from_metrics(Client(candidate.url).metrics()),
            window_from_metrics(Client(production.url).metrics()),
        )

    return windows


def make_release(
    service: Path,
    store: DictStandIn,
    runner: ModalAtItsParser,
    servers: tuple[OpenAIShaped, OpenAIShaped],
    **options: Any,
) -> rel.Release:
    production, candidate = servers
    located = locate_service(service)
    resolved = load_spec(located.spec_path).resolve()
    defaults: dict[str, Any] = dict(
        run=runner,
        lookup_url=lambda r: candidate.url,
        probe=local_probe,
        windows=metrics_windows(production, candidate),
        pause=lambda s: None,
        deployed_commit=lambda r: None,
        say=lambda text: None,
    )
    return rel.Release(located, resolved, store, **{**defaults, **options})


def test_commands_parse_with_modals_cli(tmp_path: Path) -> None:
    resolved = _variant(
        "80b",
        production={
            "modal_environment": "inference-prod",
            "runtime": {"deploy_strategy": "recreate"},
        },
    )
    deploy = Command(
        [
            "modal",
            "deploy",
            "--env",
            "inference-prod",
            "--name",
            "qwen3-next-80b",
            "--tag",
            "abc1234",
            "--strategy",
            "recreate",
            "app.py",
        ],
        env={"LIFTDEPLOY_ENV": "production"},
        cwd=tmp_path,
    )
    candidate = rel.candidate_deploy_command(resolved, deploy)
    name, params = modal_cli_parse(candidate.argv)
    assert (name, params["name"], params["env"], params["tag"], params["app_ref"]) == (
        "deploy",
        "qwen3-next-80b-candidate",
        "inference-prod",
        "abc1234",
        "app.py",
    )
    # The app learns it is the candidate (read-only Volumes, no monitor, its own billing tag).
    assert candidate.env == {
        "LIFTDEPLOY_ENV": "production",
        "LIFTDEPLOY_APP_NAME": "qwen3-next-80b-candidate",
    }
    assert candidate.cwd == tmp_path
    promote = rel.promote_deploy_command(resolved, deploy)
    name, params = modal_cli_parse(promote.argv)
    assert (name, params["name"], params["strategy"]) == ("deploy", "qwen3-next-80b", "rolling")
    assert promote.env == {"LIFTDEPLOY_ENV": "production", "LIFTDEPLOY_APP_NAME": "qwen3-next-80b"}
    name, params = modal_cli_parse(rel.stop_command(resolved).argv)
    assert (name, params["app_identifier"], params["yes"], params["env"]) == (
        "stop",
        "qwen3-next-80b-candidate",
        True,
        "inference-prod",
    )


def test_a_release_from_start_to_promote_on_two_local_servers(
    tmp_path: Path,
    servers: tuple[OpenAIShaped, OpenAIShaped],
) -> None:
    production, candidate = servers
    service = _service_in_git(tmp_path)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=service, capture_output=True, text=True, check=True
    ).stdout.strip()
    store, runner = DictStandIn(), ModalAtItsParser()
    release = make_release(service, store, runner, servers)
    record = release.start(share_percent=50, skip_check=True)
    assert (record["phase"], record["share"], record["candidate_url"], record["commit"]) == (
        "running",
        0.5,
        candidate.url,
        head,
    )
    ((name, params, command),) = runner.calls
    assert (name, params["name"], command.env) == (
        "deploy",
        f"{APP}-candidate",
        {"LIFTDEPLOY_ENV": "production", "LIFTDEPLOY_APP_NAME": f"{APP}-candidate"},
    )
    assert candidate.completions == 1  # the smoke test went to the candidate
    with pytest.raises(OpsError, match="already running"):
        release.start(skip_check=True)

    client = RoutedClient(
        production.url, model=MODEL, router=ReleaseRouter(store, rng=random.Random(5))
    )
    for _ in range(300):
        smoke(client)
    cand, prod, verdict = release.status()
    table = format_table(cand, prod)
    print(f"\n{table}\nverdict: {verdict.outcome}: {'; '.join(verdict.reasons)}")
    assert cand.requests == candidate.completions and prod.requests == production.completions
    assert verdict.outcome == "pass" and cand.requests >= ReleaseSection().min_requests

    assert release.promote().startswith("promoted")
    assert runner.names == ["deploy", "deploy", "stop"]
    _, params, command = runner.calls[1]
    assert (params["name"], params["strategy"]) == (APP, "rolling")
    assert command.env["LIFTDEPLOY_APP_NAME"] == APP
    assert store.data[RELEASE_KEY]["phase"] == "promoted" and store.data[RELEASE_KEY]["share"] == 0
    assert "nothing to do" in release.promote() and "nothing to abort" in release.abort()
    assert runner.names == ["deploy", "deploy", "stop"]  # the second runs changed nothing


def test_an_interrupted_promote_is_finished_by_a_second_run(
    tmp_path: Path,
    servers: tuple[OpenAIShaped, OpenAIShaped],
) -> None:
    service = _service_in_git(tmp_path)
    store, runner = DictStandIn(), ModalAtItsParser()
    release = make_release(service, store, runner, servers)
    release.start(skip_check=True)
    runner.fail["deploy"] = KeyboardInterrupt()  # Ctrl-C during production's deploy
    with pytest.raises(KeyboardInterrupt):
        release.promote()
    assert store.data[RELEASE_KEY]["phase"] == "promoting"
    with pytest.raises(OpsError, match="promote is under way"):
        release.abort()  # never half-undo a promote
    runner.fail["stop"] = KeyboardInterrupt()  # and again while stopping the candidate
    with pytest.raises(KeyboardInterrupt):
        release.promote()
    assert store.data[RELEASE_KEY]["phase"] == "stopping"
    assert store.data[RELEASE_KEY]["share"] == 0  # no client is sent to the candidate any more
    # Production already runs the candidate's commit: the third run only stops the candidate.
    release.deployed_commit = lambda r: store.data[RELEASE_KEY]["commit"][:7]
    release.promote()
    assert runner.names == ["deploy", "deploy", "deploy", "stop", "stop"]
    assert store.data[RELEASE_KEY]["phase"] == "promoted"


def test_abort_is_idempotent_and_tolerates_a_candidate_already_gone(
    tmp_path: Path,
    servers: tuple[OpenAIShaped, OpenAIShaped],
) -> None:
    service = _service_in_git(tmp_path)
    store, runner = DictStandIn(), ModalAtItsParser()
    release = make_release(service, store, runner, servers)
    assert "nothing to abort" in release.abort()
    release.start(skip_check=True)
    gone = ModalCommandError(rel.stop_command(release.resolved), 1, "App is already stopped.")
    runner.fail["stop"] = gone
    assert release.abort().startswith("aborted")
    assert store.data[RELEASE_KEY]["phase"] == "aborted"
    assert "nothing to abort" in release.abort()
    with pytest.raises(OpsError, match="no release to promote"):
        release.promote()
    assert runner.names == ["deploy", "stop"]


def test_a_candidate_that_fails_its_smoke_is_stopped_and_production_untouched(
    tmp_path: Path,
    servers: tuple[OpenAIShaped, OpenAIShaped],
) -> None:
    production, candidate = servers
    candidate.status = 500
    service = _service_in_git(tmp_path)
    store, runner = DictStandIn(), ModalAtItsParser()
    release = make_release(service, store, runner, servers)
    with pytest.raises(OpsError, match="failed its checks"):
        release.start(skip_check=True)
    assert runner.names == ["deploy", "stop"] and store.data[RELEASE_KEY]["phase"] == "aborted"
    assert production.completions == 0


def test_promote_refuses_a_checkout_at_another_commit(
    tmp_path: Path,
    servers: tuple[OpenAIShaped, OpenAIShaped],
) -> None:
    service = _service_in_git(tmp_path)
    store, runner = DictStandIn(), ModalAtItsParser()
    release = make_release(service, store, runner, servers)
    release.start(skip_check=True)
    (service / "notes.txt").write_text("later work\n")
    subprocess.run(
        [
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-qam",
            "x",
            "--allow-empty",
        ],
        cwd=service,
        check=True,
    )
    with pytest.raises(OpsError, match="check out"):
        release.promote()
    assert runner.names == ["deploy"]


def _stats(requests: int, by_status: dict[int, int], p50: float, p95: float) -> Any:
    from modal.types import ServerStats, StatsPercentile, StatsPercentileDistribution

    now = datetime.now(timezone.utc)
    latency = StatsPercentileDistribution(
        unit="s",
        percentiles=[
            StatsPercentile(50.0, p50),
            StatsPercentile(95.0, p95),
            StatsPercentile(99.0, p95 * 2),
        ],
    )
    return ServerStats(
        since=now,
        until=now,
        request_count=requests,
        request_count_by_status_code=by_status,
        request_rate_per_second=1.0,
        request_percentile_stats={},
        container_started_count=1,
        container_error_count=0,
        container_creating_at_end_count=0,
        container_total_count=1,
        container_percentile_stats={},
        inference=ServerStats.InferenceStats(
            engine="vllm",
            status="available",
            percentile_stats={"end_to_end_latency": latency},
            scalar_stats={},
        ),
    )


def test_verdict_from_modals_counts() -> None:
    thresholds = ReleaseSection()
    production = window_from_server_stats(_stats(1000, {200: 990, 500: 10}, 1.0, 4.0))
    assert (
        production.requests,
        production.errors,
        production.p50_latency_s,
        production.p95_latency_s,
    ) == (1000, 10, 1.0, 4.0)
    healthy = window_from_server_stats(_stats(120, {200: 119, 500: 1}, 1.1, 4.5))
    assert judge(healthy, production, thresholds).outcome == "pass"
    failing = window_from_server_stats(_stats(120, {200: 100, 502: 20}, 1.1, 4.5))
    verdict = judge(failing, production, thresholds)
    assert verdict.outcome == "fail" and "error rate 16.7%" in verdict.reasons[0]
    throttled = window_from_server_stats(_stats(120, {200: 100, 429: 20}, 1.0, 4.0))
    assert "429 rate" in judge(throttled, production, thresholds).reasons[0]
    slow = window_from_server_stats(_stats(120, {200: 120}, 2.0, 6.0))
    assert "1.50x production's" in judge(slow, production, thresholds).reasons[0]
    too_few = window_from_server_stats(_stats(99, {200: 99}, 1.0, 4.0))
    assert judge(too_few, production, thresholds).outcome == "wait"
    # A bad hour for both sides is not the release's fault.
    both_bad = window_from_server_stats(_stats(1000, {200: 800, 500: 200}, 1.0, 4.0))
    assert judge(failing, both_bad, thresholds).outcome == "pass"
    assert "p95 latency" in format_table(healthy, production)


def test_release_section_bounds_are_one_line_errors() -> None:
    with pytest.raises(Exception, match="share_percent"):
        ReleaseSection(share_percent=80)
    window = ReleaseWindow("x", 0, 0, 0, None, None)
    assert window.error_rate is None


def test_cli_logged_out_is_one_line_and_the_dict_adapter_keeps_modals_signatures() -> None:
    import inspect

    from liftdeploy.client.routing import ShareStore

    for name in ("get", "put"):
        assert inspect.signature(getattr(rel.ModalDictStore, name)) == inspect.signature(
            getattr(ShareStore, name)
        )
    spec = str(Path(__file__).resolve().parent.parent / "examples" / "qwen25-coder-32b.yaml")
    for action in ("status", "abort", "promote"):
        result = _cli("release", action, spec)
        assert result.returncode == 1, result.stderr
        assert "Traceback" not in result.stderr and "modal token new" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
