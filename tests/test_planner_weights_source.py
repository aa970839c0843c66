"""Weights from the checkpoint's safetensors headers (issue 25 item 1): tiny checkpoints built
with transformers' classes, served by a local HTTP stand-in for the Hub (HF_ENDPOINT); the
planner reads only their headers (range requests), caches them beside config.json, counts
the bytes the files hold, splits them per rank, and says so; offline from the cache after."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hub_standin import hub_standin
from test_planner_families import safetensors_bytes

from liftdeploy.planner.arch import load_architecture
from liftdeploy.planner.checkpoint import HEADERS_FILE
from liftdeploy.planner.hub_config import cached_config_dir
from liftdeploy.planner.memory import formula_weights_per_rank, weights_per_rank
from liftdeploy.twin.tinymodel import build_family_model

REPO = Path(__file__).resolve().parent.parent
HEADERS_SAY = "weights counted from the checkpoint's safetensors headers"


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


def serve(hub, repo_id: str, directory: Path) -> None:
    """Put a checkpoint directory's files on the stand-in, as the Hub would hold them."""
    hub.add(repo_id, {f.name: f.read_bytes() for f in directory.iterdir() if f.is_file()})


def reshard(directory: Path) -> list[str]:
    """Split model.safetensors into two files with a model.safetensors.index.json, as
    save_pretrained does for a checkpoint above its shard size."""
    from safetensors.torch import load_file, save_file

    single = directory / "model.safetensors"
    tensors = load_file(single)
    names = sorted(tensors)
    halves = {
        "model-00001-of-00002.safetensors": names[: len(names) // 2],
        "model-00002-of-00002.safetensors": names[len(names) // 2 :],
    }
    for file, part in halves.items():
        save_file({n: tensors[n] for n in part}, directory / file, metadata={"format": "pt"})
    single.unlink()
    (directory / "model.safetensors.index.json").write_text(
        json.dumps(
            {
                "metadata": {
                    "total_size": sum(t.numel() * t.element_size() for t in tensors.values())
                },
                "weight_map": {n: file for file, part in halves.items() for n in part},
            }
        )
    )
    return list(halves)


def test_header_bytes_from_the_hub_equal_the_files_and_only_headers_are_read(
    hub,
    tmp_path: Path,
) -> None:
    model = build_family_model(tmp_path / "mixtral", "mixtral")
    serve(hub, "acme/tiny-mixtral", model)
    arch = load_architecture("acme/tiny-mixtral")
    assert arch.weights_source == (
        f"the checkpoint's safetensors headers ({hub.url}/acme/tiny-mixtral)"
    )
    held = safetensors_bytes(model)
    assert weights_per_rank(arch, tp=1, dtype="auto").total_bytes == held
    # Never the weights themselves: every read of the safetensors file is a header range.
    reads = [r for r in hub.requests if r.startswith("GET ") and ".safetensors" in r]
    assert reads and len(reads) == len(hub.ranges)
    assert all(r.endswith("bytes=0-100000") or "bytes=8-" in r for r in hub.ranges)
    assert (cached_config_dir("acme/tiny-mixtral") / HEADERS_FILE).is_file()


def test_a_sharded_checkpoint_is_counted_across_its_files(hub, tmp_path: Path) -> None:
    model = build_family_model(tmp_path / "qwen3_moe", "qwen3_moe")
    held = safetensors_bytes(model)
    files = reshard(model)
    assert safetensors_bytes(model) == held
    serve(hub, "acme/tiny-qwen3-moe", model)
    arch = load_architecture("acme/tiny-qwen3-moe")
    assert arch.checkpoint is not None
    assert weights_per_rank(arch, tp=1, dtype="auto").total_bytes == held
    assert all(any(f"/{file} " in r for r in hub.ranges) for file in files)
    # Split two ways, the headers and the formula agree on what each rank holds.
    two = weights_per_rank(arch, tp=2, dtype="auto").total_bytes
    assert two == pytest.approx(formula_weights_per_rank(arch, tp=2, dtype="auto").total_bytes)
    assert two < held


def test_plan_says_headers_then_works_offline_from_the_cache(
    hub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = build_family_model(tmp_path / "gemma2", "gemma2")
    serve(hub, "acme/tiny-gemma2", model)
    spec = tmp_path / "deployment.yaml"
    spec.write_text(
        json.dumps(
            {
                "name": "tiny",
                "model": {"id": "acme/tiny-gemma2", "max_model_len": 2048},
                "gpu": {"type": "L4"},
                "runtime": {"max_containers": 1, "max_concurrent_requests": 4},
            }
        )
    )

    def plan(*flags: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "liftdeploy.cli.main", "plan", str(spec), *flags],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=120,
        )

    done = plan()
    assert done.returncode == 0, done.stderr
    assert f"{HEADERS_SAY} ({hub.url}/acme/tiny-gemma2)" in done.stdout
    with socket.socket() as closed:  # the Hub is gone: the cache answers
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed.getsockname()[1]}")
    seen = len(hub.requests)
    done = plan("--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    cached = cached_config_dir("acme/tiny-gemma2") / HEADERS_FILE
    assert (
        report["architecture"]["weights_source"]
        == f"the checkpoint's safetensors headers ({cached})"
    )
    assert report["memory_per_gpu_gib"]["weights"] == round(safetensors_bytes(model) / 2**30, 2)
    assert len(hub.requests) == seen


def test_without_safetensors_the_formula_counts_and_plan_says_so(hub) -> None:
    config = json.loads(
        (
            REPO / "tests" / "data" / "model-configs" / "google--gemma-2-9b-it" / "config.json"
        ).read_text()
    )
    hub.add("acme/no-weights", {"config.json": config})
    arch = load_architecture("acme/no-weights")
    assert arch.checkpoint is None
    assert arch.weights_source == "the architecture formula (config.json shapes)"


def test_a_float32_checkpoint_counts_as_the_dtype_vllm_loads(tmp_path: Path) -> None:
    """A local directory's headers: float32 tensors load as bf16 on an H100 (vLLM's auto)."""
    from liftdeploy.twin.tinymodel import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny")  # the twin's float32 Qwen2
    arch = load_architecture(str(model))
    assert arch.checkpoint is not None
    loaded = weights_per_rank(arch, tp=1, dtype="auto").total_bytes
    assert loaded == formula_weights_per_rank(arch, tp=1, dtype="auto").total_bytes
    assert arch.checkpoint.stored_bytes == safetensors_bytes(model)
    assert loaded == pytest.approx(safetensors_bytes(model) / 2, rel=0.05)  # vocab padded to 64
