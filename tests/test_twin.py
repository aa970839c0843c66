"""The local CPU twin: what it changes from production, and the real server's behaviour.

Tests marked `twin` talk to the one shared vLLM CPU server (the `twin` fixture in conftest.py)
through the `openai` SDK, liftdeploy's client or plain httpx, and check the answers with
`jsonschema`. Two tests start a short-lived second server (start-up failure, `serve --local`).
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from liftdeploy.errors import TwinError
from liftdeploy.render.vllm_args import server_args
from liftdeploy.spec.specfile import load_spec
from liftdeploy.twin.local import (
    TWIN_EXIT_GRACE_S,
    TWIN_HOST,
    TWIN_KVCACHE_GIB,
    TWIN_MEMORY_UTILIZATION,
    LocalTwin,
    cpu_twin,
    free_port,
    twin_env,
)
from liftdeploy.twin.tinymodel import TINY_MODEL_MAX_LEN

LIFTDEPLOY = [sys.executable, "-m", "liftdeploy.cli.main"]
EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yaml"))
PRIMARY = next(path for path in EXAMPLES if path.name == "qwen25-coder-32b.yaml")

_WORD = {"type": "string", "pattern": "^[a-z]{1,10}$"}
_POINT = {
    "type": "object",
    "properties": {
        "x": {"type": "integer", "minimum": 0, "maximum": 99},
        "y": {"type": "integer", "minimum": 0, "maximum": 99},
    },
    "required": ["x", "y"],
    "additionalProperties": False,
}
# Bounded shapes (patterns, enums, ranges, maxItems): with them every answer finishes well inside
# max_tokens, so an invalid answer is the grammar's fault, never a cut-off.
SCHEMAS: dict[str, dict[str, Any]] = {
    "flat object": {
        "type": "object",
        "properties": {
            "name": _WORD,
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "active": {"type": "boolean"},
        },
        "required": ["name", "age", "active"],
        "additionalProperties": False,
    },
    "array of integers": {
        "type": "array",
        "items": {"type": "integer", "minimum": -50, "maximum": 50},
        "minItems": 1,
        "maxItems": 6,
    },
    "enum property": {
        "type": "object",
        "properties": {"label": {"enum": ["positive", "negative", "neutral"]}},
        "required": ["label"],
        "additionalProperties": False,
    },
    "top-level enum": {"enum": ["red", "green", "blue"]},
    "nested objects": {
        "type": "object",
        "properties": {
            "user": {
                "type": "object",
                "properties": {
                    "id": {"type": "integer", "minimum": 1, "maximum": 999},
                    "name": _WORD,
                },
                "required": ["id", "name"],
                "additionalProperties": False,
            },
            "roles": {"type": "array", "items": {"enum": ["admin", "dev", "ops"]}, "maxItems": 3},
        },
        "required": ["user", "roles"],
        "additionalProperties": False,
    },
    "optional properties": {
        "type": "object",
        "properties": {
            "id": {"type": "integer", "minimum": 0, "maximum": 9},
            "note": _WORD,
            "flag": {"type": "boolean"},
        },
        "required": ["id"],
        "additionalProperties": False,
    },
    "array of objects": {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "op": {"enum": ["add", "sub"]},
                "arg": {"type": "integer", "minimum": 0, "maximum": 9},
            },
            "required": ["op", "arg"],
            "additionalProperties": False,
        },
        "minItems": 1,
        "maxItems": 4,
    },
    "anyOf with null": {
        "type": "object",
        "properties": {
            "value": {
                "anyOf": [
                    {"type": "integer", "minimum": 0, "maximum": 9},
                    {"type": "boolean"},
                    {"type": "null"},
                ]
            }
        },
        "required": ["value"],
        "additionalProperties": False,
    },
    "$defs and $ref": {
        "$defs": {"point": _POINT},
        "type": "object",
        "properties": {"start": {"$ref": "#/$defs/point"}, "end": {"$ref": "#/$defs/point"}},
        "required": ["start", "end"],
        "additionalProperties": False,
    },
    "const and IR": {
        "type": "object",
        "properties": {
            "kind": {"const": "function"},
            "name": {"type": "string", "pattern": "^[a-z_][a-z0-9_]{0,15}$"},
            "params": {
                "type": "array",
                "maxItems": 3,
                "items": {
                    "type": "object",
                    "properties": {"name": _WORD, "type": {"enum": ["int", "str", "bool"]}},
                    "required": ["name", "type"],
                    "additionalProperties": False,
                },
            },
            "returns": {"enum": ["int", "str", "bool", "none"]},
        },
        "required": ["kind", "name", "params", "returns"],
        "additionalProperties": False,
    },
}


def _openai(twin: LocalTwin, api_key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=twin.base_url, api_key=api_key or twin.api_key, max_retries=0)


def _constrained(
    client: openai.OpenAI,
    twin: LocalTwin,
    schema: dict[str, Any],
    prompt: str,
    max_tokens: int = 256,
) -> Any:
    return client.chat.completions.create(
        model=twin.model_name,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=max_tokens,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": True},
        },
    )


def _metrics(twin: LocalTwin) -> dict[str, float]:
    """Prometheus series summed over labels (histograms: only _count and _sum)."""
    totals: dict[str, float] = {}
    for line in httpx.get(f"{twin.url}/metrics", timeout=10).text.splitlines():
        match = re.match(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if match and not match.group(1).endswith("_bucket"):
            totals[match.group(1)] = totals.get(match.group(1), 0.0) + float(match.group(3))
    return totals


def _auth(twin: LocalTwin) -> dict[str, str]:
    return {"Authorization": f"Bearer {twin.api_key}"}


# -- what the twin changes (no server) --------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.stem)
def test_cpu_twin_changes_only_what_the_cpu_forces(example: Path, tmp_path: Path) -> None:
    resolved = load_spec(example).resolve()
    twin = cpu_twin(resolved, tmp_path)

    assert twin.model.id == str(tmp_path.resolve())
    assert twin.model.name_for_clients == resolved.model.name_for_clients  # clients keep the name
    assert twin.model.max_model_len == min(resolved.model.max_model_len, TINY_MODEL_MAX_LEN)
    assert (twin.gpu.tp, twin.gpu.pipeline_parallel_size, twin.gpu.count) == (1, 1, 1)
    assert not twin.gpu.expert_parallel and twin.model.quantization is None
    assert twin.engine.enforce_eager
    assert twin.gpu.memory_utilization == TWIN_MEMORY_UTILIZATION
    # Everything a client or the grammar sees is production's.
    for section in ("cors", "auth", "storage", "workload"):
        assert getattr(twin, section) == getattr(resolved, section), section
    # ... but the drain: the planner's default grace period assumes GPU decode speed.
    assert twin.runtime.model_dump(exclude={"exit_grace_period_s"}) == resolved.runtime.model_dump(
        exclude={"exit_grace_period_s"}
    )
    assert twin.runtime.exit_grace_period_s == (
        resolved.runtime.exit_grace_period_s or TWIN_EXIT_GRACE_S
    )
    assert twin.engine.model_dump(exclude={"enforce_eager"}) == resolved.engine.model_dump(
        exclude={"enforce_eager"}
    )
    assert (twin.name, twin.environment, twin.production) == (
        resolved.name,
        resolved.environment,
        resolved.production,
    )


def test_the_twin_sends_no_traces_off_the_machine(tmp_path: Path) -> None:
    """Production's spec names an OTLP collector; the twin serves it on loopback only."""
    production = load_spec(PRIMARY).resolve("production")
    assert production.observability.otlp_traces_endpoint  # the example turns traces on
    twin = cpu_twin(production, tmp_path)
    assert "--otlp-traces-endpoint" not in server_args(twin, port=1234, host=TWIN_HOST)
    assert "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" not in twin_env(twin)


