"""Weights you can trust: pinned revisions, the download, the completeness check, isolation.

The Hub is a local HTTP server answering like huggingface.co's model-info endpoint
(GET /api/models/{id}/revision/{rev}); huggingface_hub talks to it through HF_ENDPOINT.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from liftdeploy.cli.main import main
from liftdeploy.errors import OpsError
from liftdeploy.ops.pinning import pin, resolve_revision
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
        self.files: dict[tuple[str, str], dict[str, bytes]] = {}
        """(repo, commit) -> path -> content, served by the tree and resolve endpoints."""
        self.requests: list[tuple[str, str | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _HubHandler(http.server.BaseHTTPRequestHandler):
    server: FakeHub

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
        self.server.requests.append((f"HEAD {self.path}", self.headers.get("Authorization")))
        self._file(body=False)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.requests.append((self.path, self.headers.get("Authorization")))
        path = self.path.split("?")[0]
        if "/resolve/" in path:
            return self._file(body=True)
        if "/tree/" in path:  # list_repo_tree: every file of a commit
            repo, _, commit = path.removeprefix("/api/models/").partition("/tree/")
            files = self.server.files.get((repo, commit.strip("/")), {})
            return self._json(
                [
                    {
                        "type": "file",
                        "path": name,
                        "size": len(data),
                        "oid": hashlib.sha1(data).hexdigest(),
                    }
                    for name, data in files.items()
                ]
            )
        path = path.removeprefix("/api/models/")
        repo, _, revision = path.partition("/revision/")
        revision = revision or "main"
        if repo in self.server.gated:
            return self._error(403, "GatedRepo", "Access to model is restricted.")
        if not any(known == repo for known, _ in self.server.refs):
            return self._error(404, "RepoNotFound", "Repository not found")
        sha = self.server.refs.get((repo, revision))
        if sha is None:
            return self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        self._json(
            {"_id": "x", "id": repo, "modelId": repo, "sha": sha, "private": False, "tags": []}
        )

    def _json(self, data: object) -> None:
        body = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _file(self, *, body: bool) -> None:
        """/{repo}/resolve/{commit}/{path}, with the headers huggingface_hub caches by."""
        repo, _, rest = self.path.split("?")[0].lstrip("/").partition("/resolve/")
        commit, _, name = rest.partition("/")
        data = self.server.files.get((repo, commit), {}).get(name)
        if data is None:
            return self._error(404, "EntryNotFound", f"{name} not found")
        self.send_response(200)
        self.send_header("X-Repo-Commit", commit)
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

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
        anchor = "  staging:\n"
        assert text.count(anchor) == 1
        text = text.replace(anchor, anchor + f"    model: {{revision: {staging_revision}}}\n")
    path = tmp_path / "deployment.yaml"
    path.write_text(text)
    return path


# --- pin -----------------------------------------------------------------------------------------


def test_resolve_revision_asks_the_hub_endpoint_with_the_env_token_only(hub: FakeHub) -> None:
    sha = resolve_revision(
        "Qwen/Qwen2.5-Coder-32B-Instruct", None, environ={"HF_ENDPOINT": hub.url}
    )
    assert sha == MAIN_SHA
    path, auth = hub.requests[-1]
    assert path.startswith("/api/models/Qwen/Qwen2.5-Coder-32B-Instruct")
    assert auth is None  # no HF_TOKEN: the stored token file is not used

    resolve_revision(
        "Qwen/Qwen2.5-Coder-32B-Instruct",
        "staging-branch",
        environ={"HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN},
    )
    path, auth = hub.requests[-1]
    assert path.startswith("/api/models/Qwen/Qwen2.5-Coder-32B-Instruct/revision/staging-branch")
    assert auth == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("model", "revision", "expected"),
    [
        ("Qwen/Qwen2.5-Coder-32B-Instruct", "no-such-branch", "has no revision 'no-such-branch'"),
        ("org/missing", None, "is not on the Hub"),
        ("org/gated-model", None, "is gated"),
    ],
)
def test_hub_refusals_are_one_clear_error(
    hub: FakeHub, model: str, revision: str | None, expected: str
) -> None:
    with pytest.raises(OpsError, match=expected):
        resolve_revision(model, revision, environ={"HF_ENDPOINT": hub.url})


def test_unreachable_hub_is_a_clear_error() -> None:
    with pytest.raises(OpsError, match="Hub"):
        resolve_revision(
            "Qwen/Qwen2.5-Coder-32B-Instruct", None, environ={"HF_ENDPOINT": "http://127.0.0.1:9"}
        )


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
        ("environments.development.model.revision", MAIN_SHA)
    ]
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
    # In sync, so `check` passes with a warning, and fails only for the production deploy.
    assert main(["check", str(service)]) == 0
    err = capsys.readouterr().err
    assert "matches its spec" in err and "out of date" not in err
    assert "warning: production weights not pinned" in err and "liftdeploy pin" in err
    assert main(["check", str(service), "--env", "staging"]) == 0
    assert "warning: production weights not pinned" in capsys.readouterr().err
    assert main(["check", str(service), "--env", "production"]) == 1
    err = capsys.readouterr().err
    assert "error: production weights not pinned" in err and "out of date" not in err
    assert "liftdeploy pin" in err and "production environment 'production'" in err

    assert main(["deploy", str(service), "--env", "production", "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert f"run `liftdeploy pin {service / 'deployment.yaml'}`" in err
    assert "Traceback" not in err
    # Other environments deploy (and download) unpinned weights, with a warning.
    assert main(["deploy", str(service), "--env", "staging", "--dry-run"]) == 0
    assert "model.revision is not set" in capsys.readouterr().err
    assert main(["download", str(service), "--env", "staging", "--dry-run"]) == 0
    assert "model.revision is not set" in capsys.readouterr().err
    assert main(["download", str(service), "--env", "production", "--dry-run"]) == 1
    assert "liftdeploy pin" in capsys.readouterr().err


# --- the completeness check: the tiny model laid out as a Hub cache snapshot --------------------

TINY_REPO = "liftdeploy/tiny"
TINY_SHA = "1111111111111111111111111111111111111111"
OTHER_SHA = "2222222222222222222222222222222222222222"


def _hub_cache(tiny_model_path: Path, root: Path, *, shards: int = 2) -> Path:
    """The tiny model as huggingface_hub caches it: blobs by content hash, a snapshot of
    links for one commit, refs/main naming that commit; its weights split into `shards`
    safetensors files with the index vLLM and transformers read."""
    import hashlib
    import shutil

    from safetensors.numpy import load_file, save_file

    staged = root / "staged"
    shutil.copytree(tiny_model_path, staged)
    tensors = load_file(staged / "model.safetensors")
    (staged / "model.safetensors").unlink()
    names = sorted(tensors)
    weight_map = {}
    for number in range(shards):
        shard = f"model-{number + 1:05d}-of-{shards:05d}.safetensors"
        part = {name: tensors[name] for name in names[number::shards]}
        save_file(part, staged / shard, metadata={"format": "pt"})
        weight_map |= {name: shard for name in part}
    (staged / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )

    hub = root / "hub"
    repo = hub / ("models--" + TINY_REPO.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / TINY_SHA
    snapshot.mkdir(parents=True)
    for file in staged.iterdir():
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copyfile(file, repo / "blobs" / digest)
        (snapshot / file.name).symlink_to(Path("..", "..", "blobs", digest))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(TINY_SHA)
    return hub


@pytest.fixture
def hub_cache(tiny_model_path: Path, tmp_path: Path) -> Path:
    return _hub_cache(tiny_model_path, tmp_path)


def test_the_layout_is_a_real_hub_cache_and_it_is_complete(
    hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import snapshot_download

    from liftdeploy.runtime.weights import require_snapshot, snapshot_problem

    # huggingface_hub itself, offline, finds the snapshot where the check looks.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    found = snapshot_download(
        TINY_REPO, revision=TINY_SHA, cache_dir=hub_cache, local_files_only=True
    )
    assert Path(found).name == TINY_SHA
    assert snapshot_problem(hub_cache, TINY_REPO, TINY_SHA) is None
    assert snapshot_problem(hub_cache, TINY_REPO, None) is None  # refs/main
    require_snapshot(hub_cache, TINY_REPO, TINY_SHA, volume="w", fix="liftdeploy download ...")


def test_one_shard_missing_names_it_the_volume_and_the_fix(hub_cache: Path) -> None:
    from liftdeploy.runtime.weights import WeightsMissing, require_snapshot, snapshot_problem

    snapshot = hub_cache / "models--liftdeploy--tiny" / "snapshots" / TINY_SHA
    (snapshot / "model-00002-of-00002.safetensors").unlink()
    problem = snapshot_problem(hub_cache, TINY_REPO, TINY_SHA)
    assert problem is not None and "1 of the 2 shards" in problem
    assert "model-00002-of-00002.safetensors" in problem
    fix = "liftdeploy download deployment.yaml --env staging"
    with pytest.raises(WeightsMissing) as caught:
        require_snapshot(hub_cache, TINY_REPO, TINY_SHA, volume="lift-sys-models", fix=fix)
    message = str(caught.value)
    assert message.startswith(
        f"weights for {TINY_REPO} at {TINY_SHA} are not on Volume lift-sys-models"
    )
    assert message.endswith(f"run `{fix}`")


def test_a_link_to_a_missing_blob_and_a_missing_tokenizer_are_incomplete(hub_cache: Path) -> None:
    from liftdeploy.runtime.weights import snapshot_problem

    repo = hub_cache / "models--liftdeploy--tiny"
    shard = repo / "snapshots" / TINY_SHA / "model-00001-of-00002.safetensors"
    shard.resolve().unlink()  # an interrupted download: the link without its blob
    (repo / "snapshots" / TINY_SHA / "tokenizer.json").unlink()
    problem = snapshot_problem(hub_cache, TINY_REPO, TINY_SHA)
    assert problem is not None
    assert "model-00001-of-00002.safetensors" in problem and "a tokenizer" in problem


def test_wrong_revision_says_which_revisions_the_volume_holds(hub_cache: Path) -> None:
    from liftdeploy.runtime.weights import snapshot_problem

    problem = snapshot_problem(hub_cache, TINY_REPO, OTHER_SHA)
    assert problem == f"no snapshot for revision {OTHER_SHA} (the cache holds {TINY_SHA})"
    assert snapshot_problem(hub_cache, TINY_REPO, "v2") == (
        "the cache has no ref 'v2' for liftdeploy/tiny"
    )
    assert snapshot_problem(hub_cache, "org/other", None) == (
        f"nothing of org/other is in {hub_cache}"
    )


def test_vllm_reads_the_complete_snapshot_offline(
    hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The layout the check accepts is the one the server loads: transformers (which vLLM
    uses for config and tokenizer) resolves the pinned revision from it with the Hub offline."""
    from transformers import AutoConfig, AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = AutoConfig.from_pretrained(TINY_REPO, revision=TINY_SHA, cache_dir=hub_cache)
    tokenizer = AutoTokenizer.from_pretrained(TINY_REPO, revision=TINY_SHA, cache_dir=hub_cache)
    assert config.model_type == "qwen2" and len(tokenizer) > 0


