"""GPU memory formulas: weights per rank, KV bytes per token, and vLLM's KV-cache budget.

Pure arithmetic on an `Architecture`, mirroring how vLLM (v1 engine) shards and profiles:
  available KV = util x GPU memory - weights - activation peak - non-torch - CUDA graphs
Every figure is per GPU (per tensor-parallel rank) unless its name says otherwise.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

from liftdeploy.planner.arch import Architecture, Quantization
from liftdeploy.planner.checkpoint import _FLOAT_DTYPES, DTYPE_BYTES, CheckpointTensors

GIB = 2**30
BLOCK_TOKENS = 16
"""vLLM's default KV block size in tokens: the cache is allocated in whole blocks."""
VOCAB_PAD = 64
"""vLLM pads the vocabulary to a multiple of 64 before splitting it across ranks."""

_DTYPE_BYTES = {
    "float32": 4,
    "float": 4,
    "float16": 2,
    "half": 2,
    "bfloat16": 2,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
}

# Calibrated against the public startup logs in data/vllm_startup_records.yaml (see
# tests/test_plan.py): memory outside torch's allocator that vLLM's profiler counts.
NON_TORCH_GIB_SINGLE = 0.35
"""cuBLAS/cuDNN workspaces and allocator slack on one GPU."""
NON_TORCH_GIB_PER_COMM = 0.6
"""NCCL and custom all-reduce buffers once ranks talk to each other (TP > 1)."""
EXPERT_PARALLEL_GIB = 2.0
"""All-to-all dispatch/combine buffers of expert parallel (measured residual of the
Qwen3-Coder-480B DP8/EP record)."""
CUDA_GRAPH_GIB_BASE = 0.3
CUDA_GRAPH_GIB_PER_LAYER = 0.006
"""CUDA graphs capture per-layer kernels at ~50 batch sizes; vLLM >= 0.21 profiles and
subtracts this (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS). 0.52 GiB logged for 36 layers."""
SAMPLER_BYTES_PER_LOGIT = 16
"""vLLM's V1 engine (0.8 and later) profiles the sampler with top_k = vocab - 1 and top_p
(`_dummy_sampler_run`), which sorts the logits: fp32 logits plus sorted fp32 values plus int64
indices for max_num_seqs rows. Checked against issue 18's public logs (32B dense on an H100 at
16k context, vLLM 0.10/0.11: 4.8-5.6 GiB activation peak) and the 1,024-sequence record."""
SAMPLER_BYTES_PER_LOGIT_V0 = 8
"""Releases before 0.8 (V0 engine): calibrated on the V0 records (logits and one copy)."""


def dtype_bytes(name: str) -> int:
    """Bytes per element of a dtype name as vLLM/config.json spell it."""
    return _DTYPE_BYTES.get(name.lower().replace("torch.", ""), 2)


def linear_bytes_per_param(quant: Quantization, activation_bytes: int) -> float:
    """Stored bytes per weight of a quantized linear layer, scales and zero points included."""
    if quant.method == "none" or quant.bits >= 16:
        return float(activation_bytes)
    if quant.float_format and quant.bits == 8:
        if quant.block_size:  # one fp32 scale per [n x k] block
            return 1.0 + 4.0 / (quant.block_size[0] * quant.block_size[1])
        return 1.0  # per-tensor or per-channel scales: a few bytes per row at most
    if quant.float_format:  # MXFP4: one uint8 scale per 32; NVFP4: one fp8 scale per 16
        return quant.bits / 8 + 1.0 / quant.group_size
    if quant.group_size <= 0:  # one scale per output channel
        return quant.bits / 8
    # integer formats (AWQ/GPTQ/compressed-tensors): fp16 scale (+ packed zero) per group
    zero = quant.bits / 8 if quant.zero_points else 0.0
    return quant.bits / 8 + (2 + zero) / quant.group_size


