"""The planner reads config.json from the Hub for a model nothing local knows: through a local
HTTP server standing in for the Hub (HF_ENDPOINT), cached, gated models via HF_TOKEN only."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hub_standin import hub_standin

from liftdeploy.errors import PlanError
from liftdeploy.planner.arch import load_architecture
from liftdeploy.planner.hub_config import cached_config_dir

REPO = Path(__file__).resolve().parent.parent
# A 7B-class dense config (Qwen2 shapes) under a name no catalog has.
CONFIG = {
    "model_type": "qwen2",
    "hidden_size": 3584,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "num_hidden_layers": 28,
    "vocab_size": 152064,
    "intermediate_size": 18944,
    "max_position_embeddings": 32768,
    "torch_dtype": "bfloat16",
}


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no Hugging Face cache to find
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with hub_standin() as standin:
        monkeypatch.setenv("HF_ENDPOINT", standin.url)
        yield standin


def test_config_json_is_fetched_once_then_read_from_the_cache(hub) -> None:
    hub.add("acme/coder-7b", {"config.json": CONFIG, "model.safetensors": {}})
    arch = load_architecture("acme/coder-7b")
    assert (arch.num_layers, arch.num_kv_heads, arch.head_dim) == (28, 4, 128)
    assert f"fetched from {hub.url}/acme/coder-7b" in arch.source
    # Of the model's files config.json, and of its weights only the safetensors header (a
    # range request; this stand-in's file is no safetensors, so the formula counts).
    model_requests = [r for r in hub.requests if "/acme/" in r]
    assert model_requests and all(
        r.endswith(("/config.json", "/model.safetensors")) for r in model_requests
    )
    assert any(r.startswith("GET ") and r.endswith("/config.json") for r in model_requests)
    weight_reads = [r for r in model_requests if r.startswith("GET ") and "safetensors" in r]
    assert len(weight_reads) == len(hub.ranges)
    assert arch.checkpoint is None
    seen = len(hub.requests)
    again = load_architecture("acme/coder-7b")
    assert len(hub.requests) == seen and "cached from the Hub" in again.source
    assert again.source.startswith(str(cached_config_dir("acme/coder-7b") / "config.json"))


def test_a_quantized_name_also_reads_the_quantize_config_it_names(hub) -> None:
    quant = {"bits": 4, "group_size": 128, "quant_method": "gptq"}
    hub.add("acme/coder-7b-GPTQ-Int4", {"config.json": CONFIG, "quantize_config.json": quant})
    arch = load_architecture("acme/coder-7b-GPTQ-Int4")
    assert (arch.quantization.method, arch.quantization.bits) == ("gptq", 4)
    assert any("quantize_config.json" in r for r in hub.requests)


def test_a_gated_model_reads_hf_token_from_the_environment(
    hub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hub.add("acme/gated-7b", {"config.json": CONFIG}, gated_token="hf_standin_token")
    with pytest.raises(PlanError, match=r"gated and HF_TOKEN is not set.*export HF_TOKEN="):
        load_architecture("acme/gated-7b")
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(PlanError, match="has no access"):
        load_architecture("acme/gated-7b")
    monkeypatch.setenv("HF_TOKEN", "hf_standin_token")
    assert load_architecture("acme/gated-7b").num_layers == 28


def test_an_unknown_model_says_what_to_fix(hub) -> None:
    with pytest.raises(PlanError, match=r"no model 'nobody/unknown-model'.*check model.id"):
        load_architecture("nobody/unknown-model")


def test_offline_says_which_file_to_save_where_and_then_uses_it(
    hub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as closed:  # a port nothing listens on: the Hub is unreachable
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    revision = "a" * 40
    target = cached_config_dir("acme/offline-7b", revision) / "config.json"
    with pytest.raises(PlanError) as caught:
        load_architecture("acme/offline-7b", revision)
    message = str(caught.value)
    assert f"/acme/offline-7b/resolve/{revision}/config.json as {target}" in message
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps(CONFIG))
    assert load_architecture("acme/offline-7b", revision).num_layers == 28


def test_cli_plan_names_where_the_architecture_came_from(hub, tmp_path: Path) -> None:
    hub.add("acme/coder-7b", {"config.json": CONFIG})
    spec = tmp_path / "deployment.yaml"
    spec.write_text(
        json.dumps(
            {
                "name": "coder-7b",
                "model": {"id": "acme/coder-7b", "max_model_len": 8192},
                "gpu": {"type": "L4"},
                "runtime": {"max_containers": 1, "max_concurrent_requests": 4},
            }
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "liftdeploy.cli.main", "plan", str(spec)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"(fetched from {hub.url}/acme/coder-7b)" in done.stdout
    assert "Traceback" not in done.stderr


def test_validate_refuses_a_split_the_cached_hub_config_forbids_offline(
    hub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Hub model's cached config.json counts like the catalog: its 28 heads do not split 3
    ways, its 4 KV heads not 8 ways (issue 25 item 5), with the Hub unreachable."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed.getsockname()[1]}")
    target = cached_config_dir("acme/coder-7b") / "config.json"
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps({**CONFIG, "num_attention_heads": 24, "head_dim": 128}))
    spec = tmp_path / "deployment.yaml"

    def validate(count: int) -> subprocess.CompletedProcess:
        spec.write_text(
            json.dumps(
                {
                    "name": "coder-7b",
                    "model": {"id": "acme/coder-7b", "max_model_len": 8192},
                    "gpu": {"type": "L4", "count": count},
                    "runtime": {"max_containers": 1},
                }
            )
        )
        return subprocess.run(
            [sys.executable, "-m", "liftdeploy.cli.main", "validate", str(spec)],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
        )

    done = validate(3)  # 24 heads / 3 = 8, but 4 KV heads cannot split 3 ways
    assert done.returncode == 2, done.stdout
    assert "acme/coder-7b at gpu.tensor_parallel_size 3" in done.stderr
    assert "the 4 KV heads do not split evenly" in done.stderr
    target.write_text(json.dumps(CONFIG))  # 28 heads
    done = validate(8)
    assert done.returncode == 2, done.stdout
    assert (
        "gpu.tensor_parallel_size 8 does not divide acme/coder-7b's 28 attention heads; "
        "use one of [1, 2, 4, 7]"
    ) in done.stderr
    assert "Traceback" not in done.stderr
    assert validate(4).returncode == 0
