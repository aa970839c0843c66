"""Modal-side operations, tested up to Modal's boundary.

Commands are checked against the real modal 1.6.4 CLI's own parser; failures come from running
the real `modal` CLI with no token (it fails at once with an auth error); refusals use real git
repositories; secrets are followed through outputs and argv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import click
import pytest

from liftdeploy.errors import OpsError
from liftdeploy.ops.deploy_policy import prepare_deploy, production_notes
from liftdeploy.ops.git_state import GitState, git_state
from liftdeploy.ops.history import DeployedVersion, parse_history
from liftdeploy.ops.modal_commands import (
    Command,
    deploy_command,
    history_command,
    is_error_line,
    logs_command,
    normalize_version,
    rollback_command,
)
from liftdeploy.ops.modal_runner import ModalCommandError, run_modal
from liftdeploy.ops.modal_sdk import (
    CreateCall,
    Resource,
    bootstrap,
    creation_calls,
    required_resources,
)
from liftdeploy.ops.service_files import locate_service
from liftdeploy.ops.status import EnvironmentStatus, format_status
from liftdeploy.spec.model import ResolvedDeployment
from liftdeploy.spec.specfile import dump_yaml, load_spec, read_yaml, spec_from_data

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = {
    "32b": REPO_ROOT / "examples" / "qwen25-coder-32b.yaml",
    "80b": REPO_ROOT / "examples" / "qwen3-next-80b.yaml",
    "480b": REPO_ROOT / "examples" / "qwen3-coder-480b.yaml",
}
SECRET_VALUE = "hf_LiftdeployTestSentinel0123456789abcdef"
API_KEY_VALUE = "sk-liftdeploy-test-sentinel-9876543210"


@pytest.fixture(autouse=True)
def no_modal_token(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test runs logged out: Modal's CLI and SDK then fail at once, offline."""
    config = tmp_path_factory.mktemp("modal") / "modal.toml"
    monkeypatch.setenv("MODAL_CONFIG_PATH", str(config))
    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_PROFILE", "MODAL_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)


def _resolve(example: str, env: str) -> ResolvedDeployment:
    return load_spec(EXAMPLES[example]).resolve(env)


def _variant(example: str, **changes: object) -> ResolvedDeployment:
    """An example with top-level overlay changes, e.g. a Modal environment per overlay."""
    data = read_yaml(EXAMPLES[example])
    for env, overlay in changes.items():
        data["environments"][env].update(overlay)
    return spec_from_data(data).resolve(next(iter(changes)))


def modal_cli_parse(argv: list[str]) -> tuple[str, dict[str, object]]:
    """Parse argv with the real modal CLI's click commands, without running anything."""
    from modal.cli.entry_point import entrypoint_cli

    assert argv[0] == "modal"
    command: click.Command = entrypoint_cli
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # click's protected_args
        ctx = command.make_context("modal", list(argv[1:]))
        rest = [*ctx.protected_args, *ctx.args]
        while isinstance(command, click.Group):
            name, command, rest = command.resolve_command(ctx, rest)
            ctx = command.make_context(name, rest, parent=ctx)
            rest = [*ctx.protected_args, *ctx.args] if isinstance(command, click.Group) else []
    return command.name, ctx.params


# --- exact commands -----------------------------------------------------------------------------

ENVIRONMENTS = [
    ("32b", "production", "lift-sys-inference"),
    ("32b", "staging", "lift-sys-inference-staging"),
    ("32b", "development", "lift-sys-inference-development"),
    ("80b", "production", "qwen3-next-80b"),
    ("80b", "staging", "qwen3-next-80b-staging"),
    ("80b", "development", "qwen3-next-80b-development"),
    ("480b", "production", "qwen3-coder-480b"),
    ("480b", "staging", "qwen3-coder-480b-staging"),
]