# --- the download -------------------------------------------------------------------------------


def test_download_limit_comes_from_the_checkpoint_size_not_the_request_limit() -> None:
    from liftdeploy.planner.download import DOWNLOAD_MB_PER_S, download_estimate

    for name, env in (("qwen3-coder-480b", "production"), ("qwen25-coder-32b", "staging")):
        resolved = load_spec(REPO_ROOT / "examples" / f"{name}.yaml").resolve(env)
        estimate = download_estimate(resolved)
        assert estimate.checkpoint_bytes is not None
        assert estimate.timeout_s >= estimate.checkpoint_bytes / (DOWNLOAD_MB_PER_S * 1e6)
        assert estimate.timeout_s != resolved.runtime.request_timeout_s
    big = download_estimate(load_spec(REPO_ROOT / "examples" / "qwen3-coder-480b.yaml").resolve())
    assert 450e9 < big.checkpoint_bytes < 520e9  # type: ignore[operator]
    assert big.timeout_s > 3600  # the old request-timeout limit needed 134 MB/s


def test_plan_shows_the_download(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(REPO_ROOT / "examples" / "qwen3-coder-480b.yaml")]) == 0
    out = capsys.readouterr().out
    assert "weights download  482 GB" in out and "assumed 50 MB/s" in out


def _modal_run_params(argv: list[str]) -> tuple[dict[str, object], list[str]]:
    """modal's own click parser for `modal run`: its options and the function reference."""
    import warnings

    from modal.cli.entry_point import entrypoint_cli

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = entrypoint_cli.make_context("modal", argv[1:])
        name, command, rest = entrypoint_cli.resolve_command(ctx, [*ctx.protected_args, *ctx.args])
        sub = command.make_context(name, rest, parent=ctx)
        return sub.params, [*sub.protected_args, *sub.args]