def resolved_dtype(arch: Architecture, dtype: str = "auto", capability: float = 9.0) -> str:
    """The dtype vLLM loads: `dtype` when set, else vLLM's auto rule (config/model.py
    `_resolve_auto_dtype`): the checkpoint's dtype, float32 checkpoints as bfloat16 on compute
    capability 8.0 and up and float16 below, bfloat16 as float16 where the GPU lacks it."""
    if dtype != "auto":
        return dtype
    name = arch.torch_dtype.lower().replace("torch.", "")
    preferred = (
        "bfloat16"
        if capability >= 8.0
        else ("float32" if arch.model_type in _NO_FLOAT16_TYPES else "float16")
    )
    if name in ("float32", "float"):
        return preferred
    if name == "bfloat16" and capability < 8.0:
        return "float16"
    return name


_NO_FLOAT16_TYPES = frozenset({"gemma2", "gemma3", "gemma3_text", "glm4"})
"""vLLM's _FLOAT16_NOT_SUPPORTED_MODELS: below 8.0 their `auto` dtype is float32."""

MXFP4_HIDDEN_ALIGN = 256
MXFP4_INTERMEDIATE_ALIGN = 128
"""vLLM pads MXFP4 experts for its GPU kernels (fused_moe/oracle/mxfp4.py,
`mxfp4_round_up_hidden_size_and_intermediate_size`, Marlin/TRT-LLM backends on Hopper)."""


def _round_up(value: float, align: int) -> float:
    return math.ceil(value / align) * align


@dataclass(frozen=True)
class Weights:
    """Weight bytes held by one rank, by part, plus what one decode step reads."""

    embedding_bytes: float
    lm_head_bytes: float
    attention_bytes: float
    mlp_bytes: float
    """Dense MLP or MoE experts (+ shared expert and router)."""
    other_bytes: float
    """Norms, linear-attention convolutions and gates."""
    active_bytes_per_token: float
    """Bytes every rank together reads per decoded token at batch 1 (MoE: routed experts only)."""
    expert_bytes_per_expert: float
    """Bytes of one routed expert across all layers (0 for dense models)."""

    @property
    def total_bytes(self) -> float:
        return (
            self.embedding_bytes
            + self.lm_head_bytes
            + self.attention_bytes
            + self.mlp_bytes
            + self.other_bytes
        )

    @property
    def total_gib(self) -> float:
        return self.total_bytes / GIB


