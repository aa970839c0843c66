"""A local HTTP server standing in for the Hugging Face Hub: serves `resolve` URLs the way the
Hub does (HEAD and GET, commit and etag headers, the Hub's error codes), for HF_ENDPOINT."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Repo:
    files: dict[str, bytes]
    gated_token: str | None = None
    """When set, only `Authorization: Bearer <this>` may read the files."""


@dataclass
class HubStandIn:
    url: str
    repos: dict[str, Repo]
    requests: list[str] = field(default_factory=list)
    """`METHOD path` of every request, in order."""
    ranges: list[str] = field(default_factory=list)
    """`path bytes=A-B` of every range request."""

    def add(self, repo_id: str, files: dict[str, Any], *, gated_token: str | None = None) -> None:
        """Serve `files` (bytes as they are, anything else as JSON) for `repo_id`."""
        self.repos[repo_id] = Repo(
            {
                name: body if isinstance(body, bytes) else json.dumps(body).encode()
                for name, body in files.items()
            },
            gated_token,
        )


@contextmanager
def hub_standin() -> Iterator[HubStandIn]:
    state = HubStandIn(url="", repos={})

    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # noqa: N802
            self._answer(body=False)

        def do_GET(self) -> None:  # noqa: N802
            self._answer(body=True)

        def _answer(self, *, body: bool) -> None:
            state.requests.append(f"{self.command} {self.path}")
            parts = self.path.split("?")[0].strip("/").split("/")
            if len(parts) < 5 or parts[2] != "resolve":
                return self._error(404, "RepoNotFound", "not a resolve URL")
            repo = state.repos.get(f"{parts[0]}/{parts[1]}")
            if repo is None:
                return self._error(404, "RepoNotFound", "Repository not found")
            if (
                repo.gated_token
                and self.headers.get("Authorization") != f"Bearer {repo.gated_token}"
            ):
                return self._error(401, "GatedRepo", "Access to model is restricted")
            content = repo.files.get("/".join(parts[4:]))
            if content is None:
                return self._error(404, "EntryNotFound", "Entry not found")
            etag = f'"{hashlib.sha1(content).hexdigest()}"'
            wanted = self.headers.get("Range", "")
            if wanted.startswith("bytes="):  # a range, as the Hub serves safetensors headers
                state.ranges.append(f"{self.path} {wanted}")
                first, _, last = wanted[len("bytes=") :].partition("-")
                end = min(int(last or len(content) - 1), len(content) - 1)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {first}-{end}/{len(content)}")
                content = content[int(first) : end + 1]
            else:
                self.send_response(200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if body:
                self.wfile.write(content)

        def _error(self, status: int, code: str, message: str) -> None:
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
