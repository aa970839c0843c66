"""The planner's KV formulas against vLLM itself: tiny random checkpoints of each family, built
with transformers' own model classes (liftdeploy.twin.tinymodel.build_family_model), loaded by
vLLM's CPU engine with a known KV space; the planner must predict the "KV cache size: N tokens"
vLLM reports for that space (whole blocks, sliding-window blocks, MLA's compressed latent).

One vLLM process loads every family in turn (the in-process engine, ~20 s a family on a loaded
2-core machine); the results are shared by the tests below.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from liftdeploy.planner.arch import load_architecture
from liftdeploy.planner.memory import (
    GIB,
    kv_bytes_per_token,
    kv_cache_capacity,
    sequence_fixed_bytes,
)
from liftdeploy.twin.tinymodel import TINY_FAMILIES, build_family_model

pytestmark = pytest.mark.twin

KV_SPACE_GIB = 1
MAX_MODEL_LEN = 512
BATCHED_TOKENS = 512
VLLM_DTYPE = "bfloat16"
VLLM_FAMILIES = [
    "llama",
    "qwen2",
    "qwen3",
    "mistral",
    "mixtral",
    "qwen2_moe",
    "qwen3_moe",
    "gemma",
    "gemma2",
    "phi3",
    "deepseek_v2",
    "deepseek_v3",
    "gpt_oss",
]
"""Every family vLLM's CPU engine loads (all of TINY_FAMILIES in vLLM 0.32)."""
_RUNNER = f"""
import gc, json, os, sys
os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # in-process engine: one import of vLLM
if __name__ == "__main__":
    from vllm import LLM
    for path in sys.argv[1:]:
        try:
            llm = LLM(model=path, max_model_len={MAX_MODEL_LEN}, enforce_eager=True,
                      max_num_seqs=2, max_num_batched_tokens={BATCHED_TOKENS},
                      dtype="{VLLM_DTYPE}", seed=0)
            cache = llm.llm_engine.vllm_config.cache_config
            found = {{"blocks": cache.num_gpu_blocks, "block_size": cache.block_size,
                      "tokens": cache.kv_cache_size_tokens}}
            del llm
            gc.collect()
        except Exception as exc:
            found = {{"error": f"{{type(exc).__name__}}: {{exc}}"[:400]}}
        print("RESULT " + json.dumps({{"path": path, **found}}), flush=True)
"""


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    return {family: build_family_model(root / family, family) for family in TINY_FAMILIES}


@pytest.fixture(scope="module")
def vllm_reports(twin_supported: None, family_dirs: dict[str, Path]) -> dict[str, dict]:
    """What vLLM's CPU engine reports for each family (or the error it raised)."""
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(KV_SPACE_GIB), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, *(str(family_dirs[f]) for f in VLLM_FAMILIES)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1500,
        check=False,
    )
    results = {}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            record = json.loads(line.removeprefix("RESULT "))
            results[Path(record.pop("path")).name] = record
    assert results, f"vLLM reported nothing (exit {done.returncode}):\n{done.stderr[-3000:]}"
    return results


@pytest.mark.parametrize("family", VLLM_FAMILIES)
def test_kv_tokens_match_what_vllm_cpu_reports(
    family: str,
    family_dirs: dict[str, Path],
    vllm_reports: dict[str, dict],
) -> None:
    report = vllm_reports[family]
    assert "error" not in report, f"vLLM could not load the tiny {family}: {report['error']}"
    arch = load_architecture(str(family_dirs[family]))
    per_token = kv_bytes_per_token(arch, tp=1, kv_cache_dtype="auto", dtype=VLLM_DTYPE)
    fixed = sequence_fixed_bytes(
        arch,
        tp=1,
        kv_cache_dtype="auto",
        dtype=VLLM_DTYPE,
        max_model_len=MAX_MODEL_LEN,
        batched_tokens=BATCHED_TOKENS,
        block_tokens=report["block_size"],
    )
    tokens, _ = kv_cache_capacity(
        KV_SPACE_GIB * GIB, per_token, fixed, MAX_MODEL_LEN, report["block_size"]
    )
    print(
        f"{family}: planner {tokens:,} tokens, vLLM {report['tokens']:,} "
        f"({report['blocks']} blocks of {report['block_size']})"
    )
    assert tokens == report["tokens"]
