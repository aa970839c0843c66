"""The client over real HTTP: against the local twin (real vLLM), and against a small scripted
HTTP server for what a healthy vLLM never does on demand (503s, 429s, dropped connections,
malformed answers). Both are real sockets and the real openai SDK; nothing is mocked."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from liftdeploy.client.api import (
    API_KEY_ENVS,
    CLIENT_VALIDATES_HEADER,
    GUARD_ERROR_TYPE,
    MODEL_ENV,
    PROXY_KEY_ENV,
    PROXY_SECRET_ENV,
    AuthError,
    Client,
    IncompleteAnswer,
    InvalidJson,
    Overloaded,
    RetryPolicy,
    SchemaViolation,
    ServerError,
    ServiceUnavailable,
    UnsupportedSchema,
)
from liftdeploy.client.endpoints import ENDPOINT_URL_ENV
from liftdeploy.errors import ClientError
from liftdeploy.ops.http import SMOKE_SCHEMA
from liftdeploy.planner.report import plan
from liftdeploy.spec.model import ResolvedDeployment
from liftdeploy.spec.specfile import load_spec

FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05)
SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "integer"}},
    "required": ["a"],
    "additionalProperties": False,
}


# -- a scripted HTTP server -------------------------------------------------------------------

Step = Any
"""(status, body) | (status, body, headers) | "close" (drop the connection, no answer) |
("stream-then-close", text) (start a streamed answer, then drop the connection)."""


def completion(content: str, finish_reason: str = "stop") -> dict[str, Any]:
    """A chat.completion body as vLLM sends it."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "scripted",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
    }


class ScriptedServer:
    """A real HTTP server on loopback answering each path from a script of steps (the last step
    repeats). Records every request's path and headers (names lower-cased)."""

    def __init__(self, script: dict[str, list[Step]]) -> None:
        self.script = {path: list(steps) for path, steps in script.items()}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # chunked streams, so a cut stream is detectable

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                owner._answer(self)

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                owner._answer(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.split("?")[0]
        with self._lock:
            self.requests.append((path, {k.lower(): v for k, v in handler.headers.items()}))
            steps = self.script.get(path, [(404, {"error": "no such path"})])
            step = steps.pop(0) if len(steps) > 1 else steps[0]
        if step[0] == "hang":  # answer nothing for a while: a request stuck in flight
            time.sleep(step[1])
            handler.close_connection = True
            return
        if step == "close":
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        if step[0] == "stream-then-close":
            handler.send_response(200)
            handler.send_header("content-type", "text/event-stream")
            handler.send_header("transfer-encoding", "chunked")
            handler.end_headers()
            chunk = {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": step[1]}, "finish_reason": None}],
            }
            data = f"data: {json.dumps(chunk)}\n\n".encode()
            handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        status, body, headers = (*step, {}) if len(step) == 2 else step
        payload = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(payload)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(payload)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted() -> Iterator[type[ScriptedServer]]:
    """Start ScriptedServers with `scripted(script)`; all are shut down after the test."""
    started: list[ScriptedServer] = []

    class Factory(ScriptedServer):
        def __init__(self, script: dict[str, list[Step]]) -> None:
            super().__init__(script)
            started.append(self)

    yield Factory
    for server in started:
        server.close()


CHAT = "/v1/chat/completions"
UNAVAILABLE = (503, {"error": "container starting"})


# -- retry policy -----------------------------------------------------------------------------


def test_503_is_retried_until_the_answer_comes(scripted: type[ScriptedServer]) -> None:
    server = scripted({CHAT: [UNAVAILABLE, UNAVAILABLE, (200, completion('{"a": 7}'))]})
    client = Client(server.url, model="m", retry=FAST_RETRY)
    assert client.generate("hi", SCHEMA) == {"a": 7}
    assert server.count(CHAT) == 3
    assert client.stats.retries == 2


def test_retries_are_bounded_in_attempts(scripted: type[ScriptedServer]) -> None:
    server = scripted({CHAT: [UNAVAILABLE]})
    with pytest.raises(ServiceUnavailable, match="gave up after 3 attempts"):
        Client(server.url, model="m", retry=FAST_RETRY).generate("hi", SCHEMA)
    assert server.count(CHAT) == 3


def test_retries_are_bounded_in_time(scripted: type[ScriptedServer]) -> None:
    server = scripted({CHAT: [UNAVAILABLE]})
    policy = RetryPolicy(
        max_attempts=1000, initial_backoff_s=0.2, max_backoff_s=0.2, max_total_s=1.0
    )
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable):
        Client(server.url, model="m", retry=policy).generate("hi", SCHEMA)
    assert time.monotonic() - started < 10.0  # 1000 attempts would take minutes
    assert 2 <= server.count(CHAT) <= 11  # waits of 0.1-0.2 s fit about 5-10 in one second


