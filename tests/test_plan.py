"""The planner: formulas against hand-computed values, verdicts, money, CLI, and accuracy
against public vLLM startup logs (liftdeploy/spec/data/vllm_startup_records.yaml)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from liftdeploy.errors import SpecError
from liftdeploy.planner.arch import Quantization, from_config, load_architecture
from liftdeploy.planner.checks import Layout, sharding_problems
from liftdeploy.planner.memory import (
    GIB,
    SAMPLER_BYTES_PER_LOGIT,
    SAMPLER_BYTES_PER_LOGIT_V0,
    estimate_memory,
    kv_bytes_per_token,
    linear_bytes_per_param,
    state_bytes_per_sequence,
    weights_per_rank,
)
from liftdeploy.planner.report import format_plan, plan
from liftdeploy.spec.specfile import load_spec, spec_from_data

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
CODER_32B = REPO / "examples" / "qwen25-coder-32b.yaml"
CODER_480B = REPO / "examples" / "qwen3-coder-480b.yaml"
WEIGHTS_TOLERANCE = 0.03
KV_TOLERANCE = 0.15


def example_data(path: Path) -> dict[str, Any]:
    return YAML(typ="safe").load(path.read_text())


def resolved_from(data: dict[str, Any], env: str | None = None):
    return spec_from_data(data, source="test").resolve(env)


# --- formulas against hand-computed values -------------------------------------------------


def test_llama_8b_weights_match_its_published_parameter_count() -> None:
    arch = load_architecture("meta-llama/Llama-3.1-8B-Instruct")
    # 2 x 128256 x 4096 (embeddings + lm_head) + 32 x (4096 x 10240 + 4096 x 4096 attention
    # + 3 x 4096 x 14336 MLP + 2 x 4096 norms) + 4096 final norm = 8,030,261,248 parameters.
    weights = weights_per_rank(arch, tp=1)
    assert weights.total_bytes == 8_030_261_248 * 2


def test_tensor_parallel_splits_weights_and_vocab() -> None:
    arch = load_architecture("meta-llama/Llama-3.1-8B-Instruct")
    tp1, tp2 = weights_per_rank(arch, tp=1), weights_per_rank(arch, tp=2)
    assert tp2.embedding_bytes == 128256 // 2 * 4096 * 2  # vocab-parallel embedding
    assert tp2.lm_head_bytes == tp2.embedding_bytes
    assert tp2.attention_bytes * 2 == tp1.attention_bytes  # 8 KV heads split evenly
    assert tp2.mlp_bytes * 2 == tp1.mlp_bytes


def test_pipeline_stages_split_layers_and_keep_one_vocab_table_each() -> None:
    arch = load_architecture("meta-llama/Llama-3.1-8B-Instruct")
    args = dict(
        gpu_memory_gib=79.22,
        utilization=0.9,
        tp=1,
        max_model_len=8192,
        batched_tokens=8192,
        num_seqs=256,
    )
    whole = estimate_memory(arch, **args)
    staged = estimate_memory(arch, pp=2, **args)
    vocab_table = 128256 * 4096 * 2
    layers = whole.weights.total_bytes - 2 * vocab_table
    assert staged.weights.total_bytes == pytest.approx(layers / 2 + vocab_table)
    assert staged.kv_bytes_per_token == whole.kv_bytes_per_token // 2  # 16 of 32 layers


def test_fp8_block_scales_cost_one_fp32_per_block() -> None:
    arch = load_architecture("Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8")
    assert linear_bytes_per_param(arch.quantization, 2) == 1 + 4 / (128 * 128)


def test_four_bit_weights_are_a_quarter_of_bf16_plus_group_scales() -> None:
    raw = {
        "hidden_size": 3584,
        "num_attention_heads": 28,
        "num_hidden_layers": 28,
        "vocab_size": 152064,
        "num_key_value_heads": 4,
        "intermediate_size": 18944,
        "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128},
    }
    awq = from_config(raw, model_id="Qwen/Qwen2.5-7B-Instruct-AWQ", source="test")
    per_param = linear_bytes_per_param(awq.quantization, 2)
    assert per_param == 0.5 + 2.5 / 128
    bf16 = weights_per_rank(load_architecture("Qwen/Qwen2.5-7B-Instruct"), tp=1)
    quant = weights_per_rank(awq, tp=1)
    assert quant.embedding_bytes == bf16.embedding_bytes  # embeddings stay bf16
    assert quant.mlp_bytes == pytest.approx(bf16.mlp_bytes * per_param / 2)


def test_spec_fp8_quantization_halves_a_bf16_checkpoint() -> None:
    data = example_data(CODER_32B)
    bf16 = plan(resolved_from(data))
    data["model"]["quantization"] = "fp8"
    fp8 = plan(resolved_from(data))
    assert fp8.memory.weights.mlp_bytes == pytest.approx(bf16.memory.weights.mlp_bytes / 2)
    assert fp8.memory.weights.embedding_bytes == bf16.memory.weights.embedding_bytes
    assert fp8.memory.available_kv_gib > bf16.memory.available_kv_gib + 25


def test_moe_experts_split_the_same_total_by_tp_slicing_or_expert_parallel() -> None:
    arch = load_architecture("Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8")
    sliced = weights_per_rank(arch, tp=8)
    whole = weights_per_rank(arch, tp=8, expert_ranks=8)
    assert whole.mlp_bytes == pytest.approx(sliced.mlp_bytes)  # 160 experts / 8 = 20 each
    # One expert: 3 x 6144 x 2560 weights per layer, 62 layers, fp8 with block scales.
    assert whole.expert_bytes_per_expert == pytest.approx(3 * 6144 * 2560 * 62 * (1 + 4 / 16384))


def test_kv_bytes_per_token_gqa_and_replicated_heads() -> None:
    coder = load_architecture("Qwen/Qwen2.5-Coder-32B-Instruct")
    assert (
        kv_bytes_per_token(coder, tp=1, kv_cache_dtype="auto", dtype="auto") == 2 * 64 * 8 * 128 * 2
    )
    assert (
        kv_bytes_per_token(coder, tp=2, kv_cache_dtype="auto", dtype="auto") == 2 * 64 * 4 * 128 * 2
    )
    assert (
        kv_bytes_per_token(coder, tp=1, kv_cache_dtype="fp8", dtype="auto") == 2 * 64 * 8 * 128 * 1
    )
    # 8 KV heads on 16 ranks would be replicated: each rank still holds one head.
    big = load_architecture("Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8")
    assert (
        kv_bytes_per_token(big, tp=8, kv_cache_dtype="auto", dtype="auto") == 2 * 62 * 1 * 128 * 2
    )


def test_hybrid_keeps_kv_only_in_full_attention_layers_plus_fixed_state() -> None:
    nxt = load_architecture("Qwen/Qwen3-Next-80B-A3B-Instruct-FP8")
    assert (nxt.kv_layers, nxt.linear_layers) == (12, 36)
    # 2 KV heads: TP 2 gives one per rank, TP 4 replicates that one head.
    tp2 = kv_bytes_per_token(nxt, tp=2, kv_cache_dtype="auto", dtype="auto")
    assert tp2 == 2 * 12 * 1 * 256 * 2
    assert kv_bytes_per_token(nxt, tp=4, kv_cache_dtype="auto", dtype="auto") == tp2
    # Gated DeltaNet state per layer and rank: conv (2x16x128 + 32x128)/2 x (4-1) plus
    # recurrent 32/2 heads x 128 x 128, in bf16, for 36 linear layers.
    expected = ((2 * 16 * 128 + 32 * 128) // 2 * 3 + 16 * 128 * 128) * 2 * 36
    assert state_bytes_per_sequence(nxt, tp=2, dtype="auto") == expected


def test_available_kv_is_the_budget_minus_every_overhead() -> None:
    arch = load_architecture("Qwen/Qwen2.5-Coder-32B-Instruct")
    mem = estimate_memory(
        arch,
        gpu_memory_gib=79.15,
        utilization=0.9,
        tp=1,
        max_model_len=16384,
        batched_tokens=2048,
        num_seqs=20,
    )
    assert mem.available_kv_gib == pytest.approx(
        0.9 * 79.15 - mem.weights_gib - mem.activation_gib - mem.non_torch_gib - mem.cuda_graph_gib
    )
    assert mem.cuda_graph_gib > 0
    eager = estimate_memory(
        arch,
        gpu_memory_gib=79.15,
        utilization=0.9,
        tp=1,
        max_model_len=16384,
        batched_tokens=2048,
        num_seqs=20,
        enforce_eager=True,
    )
    assert eager.cuda_graph_gib == 0
    assert eager.available_kv_gib == pytest.approx(mem.available_kv_gib + mem.cuda_graph_gib)
    # Tokens: whole 16-token blocks of 256 KiB/token; concurrency: tokens / max_model_len.
    assert mem.kv_cache_tokens == int(mem.available_kv_gib * GIB // (262144 * 16)) * 16
    assert mem.max_concurrency == pytest.approx(mem.available_kv_gib * GIB / (16384 * 262144))


# --- speed and money ----------------------------------------------------------------------


def test_speed_bound_is_above_the_published_measurement() -> None:
    # Qwen2.5-32B (the Coder's architecture) on 2x A100-80GB, TP 2: measured 34.2 output
    # tokens/s at batch 1. A bound must never be below a measurement.
    data = example_data(CODER_32B)
    data["gpu"] = {"type": "A100-80GB", "count": 2, "memory_utilization": 0.9}
    p = plan(resolved_from(data))
    assert p.speed.tokens_per_s_batch1 >= 34.2
    # Hand check: 2 x 2039 GB/s over the bf16 weights a step reads (32.76B parameters less
    # the 0.78B-row embedding table: ~64.0 GB) plus one sequence's KV (2,304 x 256 KiB).
    read = (32.76e9 - 152064 * 5120) * 2 + 2304 * 262144
    assert p.speed.bytes_per_token_batch1 == pytest.approx(read, rel=0.005)
    assert p.speed.tokens_per_s_batch1 == pytest.approx(2 * 2039e9 / read, rel=0.005)
    assert p.speed.tokens_per_s_aggregate > p.speed.tokens_per_s_batch1


def test_moe_speed_reads_only_active_experts() -> None:
    p = plan(load_spec(CODER_480B).resolve())
    total_weights = p.memory.weights.total_bytes * 8
    assert p.memory.weights.active_bytes_per_token < total_weights / 8  # ~35B of 480B
    assert p.speed.tokens_per_s_batch1 > 26800e9 / total_weights * 8


def test_money_per_hour_month_worst_case_and_per_token() -> None:
    data = example_data(CODER_32B)
    data["runtime"]["min_containers"] = 1
    p = plan(resolved_from(data))
    assert p.cost.gpu_hour_usd == 2.50
    assert "catalog" in p.cost.price_source and "2026" in p.cost.price_source
    assert p.cost.usd_per_hour == 2.50
    assert p.cost.always_on_usd_per_month == pytest.approx(2.50 * 730)
    assert p.cost.worst_case_usd_per_hour == 2 * 2.50
    assert p.cost.usd_per_million_output_tokens == pytest.approx(
        2.50 / (p.speed.tokens_per_s_aggregate * 3600) * 1e6
    )
    eight = plan(load_spec(CODER_480B).resolve())
    assert eight.cost.usd_per_hour == 8 * 3.95


def test_price_overrides_spec_then_argument() -> None:
    data = example_data(CODER_32B)
    data["pricing"] = {"gpu_hour_usd": 2.0}
    resolved = resolved_from(data)
    assert plan(resolved).cost.gpu_hour_usd == 2.0
    assert "spec" in plan(resolved).cost.price_source
    assert plan(resolved, gpu_hour_usd=3.0).cost.usd_per_hour == 3.0


def test_unbounded_max_containers_is_a_warning() -> None:
    data = example_data(CODER_32B)
    del data["runtime"]["max_containers"]
    p = plan(resolved_from(data))
    assert p.cost.worst_case_usd_per_hour is None
    assert any("max_containers" in v.message for v in p.verdicts if v.level == "warning")


# --- verdicts -----------------------------------------------------------------------------


def test_examples_fit_as_shipped() -> None:
    for path in EXAMPLES:
        spec = load_spec(path)
        for env in spec.environments:
            p = plan(spec.resolve(env))
            assert p.fits, f"{path.name} [{env}]: {format_plan(p)}"


def test_a10_staging_for_the_32b_does_not_fit_and_suggests_gpus() -> None:
    data = example_data(CODER_32B)
    data["environments"]["staging"]["gpu"] = {"type": "A10G"}  # the original plan's idea
    p = plan(resolved_from(data, "staging"))
    assert not p.fits
    error = next(v for v in p.verdicts if v.level == "error")
    assert "cannot load" in error.message and "61.0 GiB" in error.message
    assert error.fix and "A100-80GB x1" in error.fix and "A10 x" not in error.fix.split(",")[0]


def test_480b_at_tp8_needs_expert_parallel_for_its_fp8_blocks() -> None:
    data = example_data(CODER_480B)
    assert plan(resolved_from(data)).fits  # expert_parallel: true, as shipped
    arch = load_architecture(data["model"]["id"])
    errors = sharding_problems(arch, Layout(gpu="H200", count=8, tp=8, expert_ranks=1))
    assert len(errors) == 1
    assert "2560" in errors[0].message and "320" in errors[0].message
    assert "128" in errors[0].message
    assert errors[0].fix and "gpu.expert_parallel: true" in errors[0].fix
    data["gpu"]["expert_parallel"] = False  # every load (validate, the Python API) refuses it
    from liftdeploy.planner.checks import check_layouts
    from liftdeploy.spec.specfile import spec_from_data

    with pytest.raises(SpecError, match=r"320-wide slices at TP 8.*gpu.expert_parallel: true"):
        check_layouts(spec_from_data(data))


def test_tp_that_does_not_divide_heads_is_an_error() -> None:
    arch = from_config(
        {
            "hidden_size": 3584,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "num_hidden_layers": 28,
            "vocab_size": 152064,
            "intermediate_size": 18944,
        },
        model_id="org/custom-7b",
        source="test",
    )
    data = example_data(CODER_32B)
    data["model"]["id"] = "org/custom-7b"
    data["gpu"] = {"type": "L4", "count": 8}
    p = plan(resolved_from(data), arch=arch)
    messages = [v.message for v in p.verdicts if v.level == "error"]
    assert any("does not divide the 28 attention heads" in m for m in messages)


def test_kv_that_cannot_hold_one_sequence_is_an_error_with_fixes() -> None:
    data = example_data(CODER_32B)
    data["model"]["max_model_len"] = 32768
    data["gpu"]["memory_utilization"] = 0.85
    p = plan(resolved_from(data))
    error = next(v for v in p.verdicts if v.level == "error")
    assert "cannot hold one 32,768-token sequence" in error.message
    assert error.fix and "gpu.memory_utilization" in error.fix
    assert "model.max_model_len" in error.fix


def test_concurrency_above_what_the_kv_cache_serves_is_a_warning() -> None:
    data = example_data(CODER_32B)
    data["runtime"]["max_concurrent_requests"] = 20  # the original plan's number
    data["runtime"]["target_concurrent_requests"] = 16
    p = plan(resolved_from(data))
    warning = next(v for v in p.verdicts if "max_concurrent_requests" in v.message)
    assert warning.level == "warning" and p.fits
    served = int(p.memory.concurrency_at(2048 + 512))
    assert f"above the {served} requests of 2,560 tokens" in warning.message


def test_fallback_gpu_that_cannot_hold_the_model_is_an_error() -> None:
    data = example_data(CODER_32B)
    data["gpu"]["fallback"] = ["L4"]
    p = plan(resolved_from(data))
    assert any(v.level == "error" and v.message.startswith("fallback GPU L4") for v in p.verdicts)


def test_max_model_len_beyond_the_model_is_an_error() -> None:
    data = example_data(CODER_32B)
    data["model"]["id"] = "mistralai/Mistral-7B-Instruct-v0.3"
    data["model"]["max_model_len"] = 65536
    p = plan(resolved_from(data))
    assert any("max_position_embeddings 32,768" in v.message for v in p.verdicts)


# --- architecture sources -----------------------------------------------------------------


def test_local_directory_config_json_wins(tmp_path: Path) -> None:
    config = {
        "model_type": "qwen2",
        "hidden_size": 5120,
        "num_attention_heads": 40,
        "num_key_value_heads": 8,
        "num_hidden_layers": 48,
        "vocab_size": 152064,
        "intermediate_size": 27648,
        "torch_dtype": "bfloat16",
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    data = example_data(CODER_32B)
    data["model"]["id"] = str(tmp_path)
    p = plan(resolved_from(data))
    assert p.architecture.source == str(tmp_path / "config.json")
    assert p.architecture.num_layers == 48


def test_hugging_face_cache_config_beats_the_catalog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "hub" / "models--Qwen--Qwen2.5-7B-Instruct"
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    config = {
        "hidden_size": 3584,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "num_hidden_layers": 30,
        "vocab_size": 152064,
        "intermediate_size": 18944,
    }
    (snapshot / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    arch = load_architecture("Qwen/Qwen2.5-7B-Instruct")
    assert arch.num_layers == 30 and arch.source.endswith("abc123/config.json")
    assert arch.params_total_b == 7.62  # the published count is kept from the catalog


# --- accuracy against public vLLM startup logs ---------------------------------------------


def _records() -> list[dict[str, Any]]:
    text = resources.files("liftdeploy.spec.data").joinpath("vllm_startup_records.yaml").read_text()
    return YAML(typ="safe").load(text)["records"]


def _predict(record: dict[str, Any]):
    arch = load_architecture(record["model"])
    if "quantization" in record:  # a quantized checkpoint of a catalog architecture
        arch = replace(arch, quantization=Quantization(**record["quantization"]))
    return estimate_memory(
        arch,
        gpu_memory_gib=record["gpu_memory_gib"],
        utilization=record["gpu_memory_utilization"],
        tp=record["tp"],
        expert_ranks=record.get("expert_ranks", 1),
        max_model_len=record["max_model_len"],
        batched_tokens=record["max_num_batched_tokens"],
        num_seqs=record["max_num_seqs"],
        count_cuda_graphs=record["cuda_graphs_counted"],
        sampler_bytes_per_logit=(
            SAMPLER_BYTES_PER_LOGIT if _release(record) >= (0, 8) else SAMPLER_BYTES_PER_LOGIT_V0
        ),
        kv_cache_dtype=record.get("kv_cache_dtype", "auto"),
    )


def _release(record: dict[str, Any]) -> tuple[int, int]:
    major, minor = record["vllm_version"].split(".")[:2]
    return int(major), int(minor)


def _error(predicted: float, logged: float | None) -> float | None:
    return None if logged is None else predicted / logged - 1


def test_accuracy_against_public_vllm_startup_logs() -> None:
    records = _records()
    rows, failures, counted = [], [], 0
    for record in records:
        mem = _predict(record)
        w_err = _error(mem.weights_gib, record.get("weights_gib"))
        kv_err = _error(mem.available_kv_gib, record.get("available_kv_gib"))
        need = record["max_model_len"] * mem.kv_bytes_per_token / GIB
        need_err = _error(need, record.get("kv_needed_gib"))
        excluded = record.get("excluded")
        counted += not excluded
        rows.append(
            f"{record['id']:46} weights {_pct(w_err):>7} avail KV {_pct(kv_err):>7} "
            f"(pred {mem.available_kv_gib:6.2f} / log {record.get('available_kv_gib', 0):6.2f}"
            f" GiB) KV needed {_pct(need_err):>7}{'  EXCLUDED: ' + excluded if excluded else ''}"
        )
        if excluded:
            continue
        if w_err is not None and abs(w_err) > WEIGHTS_TOLERANCE:
            failures.append(f"{record['id']}: weights off by {_pct(w_err)}")
        logged_kv = record.get("available_kv_gib")
        if logged_kv is not None and logged_kv <= 0:  # vLLM refused: the plan must refuse too
            if mem.available_kv_gib > 0:
                failures.append(f"{record['id']}: predicts room for KV where vLLM had none")
        elif kv_err is not None and abs(kv_err) > KV_TOLERANCE:
            failures.append(f"{record['id']}: available KV off by {_pct(kv_err)}")
        if need_err is not None and abs(need_err) > 0.01:
            failures.append(f"{record['id']}: KV per sequence off by {_pct(need_err)}")
    table = "\n".join(rows)
    print("\n" + table)
    assert counted >= 8, f"need at least 8 usable public records, have {counted}"
    assert all(r.get("source", "").startswith("https://") for r in records)
    assert not failures, "\n".join(failures) + "\n" + table


def test_activation_peak_of_a_32b_dense_model_on_h100_matches_public_logs() -> None:
    # Issue 18 quotes public vLLM 0.10/0.11 logs: 32B-class dense models on an H100 at a 16k
    # context peak at about 4.8-5.6 GiB. The quote does not give their batch settings; with
    # the offline LLM class's H100 defaults (16,384 batched tokens, 1,024 sequences) the
    # forward pass is ~3.1 GiB and the sorted sampler logits ~2.3 GiB.
    arch = load_architecture("Qwen/Qwen2.5-Coder-32B-Instruct")
    peak = estimate_memory(
        arch,
        gpu_memory_gib=79.22,
        utilization=0.9,
        tp=1,
        max_model_len=16384,
        batched_tokens=16384,
        num_seqs=1024,
    )
    assert 4.8 <= peak.activation_gib <= 5.6, peak.activation_gib
    # liftdeploy passes --max-num-seqs (runtime.max_concurrent_requests): a small sampler.
    own = estimate_memory(
        arch,
        gpu_memory_gib=79.22,
        utilization=0.9,
        tp=1,
        max_model_len=16384,
        batched_tokens=16384,
        num_seqs=16,
    )
    assert peak.activation_gib - own.activation_gib == pytest.approx(
        (1024 - 16) * 152064 * SAMPLER_BYTES_PER_LOGIT / GIB
    )


def test_kv_tokens_follow_from_bytes_per_token_like_vllm_logs() -> None:
    # Issue 10517: 1952 blocks x 16 tokens of Llama-3.1-8B (128 KiB/token) is the logged 3.81 GiB.
    arch = load_architecture("meta-llama/Llama-3.1-8B-Instruct")
    per_token = kv_bytes_per_token(arch, tp=1, kv_cache_dtype="auto", dtype="auto")
    assert per_token == 131072
    assert 1952 * 16 * per_token / GIB == pytest.approx(3.81, abs=0.005)
    # Issue 21348: Qwen3-235B at TP 4 holds 1 of 4 KV heads per rank: 8.11 GiB -> ~178,880.
    moe = load_architecture("Qwen/Qwen3-235B-A22B-FP8")
    per_token = kv_bytes_per_token(moe, tp=4, kv_cache_dtype="auto", dtype="auto")
    assert 8.11 * GIB / per_token == pytest.approx(178880, rel=0.015)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f}%"


# --- the command line ---------------------------------------------------------------------


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    code = (
        "import json, sys\n"
        "from liftdeploy.cli.main import main\n"
        f"rc = main({list(args)!r})\n"
        "heavy = [m for m in ('vllm', 'torch', 'modal', 'transformers', 'copier') "
        "if m in sys.modules]\n"
        "print('HEAVY=' + json.dumps(heavy), file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=120
    )


def test_cli_plans_all_examples_without_heavy_imports() -> None:
    for path in EXAMPLES:
        done = _run_cli("plan", str(path), "--all-envs", "--json")
        assert done.returncode == 0, done.stderr
        plans = json.loads(done.stdout)
        assert {p["environment"] for p in plans} == set(load_spec(path).environments)
        assert all(p["fits"] for p in plans)
        assert "HEAVY=[]" in done.stderr


def test_cli_table_and_exit_code_1_on_an_error_verdict(tmp_path: Path) -> None:
    data = example_data(CODER_32B)
    data["environments"]["staging"]["gpu"] = {"type": "A10"}
    spec = tmp_path / "deployment.yaml"
    spec.write_text(json.dumps(data))
    done = _run_cli("plan", str(spec), "--env", "staging", "--price", "1.5")
    assert done.returncode == 1, done.stderr
    assert "✗ error: weights need 61.0 GiB" in done.stdout
    assert "$1.50/GPU-hour from command line" in done.stdout
    ok = _run_cli("plan", str(spec))  # production still fits
    assert ok.returncode == 0 and "✓ ok: fits" in ok.stdout


def test_cli_live_prices_fail_clearly_without_a_modal_login(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    env["HOME"] = str(tmp_path)  # no ~/.modal.toml
    done = _run_cli("plan", str(CODER_32B), "--live-prices", env=env)
    assert done.returncode == 1
    assert "modal billing rates" in done.stderr and "--price" in done.stderr
    assert "Traceback" not in done.stderr


def test_suggest_ranks_gpus_per_million_tokens_at_the_spec_demand(tmp_path: Path) -> None:
    """plan --suggest proposes the GPU cheapest per million output tokens at
    workload.requests_per_minute (issue 25 item 4), and says how it ranked."""
    from liftdeploy.planner.advice import suggest

    data = {
        "name": "seven",
        "model": {"id": "Qwen/Qwen2.5-7B-Instruct", "max_model_len": 8192},
        "gpu": {"type": "L4"},
        "runtime": {"max_containers": 4},
    }
    keys = {s.key: s for s in suggest(resolved_from(data))}
    assert "gpu.type" not in keys  # no demand: no GPU advice
    data["workload"] = {"requests_per_minute": 1}
    assert "gpu.type" not in {s.key for s in suggest(resolved_from(data))}  # L4 is cheapest
    data["workload"] = {"requests_per_minute": 6000}
    keys = {s.key: s for s in suggest(resolved_from(data))}
    assert keys["gpu.type"].value in ("H100", "H200", "B200")
    assert (
        "cheapest per million output tokens first at workload.requests_per_minute 6000"
        in keys["gpu.type"].reason
    )
    spec = tmp_path / "deployment.yaml"
    spec.write_text(json.dumps(data))
    done = subprocess.run(
        [sys.executable, "-m", "liftdeploy.cli.main", "plan", str(spec), "--suggest"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert f"gpu.type: L4 -> {keys['gpu.type'].value}" in done.stdout, done.stderr
    assert f"gpu.type={keys['gpu.type'].value}" in done.stdout
    assert "GPU ranking       cheapest per million output tokens first" in done.stdout
    del data["workload"]
    spec.write_text(json.dumps(data))
    done = subprocess.run(
        [sys.executable, "-m", "liftdeploy.cli.main", "plan", str(spec), "--suggest", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert json.loads(done.stdout)["gpu_ranking"].startswith(
        "cheapest per hour first (set workload.requests_per_minute to rank by $ per million"
    )
