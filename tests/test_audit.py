"""audit-endpoints on small real trees, including the original plan's hard-coded URL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from liftdeploy.cli.main import main
from liftdeploy.ops.audit import AuditError, audit, scan_text

# The original plan, gap 2: lift_sys/dspy_signatures/provider_adapter.py:26.
PLAN_URL = "https://rand--generate.modal.run"
PLAN_LINE = 26


def _adapter_source() -> str:
    """A provider adapter with the plan's default endpoint on line 26."""
    head = ['"""Provider adapter for the DSPy signatures."""', "", "import os", ""]
    head += [f"# filler line {i}" for i in range(PLAN_LINE - len(head) - 3)]
    head += ["class ModalProvider:", "    def __init__(self,"]
    return "\n".join([*head, f'                 endpoint_url="{PLAN_URL}"):', "        pass", ""])


def _write(root: Path, relative: str, text: str | bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


@pytest.fixture
def codebase(tmp_path: Path) -> Path:
    """A tree with one bad adapter, good env-var clients, and places the audit must skip."""
    root = tmp_path / "lift-sys"
    _write(root, "lift_sys/dspy_signatures/provider_adapter.py", _adapter_source())
    _write(
        root,
        "lift_sys/client.py",
        (
            "import os\n"
            'ENDPOINT = os.environ["MODAL_ENDPOINT_URL"]\n'
            'OPTIONAL = os.getenv("MODAL_ENDPOINT_URL")\n'
            'LOCAL = f"http://127.0.0.1:{port}/v1"\n'
            "result = client.modal.run(job)\n"
        ),
    )
    # Places the audit must not look into: VCS data, virtualenvs, dependencies, docs, binaries.
    _write(root, ".git/hooks/post-commit.py", f'URL = "{PLAN_URL}"\n')
    _write(root, ".venv/lib/python3.11/site-packages/x.py", f'URL = "{PLAN_URL}"\n')
    _write(root, "myenv/pyvenv.cfg", "home = /usr/bin\n")
    _write(root, "myenv/lib/y.py", f'URL = "{PLAN_URL}"\n')
    _write(root, "web/node_modules/lib/index.js", f'const u = "{PLAN_URL}";\n')
    _write(root, "docs/DEPLOY.md", f"Production: {PLAN_URL}\n")
    _write(root, ".env.production", f"MODAL_ENDPOINT_URL={PLAN_URL}\n")
    _write(root, "lift_sys/blob.py", b"\x00\x01binary " + PLAN_URL.encode())
    # A local CORS origin is configuration, not an endpoint.
    _write(root, "config/cors.yaml", 'allowed_origins: ["http://localhost:3000"]\n')
    return root


def test_flags_the_original_plans_hard_coded_url_and_nothing_else(codebase: Path) -> None:
    report = audit(codebase)
    assert [(f.path, f.line, f.url, f.kind) for f in report.findings] == [
        ("lift_sys/dspy_signatures/provider_adapter.py", PLAN_LINE, PLAN_URL, "modal"),
    ]
    assert report.findings[0].fallback is False
    assert "MODAL_ENDPOINT_URL" in report.findings[0].advice
    # adapter, client, cors.yaml; nothing under .git, .venv, myenv, node_modules, docs, binaries
    assert report.files_scanned == 3


def test_env_var_fallback_with_a_literal_url_is_flagged_as_fallback() -> None:
    text = (
        'url = os.getenv("MODAL_ENDPOINT_URL", "https://rand--generate.modal.run")\n'
        'url = os.environ.get("MODAL_ENDPOINT_URL", "http://localhost:8001")\n'
        "const url = process.env.MODAL_ENDPOINT_URL || 'https://acme--llm-server.modal.run';\n"
        'url = os.environ["MODAL_ENDPOINT_URL"]\n'
    )
    findings = scan_text(text, "adapter.py")
    assert [(f.line, f.kind, f.fallback) for f in findings] == [
        (1, "modal", True),
        (2, "loopback", True),
        (3, "modal", True),
    ]
    assert "no fallback" in findings[0].advice


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            'BASE = "https://acme-staging--qwen-server.modal.run/v1"',
            "https://acme-staging--qwen-server.modal.run/v1",
        ),
        ("ws = 'wss://acme--stream.modal.direct:443/ws'", "wss://acme--stream.modal.direct:443/ws"),
        ('HOST = "rand--generate.modal.run"', "rand--generate.modal.run"),
        ('requests.get("http://localhost:8001/generate")', "http://localhost:8001/generate"),
        ('API = "http://10.2.3.4:8000"', "http://10.2.3.4:8000"),
    ],
)
def test_hard_coded_endpoints_in_code(line: str, expected: str) -> None:
    assert [f.url for f in scan_text(line, "x.py")] == [expected]


