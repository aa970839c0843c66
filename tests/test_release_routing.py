"""The release's traffic split, on two real loopback servers standing for production and the
candidate (small OpenAI-shaped HTTP servers: the share is a property of the client, not of
vLLM). The release record lives in an in-process stand-in for modal.Dict whose methods are
checked against modal.Dict's own signatures."""

from __future__ import annotations

import inspect
import json
import math
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from liftdeploy.client.routing import (
    RELEASE_KEY,
    ReleaseRouter,
    RoutedClient,
    ShareStore,
    route_of,
)
from liftdeploy.ops.http import SMOKE_SCHEMA, smoke

MODEL = "tiny"
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class DictStandIn:
    """An in-process store with modal.Dict's get/put (checked below against modal.Dict)."""

    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}
        self.reads = 0

    def get(self, key: Any, default: Any | None = None) -> Any:
        self.reads += 1
        return self.data.get(key, default)

    def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool:
        if skip_if_exists and key in self.data:
            return False
        self.data[key] = json.loads(json.dumps(value))  # stored by value, like a Dict
        return True


class OpenAIShaped:
    """A loopback server with vLLM's shape: /health, /v1/models, /v1/chat/completions (a valid
    smoke answer, streamed or not), /metrics (http_requests_total by status and an end-to-end
    latency histogram, as vLLM names them). `status` other than 200 makes every completion fail
    with it; `delay_s` is added to each completion."""

    def __init__(self, *, status: int = 200, delay_s: float = 0.0) -> None:
        self.status, self.delay_s = status, delay_s
        self.completions = 0
        self.by_status: dict[int, int] = {}
        self.latencies: list[float] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/health":
                    self._send(200, b"")
                elif self.path == "/v1/models":
                    self._send(
                        200,
                        json.dumps(
                            {
                                "object": "list",
                                "data": [
                                    {
                                        "id": MODEL,
                                        "object": "model",
                                        "created": 0,
                                        "owned_by": "test",
                                    }
                                ],
                            }
                        ).encode(),
                    )
                elif self.path == "/metrics":
                    self._send(200, owner.metrics().encode(), "text/plain")
                else:
                    self._send(404, b"{}")

            def do_POST(self) -> None:
                started = time.monotonic()
                request = json.loads(self.rfile.read(int(self.headers["content-length"])))
                if owner.delay_s:
                    time.sleep(owner.delay_s)  # the server's own latency, not test ordering
                status = owner.status
                with owner.lock:
                    owner.completions += 1
                    owner.by_status[status] = owner.by_status.get(status, 0) + 1
                    owner.latencies.append(time.monotonic() - started)
                if status != 200:
                    self._send(
                        status,
                        json.dumps(
                            {"error": {"message": "candidate broke", "type": "InternalError"}}
                        ).encode(),
                    )
                    return
                text = json.dumps({"status": "ok", "label": "fine", "ready": True})
                if request.get("stream"):
                    chunks = [
                        {"delta": {"role": "assistant", "content": text[:10]}},
                        {"delta": {"content": text[10:]}},
                        {"delta": {}, "finish_reason": "stop"},
                    ]
                    body = (
                        "".join(
                            "data: "
                            + json.dumps(
                                {
                                    "id": "c",
                                    "object": "chat.completion.chunk",
                                    "created": 0,
                                    "model": MODEL,
                                    "choices": [{"index": 0, "finish_reason": None, **chunk}],
                                }
                            )
                            + "\n\n"
                            for chunk in chunks
                        )
                        + "data: [DONE]\n\n"
                    )
                    self._send(200, body.encode(), "text/event-stream")
                    return
                self._send(
                    200,
                    json.dumps(
                        {
                            "id": "c",
                            "object": "chat.completion",
                            "created": 0,
                            "model": MODEL,
                            "choices": [
                                {
                                    "index": 0,
                                    "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": text},
                                }
                            ],
                            "usage": {
                                "prompt_tokens": 5,
                                "completion_tokens": 9,
                                "total_tokens": 14,
                            },
                        }
                    ).encode(),
                )

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        self.closed = False

    def metrics(self) -> str:
        with self.lock:
            lines = [
                f'http_requests_total{{handler="/v1/chat/completions",method="POST",'
                f'status="{code}"}} {count}'
                for code, count in self.by_status.items()
            ]
            for bound in (*LATENCY_BUCKETS, math.inf):
                count = sum(latency <= bound for latency in self.latencies)
                le = "+Inf" if math.isinf(bound) else repr(bound)
                lines.append(f'vllm:e2e_request_latency_seconds_bucket{{le="{le}"}} {count}')
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.httpd.shutdown()
            self.httpd.server_close()


@pytest.fixture
def servers():
    production, candidate = OpenAIShaped(), OpenAIShaped()
    yield production, candidate
    production.close()
    candidate.close()