def test_download_command_parses_with_modals_cli(tmp_path: Path) -> None:
    from liftdeploy.ops.modal_commands import download_command
    from liftdeploy.spec.specfile import read_yaml, spec_from_data

    data = read_yaml(EXAMPLE_32B)
    data["environments"]["staging"]["modal_environment"] = "inference-staging"
    resolved = spec_from_data(data).resolve("staging")
    command = download_command(resolved, tmp_path / "app.py")
    assert command.env == {"LIFTDEPLOY_ENV": "staging"} and command.cwd == tmp_path
    params, rest = _modal_run_params(command.argv)
    assert params["detach"] is True and params["env"] == "inference-staging"
    assert rest == ["app.py::download_model"]


@pytest.fixture(scope="module")
def rendered_80b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from liftdeploy.render.service import render

    return render(
        REPO_ROOT / "examples" / "qwen3-next-80b.yaml", tmp_path_factory.mktemp("svc") / "qwen80b"
    )


def test_cli_download_dry_run_and_the_real_modal_run(
    rendered_80b: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from liftdeploy.ops.deploy_policy import prepare_download
    from liftdeploy.ops.modal_runner import ModalCommandError, run_modal
    from liftdeploy.ops.service_files import locate_service

    assert main(["download", str(rendered_80b), "--env", "staging", "--dry-run"]) == 0
    assert capsys.readouterr().out == (
        f"cd {rendered_80b} && LIFTDEPLOY_ENV=staging modal run --detach app.py::download_model\n"
    )
    # The real modal CLI, logged out: it imports app.py and finds download_model, then stops at
    # the token check (a wrong function reference would fail before it).
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(tmp_path / "modal.toml"))
    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_PROFILE", "MODAL_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ModalCommandError) as caught:
        run_modal(prepare_download(locate_service(rendered_80b), "staging"), capture=True)
    assert "Token missing" in caught.value.stderr_tail
    assert "download_model" not in caught.value.stderr_tail