@pytest.mark.parametrize(
    "line",
    [
        "result = client.modal.run(job)",  # code, not a host
        'url = f"http://127.0.0.1:{port}"',  # port from a variable: the local twin
        'doc = "e.g. https://workspace--app-server.modal.run"',  # placeholder in a message
        'see = "https://modal.com/docs/guide/webhooks"',  # Modal's docs, not an endpoint
        'bind = "0.0.0.0"',  # a bind address, not a URL
        'x = "https://rand--generate.modal.run"  # liftdeploy: allow-endpoint',
    ],
)
def test_not_endpoints(line: str) -> None:
    assert scan_text(line, "x.py") == []


def test_config_files_are_checked_for_modal_urls_only() -> None:
    text = f"endpoint: {PLAN_URL}\norigin: http://localhost:3000\n"
    assert [f.kind for f in scan_text(text, "c.yaml", code=False)] == ["modal"]
    assert [f.kind for f in scan_text(text, "c.py", code=True)] == ["modal", "loopback"]


def test_cli_prints_file_line_and_env_var_and_exits_1(codebase: Path, capsys) -> None:
    assert main(["audit-endpoints", str(codebase)]) == 1
    out, err = capsys.readouterr()
    assert f"lift_sys/dspy_signatures/provider_adapter.py:{PLAN_LINE}: {PLAN_URL}" in out
    assert "MODAL_ENDPOINT_URL" in out
    assert "1 hard-coded endpoint(s) in 1 file(s)" in err


def test_cli_exits_0_once_the_url_comes_from_the_environment(codebase: Path, capsys) -> None:
    adapter = codebase / "lift_sys/dspy_signatures/provider_adapter.py"
    adapter.write_text(
        adapter.read_text().replace(
            f'endpoint_url="{PLAN_URL}"', 'endpoint_url=os.environ["MODAL_ENDPOINT_URL"]'
        )
    )
    assert main(["audit-endpoints", str(codebase)]) == 0
    assert capsys.readouterr().out == ""


def test_cli_json_report(codebase: Path, capsys) -> None:
    assert main(["audit-endpoints", str(codebase), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["env_var"] == "MODAL_ENDPOINT_URL"
    [finding] = report["findings"]
    assert finding["line"] == PLAN_LINE and finding["url"] == PLAN_URL
    assert finding["env_var"] == "MODAL_ENDPOINT_URL" and finding["fallback"] is False


def test_single_file_and_missing_path(codebase: Path, tmp_path: Path, capsys) -> None:
    adapter = codebase / "lift_sys/dspy_signatures/provider_adapter.py"
    assert len(audit(adapter).findings) == 1
    with pytest.raises(AuditError, match="no such file"):
        audit(tmp_path / "nowhere")
    assert main(["audit-endpoints", str(tmp_path / "nowhere")]) == 2  # an error, not a finding
    assert "error:" in capsys.readouterr().err


def test_console_script_runs_without_traceback(codebase: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "liftdeploy.cli.main", "audit-endpoints", str(codebase)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "provider_adapter.py:26" in result.stdout
    assert "Traceback" not in result.stderr


def test_liftdeploy_itself_has_no_hard_coded_endpoints() -> None:
    package = Path(__file__).resolve().parents[1] / "liftdeploy"
    assert audit(package).findings == []
