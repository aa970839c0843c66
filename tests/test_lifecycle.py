"""A container's lifecycle on the real server: drain on stop, the request time limit, and no
server outliving the command that started it.

Each twin test here starts its own short-lived vLLM CPU server (the shared `twin` fixture must
keep running), so the tests stop, time out and kill servers freely. The drain test prints its
figures (run with `-s` to see them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest
from fastapi import Request  # module level: FastAPI resolves the routes' annotations here

from liftdeploy.planner.timeouts import (
    STARTUP_MARGIN_S,
    STOP_MARGIN_S,
    UNKNOWN_MODEL_STARTUP_S,
    exit_grace_period_s,
    healthy_within_s,
)
from liftdeploy.render.vllm_args import SHUTDOWN_MARGIN_S, server_args, server_env
from liftdeploy.runtime.lifecycle import DRAIN_FILE_ENV, REQUEST_TIMEOUT_ENV
from liftdeploy.spec.model import ResolvedDeployment
from liftdeploy.spec.specfile import load_spec
from liftdeploy.twin.local import TWIN_EXIT_GRACE_S, LocalTwin, cpu_twin, free_port

LIFTDEPLOY = [sys.executable, "-m", "liftdeploy.cli.main"]
EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yaml"))
PRIMARY = next(path for path in EXAMPLES if path.name == "qwen25-coder-32b.yaml")
API_KEY = "lifecycle-test-key"

LONG_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {"type": "string", "pattern": "^[a-z]{12}$"},
    "minItems": 60,
    "maxItems": 60,
}
"""A fixed, long answer (60 strings of 12 letters): seconds of decoding on the twin, always
complete inside LONG_MAX_TOKENS."""
LONG_MAX_TOKENS = 1500
VERY_LONG_SCHEMA = {**LONG_SCHEMA, "minItems": 110, "maxItems": 110}
"""About twice LONG_SCHEMA's decoding, still inside LONG_MAX_TOKENS (110 random 12-letter strings
are about 1,450 tokens of the tiny model's vocabulary): long enough to be mid-answer when a
signal comes ARRIVAL_S after sending."""
ARRIVAL_S = 1.0
ENDLESS_TOKENS = 1900
"""Tokens an endless request asks for with ignore_eos: nearly the tiny model's 2,048 context."""


def _with_runtime(resolved: ResolvedDeployment, **runtime: Any) -> ResolvedDeployment:
    data = resolved.model_dump()
    data["runtime"].update(runtime)
    return ResolvedDeployment.model_validate(data)


def _long_request(
    client: openai.OpenAI, model: str, n: int, schema: dict[str, Any] | None = None
) -> tuple[int, str, float]:
    """(HTTP status, answer or error, seconds) for one long constrained request."""
    started = time.monotonic()
    try:
        reply = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": f"List {n}."}],
            max_tokens=LONG_MAX_TOKENS,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "words", "schema": schema or LONG_SCHEMA},
            },
        )
    except openai.APIStatusError as error:
        return error.status_code, f"{error} {error.body}", time.monotonic() - started
    except openai.APIConnectionError as error:
        return 0, str(error), time.monotonic() - started
    choice = reply.choices[0]
    assert choice.finish_reason == "stop", choice.finish_reason
    return 200, choice.message.content or "", time.monotonic() - started


def _metric(url: str, name: str) -> float:
    """One vLLM gauge from /metrics, summed over its label sets."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def _wait_until(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.1)


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def _api_server_on(port: int) -> int | None:
    """The pid of the vLLM API server listening on `port`, found by its command line."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"vllm.entrypoints.openai.api_server" in argv and str(port).encode() in argv:
            return int(cmdline.parent.name)
    return None


def _health(url: str) -> int:
    """/health's status, 0 when nothing answers."""
    try:
        return httpx.get(f"{url}/health", timeout=30).status_code  # slow while decoding
    except httpx.TransportError:
        return 0


