"""Weight bytes from the checkpoint itself: the safetensors headers (name, dtype and shape of
every tensor), split per rank the way vLLM shards and replicates them.

The headers are the first few kilobytes of each `.safetensors` file: read from a local model
directory (or the Hugging Face cache's snapshot) in place, or from the Hub with huggingface_hub's
`get_safetensors_metadata` (HTTP range requests, no weights downloaded) and cached as
`safetensors-headers.json` beside the cached config.json, so a later `plan` works offline.
They give the exact bytes for any architecture and quantization, scales, zero points and the
tensors left unquantized included; the architecture formula (`memory.weights_per_rank`) stays
the fallback where no headers can be read.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from liftdeploy.errors import PlanError, first_line

if TYPE_CHECKING:
    from liftdeploy.planner.arch import Architecture
    from liftdeploy.planner.memory import Weights

HEADERS_FILE = "safetensors-headers.json"
"""What the Hub's headers leave in liftdeploy's cache, beside config.json."""
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
HEADERS_SOURCE = "the checkpoint's safetensors headers"
FORMULA_SOURCE = "the architecture formula (config.json shapes)"

DTYPE_BYTES = {
    "F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2,
    "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "F8_E8M0": 1, "F4": 0.5,
}
"""Bytes per element of each safetensors dtype (F4: two values per byte)."""
_FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16"})
"""Stored in a float type vLLM converts to the model dtype when loading (scales excepted)."""


@dataclass(frozen=True)
class CheckpointTensors:
    """Every tensor of a checkpoint as its safetensors headers describe it."""

    tensors: tuple[tuple[str, str, tuple[int, ...]], ...]
    """(name, safetensors dtype, shape) of each tensor."""
    source: str
    """Where the headers were read: a directory, a cache file, or the Hub's URL."""

    @property
    def stored_bytes(self) -> float:
        """The bytes the checkpoint's files hold for its tensors."""
        return sum(math.prod(shape) * DTYPE_BYTES[dtype] for _, dtype, shape in self.tensors)

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source,
                "tensors": {name: [dtype, list(shape)] for name, dtype, shape in self.tensors}}


def _from_headers(headers: dict[str, dict[str, Any]], source: str) -> CheckpointTensors | None:
    """From {tensor name: {"dtype", "shape", ...}}; None when a dtype is not one we size."""
    tensors = []
    for name, info in headers.items():
        if name == "__metadata__":
            continue
        dtype, shape = str(info["dtype"]), tuple(int(n) for n in info["shape"])
        if dtype not in DTYPE_BYTES:
            return None
        tensors.append((name, dtype, shape))
    return CheckpointTensors(tuple(sorted(tensors)), source) if tensors else None


def checkpoint_files(directory: Path) -> list[Path] | None:
    """The safetensors files vLLM loads from a directory: those the index names, else
    model.safetensors; None when they are not all there (a partial download)."""
    index = directory / INDEX_FILE
    if index.is_file():
        try:
            names = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError):
            return None
        files = [directory / name for name in sorted(names)]
        return files if files and all(f.is_file() for f in files) else None
    single = directory / SINGLE_FILE
    return [single] if single.is_file() else None


def read_local(directory: Path) -> CheckpointTensors | None:
    """The headers of a local checkpoint's safetensors files (8 bytes and the JSON header of
    each, nothing more), or None when it has no complete set of them."""
    files = checkpoint_files(directory)
    if files is None:
        return None
    headers: dict[str, Any] = {}
    try:
        for file in files:
            with file.open("rb") as handle:
                size = struct.unpack("<Q", handle.read(8))[0]
                headers.update(json.loads(handle.read(size)))
    except (OSError, ValueError, struct.error):
        return None  # not a readable safetensors file: the formula sizes it
    return _from_headers(headers, str(directory))


def read_cached(config_path: Path) -> CheckpointTensors | None:
    """The headers an earlier `plan` cached beside this config.json, if any."""
    path = config_path.parent / HEADERS_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        headers = {name: {"dtype": d, "shape": s} for name, (d, s) in data["tensors"].items()}
        found = _from_headers(headers, str(path))
    except (OSError, ValueError, KeyError, TypeError):
        raise PlanError(f"cannot read {path}; delete it (plan reads the headers anew)") from None
    return found