EXAMPLE_480B = Path(__file__).resolve().parent.parent / "examples" / "qwen3-coder-480b.yaml"


def test_a_cold_start_is_waited_out_however_many_503s_it_takes(
    scripted: type[ScriptedServer],
) -> None:
    """A scale-to-zero environment: 503s past max_attempts are retried (within the plan's
    start-up time); a 429 keeps the short bounds."""
    resolved = load_spec(EXAMPLE_480B).resolve("staging")
    server = scripted({CHAT: [UNAVAILABLE] * 5 + [(200, completion('{"a": 7}'))]})
    client = Client.for_deployment(resolved, url=server.url, retry=FAST_RETRY)
    assert client.retry.cold_start_s == plan(resolved).startup_timeout_s == 1680
    assert client.generate("hi", SCHEMA) == {"a": 7}
    assert server.count(CHAT) == 6 > FAST_RETRY.max_attempts
    overloaded = scripted({CHAT: [(429, {"error": "too many"})] * 5 + [(200, completion("{}"))]})
    busy = Client.for_deployment(resolved, url=overloaded.url, retry=FAST_RETRY)
    with pytest.raises(Overloaded, match="gave up after 3 attempts"):
        busy.generate("hi", SCHEMA)
    assert overloaded.count(CHAT) == 3


def test_a_caller_who_will_not_wait_for_the_cold_start_is_told_at_once(
    scripted: type[ScriptedServer],
) -> None:
    resolved = load_spec(EXAMPLE_480B).resolve("staging")
    server = scripted({CHAT: [UNAVAILABLE]})
    with pytest.raises(
        ClientError,
        match=r"up to 1,680 s .* longer than the 60 s .*"
        r"runtime.min_containers: 1 for the staging",
    ):
        Client.for_deployment(resolved, url=server.url, cold_start_patience_s=60)
    assert server.requests == []
    patient = Client.for_deployment(resolved, url=server.url, cold_start_patience_s=1680)
    assert patient.retry.cold_start_s == 1680


def test_an_always_warm_environment_keeps_the_short_retry_window(
    scripted: type[ScriptedServer],
) -> None:
    data = load_spec(EXAMPLE_480B).resolve("staging").model_dump()
    data["runtime"]["min_containers"] = 1
    data["budget"]["max_monthly_always_on_usd"] = 25_000
    resolved = ResolvedDeployment.model_validate(data)
    server = scripted({CHAT: [UNAVAILABLE]})
    client = Client.for_deployment(
        resolved, url=server.url, retry=FAST_RETRY, cold_start_patience_s=1
    )
    assert client.retry.cold_start_s == 0
    with pytest.raises(ServiceUnavailable, match="gave up after 3 attempts"):
        client.generate("hi", SCHEMA)
    assert server.count(CHAT) == 3


def test_429_honours_retry_after_then_reports_overload(scripted: type[ScriptedServer]) -> None:
    server = scripted({CHAT: [(429, {"error": "too many"}, {"Retry-After": "0.3"})]})
    policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.01, max_backoff_s=5.0)
    started = time.monotonic()
    with pytest.raises(Overloaded, match="max_concurrent_requests"):
        Client(server.url, model="m", retry=policy).generate("hi", SCHEMA)
    assert time.monotonic() - started >= 0.6  # two waits of Retry-After, not 2 x 10 ms
    assert server.count(CHAT) == 3


def test_other_server_errors_are_not_retried_by_anyone(scripted: type[ScriptedServer]) -> None:
    """The SDK would retry a 500 twice by default; its retries are off, ours skip 500."""
    server = scripted({CHAT: [(500, {"error": "boom"})]})
    with pytest.raises(ServerError, match="500"):
        Client(server.url, model="m", retry=FAST_RETRY).generate("hi", SCHEMA)
    assert server.count(CHAT) == 1


