"""Model architecture for the planner: from a local config.json, the local Hugging Face cache,
the shipped catalog, or the model's config.json read from the Hub (`hub_config`), normalised into
one small typed record.

Reading config.json is plain JSON: no transformers, no weights; the network only for a model
nothing local knows (one small file, then cached).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from liftdeploy.errors import PlanError
from liftdeploy.planner import checkpoint as safetensors_headers
from liftdeploy.planner import hub_config
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
    """fp8, fbgemm_fp8, awq, gptq, compressed-tensors, mxfp4, ... ("none" for plain bf16/fp16)."""
    bits: int
    """Bits per quantized weight: 16 (none), 8 (fp8/int8) or 4."""
    block_size: tuple[int, int] | None = None
    """FP8 block-scale shape [n, k], when the checkpoint uses block scales."""
    group_size: int = 128
    """Weights per scale for 4/8-bit integer formats (-1 in a config: one scale per channel)."""
    float_format: bool = False
    """fp8/fp4 values with a scale (no zero point), rather than integers with zero points."""
    experts_only: bool = False
    """Only the MoE experts are quantized (gpt-oss's mxfp4: attention stays bf16)."""
    zero_points: bool = True
    """Integer formats: a packed zero point per group (GPTQ/AWQ asymmetric); False when symmetric."""
    unquantized_attention: bool = False
    """modules_to_not_convert keeps the attention projections in the model dtype."""
    unquantized_mlp_layers: int = 0
    """Layers whose MLP modules_to_not_convert keeps in the model dtype."""


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
    qkv_bias: bool = False
    """q/k/v projections carry biases (Qwen2 always, Llama with attention_bias, gpt-oss)."""
    o_bias: bool = False
    qk_norm: bool = False
    """Per-head RMSNorm on queries and keys (Qwen3, Gemma3)."""
    norms_per_layer: int = 2
    """RMSNorms per decoder layer (Gemma2/3 add pre- and post-feedforward norms: 4)."""
    attention_sinks: bool = False
    """One learned sink logit per head (gpt-oss)."""
    kv_lora_rank: int = 0
    """MLA (DeepSeek-V2/V3): the compressed KV width; 0 for ordinary attention."""
    q_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    dense_layers: int = 0
    """Layers of an MoE model with a dense MLP (intermediate_size) instead of experts."""
    shared_expert_gate: bool = False
    """Qwen2-MoE's sigmoid gate on the shared expert (one hidden-size row per layer)."""
    router_bias: bool = False
    """The router has a bias (gpt-oss) or DeepSeek-V3's score-correction bias: experts values."""
    expert_bias: bool = False
    """Each expert's projections have biases (gpt-oss)."""
    sliding_window: int | None = None
    """Tokens a sliding-window layer attends to (None: no sliding-window layers)."""
    sliding_layers: int = 0
    """How many of the KV layers use the sliding window."""
    params_total_b: float | None = None
    """Published parameter count, billions (informational; the planner counts from shapes)."""
    checkpoint: safetensors_headers.CheckpointTensors | None = field(
        default=None, compare=False, repr=False
    )
    """The checkpoint's safetensors headers, where they could be read: the weights are then
    counted tensor by tensor rather than from the formula."""

    @property
    def weights_source(self) -> str:
        """What the weight bytes are counted from, for `plan` to say."""
        if self.checkpoint is None:
            return safetensors_headers.FORMULA_SOURCE
        return f"{safetensors_headers.HEADERS_SOURCE} ({self.checkpoint.source})"

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

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def moe_layers(self) -> int:
        return self.num_layers - self.dense_layers if self.is_moe else 0


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
    model_type = str(config.get("model_type", ""))
    experts = int(
        config.get("n_routed_experts")
        or config.get("num_local_experts")
        or config.get("num_experts")
        or 0
    )
    dense_width = int(config.get("intermediate_size") or 0)
    # Mixtral and gpt-oss keep the expert width in intermediate_size and have no dense MLP.
    expert_width = int(config.get("moe_intermediate_size") or (dense_width if experts else 0))
    moe_layers = _moe_layer_count(config, layers) if experts else 0
    shared = int(
        config.get("shared_expert_intermediate_size")
        or int(config.get("n_shared_experts") or 0) * expert_width
    )
    defaults = _TYPE_DEFAULTS.get(model_type, {})
    attention_bias = bool(config.get("attention_bias", defaults.get("attention_bias", False)))
    sliding_window, sliding_layers = _sliding_layers(config, model_type, layers)
    return Architecture(
        model_id=model_id,
        source=source,
        model_type=model_type,
        num_layers=layers,
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or hidden // heads),
        vocab_size=vocab,
        intermediate_size=dense_width if (not experts or moe_layers < layers) else 0,
        tie_word_embeddings=bool(
            config.get("tie_word_embeddings", defaults.get("tie_word_embeddings", False))
        ),
        max_position_embeddings=config.get("max_position_embeddings"),
        num_experts=experts,
        experts_per_token=int(
            config.get("num_experts_per_tok") or config.get("experts_per_token") or 0
        ),
        moe_intermediate_size=expert_width,
        shared_expert_intermediate_size=shared,
        full_attention_interval=_full_attention_interval(config),
        linear_num_key_heads=int(config.get("linear_num_key_heads") or 0),
        linear_num_value_heads=int(config.get("linear_num_value_heads") or 0),
        linear_key_head_dim=int(config.get("linear_key_head_dim") or 0),
        linear_value_head_dim=int(config.get("linear_value_head_dim") or 0),
        linear_conv_kernel_dim=int(config.get("linear_conv_kernel_dim") or 0),
        torch_dtype=str(config.get("torch_dtype") or config.get("dtype") or "bfloat16"),
        quantization=_quantization(config, source=source),
        params_total_b=config.get("params_total_b"),
        qkv_bias=attention_bias or model_type in _QKV_BIAS_TYPES,
        o_bias=attention_bias,
        qk_norm=model_type in _QK_NORM_TYPES,
        norms_per_layer=4 if model_type in _FOUR_NORM_TYPES else 2,
        attention_sinks=model_type in _SINK_TYPES,
        kv_lora_rank=int(config.get("kv_lora_rank") or 0),
        q_lora_rank=int(config.get("q_lora_rank") or 0),
        qk_nope_head_dim=int(config.get("qk_nope_head_dim") or 0),
        qk_rope_head_dim=int(config.get("qk_rope_head_dim") or 0),
        v_head_dim=int(config.get("v_head_dim") or 0),
        dense_layers=layers - moe_layers if experts else 0,
        shared_expert_gate=model_type in _SHARED_GATE_TYPES and shared > 0,
        router_bias=model_type in _ROUTER_BIAS_TYPES or config.get("topk_method") == "noaux_tc",
        expert_bias=model_type in _ROUTER_BIAS_TYPES,
        sliding_window=sliding_window,
        sliding_layers=sliding_layers,
    )


# What transformers' config classes assume when config.json leaves a key out (vLLM reads
# config.json through them): Gemma ties its embeddings, gpt-oss has attention biases.
_TYPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "gemma": {"tie_word_embeddings": True},
    "gemma2": {"tie_word_embeddings": True},
    "gemma3": {"tie_word_embeddings": True},
    "gemma3_text": {"tie_word_embeddings": True},
    "gpt_oss": {"attention_bias": True},
}
_QKV_BIAS_TYPES = frozenset({"qwen2", "qwen2_moe", "qwen2_vl", "qwen2_5_vl"})
"""vLLM's Qwen2 modules give q/k/v a bias whatever the config says (o_proj none)."""
_QK_NORM_TYPES = frozenset({"qwen3", "qwen3_moe", "qwen3_next", "gemma3", "gemma3_text"})
_FOUR_NORM_TYPES = frozenset({"gemma2", "gemma3", "gemma3_text"})
_SINK_TYPES = frozenset({"gpt_oss"})
_SHARED_GATE_TYPES = frozenset({"qwen2_moe", "qwen3_next"})
_ROUTER_BIAS_TYPES = frozenset({"gpt_oss"})