def test_twin_env_carries_the_key_and_cpu_cache_never_the_argv(tmp_path: Path) -> None:
    twin = cpu_twin(load_spec(PRIMARY).resolve(), tmp_path)
    env = twin_env(twin, api_key="k-123")
    assert env["VLLM_API_KEY"] == "k-123"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == str(TWIN_KVCACHE_GIB)
    assert env["HF_HUB_OFFLINE"] == "1"  # a local model: the Hub is never asked
    assert "k-123" not in " ".join(server_args(twin, port=1234, host=TWIN_HOST))
    # Without a key auth is off, even when the caller's shell exports one for its client.
    assert twin_env(twin)["VLLM_API_KEY"] == ""


def test_twin_argv_passes_vllms_own_parser(tmp_path: Path, twin_supported: None) -> None:
    # vLLM's parser exits with status 2 on a flag it does not know; one interpreter checks all.
    check = (
        "import json, sys; from vllm.utils.argparse_utils import FlexibleArgumentParser; "
        "from vllm.entrypoints.launchers.cli_args import make_arg_parser; "
        "[make_arg_parser(FlexibleArgumentParser()).parse_args(a) for a in json.load(sys.stdin)]"
    )
    argvs = [
        server_args(cpu_twin(load_spec(path).resolve(), tmp_path), port=1, host=TWIN_HOST)
        for path in EXAMPLES
    ]
    result = subprocess.run(
        [sys.executable, "-c", check],
        input=json.dumps(argvs),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_serve_needs_local_and_an_existing_model(tmp_path: Path) -> None:
    spec = str(PRIMARY)
    no_local = subprocess.run([*LIFTDEPLOY, "serve", spec], capture_output=True, text=True)
    assert no_local.returncode == 1 and "--local" in no_local.stderr

    missing = tmp_path / "no-model"
    no_model = subprocess.run(
        [*LIFTDEPLOY, "serve", spec, "--local", "--model", str(missing)],
        capture_output=True,
        text=True,
    )
    if no_model.returncode == 1 and "vllm-cpu" in no_model.stderr:
        pytest.skip(no_model.stderr.strip())
    assert no_model.returncode == 1
    assert f"liftdeploy tiny-model {missing}" in no_model.stderr
    assert "Traceback" not in no_model.stderr

    env = {k: v for k, v in os.environ.items() if k != "LIFTDEPLOY_TEST_UNSET_KEY"}
    no_key = subprocess.run(
        [
            *LIFTDEPLOY,
            "serve",
            spec,
            "--local",
            "--model",
            str(missing),
            "--api-key-env",
            "LIFTDEPLOY_TEST_UNSET_KEY",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert no_key.returncode == 1 and "LIFTDEPLOY_TEST_UNSET_KEY" in no_key.stderr


def test_where_vllm_cpu_cannot_run_serve_and_demo_say_so_and_the_rest_works(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from liftdeploy.cli.main import main
    from liftdeploy.twin import support

    monkeypatch.setattr("platform.system", lambda: "Darwin")  # as on an Apple-silicon Mac
    monkeypatch.setattr("platform.machine", lambda: "arm64")
    # A fresh decision for this "machine", not the one this process cached for the real one.
    monkeypatch.setattr(support, "twin_support", functools.cache(support.twin_support.__wrapped__))
    assert main(["serve", str(PRIMARY), "--local"]) == 1
    assert "no macOS wheel" in capsys.readouterr().err

    assert main(["demo"]) == 1
    out, err = capsys.readouterr()
    assert "qwen3-coder-480b.yaml" in out and "app.py" in out  # planned and rendered first
    assert "error: the local twin needs vLLM's CPU build" in err and "Traceback" not in err
    assert "everything else in liftdeploy works here" in err


def test_tiny_model_command_builds_a_loadable_model(tmp_path: Path) -> None:
    result = subprocess.run(
        [*LIFTDEPLOY, "tiny-model", str(tmp_path / "tiny")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "tiny" / "config.json").read_text())
    assert config["head_dim"] == 64  # vLLM's CPU attention rejects 16
    assert config["max_position_embeddings"] == TINY_MODEL_MAX_LEN
    assert (tmp_path / "tiny" / "tokenizer.json").is_file()


# -- the running twin ---------------------------------------------------------------------------


@pytest.mark.twin
def test_twin_runs_the_apps_argv_with_the_specs_backend(twin: LocalTwin) -> None:
    expected = server_args(twin.deployment, port=twin.server.port, host=TWIN_HOST)
    assert twin.server.command[-len(expected) :] == expected
    spec = load_spec(PRIMARY).resolve()
    assert twin.deployment.engine.structured_output_backend == (
        spec.engine.structured_output_backend
    )
    models = httpx.get(f"{twin.base_url}/models", headers=_auth(twin), timeout=10).json()
    assert [m["id"] for m in models["data"]] == [twin.model_name]
    assert models["data"][0]["max_model_len"] == twin.deployment.model.max_model_len


@pytest.mark.twin
@pytest.mark.parametrize("name", list(SCHEMAS))
def test_constrained_answers_validate_and_carry_no_free_whitespace(
    twin: LocalTwin, name: str
) -> None:
    schema = SCHEMAS[name]
    client = _openai(twin)
    prompts = [f"Answer with {name}, variant {i}." for i in range(3)]
    with ThreadPoolExecutor(len(prompts)) as pool:
        responses = list(pool.map(lambda p: _constrained(client, twin, schema, p), prompts))
    for response in responses:
        choice = response.choices[0]
        assert choice.finish_reason == "stop", choice
        text = choice.message.content
        jsonschema.validate(json.loads(text), schema)
        # disable_any_whitespace: none of these schemas allows a space in a value, so any
        # whitespace would be free whitespace between tokens (the runaway it prevents).
        assert not re.search(r"\s", text), text


@pytest.mark.twin
def test_whitespace_runaway_is_disabled_in_the_server_config(twin: LocalTwin) -> None:
    flag = twin.server.command.index("--structured-outputs-config")
    config = json.loads(twin.server.command[flag + 1])
    assert config["disable_any_whitespace"] is True
    assert config["backend"] == twin.deployment.engine.structured_output_backend


@pytest.mark.twin
def test_answer_cut_off_by_max_tokens_is_incomplete_never_a_result(twin: LocalTwin) -> None:
    from liftdeploy.client.api import Client, IncompleteAnswer

    schema = SCHEMAS["const and IR"]
    raw = _constrained(_openai(twin), twin, schema, "Describe a function.", max_tokens=5)
    assert raw.choices[0].finish_reason == "length"
    with pytest.raises(json.JSONDecodeError):
        json.loads(raw.choices[0].message.content)

    with Client(twin.url, model=twin.model_name, api_key=twin.api_key) as client:
        with pytest.raises(IncompleteAnswer, match="cut off"):
            client.generate("Describe a function.", schema, max_tokens=5)
        # The same request with room to finish is a result.
        assert client.generate("Describe a function.", schema, max_tokens=256)["kind"] == (
            "function"
        )


@pytest.mark.twin
def test_sixteen_concurrent_requests_succeed_and_are_batched(twin: LocalTwin) -> None:
    schema = SCHEMAS["nested objects"]
    client = _openai(twin)
    before = _metrics(twin)
    with ThreadPoolExecutor(16) as pool:
        responses = list(
            pool.map(lambda i: _constrained(client, twin, schema, f"User number {i}."), range(16))
        )
    for response in responses:
        assert response.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(response.choices[0].message.content), schema)
    produced = sum(r.usage.completion_tokens for r in responses)

    # vLLM's own counters: every engine step produces at most one token per running request,
    # so more tokens than steps means requests shared steps (they were batched).
    deadline = time.monotonic() + 10
    while True:
        after = _metrics(twin)
        tokens = after["vllm:generation_tokens_total"] - before["vllm:generation_tokens_total"]
        if tokens >= produced or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    steps = after["vllm:iteration_tokens_total_count"] - before["vllm:iteration_tokens_total_count"]
    assert tokens == produced
    assert 0 < steps < tokens, f"{tokens} tokens in {steps} engine steps: not batched"
    assert after["vllm:request_success_total"] - before["vllm:request_success_total"] == 16


@pytest.mark.twin
def test_auth_rejects_missing_and_wrong_keys(twin: LocalTwin) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-key"}):
        # /invocations and /tokenize serve the model outside /v1, where vLLM's own key check
        # does not reach; liftdeploy's gate covers them, and answers before the guard's 400s.
        for method, path in (
            ("GET", "/v1/models"),
            ("POST", "/v1/chat/completions"),
            ("POST", "/invocations"),
            ("POST", "/tokenize"),
        ):
            response = httpx.request(
                method,
                twin.url + path,
                headers=headers,
                timeout=10,
                json={"model": twin.model_name, "messages": []},
            )
            assert response.status_code == 401, (headers, path, response.text)
    streamed = _chat(
        twin,
        stream=True,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": SCHEMAS["top-level enum"]},
        },
    )
    assert (
        httpx.post(twin.url + "/v1/chat/completions", json=streamed, timeout=10).status_code == 401
    )  # not the guard's 400 for streams
    assert httpx.get(twin.url + "/health", timeout=10).status_code == 200  # probes stay open
    with pytest.raises(openai.AuthenticationError):
        _constrained(_openai(twin, api_key="wrong-key"), twin, SCHEMAS["top-level enum"], "x")
    assert httpx.get(f"{twin.base_url}/models", headers=_auth(twin), timeout=10).status_code == 200
    answer = _constrained(_openai(twin), twin, SCHEMAS["top-level enum"], "Pick a colour.")
    assert json.loads(answer.choices[0].message.content) in ("red", "green", "blue")


def _chat(twin: LocalTwin, **fields: Any) -> dict[str, Any]:
    return {
        "model": twin.model_name,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 8,
        **fields,
    }


BAD_REQUESTS: dict[str, tuple[Any, tuple[str, ...]]] = {
    # name: (how to build the request from the twin, words one of which the message must hold)
    "malformed JSON body": (
        lambda t: {"content": b'{"model": "x", "messages": [', "ctype": "application/json"},
        ("json",),
    ),
    "invalid JSON schema": (
        lambda t: {
            "json": _chat(
                t,
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "bad", "schema": {"type": "objekt"}},
                },
            )
        },
        ("schema", "objekt"),
    ),
    "prompt longer than max_model_len": (
        lambda t: {"json": _chat(t, messages=[{"role": "user", "content": "hello world " * 3000}])},
        ("context length", "max_model_len"),
    ),
    "max_tokens too large": (lambda t: {"json": _chat(t, max_tokens=100_000)}, ("max_tokens",)),
    "unknown model name": (lambda t: {"json": _chat(t, model="no-such-model")}, ("no-such-model",)),
    "wrong content type": (
        lambda t: {"content": json.dumps(_chat(t)).encode(), "ctype": "text/plain"},
        ("application/json", "media type"),
    ),
    "huge body": (
        lambda t: {"json": _chat(t, messages=[{"role": "user", "content": "a" * 20_000_000}])},
        ("context length", "too large", "limit"),
    ),
}


