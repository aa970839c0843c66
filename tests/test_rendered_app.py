"""The committed rendered examples (examples/rendered/*/app.py) against their specs.

Each app module is imported the way `modal deploy` imports it (LIFTDEPLOY_ENV set), and its
Modal objects are read back (private attributes, in `modal_view` only) and compared with the
resolved spec; its argv is fed to the installed vLLM's own argument parser; and it is imported
again the way a container does, with only what the deploy passed in.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from liftdeploy.planner.download import DOWNLOAD_RETRIES
from liftdeploy.planner.report import plan
from liftdeploy.planner.timeouts import healthy_within_s
from liftdeploy.render.vllm_args import server_args, server_env
from liftdeploy.spec.specfile import load_spec

REPO_ROOT = Path(__file__).resolve().parent.parent
RENDERED = REPO_ROOT / "examples" / "rendered"
EXAMPLES = ["qwen25-coder-32b", "qwen3-next-80b", "qwen3-coder-480b"]
CASES = [
    (name, env)
    for name in EXAMPLES
    for env in load_spec(RENDERED / name / "deployment.yaml").environments
]


def import_app(
    name: str | Path, env: str | None, monkeypatch: pytest.MonkeyPatch, **variables: str
) -> ModuleType:
    """Import a rendered app module (an example's name, or a service directory) as `modal
    deploy` does, with warnings as errors, with LIFTDEPLOY_ENV=env and these environment
    variables (and no Modal token)."""
    import warnings

    # The app sets MODAL_IMAGE_BUILDER_VERSION (modal reads it at build time); set-then-delete
    # makes monkeypatch remove it again after the test.
    monkeypatch.setenv("MODAL_IMAGE_BUILDER_VERSION", "")
    monkeypatch.delenv("MODAL_IMAGE_BUILDER_VERSION")
    for var in (
        "LIFTDEPLOY_ENV",
        "ENVIRONMENT",
        "LIFTDEPLOY_DUMMY_WEIGHTS",
        "LIFTDEPLOY_ARGV_OF",
        "LIFTDEPLOY_APP_NAME",
    ):
        monkeypatch.delenv(var, raising=False)
    if env is not None:
        monkeypatch.setenv("LIFTDEPLOY_ENV", env)
    for var, value in variables.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # keep the checkout clean
    monkeypatch.delenv("MODAL_TOKEN_ID", raising=False)
    monkeypatch.delenv("MODAL_TOKEN_SECRET", raising=False)
    spec = importlib.util.spec_from_file_location(
        f"app_{uuid.uuid4().hex}", RENDERED / name / "app.py"
    )  # absolute wins
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spec.loader.exec_module(module)
    return module


def _closure(function: Any) -> dict[str, Any]:
    code = function.__code__
    return dict(zip(code.co_freevars, (cell.cell_contents for cell in function.__closure__ or ())))


def modal_view(module: ModuleType) -> dict[str, Any]:
    """What the Modal objects of an app module say, read from modal 1.6.4's private state."""
    from modal._utils.async_utils import synchronizer

    app = synchronizer._translate_in(module.app)
    server = _closure(synchronizer._translate_in(module.Server)._service_function._load)
    download = _closure(synchronizer._translate_in(module.download_model)._load)

    def split(secrets: list[Any]) -> tuple[list[str], dict[str, str]]:
        names, env = [], {}
        for secret in secrets:
            cells = _closure(secret._load)
            if "load_env_dict" in cells:
                env.update(cells["load_env_dict"]())
            else:
                names.append(cells["name"])
        return names, env

    secret_names, server_env = split(server["secrets"])
    download_secrets, download_env = split(download["secrets"])
    http = server["http_config"]
    autoscaler = server["autoscaler_settings"]
    return {
        "app_name": app.name,
        "gpu": server["gpu"],
        "startup_timeout": http.startup_timeout,
        "exit_grace_period": http.exit_grace_period,
        "port": http.port,
        "unauthenticated": http.unauthenticated,
        "nonpreemptible": bool(
            server["scheduler_placement"] and server["scheduler_placement"].nonpreemptible
        ),
        "scaledown_window": autoscaler.scaledown_window,
        "min_containers": autoscaler.min_containers,
        "max_containers": autoscaler.max_containers
        if autoscaler.HasField("max_containers")
        else None,
        "buffer_containers": autoscaler.buffer_containers,
        "target_concurrency": autoscaler.target_concurrency_float,
        "max_concurrency": server["max_concurrent_inputs"],
        "volumes": {
            str(path): vol._name for path, vol in server["validated_volumes_no_cloud_buckets"]
        },
        "secrets": secret_names,
        "server_env": server_env,
        "download_timeout": download["timeout"],
        "download_retries": download["retry_policy"].retries,
        "download_secrets": download_secrets,
        "download_env": download_env,
        "download_volumes": {
            str(p): v._name for p, v in download["validated_volumes_no_cloud_buckets"]
        },
    }


@pytest.mark.parametrize(("name", "env"), CASES)
def test_modal_objects_equal_the_spec(name: str, env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    resolved = load_spec(RENDERED / name / "deployment.yaml").resolve(env)
    planned = plan(resolved)
    view = modal_view(import_app(name, env, monkeypatch))
    runtime = resolved.runtime
    volumes = {v.mount_path: v.name for v in resolved.volumes}
    assert view == {
        "app_name": resolved.app_name,
        "gpu": resolved.gpu.modal_gpu,
        "startup_timeout": planned.startup_timeout_s,
        "exit_grace_period": planned.exit_grace_period_s,
        "port": 8000,
        "unauthenticated": not resolved.auth.proxy_auth,
        "nonpreemptible": runtime.nonpreemptible,
        "scaledown_window": runtime.scaledown_window_s,
        "min_containers": runtime.min_containers,
        "max_containers": runtime.max_containers,
        "buffer_containers": runtime.buffer_containers,
        "target_concurrency": runtime.target_concurrent_requests or runtime.max_concurrent_requests,
        "max_concurrency": runtime.max_concurrent_requests,
        "volumes": volumes,
        "secrets": resolved.secret_names,
        "server_env": {
            **server_env(resolved),
            "LIFTDEPLOY_DUMMY_WEIGHTS": "0",
            "LIFTDEPLOY_ARGV_OF": env,
            "LIFTDEPLOY_APP_NAME": resolved.app_name,
        },
        "download_timeout": planned.download.timeout_s,
        "download_retries": DOWNLOAD_RETRIES,
        "download_secrets": [resolved.model.hf_token_secret]
        if resolved.model.hf_token_secret
        else [],
        "download_env": {**view["server_env"], "HF_XET_HIGH_PERFORMANCE": "1"},
        # The download mounts the weights Volume only, never the compile cache.
        "download_volumes": {
            v.mount_path: v.name for v in resolved.volumes if v.purpose == "weights"
        },
    }


@pytest.mark.parametrize(("name", "env"), CASES)
def test_app_carries_the_billing_tags(name: str, env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Modal's billing report splits cost by these tags; `liftdeploy spend` matches on them."""
    from modal._utils.async_utils import synchronizer

    from liftdeploy import __version__

    resolved = load_spec(RENDERED / name / "deployment.yaml").resolve(env)
    app = synchronizer._translate_in(import_app(name, env, monkeypatch).app)
    assert app._local_state.tags == {
        "liftdeploy-service": resolved.name,
        "liftdeploy-environment": env,
        "liftdeploy-version": __version__,
    }


@pytest.mark.parametrize(("name", "env"), CASES)
def test_module_argv_is_the_library_argv(
    name: str, env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolved = load_spec(RENDERED / name / "deployment.yaml").resolve(env)
    module = import_app(name, env, monkeypatch)
    assert module.ENVIRONMENT == env
    assert module.VLLM_ARGS == server_args(resolved, plan(resolved).lifecycle)
    assert module._server_command() == module.VLLM_ARGS


@pytest.fixture(scope="module")
def fresh_32b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 32B example rendered now from this checkout's template (the committed copy may
    predate a template change)."""
    from liftdeploy.render.service import render_to_dict

    out = tmp_path_factory.mktemp("fresh") / "qwen25-coder-32b"
    for relative, text in render_to_dict(REPO_ROOT / "examples" / "qwen25-coder-32b.yaml").items():
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        (out / relative).write_text(text)
    return out


@pytest.mark.parametrize("env", ["development", "staging", "production"])
def test_fresh_render_runs_the_library_argv(
    fresh_32b: Path, env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolved = load_spec(fresh_32b / "deployment.yaml").resolve(env)
    module = import_app(fresh_32b, env, monkeypatch)
    expected = server_args(resolved, plan(resolved).lifecycle)
    assert module.VLLM_ARGS == expected
    assert module._server_command() == expected
    if env != "production":  # production refuses dummy weights
        dummy = import_app(fresh_32b, env, monkeypatch, LIFTDEPLOY_DUMMY_WEIGHTS="1")
        assert dummy._server_command() == [*expected, "--load-format", "dummy"]


@pytest.mark.parametrize(("name", "env"), CASES)
def test_enter_hook_stops_waiting_before_modal_does(
    name: str, env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Modal's startup clock starts at boot: waiting as long as Modal would mean Modal kills the
    # container before liftdeploy prints vLLM's last log lines.
    resolved = load_spec(RENDERED / name / "deployment.yaml").resolve(env)
    module = import_app(name, env, monkeypatch)
    assert module.STARTUP_TIMEOUT_S == plan(resolved).startup_timeout_s
    assert module.HEALTHY_WITHIN_S == healthy_within_s(module.STARTUP_TIMEOUT_S)
    assert module.HEALTHY_WITHIN_S < module.STARTUP_TIMEOUT_S


def test_dummy_weights_switch_travels_into_the_container(monkeypatch: pytest.MonkeyPatch) -> None:
    module = import_app("qwen3-next-80b", "staging", monkeypatch, LIFTDEPLOY_DUMMY_WEIGHTS="1")
    assert module._server_command()[-2:] == ["--load-format", "dummy"]
    assert modal_view(module)["server_env"]["LIFTDEPLOY_DUMMY_WEIGHTS"] == "1"


def test_default_and_unknown_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert import_app("qwen3-next-80b", None, monkeypatch).ENVIRONMENT == "development"
    # qwen3-coder-480b defines no development overlay: the default is its other one, never
    # production.
    assert import_app("qwen3-coder-480b", None, monkeypatch).ENVIRONMENT == "staging"
    # ENVIRONMENT is the original plan's variable; LIFTDEPLOY_ENV wins over it.
    assert (
        import_app("qwen3-next-80b", None, monkeypatch, ENVIRONMENT="staging").ENVIRONMENT
        == "staging"
    )
    assert (
        import_app("qwen3-next-80b", "production", monkeypatch, ENVIRONMENT="staging").ENVIRONMENT
        == "production"
    )
    with pytest.raises(ValueError, match="unknown environment 'prod'.*production, staging"):
        import_app("qwen3-next-80b", "prod", monkeypatch)


# Imports the app as a Modal container does: a fresh process whose environment holds only what
# the deploy passed in (the server's env=), with modal's container flag set.
_CONTAINER_IMPORT = """
import importlib.util, json, sys
from modal._runtime.task_lifecycle_manager import _TaskLifecycleManager
_TaskLifecycleManager._singleton = object()  # what modal.is_local() checks
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps({"env": module.ENVIRONMENT, "app": module.APP_NAME, "argv": module.VLLM_ARGS}))
"""


def _import_in_container(app_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {key: os.environ[key] for key in ("PATH", "HOME") if key in os.environ}
    return subprocess.run(
        [sys.executable, "-B", "-c", _CONTAINER_IMPORT, str(app_path)],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("env", ["staging", "production"])
def test_container_resolves_the_deployed_environment(
    env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "qwen25-coder-32b"
    passed_in = modal_view(import_app(name, env, monkeypatch))["server_env"]
    # A deployer-side ENVIRONMENT (say, from a user's Secret) must not win inside the container.
    proc = _import_in_container(
        RENDERED / name / "app.py", {**passed_in, "ENVIRONMENT": "development"}
    )
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    resolved = load_spec(RENDERED / name / "deployment.yaml").resolve(env)
    assert seen == {"env": env, "app": resolved.app_name, "argv": server_args(resolved)}


def test_an_app_with_only_production_needs_the_variable_and_may_be_nonpreemptible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from liftdeploy.render.service import render

    spec_path = tmp_path / "solo.yaml"
    spec_path.write_text(
        "version: 2\nname: solo\nmodel:\n  id: Qwen/Qwen2.5-Coder-32B-Instruct\n"
        "  max_model_len: 8192\ngpu:\n  type: H100\n"
        "runtime:\n  nonpreemptible: true\n"
    )
    service = render(spec_path, tmp_path / "solo")
    with pytest.raises(ValueError, match="production is never the default; set LIFTDEPLOY_ENV"):
        import_app(service, None, monkeypatch)
    module = import_app(service, "production", monkeypatch)
    assert module.ENVIRONMENT == "production"
    assert modal_view(module)["nonpreemptible"] is True


def test_container_without_the_environment_refuses_to_guess() -> None:
    proc = _import_in_container(
        RENDERED / "qwen25-coder-32b" / "app.py",
        {"ENVIRONMENT": "production", "LIFTDEPLOY_DUMMY_WEIGHTS": "0"},
    )
    assert proc.returncode != 0
    assert "not passed in by the deploy" in proc.stderr


# One vLLM import (about 9 s) checks every argv of every example: the module's, the dummy-weights
# variant against the library's own dummy argv, and a misspelled flag that must fail.
_PARSE = """
import json, sys
from vllm.entrypoints.launchers.cli_args import make_arg_parser
from vllm.utils.argparse_utils import FlexibleArgumentParser
results = {}
for key, argv in json.load(sys.stdin).items():
    parser = make_arg_parser(FlexibleArgumentParser())
    try:
        results[key] = {k: repr(v) for k, v in sorted(vars(parser.parse_args(argv)).items())}
    except SystemExit as exc:
        results[key] = {"exit": exc.code}
print(json.dumps(results))
"""


def test_rendered_argv_is_accepted_by_vllms_parser(
    monkeypatch: pytest.MonkeyPatch, twin_supported: None
) -> None:
    argvs: dict[str, list[str]] = {}
    for name, env in CASES:
        resolved = load_spec(RENDERED / name / "deployment.yaml").resolve(env)
        module = import_app(name, env, monkeypatch)
        argvs[f"{name}/{env}"] = module.VLLM_ARGS
        argvs[f"{name}/{env}/dummy-module"] = [*module.VLLM_ARGS, "--load-format", "dummy"]
        argvs[f"{name}/{env}/dummy-library"] = server_args(resolved, load_format="dummy")
    first = argvs[f"{CASES[0][0]}/{CASES[0][1]}"]
    argvs["misspelled"] = [*first, "--max-num-seqz", "4"]
    proc = subprocess.run(
        [sys.executable, "-c", _PARSE],
        input=json.dumps(argvs),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    parsed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert parsed["misspelled"] == {"exit": 2}
    for name, env in CASES:
        namespace = parsed[f"{name}/{env}"]
        assert "exit" not in namespace, f"{name}/{env}: vLLM rejected the argv"
        assert parsed[f"{name}/{env}/dummy-module"] == parsed[f"{name}/{env}/dummy-library"]
        assert parsed[f"{name}/{env}/dummy-module"]["load_format"] == "'dummy'"


@pytest.mark.parametrize("name", EXAMPLES)
def test_image_carries_exactly_the_runtime_files_the_app_needs(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = import_app(name, None, monkeypatch)
    shipped = {p.name for p in (RENDERED / name / "liftdeploy_runtime").glob("*.py")}
    named = {
        arg.split(".")[2] + ".py"
        for arg in module.VLLM_ARGS
        if arg.startswith("liftdeploy.runtime.")
    }
    assert {"__init__.py", "server.py", "weights.py", *named} <= shipped
    assert module.RUNTIME_DIR == RENDERED / name / "liftdeploy_runtime"


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_shipped_runtime_module_imports_from_the_shipped_files_alone(
    name: str, tmp_path: Path
) -> None:
    """The image holds liftdeploy_runtime/ as liftdeploy.runtime and nothing else of
    liftdeploy: each shipped module must import from those files alone (a module the guard
    starts importing, say, must be shipped with it)."""
    runtime = tmp_path / "liftdeploy" / "runtime"
    shutil.copytree(RENDERED / name / "liftdeploy_runtime", runtime)
    (tmp_path / "liftdeploy" / "__init__.py").write_text("")
    modules = sorted(p.stem for p in runtime.glob("*.py") if p.stem != "__init__")
    code = (
        "import importlib, sys\n"
        "for m in sys.argv[1:]: importlib.import_module('liftdeploy.runtime.' + m)\n"
        "import liftdeploy.runtime as r; print(r.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *modules],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(tmp_path), "PATH": os.environ["PATH"]},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(runtime / "__init__.py")


REMOVED_MODAL_APIS = [
    "keep_warm",
    "concurrency_limit",
    "allow_concurrent_inputs",
    "container_idle_timeout",
    "web_endpoint",
    "Stub",
    "modal.gpu.",
    "registered_functions",
]


@pytest.mark.parametrize("name", EXAMPLES)
def test_no_removed_modal_api_and_a_version_header(name: str) -> None:
    from liftdeploy import __version__

    text = (RENDERED / name / "app.py").read_text()
    assert text.splitlines()[0].startswith(f"# Generated by liftdeploy {__version__} ")
    assert [api for api in REMOVED_MODAL_APIS if api in text] == []
    assert "@app.server(" in text and "@modal.enter()" in text and "@modal.exit()" in text