def kv_heads_per_rank(arch: Architecture, tp: int) -> int:
    """KV heads one rank stores: kv_heads / TP, or 1 (replicated) when kv_heads < TP."""
    return max(1, arch.num_kv_heads // tp)


def weights_per_rank(
    arch: Architecture,
    *,
    tp: int,
    expert_ranks: int = 1,
    dtype: str = "bfloat16",
) -> Weights:
    """Weight bytes on one GPU under tensor parallel `tp`: from the checkpoint's safetensors
    headers where the architecture carries them, else from the formula.

    `expert_ranks` > 1 means expert parallel: whole experts spread over that many ranks instead
    of every expert being sliced `tp` ways. Embeddings and lm_head are vocab-parallel.
    """
    if arch.checkpoint is not None:
        counted = weights_from_headers(
            arch, arch.checkpoint, tp=tp, expert_ranks=expert_ranks, dtype=dtype
        )
        if counted is not None:
            return counted
    return formula_weights_per_rank(arch, tp=tp, expert_ranks=expert_ranks, dtype=dtype)


def formula_weights_per_rank(
    arch: Architecture,
    *,
    tp: int,
    expert_ranks: int = 1,
    dtype: str = "bfloat16",
) -> Weights:
    """weights_per_rank from config.json's shapes alone: every family's module structure."""
    act = dtype_bytes(resolved_dtype(arch, dtype))
    quant = arch.quantization
    lin = linear_bytes_per_param(quant, act)
    lin_attention = act if quant.unquantized_attention or quant.experts_only else lin
    lin_dense = act if quant.experts_only else lin
    h = arch.hidden_size
    vocab_rank = math.ceil(math.ceil(arch.vocab_size / VOCAB_PAD) * VOCAB_PAD / tp)
    embedding = vocab_rank * h * act
    lm_head = 0.0 if arch.tie_word_embeddings else embedding

    attn_weights, attn_extra = _attention_params(arch, tp)
    attention = (attn_weights * lin_attention + attn_extra * act) * arch.kv_layers

    linear_layer, linear_other = _linear_attention_params(arch, tp)
    attention += linear_layer * lin * arch.linear_layers
    other = (
        linear_other * act * arch.linear_layers
        + (arch.norms_per_layer * arch.num_layers + 1) * h * act
    )

    dense_layers = arch.dense_layers if arch.is_moe else arch.num_layers
    unquantized = min(quant.unquantized_mlp_layers, dense_layers)
    dense_layer = 3 * h * arch.intermediate_size / tp
    mlp = dense_layer * ((dense_layers - unquantized) * lin_dense + unquantized * act)
    active_mlp = mlp * tp
    per_expert = 0.0
    if arch.is_moe:
        expert_params = 3 * h * arch.moe_intermediate_size
        width, hidden = arch.moe_intermediate_size / tp, float(h)
        if expert_ranks > 1:
            experts_here, width = (
                math.ceil(arch.num_experts / expert_ranks),
                arch.moe_intermediate_size,
            )
        else:
            experts_here = arch.num_experts
        if quant.method == "mxfp4":
            width = _round_up(width, MXFP4_INTERMEDIATE_ALIGN)
            hidden = _round_up(h, MXFP4_HIDDEN_ALIGN)
        expert_bytes = 3 * hidden * width * lin
        if arch.expert_bias:  # gate_up (2 x width) and down (hidden) biases
            expert_bytes += (2 * width + h) * act
        shared = 3 * h * arch.shared_expert_intermediate_size
        router = (
            h * arch.num_experts
            + (arch.num_experts if arch.router_bias else 0)
            + (h if arch.shared_expert_gate else 0)
        )  # kept in the model dtype
        moe_layer = experts_here * expert_bytes + shared / tp * lin + router * act
        mlp += moe_layer * arch.moe_layers
        active_mlp += (
            (arch.experts_per_token * expert_params + shared) * lin + router * act
        ) * arch.moe_layers
        per_expert = expert_params * lin * arch.moe_layers

    # One decode step reads every rank's attention/norms, one embedding row and the full
    # lm_head, plus the routed experts only.
    active = (attention + other) * tp + active_mlp + (lm_head or embedding) * tp + h * act
    return Weights(
        embedding_bytes=embedding,
        lm_head_bytes=lm_head,
        attention_bytes=attention,
        mlp_bytes=mlp,
        other_bytes=other,
        active_bytes_per_token=active,
        expert_bytes_per_expert=per_expert,
    )


def _attention_params(arch: Architecture, tp: int) -> tuple[float, float]:
    """Per-rank parameters of one attention layer: (projection weights, biases/norms/sinks)."""
    h, heads = arch.hidden_size, arch.num_heads
    if arch.is_mla:  # DeepSeek MLA: the low-rank "a" projections are replicated on every rank
        qk_dim = arch.qk_nope_head_dim + arch.qk_rope_head_dim
        if arch.q_lora_rank:
            q = h * arch.q_lora_rank + arch.q_lora_rank * heads * qk_dim / tp
        else:
            q = h * heads * qk_dim / tp
        kv = (
            h * (arch.kv_lora_rank + arch.qk_rope_head_dim)
            + arch.kv_lora_rank * heads * (arch.qk_nope_head_dim + arch.v_head_dim) / tp
        )
        out = heads * arch.v_head_dim / tp * h
        return q + kv + out, arch.kv_lora_rank + arch.q_lora_rank  # a-projection norms
    q_width = heads * arch.head_dim * (2 if arch.gated_attention else 1)
    kv_width = 2 * kv_heads_per_rank(arch, tp) * arch.head_dim
    weights = h * (q_width / tp + kv_width) + heads * arch.head_dim / tp * h
    extra = 0.0
    if arch.qkv_bias:
        extra += q_width / tp + kv_width
    if arch.o_bias:
        extra += h  # a row-parallel bias is whole on every rank
    if arch.attention_sinks:
        extra += heads / tp
    if arch.qk_norm:
        extra += 2 * arch.head_dim
    return weights, extra


def pipeline_stage(weights: Weights, pp: int) -> Weights:
    """The largest pipeline stage's share: layers split `pp` ways, embedding on the first
    stage and lm_head on the last (what a decode step reads is unchanged)."""
    if pp == 1:
        return weights
    return replace(
        weights,
        embedding_bytes=max(weights.embedding_bytes, weights.lm_head_bytes),
        lm_head_bytes=0.0,
        attention_bytes=weights.attention_bytes / pp,
        mlp_bytes=weights.mlp_bytes / pp,
        other_bytes=weights.other_bytes / pp,
    )


def _linear_attention_params(arch: Architecture, tp: int) -> tuple[float, float]:
    """Per-rank parameters of one Gated DeltaNet layer: (quantizable projections, the rest)."""
    if not arch.is_hybrid:
        return 0.0, 0.0
    h = arch.hidden_size
    key_dim = arch.linear_num_key_heads * arch.linear_key_head_dim
    value_dim = arch.linear_num_value_heads * arch.linear_value_head_dim
    projections = (
        h * (2 * key_dim + 2 * value_dim + 2 * arch.linear_num_value_heads) + value_dim * h
    ) / tp
    conv = (2 * key_dim + value_dim) * arch.linear_conv_kernel_dim / tp
    return projections, conv + 2 * arch.linear_num_value_heads / tp + arch.linear_value_head_dim


def kv_bytes_per_token(arch: Architecture, *, tp: int, kv_cache_dtype: str, dtype: str) -> int:
    """KV-cache bytes one token costs on one rank in the layers whose cache grows with the
    sequence: 2 x full-attention layers x kv heads/rank x head_dim; MLA keeps one compressed
    latent (kv_lora_rank + qk_rope_head_dim) per layer, whole on every rank. Sliding-window
    layers are in `window_bytes_per_sequence`."""
    return (arch.kv_layers - arch.sliding_layers) * kv_bytes_per_layer_token(
        arch, tp=tp, kv_cache_dtype=kv_cache_dtype, dtype=dtype
    )


def kv_bytes_per_layer_token(
    arch: Architecture, *, tp: int, kv_cache_dtype: str, dtype: str
) -> int:
    """One layer's KV bytes for one token on one rank."""
    elem = dtype_bytes(resolved_dtype(arch, dtype) if kv_cache_dtype == "auto" else kv_cache_dtype)
    if arch.is_mla:
        return (arch.kv_lora_rank + arch.qk_rope_head_dim) * elem
    return 2 * kv_heads_per_rank(arch, tp) * arch.head_dim * elem


def window_bytes_per_sequence(
    arch: Architecture,
    *,
    tp: int,
    kv_cache_dtype: str,
    dtype: str,
    max_model_len: int,
    batched_tokens: int,
    block_tokens: int = BLOCK_TOKENS,
) -> int:
    """KV bytes the sliding-window layers hold for one sequence on one rank: vLLM's
    SlidingWindowSpec reserves cdiv(min(window - 1 + batched tokens, max_model_len), block) + 1
    blocks per request (v1/kv_cache_interface.py), whatever the sequence's length."""
    if not arch.sliding_layers or not arch.sliding_window:
        return 0
    tokens = min(arch.sliding_window - 1 + batched_tokens, max_model_len)
    blocks = math.ceil(tokens / block_tokens) + 1
    return (
        arch.sliding_layers
        * blocks
        * block_tokens
        * kv_bytes_per_layer_token(arch, tp=tp, kv_cache_dtype=kv_cache_dtype, dtype=dtype)
    )


def state_bytes_per_sequence(arch: Architecture, *, tp: int, dtype: str) -> int:
    """Fixed per-sequence state of the linear-attention layers on one rank (0 if none)."""
    if not arch.is_hybrid:
        return 0
    elem = dtype_bytes(resolved_dtype(arch, dtype))
    key_dim = arch.linear_num_key_heads * arch.linear_key_head_dim
    value_dim = arch.linear_num_value_heads * arch.linear_value_head_dim
    conv = (2 * key_dim + value_dim) // tp * max(arch.linear_conv_kernel_dim - 1, 0)
    recurrent = (
        (arch.linear_num_value_heads // tp) * arch.linear_key_head_dim * arch.linear_value_head_dim
    )
    return (conv + recurrent) * elem * arch.linear_layers


def activation_peak_bytes(
    arch: Architecture,
    *,
    tp: int,
    batched_tokens: int,
    num_seqs: int,
    dtype: str,
    sampler_bytes_per_logit: int = SAMPLER_BYTES_PER_LOGIT,
) -> float:
    """Peak of the profiling forward pass: MLP/attention intermediates for `batched_tokens`
    tokens plus the sampler's logits for `num_seqs` sequences (one per sequence, at most
    one per batched token)."""
    act = dtype_bytes(resolved_dtype(arch, dtype))
    h = arch.hidden_size
    if arch.is_moe:  # fused-MoE caches: gate/up, down input and per-expert outputs
        mlp = (
            arch.experts_per_token * (3 * arch.moe_intermediate_size / tp + h)
            + 3 * arch.shared_expert_intermediate_size / tp
        )
    else:
        mlp = 3 * arch.intermediate_size / tp
    attention = (arch.num_heads / tp + 2 * kv_heads_per_rank(arch, tp)) * arch.head_dim
    per_token = act * (mlp + attention + 2 * h)
    sampler = min(num_seqs, batched_tokens) * arch.vocab_size * sampler_bytes_per_logit
    return batched_tokens * per_token + sampler


def non_torch_bytes(tp: int, expert_ranks: int = 1) -> float:
    """Memory outside torch's allocator that the profiler counts (communication buffers)."""
    comm = NON_TORCH_GIB_PER_COMM if tp > 1 else 0.0
    all_to_all = EXPERT_PARALLEL_GIB if expert_ranks > 1 else 0.0
    return (NON_TORCH_GIB_SINGLE + comm + all_to_all) * GIB


def cuda_graph_bytes(arch: Architecture) -> float:
    """CUDA-graph pool estimate vLLM subtracts from the KV budget (not with enforce_eager)."""
    return (CUDA_GRAPH_GIB_BASE + CUDA_GRAPH_GIB_PER_LAYER * arch.num_layers) * GIB


def default_batched_tokens(gpu_memory_gib: float, gpu_name: str) -> int:
    """vLLM's API-server default max_num_batched_tokens for a GPU of this size."""
    if gpu_memory_gib >= 160:
        return 16384
    if gpu_memory_gib >= 70 and "A100" not in gpu_name.upper():
        return 8192
    return 2048


@dataclass(frozen=True)
class MemoryEstimate:
    """The quantities vLLM logs at startup, predicted, per GPU."""

    gpu_memory_gib: float
    requested_gib: float
    weights: Weights
    activation_gib: float
    non_torch_gib: float
    cuda_graph_gib: float
    available_kv_gib: float
    kv_bytes_per_token: int
    state_bytes_per_sequence: int
    kv_cache_tokens: int
    """Tokens the KV cache holds (vLLM's "GPU KV cache size"); 0 when nothing is left."""
    max_concurrency: float
    """Full-length sequences (max_model_len) the cache holds at once."""

    @property
    def weights_gib(self) -> float:
        return self.weights.total_gib

    def concurrency_at(self, tokens_per_sequence: int) -> float:
        """How many sequences of this length fit in the KV cache at once."""
        per_seq = tokens_per_sequence * self.kv_bytes_per_token + self.state_bytes_per_sequence
        return max(self.available_kv_gib, 0.0) * GIB / per_seq if per_seq else math.inf


def estimate_memory(
    arch: Architecture,
    *,
    gpu_memory_gib: float,
    utilization: float,
    tp: int,
    max_model_len: int,
    batched_tokens: int,
    num_seqs: int,
    expert_ranks: int = 1,
    pp: int = 1,
    dtype: str = "auto",
    kv_cache_dtype: str = "auto",
    enforce_eager: bool = False,
    count_cuda_graphs: bool = True,
    sampler_bytes_per_logit: int = SAMPLER_BYTES_PER_LOGIT,
) -> MemoryEstimate:
    """Predict vLLM's memory profile for one rank.

    `pp` > 1 splits the layers into pipeline stages; figures are for the largest stage.
    `count_cuda_graphs` is False for vLLM releases before 0.21, which did not subtract the
    CUDA-graph pool from the KV budget (used when comparing with older public logs), and
    `sampler_bytes_per_logit` SAMPLER_BYTES_PER_LOGIT_V0 for releases before 0.8.
    """
    weights = pipeline_stage(
        weights_per_rank(arch, tp=tp, expert_ranks=expert_ranks, dtype=dtype), pp
    )
    requested = utilization * gpu_memory_gib
    activation = (
        activation_peak_bytes(
            arch,
            tp=tp,
            batched_tokens=batched_tokens,
            num_seqs=num_seqs,
            dtype=dtype,
            sampler_bytes_per_logit=sampler_bytes_per_logit,
        )
        / GIB
    )
    non_torch = non_torch_bytes(tp * pp, expert_ranks if arch.is_moe else 1) / GIB
    graphs = 0.0 if enforce_eager or not count_cuda_graphs else cuda_graph_bytes(arch) / GIB
    available = requested - weights.total_gib - activation - non_torch - graphs
    # Each pipeline stage keeps the KV (and state) of its own layers only.
    kv_token = math.ceil(
        kv_bytes_per_token(arch, tp=tp, kv_cache_dtype=kv_cache_dtype, dtype=dtype) / pp
    )
    state = math.ceil(
        sequence_fixed_bytes(
            arch,
            tp=tp,
            kv_cache_dtype=kv_cache_dtype,
            dtype=dtype,
            max_model_len=max_model_len,
            batched_tokens=batched_tokens,
        )
        / pp
    )
    usable = max(available, 0.0) * GIB
    tokens, concurrency = kv_cache_capacity(usable, kv_token, state, max_model_len)
    return MemoryEstimate(
        gpu_memory_gib=gpu_memory_gib,
        requested_gib=requested,
        weights=weights,
        activation_gib=activation,
        non_torch_gib=non_torch,
        cuda_graph_gib=graphs,
        available_kv_gib=available,
        kv_bytes_per_token=kv_token,
        state_bytes_per_sequence=state,
        kv_cache_tokens=tokens,
        max_concurrency=concurrency,
    )


def sequence_fixed_bytes(
    arch: Architecture,
    *,
    tp: int,
    kv_cache_dtype: str,
    dtype: str,
    max_model_len: int,
    batched_tokens: int,
    block_tokens: int = BLOCK_TOKENS,
) -> int:
    """Bytes one sequence holds whatever its length: linear-attention state and the
    sliding-window layers' blocks."""
    return state_bytes_per_sequence(arch, tp=tp, dtype=dtype) + window_bytes_per_sequence(
        arch,
        tp=tp,
        kv_cache_dtype=kv_cache_dtype,
        dtype=dtype,
        max_model_len=max_model_len,
        batched_tokens=batched_tokens,
        block_tokens=block_tokens,
    )


def kv_cache_capacity(
    usable_bytes: float,
    kv_token: int,
    fixed_per_sequence: int,
    max_model_len: int,
    block_tokens: int = BLOCK_TOKENS,
) -> tuple[int, float]:
    """vLLM's "KV cache size: N tokens" and its maximum concurrency at max_model_len: whole
    blocks; a model with fixed per-sequence bytes (hybrid, sliding window) reports the tokens
    that full-length sequences would occupy (v1/core/kv_cache_utils.py)."""
    blocks = math.ceil(max_model_len / block_tokens)
    per_seq = blocks * block_tokens * kv_token + fixed_per_sequence
    concurrency = usable_bytes / per_seq if per_seq else math.inf
    if fixed_per_sequence:
        return int(concurrency * max_model_len), concurrency
    block_bytes = kv_token * block_tokens
    return int(usable_bytes // block_bytes) * block_tokens, concurrency


# -- host CPU and memory reserved for a container (Modal's cpu= and memory=) ------------------

RESERVED_CPU_BASE = 4.0
"""vLLM's API server (tokenization, JSON), engine core (a busy scheduling loop) and the grammar
compiler's threads."""
RESERVED_CPU_PER_GPU = 2.0
"""One worker process per GPU (tensor/pipeline parallel), busy while it launches kernels."""
RESERVED_MEMORY_BASE_GIB = 8
"""The API server and engine core processes: torch, the tokenizer, compiled grammars."""
RESERVED_MEMORY_PER_GPU_GIB = 4
"""Each worker process: torch and its CUDA context on the host."""
LOADING_SHARD_MAX_GIB = 5
"""A worker maps one checkpoint file at a time while it copies it to its GPU: Hub checkpoints
are split in files of at most about 5 GB."""
DOWNLOAD_CPU = 8.0
"""The weights download: huggingface_hub fetches 8 files at once, Xet's high-performance mode
hashes and decompresses on every core it gets."""
DOWNLOAD_MEMORY_MIB = 8 * 1024
"""The download's chunk buffers (Xet's chunk cache stays on the container's disk)."""


@dataclass(frozen=True)
class Reservation:
    """Host CPU cores and memory (MiB) Modal reserves for one container."""

    cpu: float
    memory_mib: int


def server_reservation(gpu_count: int, weights_gib_per_gpu: float | None) -> Reservation:
    """What a vLLM server container needs beside its GPUs: RESERVED_* above, with each GPU's
    loading buffer its share of the weights up to LOADING_SHARD_MAX_GIB (the maximum when the
    model's size is unknown)."""
    shard_gib = (
        LOADING_SHARD_MAX_GIB
        if weights_gib_per_gpu is None
        else min(LOADING_SHARD_MAX_GIB, weights_gib_per_gpu)
    )
    memory_gib = RESERVED_MEMORY_BASE_GIB + gpu_count * (RESERVED_MEMORY_PER_GPU_GIB + shard_gib)
    return Reservation(
        cpu=RESERVED_CPU_BASE + RESERVED_CPU_PER_GPU * gpu_count,
        memory_mib=math.ceil(memory_gib) * 1024,
    )


DOWNLOAD_RESERVATION = Reservation(cpu=DOWNLOAD_CPU, memory_mib=DOWNLOAD_MEMORY_MIB)


_LAYER = re.compile(r"\.layers\.(\d+)\.")
_EMBEDDING = re.compile(r"(^|\.)(embed_tokens|wte|word_embeddings|tok_embeddings)\.weight$")
_LM_HEAD = re.compile(r"(^|\.)lm_head\.weight$")
_REPLICATED = re.compile(
    r"norm|\.gate\.(weight|bias)$|router|e_score_correction_bias|shared_expert_gate"
    r"|q_a_proj|kv_a_proj"
)
"""Whole on every tensor-parallel rank: norms, MoE routers (vLLM's ReplicatedLinear), the
shared-expert gate and MLA's low-rank "a" projections."""
_KEPT_IN_MODEL_DTYPE = re.compile(
    r"norm|\.gate\.(weight|bias)$|router|e_score_correction_bias|shared_expert_gate"
)
"""Never quantized by an online quantization: norms and routers."""
_ROW_PARALLEL_BIAS = re.compile(r"(o_proj|down_proj|out_proj|dense|w2)[._]bias$")
"""A row-parallel layer's bias is added once, after the reduction: whole on every rank."""
_KV_PROJ = re.compile(r"\.(k_proj|v_proj)\.")
_QKV_PROJ = re.compile(r"\.(qkv_proj|query_key_value|Wqkv)\.")
_EXPERT = re.compile(r"\.experts\.")
_ATTENTION = re.compile(r"attn|attention")


def weights_from_headers(
    arch: Architecture,
    tensors: CheckpointTensors,
    *,
    tp: int,
    expert_ranks: int,
    dtype: str,
) -> Weights | None:
    """Weight bytes on one rank, tensor by tensor: vocabulary-parallel embedding and lm_head
    (padded like vLLM's), column/row-parallel layers split `tp` ways, KV heads replicated when
    there are fewer than `tp`, norms/routers/MLA a-projections whole, routed experts spread
    over `expert_ranks` (whole experts) or sliced `tp` ways. Unquantized float tensors load in
    `dtype`; quantized ones and their scales as stored. None where the headers cannot say
    (an online quantization other than fp8)."""
    from liftdeploy.planner.memory import (
        MXFP4_HIDDEN_ALIGN,
        MXFP4_INTERMEDIATE_ALIGN,
        VOCAB_PAD,
        Weights,
        _round_up,
        dtype_bytes,
        kv_heads_per_rank,
        resolved_dtype,
    )

    act = dtype_bytes(resolved_dtype(arch, dtype))
    quant = arch.quantization
    stored_quantized = any(d not in _FLOAT_DTYPES for _, d, _ in tensors.tensors)
    online_fp8 = quant.method != "none" and not stored_quantized
    if online_fp8 and not (quant.float_format and quant.bits == 8):
        return None
    kv_share = (kv_heads_per_rank(arch, tp) / arch.num_kv_heads) if arch.num_kv_heads else 1 / tp
    q_width, kv_width = arch.num_heads * arch.head_dim, 2 * arch.num_kv_heads * arch.head_dim
    qkv_share = (q_width / tp + kv_share * kv_width) / (q_width + kv_width)
    experts = max(arch.num_experts, 1)
    experts_here = math.ceil(experts / expert_ranks) if expert_ranks > 1 else experts
    mxfp4_pad = 1.0
    if quant.method == "mxfp4" and arch.is_moe:
        width = arch.moe_intermediate_size / (1 if expert_ranks > 1 else tp)
        mxfp4_pad = (
            _round_up(arch.hidden_size, MXFP4_HIDDEN_ALIGN)
            * _round_up(width, MXFP4_INTERMEDIATE_ALIGN)
        ) / (arch.hidden_size * width)

    parts = {"embedding": 0.0, "lm_head": 0.0, "attention": 0.0, "mlp": 0.0, "other": 0.0}
    whole_total = whole_routed = whole_embedding = 0.0
    for name, stored, shape in tensors.tensors:
        layer = _LAYER.search(name)
        if (layer and int(layer.group(1)) >= arch.num_layers) or name.endswith("inv_freq"):
            continue  # multi-token-prediction layers and rotary caches vLLM does not load
        count = math.prod(shape)
        is_scale = "scale" in name
        is_linear_weight = (
            name.endswith(".weight") and len(shape) >= 2 and not _KEPT_IN_MODEL_DTYPE.search(name)
        )
        if stored in _FLOAT_DTYPES and not is_scale:
            per_value: float = (
                1
                if online_fp8
                and is_linear_weight
                and not (_EMBEDDING.search(name) or _LM_HEAD.search(name))
                else act
            )
        else:
            per_value = DTYPE_BYTES[stored]
        loaded = count * per_value
        if _EMBEDDING.search(name) or _LM_HEAD.search(name):
            if _LM_HEAD.search(name) and arch.tie_word_embeddings:
                continue  # vLLM shares the embedding and skips the stored copy
            rows = shape[0]
            here = math.ceil(_round_up(rows, VOCAB_PAD) / tp) * loaded / rows
            part = "embedding" if _EMBEDDING.search(name) else "lm_head"
            parts[part] += here
            whole_total += loaded
            whole_embedding += loaded if part == "embedding" else 0.0
            continue
        whole_total += loaded
        if _EXPERT.search(name) and "shared_expert" not in name:
            whole_routed += loaded
            if expert_ranks > 1:
                here = loaded * experts_here / experts
            elif _ROW_PARALLEL_BIAS.search(name) or count == 1:
                here = loaded
            else:
                here = loaded / tp
            if not name.endswith("bias"):
                here *= mxfp4_pad
            parts["mlp"] += here
            continue
        if count == 1 or _REPLICATED.search(name) or _ROW_PARALLEL_BIAS.search(name):
            here = loaded
        elif _KV_PROJ.search(name) and not arch.is_mla:
            here = loaded * kv_share
        elif _QKV_PROJ.search(name):
            here = loaded * qkv_share
        else:
            here = loaded / tp
        if layer is None or "norm" in name:
            parts["other"] += here
        elif _ATTENTION.search(name):
            parts["attention"] += here
        else:
            parts["mlp"] += here
    per_expert = whole_routed / experts if arch.is_moe else 0.0
    # One decode step reads every non-expert weight once, the lm_head (or the tied embedding),
    # one embedding row, and the routed experts each token picks.
    active = (
        whole_total
        - (whole_embedding if not arch.tie_word_embeddings else 0.0)
        + arch.hidden_size * act
        - per_expert * (arch.num_experts - arch.experts_per_token)
    )
    return Weights(
        embedding_bytes=parts["embedding"],
        lm_head_bytes=parts["lm_head"],
        attention_bytes=parts["attention"],
        mlp_bytes=parts["mlp"],
        other_bytes=parts["other"],
        active_bytes_per_token=active,
        expert_bytes_per_expert=per_expert,
    )