def _moe_layer_count(config: dict[str, Any], layers: int) -> int:
    """Layers with experts: DeepSeek's first_k_dense_replace/moe_layer_freq, Qwen-MoE's
    mlp_only_layers/decoder_sparse_step (the rules of vLLM's model files)."""
    first_dense = int(config.get("first_k_dense_replace") or 0)
    freq = int(config.get("moe_layer_freq") or 1)
    step = int(config.get("decoder_sparse_step") or 1)
    dense_only = set(config.get("mlp_only_layers") or [])
    return sum(
        1
        for i in range(layers)
        if i >= first_dense and i % freq == 0 and i not in dense_only and (i + 1) % step == 0
    )


def _sliding_layers(config: dict[str, Any], model_type: str, layers: int) -> tuple[int | None, int]:
    """(window, how many layers use it): from layer_types, Gemma2's alternation (even layers),
    Gemma3's sliding_window_pattern, or every layer (Mistral) when sliding_window is set."""
    window = config.get("sliding_window")
    if not window or config.get("use_sliding_window") is False:
        return None, 0
    layer_types = config.get("layer_types")
    if isinstance(layer_types, list) and layer_types:
        return int(window), layer_types.count("sliding_attention")
    if model_type == "gemma2":
        return int(window), (layers + 1) // 2
    if model_type in ("gemma3", "gemma3_text"):
        pattern = int(config.get("sliding_window_pattern") or 6)
        return int(window), sum(1 for i in range(layers) if (i + 1) % pattern)
    return int(window), layers