@pytest.mark.twin
@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_gets_a_useful_4xx_and_the_server_stays_healthy(
    twin: LocalTwin, case: str
) -> None:
    build, words = BAD_REQUESTS[case]
    request = build(twin)
    headers = _auth(twin)
    if "ctype" in request:
        headers["Content-Type"] = request.pop("ctype")
    response = httpx.post(
        f"{twin.base_url}/chat/completions", headers=headers, timeout=60, **request
    )
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
    body = response.json()
    message = body["error"]["message"] if isinstance(body["error"], dict) else body["error"]
    assert any(word in message.lower() for word in words), message
    assert httpx.get(f"{twin.url}/health", timeout=10).status_code == 200


@pytest.mark.twin
def test_logs_are_json_lines_with_timestamps(twin: LocalTwin) -> None:
    httpx.get(f"{twin.url}/health", timeout=10)  # at least one request log line
    assert twin.log_path is not None
    deadline = time.monotonic() + 5
    while "/health" not in twin.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    records = [json.loads(line) for line in twin.log_path.read_text().splitlines()]
    assert len(records) > 20
    for record in records:
        datetime.strptime(record["timestamp"], "%Y-%m-%dT%H:%M:%S%z")
        assert record["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        assert isinstance(record["message"], str)
    names = {record["name"] for record in records}
    assert any(name.startswith("vllm") for name in names)
    assert any(r["name"] == "uvicorn.access" and "/health" in r["message"] for r in records)
    assert twin.server.log_tail and not twin.server.log_tail[-1].startswith("{")  # readable


@pytest.mark.twin
def test_metrics_serve_vllm_prometheus_series(twin: LocalTwin) -> None:
    response = httpx.get(f"{twin.url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for series in (
        "vllm:num_requests_running",
        "vllm:generation_tokens_total",
        "vllm:e2e_request_latency_seconds",
        "vllm:kv_cache_usage_perc",
    ):
        assert f"# TYPE {series}" in text or f"# HELP {series}" in text, series
    assert f'model_name="{twin.model_name}"' in text


@pytest.mark.twin
def test_a_busy_port_is_refused_before_starting(twin: LocalTwin, tiny_model_path: Path) -> None:
    # Otherwise the running server's /health would pass for the new one's.
    with pytest.raises(TwinError, match=f"port {twin.server.port} .* already in use"):
        LocalTwin.start(twin.deployment, tiny_model_path, twin.server.port)


@pytest.mark.twin
def test_server_that_dies_at_start_is_reported_at_once(
    twin_supported: None, tmp_path: Path
) -> None:
    resolved = load_spec(PRIMARY).resolve()
    missing = tmp_path / "no-such-model"
    started = time.monotonic()
    with pytest.raises(TwinError) as caught:
        LocalTwin.start(resolved, missing, free_port(), timeout_s=600)
    elapsed_s = time.monotonic() - started
    message = str(caught.value)
    assert re.search(r"exited with status [1-9]\d* before it was healthy", message), message
    assert "Last log lines" in message and str(missing) in message
    assert elapsed_s < 300, f"reported after {elapsed_s:.0f} s, as if waiting out the timeout"


def _wait_for_line(process: subprocess.Popen[str], prefix: str, timeout_s: float) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith(prefix):
            return line
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError(f"no {prefix!r} line; stderr: {process.stderr.read()[-3000:]}")


@pytest.mark.twin
def test_serve_local_prints_url_and_model_and_stops_on_ctrl_c(
    twin_supported: None, tiny_model_path: Path
) -> None:
    port = free_port()
    env = {**os.environ, "LIFTDEPLOY_TEST_KEY": "serve-test-key"}
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
            "LIFTDEPLOY_TEST_KEY",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    ready = _wait_for_line(process, "ready:", timeout_s=600)
    assert f"http://127.0.0.1:{port}" in ready and "qwen25-coder-32b" in ready
    assert "serve-test-key" not in " ".join(process.args)  # the key never rides on the argv
    models = httpx.get(
        f"http://127.0.0.1:{port}/v1/models",
        timeout=10,
        headers={"Authorization": "Bearer serve-test-key"},
    )
    assert models.json()["data"][0]["id"] == "qwen25-coder-32b"

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0, process.stderr.read()[-3000:]
    with socket.socket() as probe:  # nothing listens any more: the server went with it
        assert probe.connect_ex(("127.0.0.1", port)) != 0