def test_download_refuses_a_stale_app_without_suggesting_skip_check(
    rendered_80b: Path, tmp_path: Path
) -> None:
    import shutil

    service = tmp_path / "svc"
    shutil.copytree(rendered_80b, service)
    spec = service / "deployment.yaml"
    spec.write_text(spec.read_text().replace("c5f5f263bdd5cc134092897864e8905d8fe7b928", "d" * 40))
    from liftdeploy.ops.deploy_policy import prepare_download
    from liftdeploy.ops.service_files import locate_service

    with pytest.raises(OpsError, match="stale") as caught:
        prepare_download(locate_service(service), "staging")
    assert "then download" in str(caught.value) and "--skip-check" not in str(caught.value)


# --- isolation ------------------------------------------------------------------------------------


def _names(resolved: object) -> set[tuple[str, str]]:
    return set(resolved.named_resources)  # type: ignore[attr-defined]


def test_environments_share_only_the_weights_volume() -> None:
    spec = load_spec(EXAMPLE_32B)
    production, staging, development = (spec.resolve(env) for env in spec.environments)
    assert _names(production) & _names(staging) == {("volume", "lift-sys-models")}
    assert _names(staging) & _names(development) == {("volume", "lift-sys-models")}
    # Inherited names get the suffix; the overlay's own Secret keeps its name.
    assert staging.storage.dicts == ["lift-sys-token-store-staging", "lift-sys-user-prefs-staging"]
    assert staging.secret_names == ["huggingface-staging"]
    assert production.storage.dicts == ["lift-sys-token-store", "lift-sys-user-prefs"]
    assert spec.shared_resources("staging") == {
        "volume lift-sys-models": ["production", "development"]
    }