def _port_closed(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


# -- the spec and the argv (no server) --------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.stem)
def test_vllm_drains_within_the_grace_period_the_plan_sizes(example: Path) -> None:
    for env in load_spec(example).environments:
        resolved = load_spec(example).resolve(env)
        grace = exit_grace_period_s(resolved)
        # A request that began just before the stop may run to its limit, within Modal's cap.
        limit = resolved.runtime.request_timeout_s
        assert grace == min(limit + STOP_MARGIN_S, 3600) and grace >= min(limit, 3600)
        argv = server_args(resolved)
        assert argv[argv.index("--shutdown-timeout") + 1] == str(grace - SHUTDOWN_MARGIN_S)
        assert server_env(resolved)[REQUEST_TIMEOUT_ENV] == str(resolved.runtime.request_timeout_s)
        explicit = _with_runtime(resolved, exit_grace_period_s=900)
        assert exit_grace_period_s(explicit) == 900
        short = _with_runtime(resolved, request_timeout_s=45)
        assert exit_grace_period_s(short) == 45 + STOP_MARGIN_S, "no request outlives its limit"


def startup_timeout_s(resolved: ResolvedDeployment) -> int:
    """The startup timeout the plan settles (the unknown model's default without a plan)."""
    from liftdeploy.planner.report import planned_lifecycle

    return planned_lifecycle(resolved).startup_timeout_s


def test_startup_timeout_is_sized_from_the_weights_and_compile() -> None:
    base = load_spec(PRIMARY).resolve()  # 32B bf16 on one GPU
    sized = startup_timeout_s(base)
    eager = _with_runtime(base)  # same weights, no compile
    eager = ResolvedDeployment.model_validate(
        {**eager.model_dump(), "engine": {**eager.engine.model_dump(), "enforce_eager": True}}
    )
    big = load_spec(next(p for p in EXAMPLES if "480b" in p.name)).resolve()
    assert startup_timeout_s(eager) < sized < startup_timeout_s(big), "more to load, longer"
    assert sized >= 10 * 60, "a 65 GB load and a compile take minutes, not Modal's 30 s"
    assert sized % 60 == 0
    assert startup_timeout_s(_with_runtime(base, startup_timeout_s=42)) == 42
    unknown = ResolvedDeployment.model_validate(
        {**base.model_dump(), "model": {**base.model.model_dump(), "id": "my-org/unknown"}}
    )
    assert startup_timeout_s(unknown) == UNKNOWN_MODEL_STARTUP_S
    # The enter hook gives up before Modal does, so vLLM's last lines get reported.
    assert healthy_within_s(sized) == sized - STARTUP_MARGIN_S
    assert healthy_within_s(60) == 30


def test_plan_shows_the_lifecycle_figures() -> None:
    from liftdeploy.planner.report import format_plan, plan

    resolved = load_spec(PRIMARY).resolve()
    report = plan(resolved)
    figures = report.to_dict()["lifecycle_s"]
    assert figures == {
        "startup_timeout": startup_timeout_s(resolved),
        "healthy_within": healthy_within_s(startup_timeout_s(resolved)),
        "exit_grace_period": exit_grace_period_s(resolved),
        "request_timeout": resolved.runtime.request_timeout_s,
        # scales to zero: the client waits out a cold start
        "cold_start_wait": startup_timeout_s(resolved),
    }
    text = format_plan(report)
    assert f"drains for up to {figures['exit_grace_period']:,} s" in text
    assert f"starts within {figures['startup_timeout']:,} s" in text
    assert f"the client retries 503s for up to {figures['cold_start_wait']:,} s" in text


def test_the_twin_drains_for_its_cpu_grace_unless_the_spec_sets_one(tmp_path: Path) -> None:
    resolved = load_spec(PRIMARY).resolve()
    assert cpu_twin(resolved, tmp_path).runtime.exit_grace_period_s == TWIN_EXIT_GRACE_S
    chosen = _with_runtime(resolved, exit_grace_period_s=120)
    assert cpu_twin(chosen, tmp_path).runtime.exit_grace_period_s == 120


def _abortable_app(events: list[str]) -> Any:
    """A FastAPI app whose routes never finish on their own, wrapped in vLLM's own
    `with_cancellation` as vLLM's chat route is: `events` records how each ended."""
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse
    from vllm.entrypoints.serve.utils.api_utils import with_cancellation

    app = FastAPI()

    async def forever(what: str) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append(f"{what} aborted")
            raise

    @app.post("/v1/completions")
    @with_cancellation
    async def complete(raw_request: Request) -> dict[str, str]:
        await forever("completion")
        return {"never": "answered"}

    @app.post("/v1/stream")
    @with_cancellation
    async def stream(raw_request: Request) -> StreamingResponse:
        async def tokens() -> Any:
            yield b'data: {"token": 1}\n\n'
            await forever("stream")

        return StreamingResponse(tokens(), media_type="text/event-stream")

    return app


async def _through_the_limit(
    monkeypatch: pytest.MonkeyPatch, path: str, events: list[str]
) -> httpx.Response:
    from liftdeploy.runtime.lifecycle import RequestLifecycle

    monkeypatch.setenv(REQUEST_TIMEOUT_ENV, "0.5")
    app = RequestLifecycle(_abortable_app(events))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://service"
    ) as client:
        answer = await client.post(path, json={})
        events.append("answered")
        return answer