def fetch(model_id: str, revision: str | None, target: Path, endpoint: str) -> \
        CheckpointTensors | None:
    """Read the checkpoint's safetensors headers from the Hub (range requests: no weights) and
    cache them in `target`; None when the repo has no safetensors or they cannot be read
    (the formula then sizes the weights)."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        return None
    token = os.environ.get("HF_TOKEN") or None
    try:
        meta = HfApi(endpoint=endpoint).get_safetensors_metadata(
            model_id, revision=revision or "main", token=token)
    except Exception:  # noqa: BLE001 - not a safetensors repo, a parse error, the network
        return None
    headers: dict[str, Any] = {}
    for file in meta.files_metadata.values():
        headers.update({name: {"dtype": t.dtype, "shape": t.shape}
                        for name, t in file.tensors.items()})
    found = _from_headers(headers, f"{endpoint}/{model_id}")
    if found is not None:
        try:
            (target / HEADERS_FILE).write_text(json.dumps(found.to_json()), encoding="utf-8")
        except OSError as exc:
            raise PlanError(f"cannot cache {model_id}'s safetensors headers in {target}: "
                            f"{first_line(exc)}; check the directory's permissions") from None
    return found


# -- per rank ----------------------------------------------------------------------------------

_LAYER = re.compile(r"\.layers\.(\d+)\.")
_EMBEDDING = re.compile(r"(^|\.)(embed_tokens|wte|word_embeddings|tok_embeddings)\.weight$")
_LM_HEAD = re.compile(r"(^|\.)lm_head\.weight$")
_REPLICATED = re.compile(
    r"norm|\.gate\.(weight|bias)$|router|e_score_correction_bias|shared_expert_gate"
    r"|q_a_proj|kv_a_proj")
"""Whole on every tensor-parallel rank: norms, MoE routers (vLLM's ReplicatedLinear), the
shared-expert gate and MLA's low-rank "a" projections."""
_KEPT_IN_MODEL_DTYPE = re.compile(
    r"norm|\.gate\.(weight|bias)$|router|e_score_correction_bias|shared_expert_gate")
"""Never quantized by an online quantization: norms and routers."""
_ROW_PARALLEL_BIAS = re.compile(r"(o_proj|down_proj|out_proj|dense|w2)[._]bias$")
"""A row-parallel layer's bias is added once, after the reduction: whole on every rank."""
_KV_PROJ = re.compile(r"\.(k_proj|v_proj)\.")
_QKV_PROJ = re.compile(r"\.(qkv_proj|query_key_value|Wqkv)\.")
_EXPERT = re.compile(r"\.experts\.")
_ATTENTION = re.compile(r"attn|attention")


def weights_from_headers(
    arch: Architecture, tensors: CheckpointTensors, *, tp: int, expert_ranks: int, dtype: str,
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
        mxfp4_pad = (_round_up(arch.hidden_size, MXFP4_HIDDEN_ALIGN)
                     * _round_up(width, MXFP4_INTERMEDIATE_ALIGN)) / (arch.hidden_size * width)

    parts = {"embedding": 0.0, "lm_head": 0.0, "attention": 0.0, "mlp": 0.0, "other": 0.0}
    whole_total = whole_routed = whole_embedding = 0.0
    for name, stored, shape in tensors.tensors:
        layer = _LAYER.search(name)
        if (layer and int(layer.group(1)) >= arch.num_layers) or name.endswith("inv_freq"):
            continue  # multi-token-prediction layers and rotary caches vLLM does not load
        count = math.prod(shape)
        is_scale = "scale" in name
        is_linear_weight = name.endswith(".weight") and len(shape) >= 2 \
            and not _KEPT_IN_MODEL_DTYPE.search(name)
        if stored in _FLOAT_DTYPES and not is_scale:
            per_value = 1 if online_fp8 and is_linear_weight and not (
                _EMBEDDING.search(name) or _LM_HEAD.search(name)) else act
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
    active = whole_total - (whole_embedding if not arch.tie_word_embeddings else 0.0) \
        + arch.hidden_size * act - per_expert * (arch.num_experts - arch.experts_per_token)
    return Weights(
        embedding_bytes=parts["embedding"], lm_head_bytes=parts["lm_head"],
        attention_bytes=parts["attention"], mlp_bytes=parts["mlp"], other_bytes=parts["other"],
        active_bytes_per_token=active, expert_bytes_per_expert=per_expert,
    )