@pytest.mark.parametrize(("example", "env", "app_name"), ENVIRONMENTS)
def test_deploy_command_per_environment(example: str, env: str, app_name: str) -> None:
    resolved = _resolve(example, env)
    command = deploy_command(resolved, Path("/srv/svc/app.py"), tag="1a2b3c4")
    assert command.argv == [
        "modal",
        "deploy",
        "--name",
        app_name,
        "--tag",
        "1a2b3c4",
        "--strategy",
        "rolling",
        "app.py",
    ]
    assert command.env == {"LIFTDEPLOY_ENV": env}
    assert command.cwd == Path("/srv/svc")
    assert command.shell() == (
        f"cd /srv/svc && LIFTDEPLOY_ENV={env} modal deploy --name {app_name} --tag 1a2b3c4 "
        f"--strategy rolling app.py"
    )
    name, params = modal_cli_parse(command.argv)
    assert (name, params["name"], params["tag"], params["strategy"], params["app_ref"]) == (
        "deploy",
        app_name,
        "1a2b3c4",
        "rolling",
        "app.py",
    )


@pytest.mark.parametrize(("example", "env", "app_name"), ENVIRONMENTS)
def test_app_commands_per_environment(example: str, env: str, app_name: str) -> None:
    resolved = _resolve(example, env)
    assert rollback_command(resolved).argv == [
        "modal",
        "app",
        "rollback",
        app_name,
        "--strategy",
        "rolling",
    ]
    assert rollback_command(resolved, "12").argv == [
        "modal",
        "app",
        "rollback",
        app_name,
        "v12",
        "--strategy",
        "rolling",
    ]
    assert logs_command(resolved, since="1h").argv == [
        "modal",
        "app",
        "logs",
        app_name,
        "--since",
        "1h",
    ]
    assert logs_command(resolved, follow=True).argv == [
        "modal",
        "app",
        "logs",
        app_name,
        "--follow",
    ]
    assert history_command(resolved).argv == ["modal", "app", "history", app_name, "--json"]
    for command in (
        rollback_command(resolved, "v3"),
        logs_command(resolved, since="2h"),
        logs_command(resolved, follow=True),
        history_command(resolved),
    ):
        name, params = modal_cli_parse(command.argv)
        assert params["app_identifier"] == app_name, command.argv


def test_modal_environment_and_strategy_reach_every_command() -> None:
    resolved = _variant(
        "80b",
        production={
            "modal_environment": "inference-prod",
            "runtime": {"deploy_strategy": "recreate"},
        },
    )
    deploy = deploy_command(resolved, Path("svc/app.py"), tag=None)
    assert deploy.argv == [
        "modal",
        "deploy",
        "--env",
        "inference-prod",
        "--name",
        "qwen3-next-80b",
        "--strategy",
        "recreate",
        "app.py",
    ]
    for command in (
        deploy,
        rollback_command(resolved, "v2"),
        history_command(resolved),
        logs_command(resolved, since="30m"),
    ):
        assert modal_cli_parse(command.argv)[1]["env"] == "inference-prod", command.argv
    assert modal_cli_parse(rollback_command(resolved).argv)[1]["strategy"] == "recreate"


def test_bad_rollback_version_and_follow_with_since_are_refused() -> None:
    resolved = _resolve("32b", "production")
    with pytest.raises(OpsError, match="v12"):
        rollback_command(resolved, "last-tuesday")
    assert normalize_version(" v007 ") == "v7"
    with pytest.raises(OpsError, match="--follow"):
        logs_command(resolved, since="1h", follow=True)


@pytest.mark.parametrize(
    ("line", "is_error"),
    [
        (
            '{"asctime": "2026-11-28 10:00:00", "levelname": "ERROR", "message": "engine died"}',
            True,
        ),
        ("ERROR 11-28 10:00:00 [engine.py:12] CUDA out of memory", True),
        ("Traceback (most recent call last):", True),
        ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", True),
        ('{"levelname": "INFO", "message": "GET /health 200"}', False),
        ("INFO 11-28 10:00:00 [api_server.py:1] Starting vLLM API server on 0.0.0.0:8000", False),
        ("Avg prompt throughput: 12.0 tokens/s, errors: 0", False),
    ],
)
def test_errors_filter(line: str, is_error: bool) -> None:
    assert is_error_line(line) is is_error


# --- status -------------------------------------------------------------------------------------


def _history_json(rows: list[list[str | None]], *, with_tag: bool = True) -> str:
    """JSON exactly as `modal app history --json` builds it (keys from its column titles)."""
    from modal.cli.utils import _col_name_to_json_key

    columns = ["Version", "Time deployed", "Client", "Deployed by", "Commit", "Tag"]
    if not with_tag:
        columns = columns[:-1]
    keys = [_col_name_to_json_key(c) for c in columns]
    return json.dumps([dict(zip(keys, row)) for row in rows])


