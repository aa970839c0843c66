"""Model architecture for the planner: from a local config.json, the local Hugging Face cache,
the shipped catalog, or the model's config.json read from the Hub (`hub`), normalised into one
small typed record.

Reading config.json is plain JSON: no transformers, no weights; the network only for a model
nothing local knows (one small file, then cached).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from liftdeploy.errors import PlanError
from liftdeploy.planner import hub
from liftdeploy.spec import catalog
from liftdeploy.spec.model import revision_problem

_COMMIT_DIR = re.compile(r"^[0-9a-f]{40}$")
"""A snapshot directory of the Hugging Face cache: a full commit hash."""
# model_type values whose attention has an output gate (q_proj emits query and gate).
_GATED_ATTENTION_TYPES = frozenset({"qwen3_next"})


@dataclass(frozen=True)
class Quantization:
    """How the checkpoint's linear weights are stored."""

    method: str
    """fp8, awq, gptq, bitsandbytes, compressed-tensors, ... ("none" for plain bf16/fp16)."""
    bits: int
    """Bits per quantized weight: 16 (none), 8 (fp8/int8) or 4."""
    block_size: tuple[int, int] | None = None
    """FP8 block-scale shape [n, k], when the checkpoint uses block scales."""
    group_size: int = 128
    """Weights per scale for 4/8-bit integer formats."""


NO_QUANTIZATION = Quantization(method="none", bits=16)


@dataclass(frozen=True)
class Architecture:
    """The facts the planner needs about one model, whatever their source."""

    model_id: str
    source: str
    """Where these facts came from: a config.json path or the catalog entry's source URL."""
    model_type: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    intermediate_size: int = 0
    """Dense MLP width (0 for pure MoE models)."""
    tie_word_embeddings: bool = False
    max_position_embeddings: int | None = None
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    shared_expert_intermediate_size: int = 0
    full_attention_interval: int = 1
    """Every N-th layer keeps a KV cache; the others are linear attention (hybrid models)."""
    linear_num_key_heads: int = 0
    linear_num_value_heads: int = 0
    linear_key_head_dim: int = 0
    linear_value_head_dim: int = 0
    linear_conv_kernel_dim: int = 0
    torch_dtype: str = "bfloat16"
    quantization: Quantization = NO_QUANTIZATION
    params_total_b: float | None = None
    """Published parameter count, billions (informational; the planner counts from shapes)."""

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def is_hybrid(self) -> bool:
        return self.full_attention_interval > 1

    @property
    def kv_layers(self) -> int:
        """Layers that keep a KV cache (all of them unless the model is hybrid)."""
        return self.num_layers // self.full_attention_interval

    @property
    def linear_layers(self) -> int:
        return self.num_layers - self.kv_layers

    @property
    def gated_attention(self) -> bool:
        return self.model_type in _GATED_ATTENTION_TYPES


