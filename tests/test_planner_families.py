"""The planner for every family: weight bytes against real checkpoints built with transformers'
own model classes, and full-size models against what vLLM printed when it loaded them.

The tiny checkpoints (liftdeploy.twin.tinymodel.TINY_FAMILIES) hold the real module structure:
the planner's weight formula must give exactly the bytes their safetensors hold. Their KV
figures are held against vLLM itself in tests/test_planner_truth.py.

The full-size configs in tests/data/model-configs were written from the public model cards'
config.json (no download); the expected figures are vLLM's start-up logs quoted in issue 25
(H100, gpu_memory_utilization 0.95, max_model_len 8192, vLLM's API-server defaults:
max_num_batched_tokens 8192, max_num_seqs 1024).
"""

from __future__ import annotations

import json
import struct
from dataclasses import replace
from pathlib import Path

import pytest

from liftdeploy.errors import PlanError
from liftdeploy.planner.arch import from_config, load_architecture
from liftdeploy.planner.memory import (
    GIB,
    estimate_memory,
    formula_weights_per_rank,
    linear_bytes_per_param,
    resolved_dtype,
    weights_per_rank,
)
from liftdeploy.twin.tinymodel import TINY_FAMILIES, build_family_model

CONFIGS = Path(__file__).resolve().parent / "data" / "model-configs"
H100_GIB = 79.22


def safetensors_bytes(directory: Path) -> int:
    """The bytes of every tensor the checkpoint holds, from its safetensors headers."""
    total = 0
    for file in directory.glob("*.safetensors"):
        with file.open("rb") as handle:
            size = struct.unpack("<Q", handle.read(8))[0]
            header = json.loads(handle.read(size))
        header.pop("__metadata__", None)
        total += sum(t["data_offsets"][1] - t["data_offsets"][0] for t in header.values())
    return total


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {family: build_family_model(root / family, family) for family in TINY_FAMILIES}


@pytest.mark.parametrize("family", sorted(TINY_FAMILIES))
def test_weight_bytes_equal_the_checkpoint(family: str, family_dirs: dict[str, Path]) -> None:
    """Both ways of counting give the bytes the files hold: the formula from config.json, and
    the safetensors headers the planner reads beside a local config.json; and both split the
    same way over two tensor-parallel ranks and over expert-parallel ranks."""
    arch = load_architecture(str(family_dirs[family]))
    assert arch.weights_source.startswith("the checkpoint's safetensors headers")
    formula = replace(arch, checkpoint=None)
    held = safetensors_bytes(family_dirs[family])
    assert formula_weights_per_rank(formula, tp=1, dtype="auto").total_bytes == held
    assert weights_per_rank(arch, tp=1, dtype="auto").total_bytes == held
    assert arch.checkpoint.stored_bytes == held
    for tp, experts in ((2, 1), (2, 2)):
        by_headers = weights_per_rank(arch, tp=tp, expert_ranks=experts, dtype="auto")
        by_formula = weights_per_rank(formula, tp=tp, expert_ranks=experts, dtype="auto")
        assert by_headers.total_bytes == pytest.approx(by_formula.total_bytes, rel=1e-9), (
            tp,
            experts,
        )


# -- full-size models against vLLM's start-up logs (issue 25) ----------------------------------

# (config dir, GPUs, vLLM's "Model loading took X GiB" per GPU, vLLM's available KV GiB or None)
VLLM_LOGS = [
    ("mistralai--Mixtral-8x7B-Instruct-v0.1", 2, 43.5, None),
    ("deepseek-ai--DeepSeek-V2-Lite-Chat", 1, 29.4, None),
    ("openai--gpt-oss-20b", 2, 7.0, None),
    ("google--gemma-2-9b-it", 1, 17.2, None),
    ("google--gemma-2-27b-it", 1, 50.7, None),
    ("Qwen--Qwen2.5-72B-Instruct", 2, None, 3.0),
    ("meta-llama--Llama-3.1-405B-Instruct-FP8", 8, 57.8, None),
]


def full_size(name: str):
    path = CONFIGS / name / "config.json"
    return from_config(
        json.loads(path.read_text()), model_id=name.replace("--", "/"), source=str(path)
    )


