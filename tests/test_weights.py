"""Weights you can trust: pinned revisions, the download, the completeness check, isolation.

The Hub is a local HTTP server answering like huggingface.co's model-info endpoint
(GET /api/models/{id}/revision/{rev}); huggingface_hub talks to it through HF_ENDPOINT.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from liftdeploy.cli.main import main
from liftdeploy.errors import OpsError
from liftdeploy.ops.hub import pin, resolve_revision
from liftdeploy.spec.model import pinning_problem
from liftdeploy.spec.specfile import load_spec

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_32B = REPO_ROOT / "examples" / "qwen25-coder-32b.yaml"
MAIN_SHA = "5e12345678901234567890123456789012345678"  # all digits and one e: a YAML float unquoted
STAGING_SHA = "0123456789abcdef0123456789abcdef01234567"
TOKEN = "hf_LiftdeployPinTestSentinel0123456789"


class FakeHub(http.server.ThreadingHTTPServer):
    """Answers /api/models/{org}/{name}[/revision/{rev}] like the Hub; records each request."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _HubHandler)
        self.refs = {
            ("Qwen/Qwen2.5-Coder-32B-Instruct", "main"): MAIN_SHA,
            ("Qwen/Qwen2.5-Coder-32B-Instruct", "staging-branch"): STAGING_SHA,
            ("Qwen/Qwen2.5-Coder-32B-Instruct", MAIN_SHA): MAIN_SHA,
            ("Qwen/Qwen2.5-Coder-32B-Instruct", STAGING_SHA): STAGING_SHA,
        }
        self.gated = {"org/gated-model"}
        self.requests: list[tuple[str, str | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _HubHandler(http.server.BaseHTTPRequestHandler):
    server: FakeHub

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.requests.append((self.path, self.headers.get("Authorization")))
        path = self.path.split("?")[0].removeprefix("/api/models/")
        repo, _, revision = path.partition("/revision/")
        revision = revision or "main"
        if repo in self.server.gated:
            return self._error(403, "GatedRepo", "Access to model is restricted.")
        if not any(known == repo for known, _ in self.server.refs):
            return self._error(404, "RepoNotFound", "Repository not found")
        sha = self.server.refs.get((repo, revision))
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        body = json.dumps({"_id": "x", "id": repo, "modelId": repo, "sha": sha,
                           "private": False, "tags": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    server = FakeHub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # A stored token file that must never be sent: the token comes from HF_TOKEN only.
    home = tmp_path / "hf-home"
    home.mkdir()
    (home / "token").write_text("hf_StoredFileTokenMustNotBeSent0000000")
    monkeypatch.setenv("HF_HOME", str(home))
    yield server
    server.shutdown()
    server.server_close()


def _unpinned_copy(tmp_path: Path, *, staging_revision: str | None = None) -> Path:
    text = EXAMPLE_32B.read_text()
    text = text.replace("  revision: b47205940b83b5b484577359f71ee7b88472df67\n", "")
    if staging_revision:
        text = text.replace(
            "    storage: {secrets: [staging-modal-secrets]}\n",
            "    storage: {secrets: [staging-modal-secrets]}\n"
            f"    model: {{revision: {staging_revision}}}\n",
        )
    path = tmp_path / "deployment.yaml"
    path.write_text(text)
    return path


# --- pin -----------------------------------------------------------------------------------------


def test_resolve_revision_asks_the_hub_endpoint_with_the_env_token_only(hub: FakeHub) -> None:
    sha = resolve_revision("Qwen/Qwen2.5-Coder-32B-Instruct", None,
                           environ={"HF_ENDPOINT": hub.url})
    assert sha == MAIN_SHA
    path, auth = hub.requests[-1]
    assert path.startswith("/api/models/Qwen/Qwen2.5-Coder-32B-Instruct")
    assert auth is None  # no HF_TOKEN: the stored token file is not used

    resolve_revision("Qwen/Qwen2.5-Coder-32B-Instruct", "staging-branch",
                     environ={"HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN})
    path, auth = hub.requests[-1]
    assert path.startswith("/api/models/Qwen/Qwen2.5-Coder-32B-Instruct/revision/staging-branch")
    assert auth == f"Bearer {TOKEN}"


@pytest.mark.parametrize(("model", "revision", "expected"), [
    ("Qwen/Qwen2.5-Coder-32B-Instruct", "no-such-branch", "has no revision 'no-such-branch'"),
    ("org/missing", None, "is not on the Hub"),
    ("org/gated-model", None, "is gated"),
])
def test_hub_refusals_are_one_clear_error(hub: FakeHub, model: str, revision: str | None,
                                         expected: str) -> None:
    with pytest.raises(OpsError, match=expected):
        resolve_revision(model, revision, environ={"HF_ENDPOINT": hub.url})


def test_unreachable_hub_is_a_clear_error() -> None:
    with pytest.raises(OpsError, match="Hub"):
        resolve_revision("Qwen/Qwen2.5-Coder-32B-Instruct", None,
                         environ={"HF_ENDPOINT": "http://127.0.0.1:9"})


def test_pin_writes_hashes_in_place_and_keeps_comments(hub: FakeHub, tmp_path: Path) -> None:
    path = _unpinned_copy(tmp_path, staging_revision="staging-branch")
    before = path.read_text()
    assert pinning_problem(load_spec(path).resolve("production"))

    changes, _ = pin(path)

    assert {(c.key, c.new) for c in changes} == {
        ("model.revision", MAIN_SHA),
        ("environments.staging.model.revision", STAGING_SHA),
    }
    spec = load_spec(path)
    assert spec.resolve("production").model.revision == MAIN_SHA  # a string, not 5e+..
    assert spec.resolve("staging").model.revision == STAGING_SHA
    assert pinning_problem(spec.resolve("production")) is None
    after = path.read_text()
    for line in before.splitlines():  # every comment survives
        if line.lstrip().startswith("#"):
            assert line in after
    # Pinning again changes nothing.
    assert pin(path)[0] == []
    assert path.read_text() == after


def test_pin_one_environment_leaves_the_others(hub: FakeHub, tmp_path: Path) -> None:
    path = _unpinned_copy(tmp_path)
    changes, _ = pin(path, "development")
    assert [(c.key, c.new) for c in changes] == [
        ("environments.development.model.revision", MAIN_SHA)]
    spec = load_spec(path)
    assert spec.resolve("development").model.revision == MAIN_SHA
    assert spec.resolve("production").model.revision is None


def test_cli_pin_prints_changes_and_bad_input_is_one_line(
    hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _unpinned_copy(tmp_path)
    assert main(["pin", str(path)]) == 0
    assert f"model.revision: unset -> {MAIN_SHA}" in capsys.readouterr().out
    assert main(["pin", str(path), "--env", "nowhere"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "unknown environment 'nowhere'" in err
    assert "Traceback" not in err


# --- production refuses unpinned weights ------------------------------------------------


def test_unpinned_production_is_an_error_other_environments_warn(tmp_path: Path) -> None:
    from liftdeploy.spec.model import advisories

    spec = load_spec(_unpinned_copy(tmp_path))
    problem = pinning_problem(spec.resolve("production"), "deployment.yaml")
    assert problem is not None and "liftdeploy pin deployment.yaml" in problem
    assert pinning_problem(spec.resolve("staging")) is None
    assert any("not set" in note for note in advisories(spec.resolve("staging")))


def test_unpinned_reason_turns_the_refusal_into_a_visible_warning() -> None:
    from liftdeploy.spec.model import advisories

    resolved = load_spec(REPO_ROOT / "examples" / "qwen3-coder-480b.yaml").resolve("production")
    assert pinning_problem(resolved) is None
    assert any(resolved.model.unpinned_reason in note for note in advisories(resolved))


def test_check_and_deploy_dry_run_refuse_unpinned_production(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from liftdeploy.render.service import render

    service = render(_unpinned_copy(tmp_path), tmp_path / "svc")
    assert main(["check", str(service)]) == 1
    err = capsys.readouterr().err
    assert "liftdeploy pin" in err and "production environment 'production'" in err

    assert main(["deploy", str(service), "--env", "production", "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert f"run `liftdeploy pin {service / 'deployment.yaml'}`" in err
    assert "Traceback" not in err
    # Other environments deploy unpinned weights (with the spec's warning).
    assert main(["deploy", str(service), "--env", "staging", "--dry-run"]) == 0