def from_config(config: dict[str, Any], *, model_id: str, source: str) -> Architecture:
    """Normalise a config.json dict (or a catalog entry, which uses the same names)."""
    text = config.get("text_config")
    if isinstance(text, dict):  # multimodal wrappers keep the language model's config inside
        config = {**config, **text}
    try:
        hidden = int(config["hidden_size"])
        heads = int(config["num_attention_heads"])
        layers = int(config["num_hidden_layers"])
        vocab = int(config["vocab_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanError(
            f"{source} lacks {exc} needed to size {model_id}; use a complete config.json or add "
            f"the model to liftdeploy/spec/data/models.yaml"
        ) from None
    return Architecture(
        model_id=model_id,
        source=source,
        model_type=str(config.get("model_type", "")),
        num_layers=layers,
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or hidden // heads),
        vocab_size=vocab,
        intermediate_size=int(config.get("intermediate_size") or 0),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        max_position_embeddings=config.get("max_position_embeddings"),
        num_experts=int(config.get("num_experts") or config.get("num_local_experts") or 0),
        experts_per_token=int(config.get("num_experts_per_tok") or 0),
        moe_intermediate_size=int(config.get("moe_intermediate_size") or 0),
        shared_expert_intermediate_size=int(config.get("shared_expert_intermediate_size") or 0),
        full_attention_interval=_full_attention_interval(config),
        linear_num_key_heads=int(config.get("linear_num_key_heads") or 0),
        linear_num_value_heads=int(config.get("linear_num_value_heads") or 0),
        linear_key_head_dim=int(config.get("linear_key_head_dim") or 0),
        linear_value_head_dim=int(config.get("linear_value_head_dim") or 0),
        linear_conv_kernel_dim=int(config.get("linear_conv_kernel_dim") or 0),
        torch_dtype=str(config.get("torch_dtype") or config.get("dtype") or "bfloat16"),
        quantization=_quantization(config),
        params_total_b=config.get("params_total_b"),
    )


def with_spec_quantization(arch: Architecture, method: str | None) -> Architecture:
    """Apply the spec's model.quantization to an unquantized checkpoint (vLLM quantizes it
    while loading: fp8 to one byte per weight); a quantized checkpoint keeps its own format."""
    if method is None or arch.quantization.method != "none":
        return arch
    bits = 8 if method == "fp8" else 4
    return replace(arch, quantization=Quantization(method=method, bits=bits))


def _full_attention_interval(config: dict[str, Any]) -> int:
    if config.get("full_attention_interval"):
        return int(config["full_attention_interval"])
    layer_types = config.get("layer_types")
    if isinstance(layer_types, list) and "linear_attention" in layer_types:
        full = layer_types.count("full_attention")
        return max(1, round(len(layer_types) / max(full, 1)))
    return 1


def _quantization(config: dict[str, Any]) -> Quantization:
    """From config.json's quantization_config, or the catalog's flat `quantization` keys."""
    qc = config.get("quantization_config")
    if isinstance(qc, dict):
        method = str(qc.get("quant_method", "unknown")).lower()
        block = qc.get("weight_block_size") or config.get("weight_block_size")
        bits = int(qc.get("bits") or qc.get("w_bit") or (8 if method == "fp8" else 4))
        group = int(qc.get("group_size") or qc.get("q_group_size") or 128)
    elif config.get("quantization"):
        method = str(config["quantization"]).lower()
        block = config.get("weight_block_size")
        bits = int(config.get("quantization_bits") or (8 if method == "fp8" else 4))
        group = 128
    else:
        return NO_QUANTIZATION
    block_size = (int(block[0]), int(block[1])) if block else None
    return Quantization(method=method, bits=bits, block_size=block_size,
                        group_size=group if group > 0 else 128)


def _hf_cache_dirs() -> list[Path]:
    if os.environ.get("HF_HUB_CACHE"):
        return [Path(os.environ["HF_HUB_CACHE"])]
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    return [home / "hub"]


def local_config_path(model_id: str, revision: str | None = None) -> Path | None:
    """config.json in a local model directory, or in the local Hugging Face cache, if present."""
    direct = Path(model_id).expanduser()
    if direct.is_dir():
        found = direct / "config.json"
        return found if found.is_file() else None
    if "/" not in model_id:
        return None
    repo_dir_name = "models--" + model_id.replace("/", "--")
    for cache in _hf_cache_dirs():
        snapshots = cache / repo_dir_name / "snapshots"
        if not snapshots.is_dir():
            continue
        if revision:
            if problem := revision_problem(revision):  # never a path into the cache
                raise PlanError(problem)
            ref = cache / repo_dir_name / "refs" / revision
            commit = ref.read_text().strip() if ref.is_file() else revision
            if not _COMMIT_DIR.match(commit):  # a refs file holds a commit hash, nothing else
                continue
            candidate = snapshots / commit / "config.json"
            if candidate.is_file():
                return candidate
            continue
        ref = cache / repo_dir_name / "refs" / "main"
        if ref.is_file() and (snapshots / ref.read_text().strip() / "config.json").is_file():
            return snapshots / ref.read_text().strip() / "config.json"
        configs = sorted(snapshots.glob("*/config.json"), key=lambda p: p.stat().st_mtime)
        if configs:
            return configs[-1]
    return None


def load_architecture(model_id: str, revision: str | None = None, *,
                      fetch: bool = True) -> Architecture:
    """The model's architecture, from the first source that has it: a local directory or the
    Hugging Face cache (config.json is the truth), liftdeploy's cache of fetched configs, the
    catalog, and last (with `fetch`) the model's config.json read from the Hub."""
    path = local_config_path(model_id, revision)
    where = None
    if path is None:
        path = hub.cached_config_path(model_id, revision)
        where = hub.CACHED_SOURCE
    entry = catalog.model_arch(model_id)
    if path is None and entry is not None:
        return from_config(entry.config, model_id=entry.model_id, source=entry.source)
    if path is None and fetch and "/" in model_id and not Path(model_id).expanduser().exists():
        path = hub.fetch_config(model_id, revision)
        where = f"fetched from {hub.hub_endpoint()}/{model_id}"
    if path is None:
        known = ", ".join(catalog.models())
        raise PlanError(
            f"no architecture for {model_id!r}: no config.json in a local directory or the "
            f"Hugging Face cache, and not in the catalog ({known}). Use a directory with its "
            f"config.json as model.id, or an `org/name` model id on the Hub"
        )
    arch = from_config(hub.read_config(path), model_id=model_id,
                       source=f"{path} ({where})" if where else str(path))
    if arch.params_total_b is None and entry is not None:  # keep the published count
        arch = replace(arch, params_total_b=entry.get("params_total_b"))
    return arch