@pytest.mark.parametrize(
    ("name", "gpus", "weights_gib", "kv_gib"),
    VLLM_LOGS,
    ids=[row[0].split("--")[1] for row in VLLM_LOGS],
)
def test_full_size_models_match_vllm_logs(
    name: str,
    gpus: int,
    weights_gib: float | None,
    kv_gib: float | None,
) -> None:
    memory = estimate_memory(
        full_size(name),
        gpu_memory_gib=H100_GIB,
        utilization=0.95,
        tp=gpus,
        max_model_len=8192,
        batched_tokens=8192,
        num_seqs=1024,
    )
    print(
        f"{name} x{gpus}: weights {memory.weights_gib:.2f} GiB/GPU (vLLM {weights_gib}), "
        f"available KV {memory.available_kv_gib:.2f} GiB (vLLM {kv_gib})"
    )
    if weights_gib is not None:
        assert memory.weights_gib == pytest.approx(weights_gib, rel=0.03)
    if kv_gib is not None:
        assert abs(memory.available_kv_gib - kv_gib) <= max(1.0, 0.15 * kv_gib)


def test_mla_kv_is_the_compressed_latent_whole_on_every_rank() -> None:
    lite = full_size("deepseek-ai--DeepSeek-V2-Lite-Chat")
    one = estimate_memory(
        lite,
        gpu_memory_gib=H100_GIB,
        utilization=0.95,
        tp=1,
        max_model_len=8192,
        batched_tokens=8192,
        num_seqs=256,
    )
    two = estimate_memory(
        lite,
        gpu_memory_gib=H100_GIB,
        utilization=0.95,
        tp=2,
        max_model_len=8192,
        batched_tokens=8192,
        num_seqs=256,
    )
    assert one.kv_bytes_per_token == 27 * (512 + 64) * 2
    assert two.kv_bytes_per_token == one.kv_bytes_per_token


def test_sliding_window_layers_hold_a_window_per_sequence_not_the_whole_context() -> None:
    gemma = full_size("google--gemma-2-9b-it")
    memory = estimate_memory(
        gemma,
        gpu_memory_gib=H100_GIB,
        utilization=0.95,
        tp=1,
        max_model_len=8192,
        batched_tokens=2048,
        num_seqs=256,
    )
    per_layer = 2 * 8 * 256 * 2
    assert memory.kv_bytes_per_token == 21 * per_layer  # the 21 full-attention layers
    # 21 sliding layers: cdiv(min(4096 - 1 + 2048, 8192), 16) + 1 = 385 blocks of 16 tokens.
    assert memory.state_bytes_per_sequence == 21 * 385 * 16 * per_layer


def test_float32_checkpoints_load_as_bf16_on_ampere_and_fp16_before() -> None:
    gemma = full_size("google--gemma-2-9b-it")  # config.json says float32
    assert resolved_dtype(gemma, "auto", capability=9.0) == "bfloat16"
    # Gemma 2 is in vLLM's _FLOAT16_NOT_SUPPORTED_MODELS: below 8.0 it stays float32.
    assert resolved_dtype(gemma, "auto", capability=7.5) == "float32"
    assert resolved_dtype(replace(gemma, model_type="llama"), "auto", capability=7.5) == "float16"
    assert resolved_dtype(gemma, "float16", capability=9.0) == "float16"


def test_quantization_bytes_as_each_checkpoint_stores_them() -> None:
    oss = full_size("openai--gpt-oss-20b").quantization
    assert (oss.method, oss.experts_only) == ("mxfp4", True)
    assert linear_bytes_per_param(oss, 2) == 0.5 + 1 / 32
    fp8 = full_size("meta-llama--Llama-3.1-405B-Instruct-FP8").quantization
    assert (fp8.method, linear_bytes_per_param(fp8, 2)) == ("fbgemm_fp8", 1.0)
    assert fp8.unquantized_attention and fp8.unquantized_mlp_layers == 2
    base = {"hidden_size": 64, "num_attention_heads": 1, "num_hidden_layers": 1, "vocab_size": 64}
    w4a16 = from_config(
        {
            **base,
            "quantization_config": {
                "quant_method": "compressed-tensors",
                "config_groups": {
                    "group_0": {
                        "weights": {
                            "num_bits": 4,
                            "type": "int",
                            "strategy": "group",
                            "group_size": 128,
                            "symmetric": True,
                        }
                    }
                },
            },
        },
        model_id="x/y",
        source="test",
    ).quantization
    assert linear_bytes_per_param(w4a16, 2) == 0.5 + 2 / 128