def test_parse_history_newest_first_with_dirty_marker_and_tag() -> None:
    text = _history_json(
        [
            ["v2", "2026-11-27 09:00", "1.6.4", "ana", "1a2b3c4", "1a2b3c4"],
            ["v10", "2026-11-28 10:00", "1.6.4", "ben", "9f8e7d6*", "9f8e7d6-dirty"],
            ["v1", "2026-11-26 08:00", "1.6.4", "ana", None, None],
        ]
    )
    history = parse_history(text)
    assert [v.version for v in history] == ["v10", "v2", "v1"]
    newest = history[0]
    assert (newest.commit, newest.dirty, newest.tag) == ("9f8e7d6", True, "9f8e7d6-dirty")
    assert (history[2].commit, history[2].tag) == (None, None)
    untagged = parse_history(
        _history_json([["v1", "t", "1.6.4", "ana", "1a2b3c4"]], with_tag=False)
    )
    assert untagged[0].tag is None and untagged[0].commit == "1a2b3c4"
    with pytest.raises(OpsError, match="not JSON"):
        parse_history("Error: something")


def test_status_compares_deployed_commit_with_checkout() -> None:
    deployed = DeployedVersion("v4", "2026-11-28 10:00", "ana", "1a2b3c4", False, "1a2b3c4")
    same = GitState("1a2b3c4" + "0" * 33, dirty=False)
    other = GitState("77777770" + "0" * 32, dirty=False)
    assert EnvironmentStatus("production", "svc", deployed, same).matches_checkout is True
    assert EnvironmentStatus("production", "svc", deployed, other).matches_checkout is False
    dirty = GitState(same.commit, dirty=True)
    assert EnvironmentStatus("production", "svc", deployed, dirty).matches_checkout is False
    assert EnvironmentStatus("production", "svc", deployed, None).matches_checkout is None
    line = format_status(EnvironmentStatus("production", "svc", deployed, other))
    assert "v4 commit 1a2b3c4" in line and "differs from this checkout (7777777)" in line
    missing = EnvironmentStatus("staging", "svc-staging", None, same)
    assert format_status(missing).endswith("svc-staging: not deployed")
    assert missing.to_dict()["deployed"] is False