class ManualClock:
    """Time that moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def running_record(url: str, share: float) -> dict[str, Any]:
    return {"phase": "running", "share": share, "candidate_url": url, "model": MODEL}


def routed_client(production_url: str, store: DictStandIn, **router_options: Any) -> RoutedClient:
    router = ReleaseRouter(store, **router_options)
    return RoutedClient(production_url, model=MODEL, router=router)


def test_the_share_store_has_modal_dicts_methods_and_parameters() -> None:
    import modal

    for name in ("get", "put"):
        ours = inspect.signature(getattr(ShareStore, name))
        theirs = inspect.signature(getattr(modal.Dict, name))
        described = [(p.name, p.kind, p.default) for p in ours.parameters.values()]
        assert described == [(p.name, p.kind, p.default) for p in theirs.parameters.values()], name
        stand_in = inspect.signature(getattr(DictStandIn, name))
        assert [p.name for p in stand_in.parameters.values()] == list(ours.parameters)


def test_observed_share_is_the_configured_share(servers: tuple[OpenAIShaped, OpenAIShaped]) -> None:
    production, candidate = servers
    store = DictStandIn()
    share, requests = 0.2, 400
    store.put(RELEASE_KEY, running_record(candidate.url, share))
    client = routed_client(production.url, store, rng=random.Random(20240611))
    for _ in range(requests):
        assert client.answer("status?", SMOKE_SCHEMA, max_tokens=32).value["status"] == "ok"
    # Each server counted what it answered: the split is real traffic, not a client tally.
    assert candidate.completions + production.completions == requests
    assert client.candidate_answers == candidate.completions
    bound = 4 * math.sqrt(requests * share * (1 - share))  # four binomial standard deviations
    print(
        f"candidate answered {candidate.completions} of {requests} "
        f"({candidate.completions / requests:.1%}; configured {share:.0%}, bound +-{bound:.0f})"
    )
    assert abs(candidate.completions - requests * share) <= bound
    assert client.failovers == 0


def test_no_release_record_or_an_unreadable_store_sends_everything_to_production(
    servers: tuple[OpenAIShaped, OpenAIShaped],
) -> None:
    production, candidate = servers

    class BrokenStore(DictStandIn):
        def get(self, key: Any, default: Any | None = None) -> Any:
            raise ConnectionError("Modal is unreachable")

    for store in (DictStandIn(), BrokenStore()):
        client = routed_client(production.url, store, rng=random.Random(1))
        for _ in range(20):
            smoke(client)
    assert (production.completions, candidate.completions) == (40, 0)
    for record in (
        None,
        {"phase": "aborted", "share": 0.5, "candidate_url": candidate.url},
        {"phase": "running", "share": 0, "candidate_url": candidate.url},
        {"phase": "running", "share": True, "candidate_url": candidate.url},
        {"phase": "running", "share": 0.5},
        "garbage",
    ):
        assert route_of(record).url is None, record


def test_the_share_is_re_read_after_refresh_s(servers: tuple[OpenAIShaped, OpenAIShaped]) -> None:
    production, candidate = servers
    store, clock = DictStandIn(), ManualClock()
    store.put(RELEASE_KEY, running_record(candidate.url, 1.0))
    client = routed_client(production.url, store, refresh_s=10, clock=clock, rng=random.Random(2))
    smoke(client)
    store.put(RELEASE_KEY, {**running_record(candidate.url, 1.0), "phase": "aborting", "share": 0})
    clock.now = 9.9  # the share read before still holds
    smoke(client)
    assert (candidate.completions, production.completions, store.reads) == (2, 0, 1)
    clock.now = 10.0
    for _ in range(5):
        smoke(client)
    assert (candidate.completions, production.completions, store.reads) == (2, 5, 2)


def test_every_request_succeeds_when_the_candidate_dies_mid_run(
    servers: tuple[OpenAIShaped, OpenAIShaped],
) -> None:
    production, candidate = servers
    store, clock = DictStandIn(), ManualClock()
    store.put(RELEASE_KEY, running_record(candidate.url, 0.5))
    client = routed_client(production.url, store, clock=clock, rng=random.Random(7))
    answered_before_stop = None
    for index in range(300):
        if index == 100:
            candidate.close()
            answered_before_stop = candidate.completions
        assert client.answer("status?", SMOKE_SCHEMA, max_tokens=32).value["ready"] is True
    assert answered_before_stop and candidate.completions == answered_before_stop
    assert production.completions == 300 - answered_before_stop
    # One failed attempt, then the candidate is left out until the record is read again.
    assert client.failovers == 1
    clock.now += 10.0  # the next read: one more attempt at the dead candidate, then out again
    for _ in range(50):
        smoke(client)
    assert client.failovers == 2 and production.completions == 350 - answered_before_stop


def test_a_failing_candidate_is_answered_by_production_and_streams_fail_over_too(
    servers: tuple[OpenAIShaped, OpenAIShaped],
) -> None:
    production, candidate = servers
    candidate.status = 500
    store = DictStandIn()
    store.put(RELEASE_KEY, running_record(candidate.url, 1.0))
    client = routed_client(production.url, store, rng=random.Random(3))
    assert smoke(client).value["status"] == "ok"
    assert (candidate.by_status, production.completions, client.failovers) == ({500: 1}, 1, 1)
    # A healthy candidate streams; a broken one fails before its first chunk: production streams.
    candidate.status = 200
    fresh = routed_client(production.url, store, rng=random.Random(3))
    stream = fresh.stream_generate("status?", SMOKE_SCHEMA, max_tokens=32)
    assert (
        json.loads("".join(stream))
        == stream.value
        == {"status": "ok", "label": "fine", "ready": True}
    )
    assert fresh.candidate_answers == 1
    candidate.close()
    stream = fresh.stream_generate("status?", SMOKE_SCHEMA, max_tokens=32)
    assert json.loads("".join(stream))["status"] == "ok" and stream.value["ready"] is True
    assert fresh.failovers == 1 and production.completions == 2