@pytest.mark.parametrize("method", ["bitsandbytes", "hqq", ""])
def test_an_unknown_quantization_method_is_an_error_naming_it(method: str) -> None:
    config = {
        "hidden_size": 64,
        "num_attention_heads": 1,
        "num_hidden_layers": 1,
        "vocab_size": 64,
        "quantization_config": {"quant_method": method},
    }
    with pytest.raises(
        PlanError,
        match=repr(method) if method not in ("", "bitsandbytes") else "bitsandbytes|missing",
    ):
        from_config(config, model_id="x/y", source="config.json")


def test_weights_on_every_rank_add_up_to_the_checkpoint_under_tensor_parallel() -> None:
    mixtral = full_size("mistralai--Mixtral-8x7B-Instruct-v0.1")
    whole = weights_per_rank(mixtral, tp=1).total_bytes
    # Every rank keeps its own copy of the norms (2 per layer + final) and the routers.
    replicated = ((2 * 32 + 1) * 4096 + 32 * 4096 * 8) * 2
    assert weights_per_rank(mixtral, tp=2).total_bytes * 2 == whole + replicated
    assert whole / GIB == pytest.approx(86.99, abs=0.05)  # 46.70 B parameters in bf16


# -- what each GPU can run (vLLM's rules, liftdeploy/spec/data/vllm_gpu_support.json) ----------


def _spec(model_dir: Path, gpu: str, count: int = 1, dtype: str = "auto"):
    from liftdeploy.spec.specfile import spec_from_data

    return spec_from_data(
        {
            "version": 2,
            "name": "fam",
            "model": {"id": str(model_dir), "max_model_len": 8192, "dtype": dtype},
            "gpu": {"type": gpu, "count": count},
            "runtime": {"max_containers": 1},
        },
        source="test",
    ).resolve()


def test_bf16_on_a_t4_is_refused_with_the_reason_and_the_alternative() -> None:
    from liftdeploy.planner.report import plan

    model = CONFIGS / "google--gemma-2-9b-it"
    errors = [
        v for v in plan(_spec(model, "T4", 4, dtype="bfloat16")).verdicts if v.level == "error"
    ]
    assert errors and "vLLM refuses bfloat16 on T4" in errors[0].message
    assert "model.dtype: float16" in errors[0].fix and "L4" in errors[0].fix


def test_fp8_and_mxfp4_checkpoints_are_refused_where_vllm_lacks_the_kernels() -> None:
    from liftdeploy.planner import gpu_support

    assert gpu_support.refusal("A10", "bfloat16", "fbgemm_fp8") is None  # 8.6 >= 8.0
    assert gpu_support.refusal("T4", "float16", "fbgemm_fp8") is not None
    assert gpu_support.refusal("T4", "float16", "mxfp4") is not None
    assert gpu_support.refusal("H100", "bfloat16", "mxfp4") is None
    assert gpu_support.refusal("T4", "float16", "awq") is None  # AWQ runs from 7.5


@pytest.mark.parametrize("name", ["mistralai--Mixtral-8x7B-Instruct-v0.1", "google--gemma-2-9b-it"])
def test_init_picks_a_gpu_vllm_starts_on_and_that_holds_the_model(name: str) -> None:
    from liftdeploy.planner.checks import fitting_layouts
    from liftdeploy.planner.gpu_support import capability, refusal
    from liftdeploy.planner.report import plan

    resolved = _spec(CONFIGS / name, "H100")
    arch = load_architecture(str(CONFIGS / name))
    best = fitting_layouts(resolved, arch)[0]
    gpu, count = best.gpu, best.count
    assert (
        refusal(gpu, resolved_dtype(arch, "auto", capability(gpu)), arch.quantization.method)
        is None
    )
    chosen = _spec(CONFIGS / name, gpu, count)
    assert plan(chosen, arch=arch).fits, (gpu, count)
    print(name, "->", gpu, count)


def test_the_gpu_rules_file_is_what_the_pinned_vllm_says() -> None:
    from liftdeploy.planner import gpu_support

    vllm_spec = __import__("importlib.util").util.find_spec("vllm")
    if vllm_spec is None:  # the rules file is generated where vLLM is installed (./dev setup)
        pytest.skip("vLLM is not installed here")
    generated = gpu_support.generate(Path(vllm_spec.origin).parent)
    assert generated == gpu_support.rules(), "run `python -m liftdeploy.planner.gpu_support`"