# --- git and deploy refusals --------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _service_in_git(tmp_path: Path, example: str = "32b") -> Path:
    """A committed service directory holding a spec and an app (contents not rendered)."""
    repo = tmp_path / "repo"
    service = repo / "services" / "llm"
    service.mkdir(parents=True)
    (service / "deployment.yaml").write_text(EXAMPLES[example].read_text())
    (service / "app.py").write_text("import modal\napp = modal.App('placeholder')\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "service")
    return service


def test_git_state_clean_dirty_and_outside_git(tmp_path: Path) -> None:
    service = _service_in_git(tmp_path)
    state = git_state(service)
    assert state is not None and not state.dirty
    assert state.commit == _git(service, "rev-parse", "HEAD") and state.tag == state.commit[:7]
    (service / "notes.txt").write_text("untracked counts, as in Modal's own commit record\n")
    dirty = git_state(service)
    assert dirty is not None and dirty.dirty and dirty.tag == f"{state.short}-dirty"
    outside = tmp_path / "plain"
    outside.mkdir()
    assert git_state(outside) is None


def test_production_from_a_dirty_tree_is_refused_unless_allowed(tmp_path: Path) -> None:
    service = _service_in_git(tmp_path)
    clean = prepare_deploy(locate_service(service), "production", skip_check=True)
    assert clean.command.argv[-5:] == ["--tag", clean.git.short, "--strategy", "rolling", "app.py"]
    (service / "app.py").write_text("# edited by hand\n")
    with pytest.raises(OpsError, match="uncommitted changes.*--allow-dirty"):
        prepare_deploy(locate_service(service), "production", skip_check=True)
    allowed = prepare_deploy(
        locate_service(service),
        "production",
        allow_dirty=True,
        skip_check=True,
    )
    assert f"{clean.git.short}-dirty" in allowed.command.argv
    # Staging may run uncommitted work; the tag says so.
    staging = prepare_deploy(locate_service(service), "staging", skip_check=True)
    assert staging.command.argv[staging.command.argv.index("--tag") + 1].endswith("-dirty")
    assert staging.notes == []


def test_production_outside_git_is_refused_and_spec_without_app_too(tmp_path: Path) -> None:
    service = tmp_path / "svc"
    service.mkdir()
    (service / "deployment.yaml").write_text(EXAMPLES["32b"].read_text())
    (service / "app.py").write_text("")
    with pytest.raises(OpsError, match="not in a git checkout"):
        prepare_deploy(locate_service(service), "production", skip_check=True)
    untagged = prepare_deploy(locate_service(service), "staging", skip_check=True)
    assert "--tag" not in untagged.command.argv
    with pytest.raises(OpsError, match="no rendered app.py"):
        prepare_deploy(locate_service(EXAMPLES["32b"]), "staging")
    with pytest.raises(OpsError, match="has no deployment.yaml"):
        locate_service(tmp_path)


def test_production_notes_show_the_always_on_cost_and_url_lookup(tmp_path: Path) -> None:
    always_on = _variant("32b", production={"runtime": {"min_containers": 1}})
    notes = "\n".join(production_notes(always_on))
    monthly = always_on.always_on_monthly_usd
    assert monthly > 1000 and f"${monthly:,.0f}/month" in notes
    assert "MODAL_ENDPOINT_URL" in notes and "Server.from_name('lift-sys-inference'" in notes
    cold = "\n".join(production_notes(_resolve("32b", "production")))
    assert "$0/month" in cold and "600 s idle" in cold


# --- a rendered service (liftdeploy.render.service) in a real git repository ----------------------------


@pytest.fixture(scope="module")
def rendered_32b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from liftdeploy.render.service import render

    return render(EXAMPLES["32b"], tmp_path_factory.mktemp("rendered") / "llm")


@pytest.fixture
def service(rendered_32b: Path, tmp_path: Path) -> Path:
    """The rendered 32B service, committed in a fresh git repository."""
    repo = tmp_path / "repo"
    target = repo / "services" / "llm"
    shutil.copytree(rendered_32b, target)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "render")
    return target


def test_deploy_of_a_clean_rendered_service(service: Path) -> None:
    step = prepare_deploy(locate_service(service), "production")
    head = _git(service, "rev-parse", "--short=7", "HEAD")
    assert step.command.argv == [
        "modal",
        "deploy",
        "--name",
        "lift-sys-inference",
        "--tag",
        head,
        "--strategy",
        "rolling",
        "app.py",
    ]
    assert step.command.cwd == service and step.command.env == {"LIFTDEPLOY_ENV": "production"}
    notes = "\n".join(step.notes)
    assert "always-on cost: $0/month" in notes and "MODAL_ENDPOINT_URL" in notes
    assert "plan: " not in notes  # the example follows `plan --suggest`: nothing to warn about


def test_deploy_notes_carry_the_plans_warnings(service: Path) -> None:
    from liftdeploy.render.service import render

    # The original plan's 20 concurrent requests: more than the KV cache holds at once.
    spec_file = service / "deployment.yaml"
    spec_file.write_text(
        spec_file.read_text().replace("max_concurrent_requests: 13", "max_concurrent_requests: 20")
    )
    render(spec_file, service)
    _git(service, "commit", "-q", "-am", "20 concurrent")
    notes = "\n".join(prepare_deploy(locate_service(service), "production").notes)
    assert "plan: warning" in notes and "20" in notes


def test_stale_app_and_a_plan_that_does_not_fit_are_refused(service: Path) -> None:
    from liftdeploy.render.service import render

    # The original plan's staging idea: a 32B bf16 model on a 24 GB A10G.
    spec_file = service / "deployment.yaml"
    text = spec_file.read_text()
    assert text.count("\n  staging:\n") == 1
    spec_file.write_text(text.replace("\n  staging:\n", "\n  staging:\n    gpu: {type: A10G}\n"))
    _git(service, "commit", "-q", "-am", "staging on A10G")
    with pytest.raises(OpsError, match="rendered app is stale.*liftdeploy render"):
        prepare_deploy(locate_service(service), "staging")
    render(service / "deployment.yaml", service)
    _git(service, "add", ".")
    _git(service, "commit", "-q", "-m", "re-render")
    with pytest.raises(OpsError, match="does not fit.*--skip-check"):
        prepare_deploy(locate_service(service), "staging")
    forced = prepare_deploy(locate_service(service), "staging", skip_check=True)
    assert forced.command.argv[3] == "lift-sys-inference-staging"


