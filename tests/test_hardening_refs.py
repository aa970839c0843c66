"""No schema makes the guard, the client or schema-check fetch anything (issue 23, item 1).

A real loopback HTTP listener records every connection made to it; schemas point their
references at it in every position a reference can take. The guard is driven as an ASGI app
in front of a downstream app that records whether generation was reached and answers one
fixed completion (what vLLM would send back).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from liftdeploy.cli.main import main
from liftdeploy.client.api import Client, RetryPolicy, UnsupportedSchema
from liftdeploy.client.schemacheck import check_schema
from liftdeploy.runtime.guard import StructuredOutputGuard, judge_answer


class ConnectionRecorder:
    """A loopback HTTP server that records each TCP connection and serves a JSON schema."""

    def __init__(self) -> None:
        self.connections: list[tuple[str, int]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                body = b'{"type": "string"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

        class Server(ThreadingHTTPServer):
            def verify_request(self, request: Any, client_address: Any) -> bool:
                owner.connections.append(client_address)
                return True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def recorder() -> Iterator[ConnectionRecorder]:
    listener = ConnectionRecorder()
    yield listener
    listener.close()


def remote_ref_schemas(url: str) -> dict[str, Any]:
    """A schema per position a non-local reference can take."""
    ref = {"$ref": f"{url}/x.json"}
    return {
        "root": ref,
        "property": {"type": "object", "properties": {"a": ref}},
        "items": {"type": "array", "items": ref},
        "prefixItems": {"type": "array", "prefixItems": [{"type": "string"}, ref]},
        "allOf": {"allOf": [{"type": "object"}, ref]},
        "anyOf nested": {"properties": {"a": {"anyOf": [{"type": "null"}, {"items": ref}]}}},
        "additionalProperties": {"type": "object", "additionalProperties": ref},
        "$defs, used": {"$defs": {"x": ref}, "properties": {"a": {"$ref": "#/$defs/x"}}},
        "$defs, unused": {"$defs": {"x": {"properties": {"b": ref}}}, "type": "object"},
        "pointer into a non-keyword": {"x": {"y": ref}, "$ref": "#/x/y"},
        "fragment": {"properties": {"a": {"$ref": f"{url}/x.json#/$defs/a"}}},
        "$dynamicRef": {"properties": {"a": {"$dynamicRef": f"{url}/x.json#meta"}}},
        "relative under a remote $id": {
            "$id": f"{url}/base/",
            "properties": {"a": {"$ref": "x.json"}},
        },
        "draft-07 definitions": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "definitions": {"x": ref},
            "items": {"$ref": "#/definitions/x"},
        },
    }


LOCAL_REF_SCHEMAS = {
    "$defs": {
        "$defs": {"n": {"type": "string"}},
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/n"}},
        "required": ["a"],
    },
    "recursive": {
        "type": "object",
        "properties": {"a": {"type": "string"}, "child": {"$ref": "#"}},
    },
    "embedded $id": {
        "$id": "https://example.com/root.json",
        "type": "object",
        "$defs": {"n": {"$id": "n.json", "type": "string"}},
        "properties": {"a": {"$ref": "n.json"}},
    },
    "anchor": {
        "$defs": {"n": {"$anchor": "name", "type": "string"}},
        "type": "object",
        "properties": {"a": {"$ref": "#name"}},
    },
    "a URL as data": {
        "type": "object",
        "properties": {"a": {"type": "string"}},
        "default": {"$ref": "http://127.0.0.1:9/x.json"},
    },
}


def _through_guard(request: dict[str, Any]) -> tuple[int, dict[str, Any], bool]:
    """(status, JSON body, whether generation was reached) for one request to the guard."""
    reached = []
    answer = {
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": '{"a": "x"}'},
            }
        ]
    }

    async def downstream(scope: Any, receive: Any, send: Any) -> None:
        reached.append(json.loads((await receive())["body"]))
        body = json.dumps(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})

    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": json.dumps(request).encode(), "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
    }
    asyncio.run(StructuredOutputGuard(downstream)(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body), bool(reached)


def _chat(schema: Any) -> dict[str, Any]:
    return {
        "model": "m",
        "messages": [{"role": "user", "content": "JSON please"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
    }


def test_guard_refuses_remote_refs_in_every_position_before_generation(
    recorder: ConnectionRecorder,
) -> None:
    """Before: the request was generated and the guard fetched the reference to check it."""
    for position, schema in remote_ref_schemas(recorder.url).items():
        for request in (
            _chat(schema),
            {"model": "m", "prompt": "x", "structured_outputs": {"json": json.dumps(schema)}},
        ):
            status, body, generated = _through_guard(request)
            assert (status, generated) == (400, False), (position, body)
            message = body["error"]["message"]
            assert recorder.url in message and '"$defs"' in message, (position, message)
    assert recorder.connections == []


@pytest.mark.parametrize("name", LOCAL_REF_SCHEMAS)
def test_local_refs_still_reach_generation_and_validate(name: str) -> None:
    status, body, generated = _through_guard(_chat(LOCAL_REF_SCHEMAS[name]))
    assert (status, generated) == (200, True), body


def test_a_remote_ref_met_while_checking_is_unchecked_with_no_connection(
    recorder: ConnectionRecorder,
) -> None:
    """The check itself never fetches either (a schema that reached it some other way)."""
    for schema in remote_ref_schemas(recorder.url).values():
        judge_answer('{"a": ["x", "y"]}', schema, "stop", budget_s=5)  # any verdict, no fetch
    schema = {"type": "object", "properties": {"a": {"$ref": f"{recorder.url}/x.json"}}}
    verdict = judge_answer('{"a": 1}', schema, "stop", budget_s=5)
    assert verdict.kind == "unchecked" and "never fetched" in (verdict.problem or "")
    assert recorder.connections == []


@pytest.mark.parametrize("backend", ["xgrammar", "guidance"])
def test_schema_check_refuses_remote_refs_whatever_the_backend(
    recorder: ConnectionRecorder,
    backend: str,
) -> None:
    for position, schema in remote_ref_schemas(recorder.url).items():
        result = check_schema(schema, backend)
        assert not result.supported and "never fetched" in (result.reason or ""), position
    assert recorder.connections == []


def test_schema_check_cli_names_the_ref_and_the_fix(
    recorder: ConnectionRecorder,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    path = tmp_path / "remote.json"
    path.write_text(json.dumps(remote_ref_schemas(recorder.url)["property"]))
    assert main(["schema-check", str(path), "--backend", "xgrammar"]) == 1
    out = capsys.readouterr().out
    assert f"{recorder.url}/x.json" in out and '"#/$defs/NAME"' in out
    assert recorder.connections == []


def test_client_refuses_remote_refs_before_sending(recorder: ConnectionRecorder) -> None:
    """The client's server is the listener too: nothing at all may reach it."""
    client = Client(recorder.url, model="m", retry=RetryPolicy(max_attempts=1))
    for schema in remote_ref_schemas(recorder.url).values():
        with pytest.raises(UnsupportedSchema, match="never fetched"):
            client.generate("hi", schema)
    assert recorder.connections == []