def test_a_request_past_the_limit_is_aborted_before_its_504(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[str] = []
    answer = asyncio.run(_through_the_limit(monkeypatch, "/v1/completions", events))
    assert answer.status_code == 504, answer.text
    assert answer.json()["error"]["type"] == "RequestTimeout"
    # vLLM's handler task saw the client leave and was cancelled (the engine's abort path)
    # before the caller was answered: cancelling the call alone leaves it running.
    assert events == ["completion aborted", "answered"]


def test_a_stream_past_the_limit_ends_with_an_error_event_then_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[str] = []
    answer = asyncio.run(_through_the_limit(monkeypatch, "/v1/stream", events))
    assert answer.status_code == 200  # sent with the first token
    chunks = [line.removeprefix("data: ") for line in answer.text.split("\n\n") if line]
    assert chunks[0] == '{"token": 1}' and chunks[-1] == "[DONE]", chunks
    assert json.loads(chunks[-2])["error"]["type"] == "RequestTimeout"
    assert events == ["stream aborted", "answered"]


async def _through_vllms_middleware_stack(
    monkeypatch: pytest.MonkeyPatch,
    drain_file: Path,
    requests: list[tuple[str, str, str]],
) -> list[httpx.Response]:
    """The primary example's production argv parsed by vLLM's own parser, its middlewares added
    by vLLM's own `init_entrypoints_middleware` (CORS first, then every --middleware in order)
    around routes that never finish, with the container's server_env."""
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.entrypoints.serve.middleware.register import init_entrypoints_middleware
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    resolved = load_spec(PRIMARY).resolve("production")
    args = make_arg_parser(FlexibleArgumentParser()).parse_args(server_args(resolved))
    assert args.middleware[-1] == "liftdeploy.runtime.lifecycle.RequestLifecycle"  # outermost
    for name, value in server_env(resolved).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(REQUEST_TIMEOUT_ENV, "0.5")
    monkeypatch.setenv(DRAIN_FILE_ENV, str(drain_file))
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    app = _abortable_app([])
    init_entrypoints_middleware(args, app, ())
    assert [m.cls.__name__ for m in app.user_middleware][0] == "RequestLifecycle"
    answers = []
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://service"
    ) as client:
        for method, origin, state in requests:
            if state == "draining":
                drain_file.touch()
            answers.append(
                await client.request(method, "/v1/completions", json={}, headers={"Origin": origin})
            )
    return answers