def test_real_modal_deploy_imports_the_rendered_app_then_stops_at_login(service: Path) -> None:
    step = prepare_deploy(locate_service(service), "staging")
    with pytest.raises(ModalCommandError) as caught:
        run_modal(step.command, capture=True)
    # Modal imported app.py (LIFTDEPLOY_ENV=staging picked a known overlay) and only then asked
    # for credentials; a broken app or a bad environment would fail before the token check.
    assert "Token missing" in caught.value.stderr_tail
    assert "unknown environment" not in caught.value.stderr_tail


def test_cli_deploy_dry_run_of_a_rendered_service(service: Path) -> None:
    result = _cli("deploy", str(service), "--env", "production", "--dry-run")
    assert result.returncode == 0, result.stderr
    head = _git(service, "rev-parse", "--short=7", "HEAD")
    assert result.stdout == (
        f"cd {service} && LIFTDEPLOY_ENV=production modal deploy --name lift-sys-inference "
        f"--tag {head} --strategy rolling app.py\n"
    )
    assert "always-on cost: $0/month" in result.stderr
    (service / "app.py").write_text((service / "app.py").read_text() + "# hand edit\n")
    refused = _cli("deploy", str(service), "--env", "production", "--dry-run", "--skip-check")
    assert refused.returncode == 1 and "uncommitted changes" in refused.stderr
    assert "Traceback" not in refused.stderr


# --- the runner against the real modal CLI ------------------------------------------------------


def test_failing_modal_command_becomes_ops_error_with_stderr_tail() -> None:
    command = history_command(_resolve("32b", "production"))
    with pytest.raises(ModalCommandError) as caught:
        run_modal(command, capture=True)
    error = caught.value
    assert error.returncode != 0 and "Token missing" in error.stderr_tail
    assert "modal app history lift-sys-inference --json" in str(error)
    assert "modal token new" in str(error) and "Token missing" in str(error)


def test_runner_streams_filtered_lines_and_echoes_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    script = (
        "import sys\n"
        "print('INFO 11-28 server up')\n"
        "print('ERROR 11-28 engine died')\n"
        "print('Traceback (most recent call last):')\n"
        "print('progress on stderr', file=sys.stderr)\n"
        "sys.exit(3)\n"
    )
    with pytest.raises(ModalCommandError) as caught:
        run_modal(Command([sys.executable, "-c", script]), line_filter=is_error_line)
    out, err = capsys.readouterr()
    assert out == "ERROR 11-28 engine died\nTraceback (most recent call last):\n"
    assert err == "progress on stderr\n"
    assert caught.value.returncode == 3 and caught.value.stderr_tail == "progress on stderr"
    assert "its error output is above" in str(caught.value)


