"""The values a server container runs with on Modal, read back from modal's SDK objects of apps
rendered from the examples (into a temporary directory, imported offline as `modal deploy`
does): the drain, the CPU and memory reservations, the Volumes' mount modes, the OTLP protocol,
and start-up failures reported to Sentry (a local receiver)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from receivers import Receiver
from test_rendered_app import _closure, import_app

from liftdeploy.planner.memory import DOWNLOAD_RESERVATION, server_reservation
from liftdeploy.planner.report import plan
from liftdeploy.planner.timeouts import VOLUME_COMMIT_S
from liftdeploy.render.service import render
from liftdeploy.render.vllm_args import server_env
from liftdeploy.spec.model import MODAL_MAX_EXIT_GRACE_S, ResolvedDeployment
from liftdeploy.spec.specfile import load_spec

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NAMES = ["qwen25-coder-32b", "qwen3-next-80b", "qwen3-coder-480b"]
CASES = [(name, env) for name in NAMES for env in load_spec(EXAMPLES / f"{name}.yaml").environments]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each example rendered once (today's template and library) into a temporary directory."""
    out = tmp_path_factory.mktemp("rendered")
    return {name: render(EXAMPLES / f"{name}.yaml", out / name) for name in NAMES}


def _objects(module: ModuleType) -> tuple[dict[str, Any], dict[str, Any]]:
    """The server's and the download's definitions, from modal 1.6.4's private state."""
    from modal._utils.async_utils import synchronizer

    server = _closure(synchronizer._translate_in(module.Server)._service_function._load)
    download = _closure(synchronizer._translate_in(module.download_model)._load)
    return server, download


def _with_runtime(resolved: ResolvedDeployment, **runtime: Any) -> ResolvedDeployment:
    data = resolved.model_dump()
    data["runtime"].update(runtime)
    return ResolvedDeployment.model_validate(data)