def test_sharing_a_dict_is_explicit_and_visible_in_show(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from liftdeploy.spec.specfile import set_values

    path = tmp_path / "deployment.yaml"
    path.write_text(EXAMPLE_32B.read_text())
    set_values(path, ["storage.shared=[lift-sys-user-prefs]"])
    spec = load_spec(path)
    assert spec.resolve("staging").storage.dicts == [
        "lift-sys-token-store-staging",
        "lift-sys-user-prefs",
    ]
    assert main(["show", str(path), "--env", "staging", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["shared_with_other_environments"] == {
        "volume lift-sys-models": ["production", "development"],
        "dict lift-sys-user-prefs": ["production", "development"],
    }
    with pytest.raises(Exception, match="storage.shared names 'lift-sys-typo'"):
        set_values(path, ["storage.shared=[lift-sys-typo]"])


def test_bootstrap_of_one_environment_touches_nothing_of_another_and_writes_no_settings() -> None:
    from liftdeploy.ops.modal_sdk import creation_calls, required_resources

    spec = load_spec(EXAMPLE_32B)
    production = {(r.kind, r.name) for r in required_resources(spec.resolve("production"))}
    staging = required_resources(spec.resolve("staging"))
    assert {(r.kind, r.name) for r in staging} & production == {("volume", "lift-sys-models")}
    calls = creation_calls(
        [r for r in staging if not r.user_created], None, environ={"HF_TOKEN": TOKEN}
    )
    contents = [call.env_dict for call in calls if call.env_dict is not None]
    assert contents == [{"HF_TOKEN": TOKEN}]  # no ENVIRONMENT / VLLM_EAGER keys nobody reads


def test_a_users_own_secret_is_listed_with_a_command_modal_accepts() -> None:
    import warnings

    import click
    from modal.cli.entry_point import entrypoint_cli

    from liftdeploy.ops.modal_sdk import BootstrapRow, required_resources
    from liftdeploy.spec.specfile import read_yaml, spec_from_data

    data = read_yaml(EXAMPLE_32B)
    data["environments"]["staging"]["modal_environment"] = "ml-staging"
    data["environments"]["staging"]["storage"] = {"secrets": ["staging-modal-secrets"]}
    [own] = [
        r for r in required_resources(spec_from_data(data).resolve("staging")) if r.user_created
    ]
    line = BootstrapRow(own, "missing").format()
    assert "staging-modal-secrets: missing, yours to create: modal secret create" in line
    argv = own.create_hint.replace(" ...", "").split()
    command: click.Command = entrypoint_cli
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # click's protected_args
        ctx = command.make_context("modal", argv[1:])
        while isinstance(command, click.Group):
            name, command, rest = command.resolve_command(ctx, [*ctx.protected_args, *ctx.args])
            ctx = command.make_context(name, rest, parent=ctx)
    assert ctx.command.name == "create"
    assert ctx.params["secret_name"] == "staging-modal-secrets"
    assert ctx.params["env"] == "ml-staging"


_RUN_DOWNLOAD = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("service_app", sys.argv[1])
app = importlib.util.module_from_spec(spec)
spec.loader.exec_module(app)
# The rendered function, pointed at the tiny model and a local Hub cache instead of the Volume.
app.HUB_CACHE, app.MODEL_ID, app.MODEL_REVISION = sys.argv[2:5]
class Claims(dict):  # modal.Dict needs a login; the claim is tested in test_container_values
    def put(self, key, value, *, skip_if_exists=False):
        if skip_if_exists and key in self:
            return False
        self[key] = value
        return True
app.download_claims = Claims()
app.download_model.local()
"""


def _run_download_model(app: Path, hub_cache: Path, hub: FakeHub, tmp_path: Path) -> object:
    import os
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items() if not key.startswith(("MODAL_", "HF_"))}
    env.update(
        HF_ENDPOINT=hub.url,
        LIFTDEPLOY_ENV="staging",
        HF_HOME=str(tmp_path / "hf-home"),
        MODAL_CONFIG_PATH=str(tmp_path / "modal.toml"),
        PYTHONPATH=str(REPO_ROOT),
    )
    return subprocess.run(
        [sys.executable, "-c", _RUN_DOWNLOAD, str(app), str(hub_cache), TINY_REPO, TINY_SHA],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_download_model_fetches_only_what_is_missing_and_nothing_when_complete(
    rendered_80b: Path, hub_cache: Path, hub: FakeHub, tmp_path: Path
) -> None:
    from liftdeploy.runtime.weights import snapshot_problem

    snapshot = hub_cache / "models--liftdeploy--tiny" / "snapshots" / TINY_SHA
    hub.files[(TINY_REPO, TINY_SHA)] = {p.name: p.read_bytes() for p in snapshot.iterdir()}
    app = rendered_80b / "app.py"

    complete = _run_download_model(app, hub_cache, hub, tmp_path)
    assert complete.returncode == 0, complete.stderr
    assert "already complete" in complete.stdout and hub.requests == []

    shard = snapshot / "model-00002-of-00002.safetensors"
    shard.resolve().unlink()  # an attempt cut off mid-download: link without its blob
    shard.unlink()
    cut_off = _run_download_model(app, hub_cache, hub, tmp_path)
    assert "fetching liftdeploy/tiny at " + TINY_SHA in cut_off.stdout
    fetched = [path for path, _ in hub.requests if "/resolve/" in path and "HEAD" not in path]
    assert fetched == [f"/{TINY_REPO}/resolve/{TINY_SHA}/model-00002-of-00002.safetensors"]
    assert snapshot_problem(hub_cache, TINY_REPO, TINY_SHA) is None
    # Then it commits the Volume, where a local run meets Modal's login: the boundary.
    assert cut_off.returncode != 0 and "Token missing" in cut_off.stderr, cut_off.stderr[-2000:]