def test_modal_deploy_of_a_broken_app_reports_its_error(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("import modal\nraise RuntimeError('broken app module')\n")
    command = Command(
        ["modal", "deploy", "app.py"], env={"LIFTDEPLOY_ENV": "staging"}, cwd=tmp_path
    )
    with pytest.raises(ModalCommandError, match="broken app module"):
        run_modal(command, capture=True)


def test_missing_modal_cli_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(OpsError, match="cannot run .*liftdeploy-no-such-program"):
        run_modal(Command(["liftdeploy-no-such-program", "app", "list"]))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(OpsError, match="pip install modal"):
        run_modal(Command(["modal", "app", "list"]))


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real console entry point in a subprocess, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "liftdeploy.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.parametrize(
    "args",
    [
        ["rollback", str(EXAMPLES["80b"]), "--env", "production"],
        ["logs", str(EXAMPLES["80b"]), "--env", "staging", "--since", "1h", "--errors"],
        ["status", str(EXAMPLES["480b"])],
        ["bootstrap", str(EXAMPLES["32b"]), "--env", "production"],
    ],
)
def test_cli_reports_modal_failures_without_traceback(args: list[str]) -> None:
    result = _cli(*args)
    assert result.returncode == 1, result.stderr
    assert "error:" in result.stderr and "modal token new" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_dry_runs_print_exact_commands() -> None:
    result = _cli("rollback", str(EXAMPLES["32b"]), "--env", "staging", "--to", "v3", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "modal app rollback lift-sys-inference-staging v3 --strategy rolling\n"


# --- bootstrap ----------------------------------------------------------------------------------


def test_required_resources_per_environment() -> None:
    production = required_resources(_resolve("32b", "production"))
    assert [(r.kind, r.name) for r in production] == [
        ("volume", "lift-sys-models"),
        ("volume", "lift-sys-torch-cache"),
        ("dict", "lift-sys-token-store"),
        ("dict", "lift-sys-user-prefs"),
        ("secret", "huggingface"),
        ("secret", "lift-sys-sentry"),
        ("secret", "lift-sys-otlp-headers"),
        ("secret", "lift-sys-alerts-webhook"),
    ]
    # No Secret nothing reads (the plan's prod-modal-secrets held VLLM_EAGER/ENVIRONMENT, now
    # spec fields): every Secret has the keys its reader takes, and bootstrap creates it.
    keys = {r.name: (r.secret_keys, r.user_created) for r in production if r.kind == "secret"}
    assert keys == {
        "huggingface": (("HF_TOKEN",), False),
        "lift-sys-sentry": (("SENTRY_DSN",), False),
        "lift-sys-otlp-headers": (("OTEL_EXPORTER_OTLP_TRACES_HEADERS",), False),
        "lift-sys-alerts-webhook": (("LIFTDEPLOY_ALERT_WEBHOOK_URL",), False),
    }
    # Staging has its own Dicts, Secrets and compile cache; only the weights Volume is shared.
    staging = required_resources(_resolve("32b", "staging"))
    assert [(r.kind, r.name) for r in staging] == [
        ("volume", "lift-sys-models"),
        ("volume", "lift-sys-torch-cache-staging"),
        ("dict", "lift-sys-token-store-staging"),
        ("dict", "lift-sys-user-prefs-staging"),
        ("secret", "huggingface-staging"),
    ]
    # Default volumes when the spec names none, and the API key secret.
    data = read_yaml(EXAMPLES["80b"])
    del data["storage"]["volumes"]
    data["auth"] = {"api_key_secret": "qwen-api-key"}
    resources = required_resources(spec_from_data(data).resolve("development"))
    assert [r.name for r in resources if r.kind == "volume"] == [
        "qwen3-next-80b-weights",
        "qwen3-next-80b-compile-cache-development",
    ]
    assert [r.secret_keys for r in resources if r.name == "qwen-api-key-development"] == [
        ("VLLM_API_KEY",)
    ]


def test_creation_calls_carry_values_to_the_sdk_and_hide_them_elsewhere() -> None:
    resolved = _resolve("32b", "staging")
    missing = [
        r
        for r in required_resources(resolved)
        if r.name != "lift-sys-models" and not r.user_created
    ]
    calls = creation_calls(missing, "ml-staging", environ={"HF_TOKEN": SECRET_VALUE})
    described = [c.describe() for c in calls]
    assert described == [
        "modal.Volume.objects.create('lift-sys-torch-cache-staging', allow_existing=True, "
        "environment_name='ml-staging')",
        "modal.Dict.objects.create('lift-sys-token-store-staging', allow_existing=True, "
        "environment_name='ml-staging')",
        "modal.Dict.objects.create('lift-sys-user-prefs-staging', allow_existing=True, "
        "environment_name='ml-staging')",
        "modal.Secret.objects.create('huggingface-staging', {'HF_TOKEN': ...}, "
        "allow_existing=True, environment_name='ml-staging')",
    ]
    assert calls[-1].env_dict == {"HF_TOKEN": SECRET_VALUE}
    assert SECRET_VALUE not in repr(calls) and SECRET_VALUE not in "".join(described)


def test_secret_values_come_from_a_prompt_or_a_clear_error() -> None:
    hf = Resource("secret", "huggingface", secret_keys=("HF_TOKEN",))
    asked: list[str] = []

    def prompt(text: str) -> str:
        asked.append(text)
        return f"  {SECRET_VALUE}\n"

    [call] = creation_calls([hf], None, environ={}, prompt=prompt)
    assert call.env_dict == {"HF_TOKEN": SECRET_VALUE}
    assert "HF_TOKEN" in asked[0] and "hidden" in asked[0]
    with pytest.raises(OpsError, match="export HF_TOKEN"):
        creation_calls([hf], None, environ={"HF_TOKEN": ""})  # stdin is not a terminal in tests
    with pytest.raises(OpsError, match="no value given"):
        creation_calls([hf], None, environ={}, prompt=lambda text: "")


@pytest.mark.parametrize("kind", ["volume", "dict", "secret"])
def test_sdk_calls_bind_to_the_real_modal_api_and_fail_cleanly_logged_out(kind: str) -> None:
    env_dict = {"ENVIRONMENT": "staging"} if kind == "secret" else None
    call = CreateCall(kind, "liftdeploy-test", "ml-staging", env_dict=env_dict)
    with pytest.raises(OpsError, match="not logged in to Modal.*modal token new"):
        call.run()


def test_bootstrap_dry_run_logged_out_lists_what_it_would_check() -> None:
    report = bootstrap(_resolve("32b", "production"), dry_run=True, environ={})
    assert report.offline_reason and "not logged in" in report.offline_reason
    assert {row.state for row in report.rows} == {"unknown"}
    # 2 Volumes, 2 Dicts, the Hugging Face Secret, and production's Sentry, OTLP-headers and
    # alerts-webhook Secrets
    assert len(report.rows) == 8
    with pytest.raises(OpsError, match="not logged in"):
        bootstrap(_resolve("32b", "production"), environ={"HF_TOKEN": SECRET_VALUE})


def test_no_secret_value_in_any_output_or_argv(tmp_path: Path) -> None:
    data = read_yaml(EXAMPLES["32b"])
    data["auth"] = {"api_key_secret": "llm-api-key"}
    spec_file = tmp_path / "deployment.yaml"
    spec_file.write_text(dump_yaml(data))
    (tmp_path / "app.py").write_text("")
    env = {"HF_TOKEN": SECRET_VALUE, "VLLM_API_KEY": API_KEY_VALUE}
    runs = [
        _cli("bootstrap", str(tmp_path), "--env", "production", "--dry-run", env=env),
        _cli("bootstrap", str(tmp_path), "--env", "staging", "--dry-run", "--json", env=env),
        _cli("bootstrap", str(tmp_path), "--env", "production", env=env),
        _cli("deploy", str(tmp_path), "--env", "staging", "--dry-run", "--skip-check", env=env),
    ]
    for result in runs:
        assert result.returncode in (0, 1), result.stderr
        for value in env.values():
            assert value not in result.stdout and value not in result.stderr
    assert "from $HF_TOKEN" in runs[0].stdout and "from $VLLM_API_KEY" in runs[0].stdout
    assert "modal deploy --name lift-sys-inference-staging" in runs[3].stdout
    step = prepare_deploy(locate_service(tmp_path), "staging", skip_check=True)
    for value in env.values():
        assert value not in " ".join(step.command.argv) and value not in str(step.command.env)


def test_runbook_says_what_each_secret_holds_and_how_to_stop(rendered_32b: Path) -> None:
    """Every Secret bootstrap knows of, per environment, has a RUNBOOK row with its keys (or
    says it is the user's own); the incident section names the kill switch."""
    runbook = (rendered_32b / "RUNBOOK.md").read_text()
    rows = [line for line in runbook.splitlines() if line.startswith("| ") and "`" in line]
    spec = load_spec(EXAMPLES["32b"])
    for env in spec.environments:
        for resource in required_resources(spec.resolve(env)):
            if resource.kind != "secret":
                continue
            row = next((r for r in rows if r.startswith(f"| {env} | `{resource.name}` |")), None)
            assert row is not None, (env, resource.name)
            if resource.user_created:
                assert "yours" in row and "liftdeploy reads none" in row
            else:
                assert all(f"`{key}`" in row for key in resource.secret_keys), row
    assert "liftdeploy stop deployment.yaml --env production" in runbook