def with_spec_quantization(arch: Architecture, method: str | None) -> Architecture:
    """Apply the spec's model.quantization to an unquantized checkpoint (vLLM quantizes it
    while loading: fp8 to one byte per weight); a quantized checkpoint keeps its own format."""
    if method is None or arch.quantization.method != "none":
        return arch
    if method == "fp8":  # online FP8: one byte per weight, a per-tensor scale
        return replace(arch, quantization=Quantization(method=method, bits=8, float_format=True))
    return replace(arch, quantization=Quantization(method=method, bits=4))


def _full_attention_interval(config: dict[str, Any]) -> int:
    if config.get("full_attention_interval"):
        return int(config["full_attention_interval"])
    layer_types = config.get("layer_types")
    if isinstance(layer_types, list) and "linear_attention" in layer_types:
        full = layer_types.count("full_attention")
        return max(1, round(len(layer_types) / max(full, 1)))
    return 1


KNOWN_QUANTIZATION = (
    "fp8",
    "fbgemm_fp8",
    "compressed-tensors",
    "awq",
    "awq_marlin",
    "gptq",
    "gptq_marlin",
    "auto_awq",
    "auto_gptq",
    "mxfp4",
    "modelopt",
    "modelopt_fp4",
)
"""quant_method values the planner sizes (scales and zero points included)."""


def _quantization(config: dict[str, Any], *, source: str = "config.json") -> Quantization:
    """From config.json's quantization_config, or the catalog's flat `quantization` keys.

    Raises PlanError for a method the planner does not know: never a silent guess."""
    qc = config.get("quantization_config")
    if not isinstance(qc, dict):
        if not config.get("quantization"):
            return NO_QUANTIZATION
        qc = {
            "quant_method": config["quantization"],
            "bits": config.get("quantization_bits"),
            "weight_block_size": config.get("weight_block_size"),
        }
    method = str(qc.get("quant_method", "")).lower()
    if method == "bitsandbytes":
        raise PlanError(
            f"{source}: bitsandbytes checkpoints have no loader in the pinned vLLM; use the "
            f"unquantized model with model.quantization: fp8, or an AWQ/GPTQ/FP8 checkpoint"
        )
    if method not in KNOWN_QUANTIZATION:
        raise PlanError(
            f"{source}: quantization_config.quant_method {method or '(missing)'!r} is not one "
            f"the planner can size ({', '.join(KNOWN_QUANTIZATION)}); use a checkpoint in one of "
            f"those formats"
        )
    skipped = [
        str(m)
        for m in (
            qc.get("modules_to_not_convert") or qc.get("ignore") or qc.get("ignored_layers") or []
        )
    ]
    unquantized_attention = any("self_attn" in m or m.endswith("attn") for m in skipped)
    mlp_layers = {
        m.split(".layers.")[1].split(".")[0] for m in skipped if ".layers." in m and ".mlp" in m
    }
    common: dict[str, Any] = dict(
        unquantized_attention=unquantized_attention,
        unquantized_mlp_layers=len({n for n in mlp_layers if n.isdigit()}),
    )
    if method in ("fp8", "fbgemm_fp8", "modelopt"):
        block = qc.get("weight_block_size") or config.get("weight_block_size")
        return Quantization(
            method=method,
            bits=8,
            float_format=True,
            block_size=(int(block[0]), int(block[1])) if block else None,
            **common,
        )
    if method == "mxfp4":  # gpt-oss: experts in MXFP4 (4-bit values + one byte per 32)
        return Quantization(
            method=method,
            bits=4,
            group_size=32,
            float_format=True,
            experts_only=True,
            zero_points=False,
            **common,
        )
    if method == "modelopt_fp4":  # NVFP4: 4-bit values + one fp8 scale per 16
        return Quantization(
            method=method, bits=4, group_size=16, float_format=True, zero_points=False, **common
        )
    if method == "compressed-tensors":
        return _compressed_tensors(qc, source, common)
    bits = int(qc.get("bits") or qc.get("w_bit") or 4)
    group = int(qc.get("group_size") or qc.get("q_group_size") or 128)
    symmetric = bool(qc.get("sym", False)) and "awq" not in method
    return Quantization(
        method=method,
        bits=bits,
        group_size=group,
        zero_points=not symmetric or "gptq" in method,
        **common,
    )


