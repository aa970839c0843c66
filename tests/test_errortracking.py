"""Start-up failures reach Sentry: the real sentry-sdk with a DSN pointing at a local receiver
that records the envelopes, and a real vLLM server that fails to start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from receivers import Receiver

from liftdeploy.runtime.errortracking import DSN_ENV, reporting_start_failure, start_error_tracking
from liftdeploy.runtime.server import ServerDied, ServerProcess
from liftdeploy.twin.local import free_port


@pytest.fixture
def sentry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    """A local Sentry: SENTRY_DSN points at it; the SDK's client is closed afterwards."""
    import sentry_sdk

    with Receiver() as receiver:
        port = receiver.url.rsplit(":", 1)[1]
        monkeypatch.setenv(DSN_ENV, f"http://publickey@127.0.0.1:{port}/42")
        try:
            yield receiver
        finally:
            sentry_sdk.get_client().close()
            sentry_sdk.get_global_scope().set_client(None)


@pytest.mark.twin
def test_a_start_up_failure_is_one_event_with_the_log_tail(
    twin_supported: None, sentry: Receiver, tmp_path: Path
) -> None:
    assert start_error_tracking(environment="staging", release="svc-staging")
    missing = tmp_path / "no-model-here"
    server = ServerProcess(
        ["--model", str(missing), "--port", str(free_port())], port=free_port(), echo=False
    )
    with pytest.raises(ServerDied, match="exited with status"):
        with reporting_start_failure(server):
            server.wait_healthy(300)
    (event,) = sentry.sentry_events()
    assert sentry.posts[0][0] == "/api/42/envelope/"
    assert (event["environment"], event["release"]) == ("staging", "svc-staging")
    assert event["tags"]["liftdeploy.phase"] == "startup"
    tail = event["contexts"]["vllm"]["log_tail"]
    assert tail == "\n".join(server.log_tail) and str(missing) in tail
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "ServerDied" and "Last log lines" in exception["value"]


def test_without_a_dsn_nothing_is_initialised_or_sent(
    sentry: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DSN_ENV)
    assert not start_error_tracking(environment="staging", release="svc-staging")
    server = ServerProcess([], port=free_port(), echo=False, python="/bin/false")
    with pytest.raises(ServerDied):
        with reporting_start_failure(server):
            server.wait_healthy(30)
    assert sentry.posts == []