def test_a_server_that_drops_the_connection_mid_request(scripted: type[ScriptedServer]) -> None:
    server = scripted({CHAT: ["close"]})
    with pytest.raises(ServiceUnavailable, match="could not reach") as info:
        Client(server.url, model="m", retry=FAST_RETRY).generate("hi", SCHEMA)
    assert "gave up after 3 attempts" in str(info.value)
    assert server.count(CHAT) == 3


def test_a_stream_cut_after_the_first_chunk_is_not_retried(
    scripted: type[ScriptedServer],
) -> None:
    server = scripted({CHAT: [("stream-then-close", '{"a": ')]})
    stream = Client(server.url, model="m", retry=FAST_RETRY).stream_generate("hi", SCHEMA)
    chunks: list[str] = []
    with pytest.raises(ServiceUnavailable, match="mid-answer"):
        for chunk in stream:
            chunks.append(chunk)
    assert chunks == ['{"a": ']  # what arrived was handed out, and nothing was repeated
    assert server.count(CHAT) == 1
    assert server.requests[0][1][CLIENT_VALIDATES_HEADER] == "1"  # lets the guard stream it
    assert stream.answer is None


# -- answers that must never be returned as results -------------------------------------------


@pytest.mark.parametrize(
    ("content", "finish_reason", "error"),
    [
        ('{"a": 1', "length", IncompleteAnswer),
        ('{"a": "x\u0001"}', "stop", InvalidJson),  # a raw control character: strict JSON says no
        ('{"a": "seven"}', "stop", SchemaViolation),
        ('{"a": 1, "b": 2}', "stop", SchemaViolation),
        ('{"a": NaN}', "stop", InvalidJson),  # Python's json.loads would accept it
        ('{"a": 1, "a": 2}', "stop", InvalidJson),  # duplicate keys: parsers disagree
        ('{"a": 1}', "abort", IncompleteAnswer),  # only "stop" is a complete answer
    ],
)
def test_bad_answers_raise_their_own_error(
    scripted: type[ScriptedServer],
    content: str,
    finish_reason: str,
    error: type[ClientError],
) -> None:
    server = scripted({CHAT: [(200, completion(content, finish_reason))]})
    with pytest.raises(error):
        Client(server.url, model="m").generate("hi", SCHEMA)


@pytest.mark.parametrize(
    ("problem", "error"),
    [
        ("the answer is not valid JSON (Invalid control character at: line 1)", InvalidJson),
        ("the answer breaks its schema at $.a: 'x' is not of type 'integer'", SchemaViolation),
    ],
)
def test_an_answer_withheld_by_the_guard_keeps_its_kind(
    scripted: type[ScriptedServer],
    problem: str,
    error: type[ClientError],
) -> None:
    body = {
        "error": {
            "message": f"the model's answer ... was withheld (choice 0: {problem})",
            "type": GUARD_ERROR_TYPE,
            "param": None,
            "code": 502,
        }
    }
    server = scripted({CHAT: [(502, body)]})
    with pytest.raises(error, match="withheld"):
        Client(server.url, model="m", retry=FAST_RETRY).generate("hi", SCHEMA)
    assert server.count(CHAT) == 1


def test_the_guard_and_the_client_agree_on_their_wire_names() -> None:
    from liftdeploy.runtime import guard

    assert guard.CLIENT_VALIDATES_HEADER == CLIENT_VALIDATES_HEADER.encode()
    assert guard.ERROR_TYPE == GUARD_ERROR_TYPE


def test_an_invalid_schema_is_refused_before_sending(scripted: type[ScriptedServer]) -> None:
    server = scripted({CHAT: [(200, completion('{"a": 1}'))]})
    with pytest.raises(UnsupportedSchema, match="not valid JSON Schema"):
        Client(server.url, model="m").generate("hi", {"type": "integr"})
    assert server.count(CHAT) == 0


def test_a_schema_the_backend_cannot_compile_is_refused_locally(
    scripted: type[ScriptedServer],
) -> None:
    pytest.importorskip("xgrammar", reason="the schemacheck extra is not installed")
    server = scripted({CHAT: [(200, completion('"x"'))]})
    schema = {"type": "string", "format": "not-a-format"}
    with pytest.raises(UnsupportedSchema, match="xgrammar"):
        Client(server.url, model="m", backend="xgrammar").generate("hi", schema)
    assert server.count(CHAT) == 0