def test_liftdeploys_own_answers_carry_cors_headers_for_an_allowed_origin(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """vLLM's CORS layer is the innermost, so the 504 and the drain's 503 (answered outside it)
    need the lifecycle middleware's own CORS layer, which holds the spec's origins."""
    allowed, other = "https://lift-sys.vercel.app", "https://elsewhere.example"
    late, stranger, draining = asyncio.run(
        _through_vllms_middleware_stack(
            monkeypatch,
            tmp_path / "draining",
            [
                ("POST", allowed, "serving"),
                ("POST", other, "serving"),
                ("POST", allowed, "draining"),
            ],
        )
    )
    assert late.status_code == 504, late.text
    assert late.headers.get("access-control-allow-origin") == allowed
    assert stranger.status_code == 504
    assert "access-control-allow-origin" not in stranger.headers
    assert draining.status_code == 503, draining.text
    assert draining.headers.get("access-control-allow-origin") == allowed


# -- the running server ------------------------------------------------------------------------


@pytest.fixture
def own_twin(twin_supported: None, tiny_model_path: Path) -> Iterator[Any]:
    """Starts a private twin of the primary example with runtime changes; stops it after."""
    started: list[LocalTwin] = []

    def start(**runtime: Any) -> LocalTwin:
        resolved = _with_runtime(load_spec(PRIMARY).resolve(), **runtime)
        started.append(LocalTwin.start(resolved, tiny_model_path, free_port(), api_key=API_KEY))
        return started[-1]

    yield start
    for running in started:
        running.server.kill()


@pytest.mark.twin
def test_stop_lets_requests_in_flight_finish_refuses_new_ones_and_ends_the_group(
    own_twin: Any,
) -> None:
    twin = own_twin()
    client = openai.OpenAI(base_url=twin.base_url, api_key=API_KEY, max_retries=0, timeout=120)
    pgid = twin.server.process.pid
    answered_at: list[float] = []
    with ThreadPoolExecutor(max_workers=8) as pool:
        stopping = threading.Thread(target=twin.stop)  # what the app's @modal.exit hook calls
        in_flight, stop_started = _stop_with_requests_in_flight(
            client, twin.model_name, 8, stopping.start, pool
        )
        for future in in_flight:
            future.add_done_callback(lambda _: answered_at.append(time.monotonic()))
        _wait_until(lambda: _health(twin.url) == 503, 30, "/health says draining")
        late_started = time.monotonic()
        try:
            late = httpx.post(
                f"{twin.base_url}/chat/completions",
                timeout=10,
                headers={"Authorization": f"Bearer {API_KEY}"},
                json={
                    "model": twin.model_name,
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": "late"}],
                },
            )
            late_outcome = f"{late.status_code} {late.json()['error']['message']}"
            assert late.status_code == 503 and late.headers["retry-after"], late_outcome
        except httpx.ConnectError:
            late_outcome = "refused at connect"
        late_s = time.monotonic() - late_started
        results = [future.result() for future in in_flight]
        stopping.join(timeout=TWIN_EXIT_GRACE_S + 30)
    stopped_s = time.monotonic() - stop_started

    assert not stopping.is_alive(), "stop() did not return within the grace period"
    assert [status for status, _, _ in results] == [200] * 8, results
    assert min(answered_at) > stop_started, "an answer came before stop(): not in flight"
    for _, text, _ in results:
        jsonschema.validate(json.loads(text), VERY_LONG_SCHEMA)
    # The late request's 503 with Retry-After (asserted above) is the proof it was refused, not
    # held: no timing bound, as a decoding 2-core twin takes seconds to answer anything.
    assert twin.server.process.returncode is not None
    _wait_until(lambda: not _group_members(pgid), 10, "every process of the group ended")
    print(
        f"\ndrain: 8 requests in flight when stop() began, "
        f"{sum(s == 200 for s, _, _ in results)} completed with 200 and schema-valid JSON; "
        f"drained (last answer) {max(answered_at) - stop_started:.1f} s after stop() began, "
        f"which returned after {stopped_s:.1f} s (vLLM's engine teardown included); a request "
        f"during the drain: {late_outcome} in {late_s:.2f} s; no process of the group left"
    )


def _endless_request(client: openai.OpenAI, model: str) -> tuple[int, str, float]:
    """(HTTP status, error, seconds) for a request that decodes to the tiny model's whole
    context whatever it says (ignore_eos): tens of seconds on the twin, so it cannot end before
    a short limit or a second Ctrl-C, however loaded the machine is."""
    started = time.monotonic()
    try:
        client.completions.create(
            model=model, prompt="Count.", max_tokens=ENDLESS_TOKENS, extra_body={"ignore_eos": True}
        )
    except openai.APIStatusError as error:
        return error.status_code, f"{error} {error.body}", time.monotonic() - started
    except openai.APIConnectionError as error:
        return 0, str(error), time.monotonic() - started
    return 200, "", time.monotonic() - started


def _finished(url: str, reason: str) -> float:
    """vLLM's count of requests that ended for `reason` (stop, length)."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vllm:request_success_total{") and f'finished_reason="{reason}"' in line
    )


@pytest.mark.twin
def test_a_request_past_the_limit_gets_504_and_frees_its_slot(own_twin: Any) -> None:
    limit_s = 2
    twin = own_twin(
        request_timeout_s=limit_s, max_concurrent_requests=2, target_concurrent_requests=2
    )
    client = openai.OpenAI(base_url=twin.base_url, api_key=API_KEY, max_retries=0, timeout=60)
    length_before = _finished(twin.url, "length")
    status, message, took_s = _endless_request(client, twin.model_name)
    answered = time.monotonic()

    assert status == 504, (status, message)
    assert "request_timeout_s" in message and "RequestTimeout" in message
    assert limit_s <= took_s < limit_s + 15, f"504 after {took_s:.1f} s"
    # The engine aborted the request (it never ran to its length): its slot is free.
    _wait_until(
        lambda: _metric(twin.url, "vllm:num_requests_running") == 0,
        10,
        "the engine freed the request's slot",
    )
    freed_s = time.monotonic() - answered
    # Stopped mid-way: it never reached its length (vLLM counts no abort in request_success).
    assert _finished(twin.url, "length") == length_before, "the engine decoded on after the 504"
    decoded = _metric(twin.url, "vllm:generation_tokens_total")
    assert decoded < ENDLESS_TOKENS, f"{decoded:.0f} tokens decoded: not aborted"
    assert _metric(twin.url, "vllm:num_requests_running") <= 2  # --max-num-seqs
    short = client.completions.create(model=twin.model_name, max_tokens=16, prompt="hi")
    assert short.choices[0].finish_reason in ("stop", "length")
    print(
        f"\n504 after {took_s:.1f} s (limit {limit_s} s); vllm:num_requests_running read 0 "
        f"{freed_s:.2f} s after the 504; {decoded:.0f} of {ENDLESS_TOKENS} tokens decoded"
    )


# -- the twin dies with the command that started it ---------------------------------------------


@pytest.fixture
def serve(tiny_model_path: Path) -> Iterator[Any]:
    """Starts `liftdeploy serve --local` on a free port; whatever a test leaves running, the
    command and its server's process group, is killed after it (a failed test must not leave a
    server eating the CPU the next tests need)."""
    started: list[tuple[subprocess.Popen[str], int]] = []

    def start() -> tuple[subprocess.Popen[str], int]:
        port = free_port()
        process = subprocess.Popen(
            [
                *LIFTDEPLOY,
                "serve",
                str(PRIMARY),
                "--local",
                "--quiet",
                "--model",
                str(tiny_model_path),
                "--port",
                str(port),
                "--api-key-env",
                "LIFECYCLE_KEY",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "LIFECYCLE_KEY": API_KEY},
        )
        started.append((process, port))
        assert process.stdout is not None
        deadline = time.monotonic() + 600
        for line in process.stdout:
            if line.startswith("ready:"):
                return process, port
            if time.monotonic() > deadline:
                break
        raise AssertionError(f"serve never got ready: {process.stderr.read()[-3000:]}")

    yield start
    for process, port in started:
        api_server = _api_server_on(port)
        process.kill()
        if api_server is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(api_server, signal.SIGKILL)


def _stop_with_requests_in_flight(
    client: openai.OpenAI,
    model: str,
    n: int,
    stop: Any,
    pool: ThreadPoolExecutor,
) -> tuple[list[Future[tuple[int, str, float]]], float]:
    """Sends `n` very long requests, then calls `stop()` while they run; (the requests, when
    stop was called). On 2 cores a busy twin answers /metrics only between bursts of decoding, so
    the test cannot poll "n running"; it gives them time to arrive, and each request's end, after
    the stop, proves it was in flight (one arriving late would get 503, not 200)."""
    in_flight = [pool.submit(_long_request, client, model, i, VERY_LONG_SCHEMA) for i in range(n)]
    time.sleep(ARRIVAL_S)
    assert not any(future.done() for future in in_flight), "answered before the stop: too short"
    stopped_at = time.monotonic()
    stop()
    return in_flight, stopped_at


def _serve_client(port: int) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key=API_KEY, max_retries=0, timeout=300
    )


@pytest.mark.twin
def test_serve_local_drains_on_sigterm(twin_supported: None, serve: Any) -> None:
    process, port = serve()
    pgid = os.getpgid(_api_server_on(port) or 0)
    submitted = time.monotonic()
    with ThreadPoolExecutor(max_workers=3) as pool:
        in_flight, signalled = _stop_with_requests_in_flight(
            _serve_client(port),
            "qwen25-coder-32b",
            3,
            lambda: process.send_signal(signal.SIGTERM),
            pool,
        )
        results = [future.result() for future in in_flight]
    assert process.wait(timeout=TWIN_EXIT_GRACE_S + 30) == 0, process.stderr.read()[-3000:]
    assert [status for status, _, _ in results] == [200] * 3, results
    assert all(submitted + took > signalled for _, _, took in results), "done before the signal"
    assert "draining" in process.stderr.read()
    assert _port_closed(port) and not _group_members(pgid)


@pytest.mark.twin
def test_a_second_ctrl_c_stops_serve_at_once(twin_supported: None, serve: Any) -> None:
    process, port = serve()
    pgid = os.getpgid(_api_server_on(port) or 0)
    client = _serve_client(port)
    with ThreadPoolExecutor(max_workers=2) as pool:
        # Requests that decode for tens of seconds: a busy machine cannot finish them before
        # the second Ctrl-C (it once did with the schema-bound ones, and the test saw 200s).
        in_flight = [pool.submit(_endless_request, client, "qwen25-coder-32b") for _ in range(2)]
        time.sleep(ARRIVAL_S)
        early = [future.result() for future in in_flight if future.done()]
        assert not early, f"answered before the stop: {early}"
        process.send_signal(signal.SIGINT)
        assert process.stderr is not None  # serve says "draining" as it starts to drain
        assert any(line.startswith("draining") for line in process.stderr), "never drained"
        interrupted = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        stopped_s = time.monotonic() - interrupted
        statuses = [future.result()[0] for future in in_flight]
    assert stopped_s < 10, f"stopped {stopped_s:.1f} s after the second Ctrl-C"
    assert 200 not in statuses, "the second Ctrl-C did not cut the drain short"
    _wait_until(lambda: _port_closed(port) and not _group_members(pgid), 10, "server gone")


@pytest.mark.twin
@pytest.mark.parametrize("stop_signal", [signal.SIGHUP, signal.SIGKILL], ids=["SIGHUP", "SIGKILL"])
def test_serve_local_never_leaves_its_server_behind(
    twin_supported: None, serve: Any, stop_signal: signal.Signals
) -> None:
    # SIGHUP: the terminal was closed. SIGKILL: nothing of the command runs any more; only the
    # parent-death signal the server was started with can stop it.
    process, port = serve()
    api_server = _api_server_on(port)
    assert api_server is not None
    pgid = os.getpgid(api_server)
    process.send_signal(stop_signal)
    process.wait(timeout=TWIN_EXIT_GRACE_S + 30)
    _wait_until(
        lambda: _port_closed(port) and not _group_members(pgid),
        TWIN_EXIT_GRACE_S + 30,
        f"the server's process group gone after {stop_signal.name}",
    )


@pytest.mark.twin
def test_demo_stops_its_server_on_sigterm(twin_supported: None, tiny_model_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(  # as `timeout liftdeploy demo` ends it
        [*LIFTDEPLOY, "demo", "--port", str(port), "--model", str(tiny_model_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_until(
        lambda: _api_server_on(port) is not None or process.poll() is not None,
        300,
        "the demo started its server",
    )
    api_server = _api_server_on(port)
    assert api_server is not None, process.communicate()[1][-3000:]
    pgid = os.getpgid(api_server)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=TWIN_EXIT_GRACE_S + 30)
    _wait_until(
        lambda: _port_closed(port) and not _group_members(pgid),
        30,
        "the demo's server gone after SIGTERM",
    )