def _compressed_tensors(qc: dict[str, Any], source: str, common: dict[str, Any]) -> Quantization:
    """The first config group's weight scheme (w8a8 int/fp8, w4a16, ...)."""
    groups = qc.get("config_groups") or {}
    weights = next(
        (
            g.get("weights")
            for g in groups.values()
            if isinstance(g, dict) and isinstance(g.get("weights"), dict)
        ),
        None,
    )
    if weights is None:
        raise PlanError(
            f"{source}: compressed-tensors quantization_config has no config_groups "
            f"with a weights scheme; use a complete config.json"
        )
    bits = int(weights.get("num_bits") or 8)
    strategy = str(weights.get("strategy") or "tensor")
    group = int(weights.get("group_size") or 0) if strategy == "group" else 0
    block = weights.get("block_structure")
    return Quantization(
        method="compressed-tensors",
        bits=bits,
        float_format=weights.get("type") == "float",
        group_size=group if group > 0 else -1,
        zero_points=not weights.get("symmetric", True),
        block_size=(int(block[0]), int(block[1])) if block else None,
        **common,
    )


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


def _checkpoint_beside(
    config: Path, *, cached: bool
) -> safetensors_headers.CheckpointTensors | None:
    """The headers an earlier plan cached beside a cached config.json, or those of the
    safetensors files beside a local one (a model directory, a Hugging Face cache snapshot)."""
    return (
        safetensors_headers.read_cached(config)
        if cached
        else safetensors_headers.read_local(config.parent)
    )


def load_architecture(
    model_id: str, revision: str | None = None, *, fetch: bool = True
) -> Architecture:
    """The model's architecture, from the first source that has it: a local directory or the
    Hugging Face cache (config.json is the truth), liftdeploy's cache of fetched configs, the
    catalog, and last (with `fetch`) the model's config.json read from the Hub."""
    path = local_config_path(model_id, revision)
    where, headers = None, None
    if path is None:
        path = hub_config.cached_config_path(model_id, revision)
        where = hub_config.CACHED_SOURCE
    entry = catalog.model_arch(model_id)
    if path is None and entry is not None:
        return from_config(entry.config, model_id=entry.model_id, source=entry.source)
    if path is None and fetch and "/" in model_id and not Path(model_id).expanduser().exists():
        path = hub_config.fetch_config(model_id, revision)
        where = f"fetched from {hub_config.hub_endpoint()}/{model_id}"
        headers = safetensors_headers.fetch(
            model_id, revision, path.parent, hub_config.hub_endpoint()
        )
    if path is None:
        known = ", ".join(catalog.models())
        raise PlanError(
            f"no architecture for {model_id!r}: no config.json in a local directory or the "
            f"Hugging Face cache, and not in the catalog ({known}). Use a directory with its "
            f"config.json as model.id, or an `org/name` model id on the Hub"
        )
    arch = from_config(
        hub_config.read_config(path),
        model_id=model_id,
        source=f"{path} ({where})" if where else str(path),
    )
    arch = replace(arch, checkpoint=headers or _checkpoint_beside(path, cached=where is not None))
    if arch.params_total_b is None and entry is not None:  # keep the published count
        arch = replace(arch, params_total_b=entry.get("params_total_b"))
    return arch