# -- configuration from the environment -------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (*API_KEY_ENVS, PROXY_KEY_ENV, PROXY_SECRET_ENV, MODEL_ENV, ENDPOINT_URL_ENV):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_credentials_from_the_environment_are_sent(
    scripted: type[ScriptedServer],
    clean_env: pytest.MonkeyPatch,
) -> None:
    server = scripted({CHAT: [(200, completion('{"a": 1}'))], "/health": [(200, {})]})
    clean_env.setenv(ENDPOINT_URL_ENV, server.url)
    clean_env.setenv("LIFTDEPLOY_API_KEY", "k-123")
    clean_env.setenv(PROXY_KEY_ENV, "wk-abc")
    clean_env.setenv(PROXY_SECRET_ENV, "ws-def")
    clean_env.setenv(MODEL_ENV, "served-name")
    client = Client.from_env()
    assert client.generate("hi", SCHEMA) == {"a": 1}
    assert client.health().ok
    chat_headers = next(h for p, h in server.requests if p == CHAT)
    assert chat_headers["authorization"] == "Bearer k-123"
    assert (chat_headers["modal-key"], chat_headers["modal-secret"]) == ("wk-abc", "ws-def")
    health_headers = next(h for p, h in server.requests if p == "/health")
    assert health_headers["modal-key"] == "wk-abc"  # the proxy checks /health too


def test_half_a_proxy_token_is_an_error_naming_the_missing_part(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv(ENDPOINT_URL_ENV, "https://x.modal.run")
    clean_env.setenv(PROXY_KEY_ENV, "wk-abc")
    with pytest.raises(AuthError, match=PROXY_SECRET_ENV):
        Client.from_env()


def test_from_env_without_a_url_says_what_to_set(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ClientError, match=ENDPOINT_URL_ENV):
        Client.from_env()


# -- against the local twin (real vLLM) -------------------------------------------------------


@pytest.mark.twin
def test_generate_returns_a_schema_valid_object(twin: Any) -> None:
    client = Client(twin.url, model=twin.model_name, api_key=twin.api_key)
    answer = client.answer("Report status.", SMOKE_SCHEMA, max_tokens=128)
    jsonschema.validate(answer.value, SMOKE_SCHEMA)
    assert answer.finish_reason == "stop"
    assert answer.output_tokens and answer.output_tokens > 0


@pytest.mark.twin
def test_from_env_finds_the_model_and_streams(twin: Any, clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv(ENDPOINT_URL_ENV, twin.base_url)  # an OpenAI-style /v1 URL works too
    clean_env.setenv("VLLM_API_KEY", twin.api_key)
    client = Client.from_env()
    stream = client.stream_generate("Report status.", SMOKE_SCHEMA, max_tokens=128)
    chunks = list(stream)
    assert client.model == twin.model_name  # asked from /v1/models, not written anywhere
    assert stream.answer is not None
    assert "".join(chunks) == stream.answer.text
    assert len(chunks) > 1
    jsonschema.validate(stream.value, SMOKE_SCHEMA)
    assert stream.answer.first_token_s is not None
    assert stream.answer.first_token_s <= stream.answer.latency_s


@pytest.mark.twin
@pytest.mark.parametrize("api_key", ["wrong-key", None])
def test_wrong_or_missing_api_key_is_an_auth_error(twin: Any, api_key: str | None) -> None:
    client = Client(twin.url, model=twin.model_name, api_key=api_key, retry=FAST_RETRY)
    with pytest.raises(AuthError, match="LIFTDEPLOY_API_KEY"):
        client.generate("hi", SMOKE_SCHEMA)
    assert client.stats.retries == 0  # waiting does not fix credentials


@pytest.mark.twin
@pytest.mark.parametrize("streamed", [False, True])
def test_an_answer_cut_by_max_tokens_is_incomplete(twin: Any, streamed: bool) -> None:
    client = Client(twin.url, model=twin.model_name, api_key=twin.api_key)
    with pytest.raises(IncompleteAnswer, match="max_tokens"):
        if streamed:
            list(client.stream_generate("Report status.", SMOKE_SCHEMA, max_tokens=3))
        else:
            client.generate("Report status.", SMOKE_SCHEMA, max_tokens=3)