@pytest.mark.parametrize(("name", "env"), CASES)
def test_a_deploy_waits_for_requests_up_to_their_limit(
    name: str, env: str, rendered: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    resolved = load_spec(EXAMPLES / f"{name}.yaml").resolve(env)
    module = import_app(rendered[name], env, monkeypatch)
    server, _ = _objects(module)
    grace = server["http_config"].exit_grace_period
    limit = resolved.runtime.request_timeout_s
    # A request that began just before the stop may run to its limit (within Modal's cap).
    assert grace >= min(limit, MODAL_MAX_EXIT_GRACE_S), (name, env, grace, limit)
    assert grace <= MODAL_MAX_EXIT_GRACE_S
    # The exit hook drains for less, so Modal has time to commit the Volumes after it returns.
    assert module.DRAIN_S == grace - VOLUME_COMMIT_S
    assert "self.server.stop(grace_s=DRAIN_S)" in (rendered[name] / "app.py").read_text()
    print(
        f"\n{name} [{env}]: request limit {limit} s, exit grace {grace} s, drain {module.DRAIN_S} s"
    )


@pytest.mark.parametrize(("name", "env"), CASES)
def test_server_and_download_reserve_cpu_and_memory(
    name: str, env: str, rendered: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    resolved = load_spec(EXAMPLES / f"{name}.yaml").resolve(env)
    server, download = _objects(import_app(rendered[name], env, monkeypatch))
    expected = server_reservation(resolved.gpu.count, plan(resolved).memory.weights_gib)
    assert (server["cpu"], server["memory"]) == (expected.cpu, expected.memory_mib)
    assert server["cpu"] >= 2 + 2 * resolved.gpu.count, "engine, API server, one per GPU"
    assert (download["cpu"], download["memory"]) == (
        DOWNLOAD_RESERVATION.cpu,
        DOWNLOAD_RESERVATION.memory_mib,
    )
    print(
        f"\n{name} [{env}]: server {server['cpu']:g} CPU, {server['memory']} MiB; download "
        f"{download['cpu']:g} CPU, {download['memory']} MiB"
    )


def test_the_spec_overrides_the_reservation() -> None:
    resolved = load_spec(EXAMPLES / "qwen3-next-80b.yaml").resolve()
    sized = plan(resolved).reservation
    assert sized is not None and sized.cpu == 8 and sized.memory_mib > 16 * 1024
    chosen = plan(_with_runtime(resolved, cpu=12.5, memory_mib=65536)).reservation
    assert chosen is not None and (chosen.cpu, chosen.memory_mib) == (12.5, 65536)
    assert plan(resolved).to_dict()["reservation"] == {
        "cpu": sized.cpu,
        "memory_mib": sized.memory_mib,
    }


def test_a_small_model_reserves_less_memory_than_the_shard_bound() -> None:
    assert server_reservation(1, 1.0).memory_mib < server_reservation(1, None).memory_mib
    assert server_reservation(8, 56.0).memory_mib == server_reservation(8, None).memory_mib


@pytest.mark.parametrize("name", NAMES)
def test_servers_mount_the_shared_weights_read_only(
    name: str, rendered: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    module = import_app(rendered[name], None, monkeypatch)
    server, download = _objects(module)

    def read_only(mounts: list[Any]) -> dict[str, bool]:
        return {
            str(path): bool(volume._mount_options and volume._mount_options.read_only)
            for path, volume in mounts
        }

    server_mounts = read_only(server["validated_volumes_no_cloud_buckets"])
    assert server_mounts[module.WEIGHTS_DIR] is True
    assert server_mounts[module.COMPILE_CACHE_DIR] is False, "vLLM writes its compile cache"
    assert read_only(download["validated_volumes_no_cloud_buckets"]) == {module.WEIGHTS_DIR: False}


@pytest.mark.parametrize(
    ("endpoint", "protocol"),
    [
        ("https://otlp.example.com/v1/traces", "http/protobuf"),
        ("http://collector:4318/v1/traces", "http/protobuf"),
        ("http://collector:4317", "grpc"),
        ("grpc://collector:4317", "grpc"),
    ],
)
def test_otlp_protocol_follows_the_endpoint(
    endpoint: str, protocol: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (EXAMPLES / "qwen25-coder-32b.yaml").read_text()
    spec = tmp_path / "traced.yaml"
    spec.write_text(text + f"observability:\n  otlp_traces_endpoint: {endpoint}\n")
    module = import_app(render(spec, tmp_path / "traced"), "staging", monkeypatch)
    # vLLM's exporter speaks gRPC unless this says otherwise (vllm/tracing/otel.py).
    assert module.CONTAINER_ENV["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] == protocol
    # From the library's one server env, so the twin's server exports the same way.
    resolved = load_spec(spec).resolve("staging")
    assert server_env(resolved)["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] == protocol


def test_missing_weights_at_start_up_reach_sentry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sentry_sdk

    from liftdeploy.runtime.errortracking import (
        DSN_ENV,
        reporting_start_failure,
        start_error_tracking,
    )
    from liftdeploy.runtime.weights import WeightsMissing, require_snapshot

    class EnterHook:  # the app's Server before vLLM runs: no `server` yet
        pass

    with Receiver() as sentry:
        monkeypatch.setenv(DSN_ENV, f"http://key@127.0.0.1:{sentry.url.rsplit(':', 1)[1]}/42")
        try:
            assert start_error_tracking(environment="staging", release="svc-staging")
            with pytest.raises(WeightsMissing), reporting_start_failure(EnterHook()):
                require_snapshot(
                    tmp_path,
                    "org/model",
                    None,
                    volume="svc-weights",
                    fix="liftdeploy download deployment.yaml --env staging",
                )
        finally:
            sentry_sdk.get_client().close()
            sentry_sdk.get_global_scope().set_client(None)
        (event,) = sentry.sentry_events()
    assert event["tags"]["liftdeploy.phase"] == "startup"
    (exception,) = event["exception"]["values"]
    assert exception["type"] == "WeightsMissing" and "liftdeploy download" in exception["value"]


class ClaimsDict(dict):  # type: ignore[type-arg]
    """A stand-in for a modal.Dict with its `put(key, value, *, skip_if_exists)` semantics
    (the real signature is checked below): True when stored, False when the key was there."""

    def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool:
        if skip_if_exists and key in self:
            return False
        self[key] = value
        return True


def test_the_stand_in_has_modal_dicts_put_signature() -> None:
    import inspect

    import modal

    real = inspect.signature(modal.Dict.put).parameters
    assert real["skip_if_exists"].kind is inspect.Parameter.KEYWORD_ONLY
    assert real["skip_if_exists"].default is False
    assert list(inspect.signature(ClaimsDict.put).parameters) == list(real)
    for method in ("get", "pop", "__setitem__"):
        assert hasattr(modal.Dict, method)


def test_a_second_download_of_one_snapshot_is_refused_while_the_first_writes() -> None:
    from liftdeploy.runtime.weights import DownloadInProgress, single_writer, snapshot_key

    claims, key = ClaimsDict(), snapshot_key("org/model", "abc123")
    what = "org/model at abc123 on Volume svc-weights"
    writes: list[str] = []
    with single_writer(claims, key, writer="fc-first", hold_s=600, what=what):
        writes.append("first")
        with pytest.raises(
            DownloadInProgress,
            match=r"another download \(fc-first\) is "
            r"writing org/model at abc123 on Volume",
        ):
            with single_writer(claims, key, writer="fc-second", hold_s=600, what=what):
                writes.append("second")
        # A retry of the first call (same function call id) takes its own claim back.
        with single_writer(claims, key, writer="fc-first", hold_s=600, what=what):
            writes.append("first, retried")
    assert writes == ["first", "first, retried"]
    assert key not in claims  # released: the next download may write
    with single_writer(claims, key, writer="fc-second", hold_s=600, what=what):
        writes.append("second, later")
    assert writes[-1] == "second, later"


def test_a_claim_left_by_a_dead_writer_lapses_after_its_time_limit() -> None:
    from liftdeploy.runtime.weights import DownloadInProgress, single_writer, snapshot_key

    claims, key = ClaimsDict(), snapshot_key("org/model", None)
    claims[key] = {"writer": "fc-killed", "until": 1000.0}  # Modal stopped it at its limit
    with pytest.raises(DownloadInProgress):
        with single_writer(claims, key, writer="fc-new", hold_s=60, what="x", now=lambda: 999.0):
            pass
    with single_writer(claims, key, writer="fc-new", hold_s=60, what="x", now=lambda: 1001.0):
        assert claims[key] == {"writer": "fc-new", "until": 1061.0}
    assert key not in claims


@pytest.mark.parametrize("name", NAMES)
def test_the_download_claims_its_snapshot_in_a_dict_shared_by_every_environment(
    name: str, rendered: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from modal._utils.async_utils import synchronizer

    module = import_app(rendered[name], None, monkeypatch)
    claims = _closure(synchronizer._translate_in(module.download_claims)._load)
    assert claims["name"] == f"{module.WEIGHTS_VOLUME}-writers"
    source = (rendered[name] / "app.py").read_text()
    body = source.split("def download_model()", 1)[1].split("\n\n\n", 1)[0]
    # The download and the Volume commit both happen under the claim.
    claimed = body.split("with single_writer(", 1)[1]
    assert "snapshot_download(" in claimed and ".commit()" in claimed


def _image_layers(image: Any, builder_version: str) -> list[str]:
    """The Dockerfile commands modal 1.6.4 would build an image from, base image first."""
    from modal._utils.async_utils import synchronizer

    cells = _closure(synchronizer._translate_in(image)._load)
    if "mount" in cells:  # add_local_dir: files mounted on top of its base image
        return _image_layers(cells["base_image"], builder_version)
    below = [
        command
        for base in (cells["base_images"] or {}).values()
        for command in _image_layers(base, builder_version)
    ]
    return below + list(cells["dockerfile_function"](builder_version).commands)


@pytest.mark.parametrize("name", NAMES)
def test_the_image_pins_uv_the_base_image_and_its_builder_version(
    name: str, rendered: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from liftdeploy.versions import PYTHON_VERSION, UV_VERSION

    resolved = load_spec(EXAMPLES / f"{name}.yaml").resolve("staging")
    module = import_app(rendered[name], "staging", monkeypatch)
    builder = resolved.engine.image_builder_version
    assert builder == "2025.06" and module.IMAGE_BUILDER_VERSION == builder
    assert os.environ["MODAL_IMAGE_BUILDER_VERSION"] == builder  # what modal builds with
    layers = _image_layers(module.image, builder)
    assert layers[0] == f"FROM python:{PYTHON_VERSION}-slim-bookworm"
    assert f"COPY --from=ghcr.io/astral-sh/uv:{UV_VERSION} /uv /.uv/uv" in layers
    assert not any("uv:latest" in layer for layer in layers)
    assert any(f"vllm=={resolved.engine.vllm_version}" in layer for layer in layers)


def test_a_deployer_variable_that_contradicts_the_spec_is_refused(
    rendered: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(
        ValueError,
        match=r"MODAL_IMAGE_BUILDER_VERSION=2026.10 but deployment"
        r".yaml builds with 2025.06",
    ):
        import_app(
            rendered["qwen3-next-80b"],
            "staging",
            monkeypatch,
            MODAL_IMAGE_BUILDER_VERSION="2026.10",
        )


def test_productions_command_line_rehearses_on_staging_with_dummy_weights(
    rendered: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The 480B's staging runs eager, so it cannot show a CUDA-graph out-of-memory: before the
    first production deploy, production's exact argv runs on the staging app, dummy weights."""
    import json

    from test_rendered_app import _import_in_container

    from liftdeploy.render.vllm_args import server_args

    spec = load_spec(EXAMPLES / "qwen3-coder-480b.yaml")
    production, staging = spec.resolve("production"), spec.resolve("staging")
    module = import_app(
        rendered["qwen3-coder-480b"],
        "staging",
        monkeypatch,
        LIFTDEPLOY_DUMMY_WEIGHTS="1",
        LIFTDEPLOY_ARGV_OF="production",
    )
    assert module.APP_NAME == staging.app_name != production.app_name
    assert module._server_command() == [*server_args(production), "--load-format", "dummy"]
    assert "--enforce-eager" in server_args(staging)
    assert "--enforce-eager" not in module._server_command()
    # The container (which sees only what the deploy passed in) runs the same command line.
    passed_in = {k: v for k, v in module.CONTAINER_ENV.items() if v is not None}  # as Modal does
    seen = _import_in_container(rendered["qwen3-coder-480b"] / "app.py", passed_in)
    assert seen.returncode == 0, seen.stderr
    assert json.loads(seen.stdout) == {
        "env": "staging",
        "app": staging.app_name,
        "argv": server_args(production),
    }
    # Only a rehearsal: real weights under another environment's argv are refused.
    with pytest.raises(ValueError, match="only a rehearsal: set LIFTDEPLOY_DUMMY_WEIGHTS=1"):
        import_app(
            rendered["qwen3-coder-480b"], "staging", monkeypatch, LIFTDEPLOY_ARGV_OF="production"
        )
    with pytest.raises(ValueError, match="LIFTDEPLOY_ARGV_OF='prod' is not an environment"):
        import_app(
            rendered["qwen3-coder-480b"],
            "staging",
            monkeypatch,
            LIFTDEPLOY_DUMMY_WEIGHTS="1",
            LIFTDEPLOY_ARGV_OF="prod",
        )


def test_the_monitor_reads_metrics_through_proxy_auth_only_with_a_token() -> None:
    from liftdeploy.runtime.monitor import metrics_headers

    token = {"MODAL_PROXY_KEY": "wk-1", "MODAL_PROXY_SECRET": "ws-2"}
    assert metrics_headers(token, proxy_auth=True) == {"Modal-Key": "wk-1", "Modal-Secret": "ws-2"}
    assert metrics_headers({"MODAL_PROXY_KEY": "wk-1"}, proxy_auth=True) is None
    assert metrics_headers({}, proxy_auth=False) == {}


@pytest.mark.parametrize("proxy_auth", [True, False])
def test_plan_says_when_the_monitor_will_not_read_metrics(
    proxy_auth: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (EXAMPLES / "qwen25-coder-32b.yaml").read_text()
    spec = tmp_path / "watched.yaml"
    spec.write_text(
        text
        + "observability:\n  alerts: {webhook_secret: watched-alerts}\n"
        + ("" if proxy_auth else "auth: {proxy_auth: false, api_key_secret: watched-key}\n")
    )
    resolved = load_spec(spec).resolve("staging")
    lines = [line for line in plan(resolved).observability if "/metrics" in line]
    if proxy_auth:
        assert (
            lines
            == [
                line
                for line in lines
                if "Secret watched-alerts also holds MODAL_PROXY_KEY and MODAL_PROXY_SECRET" in line
            ]
            != []
        )
    else:
        assert lines == []
    service = render(spec, tmp_path / "watched")
    assert import_app(service, "staging", monkeypatch).ALERTS["webhook_secret"] == "watched-alerts"
    source = (service / "app.py").read_text()
    assert "headers = metrics_headers(os.environ, proxy_auth=not UNAUTHENTICATED)" in source
    assert "_auth_headers()" not in source.split("def monitor()", 1)[1].split("\n\n\n")[0]


def _scheduled(module: ModuleType) -> dict[str, Any]:
    """Each of the app's functions with its schedule (None: runs only when called)."""
    from modal._utils.async_utils import synchronizer

    app = synchronizer._translate_in(module.app)
    return {
        name: _closure(function._load)["schedule"]
        for name, function in app._local_state.functions.items()
    }


def test_a_release_candidate_shares_none_of_productions_writable_state(
    rendered: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`release start` deploys production's settings as `<app>-candidate`: it must not write
    production's Volumes, run production's monitor, nor be billed as production's serving."""
    from modal._utils.async_utils import synchronizer
    from test_rendered_app import _import_in_container

    from liftdeploy.client.routing import candidate_app_name

    service = rendered["qwen25-coder-32b"]
    production = load_spec(EXAMPLES / "qwen25-coder-32b.yaml").resolve("production")
    assert production.observability.alerts, "the example's production watches itself"
    name = candidate_app_name(production)

    def read_only(mounts: list[Any]) -> dict[str, bool]:
        return {
            str(path): bool(volume._mount_options and volume._mount_options.read_only)
            for path, volume in mounts
        }

    as_production = import_app(service, "production", monkeypatch)
    assert [f for f, schedule in _scheduled(as_production).items() if schedule] == ["monitor"]
    assert as_production.CONTAINER_ENV["LIFTDEPLOY_APP_NAME"] == production.app_name
    assert (
        "liftdeploy-release" not in synchronizer._translate_in(as_production.app)._local_state.tags
    )

    module = import_app(service, "production", monkeypatch, LIFTDEPLOY_APP_NAME=name)
    app = synchronizer._translate_in(module.app)
    assert (app.name, module.CANDIDATE) == (name, True)
    server, download = _objects(module)
    mounts = read_only(server["validated_volumes_no_cloud_buckets"])
    assert set(mounts) == {v.mount_path for v in production.volumes}
    assert all(mounts.values()), mounts
    assert all(read_only(download["validated_volumes_no_cloud_buckets"]).values())
    # vLLM compiles into the container, not onto production's (read-only) compile cache.
    assert not module.SERVER_PROCESS_ENV["VLLM_CACHE_ROOT"].startswith(module.COMPILE_CACHE_DIR)
    assert not hasattr(module, "monitor")
    assert [f for f, schedule in _scheduled(module).items() if schedule] == []
    assert app._local_state.tags["liftdeploy-release"] == "candidate"
    # The containers (told only what the deploy passed in) agree that they are the candidate.
    passed_in = {k: v for k, v in module.CONTAINER_ENV.items() if v is not None}
    assert passed_in["LIFTDEPLOY_APP_NAME"] == name
    seen = _import_in_container(service / "app.py", passed_in)
    assert seen.returncode == 0, seen.stderr
    assert json.loads(seen.stdout)["app"] == name


@pytest.mark.parametrize(
    ("env", "app_name", "message"),
    [
        (
            "production",
            "lift-sys-inference-canary",
            "LIFTDEPLOY_APP_NAME='lift-sys-inference-canary' is neither production's app "
            "'lift-sys-inference' nor its release candidate 'lift-sys-inference-candidate'; unset",
        ),
        (
            "staging",
            "lift-sys-inference-staging-candidate",
            "is neither staging's app 'lift-sys-inference-staging' (only production has a release "
            "candidate); unset LIFTDEPLOY_APP_NAME",
        ),
    ],
)
def test_any_other_deployed_app_name_is_refused(
    env: str,
    app_name: str,
    message: str,
    rendered: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        import_app(rendered["qwen25-coder-32b"], env, monkeypatch, LIFTDEPLOY_APP_NAME=app_name)
