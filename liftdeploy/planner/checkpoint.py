"""Weight bytes from the checkpoint itself: the safetensors headers (name, dtype and shape of
every tensor), split per rank the way vLLM shards and replicates them.

The headers are the first few kilobytes of each `.safetensors` file: read from a local model
directory (or the Hugging Face cache's snapshot) in place, or from the Hub with huggingface_hub's
`get_safetensors_metadata` (HTTP range requests, no weights downloaded) and cached as
`safetensors-headers.json` beside the cached config.json, so a later `plan` works offline.
They give the exact bytes for any architecture and quantization, scales, zero points and the
tensors left unquantized included; the architecture formula (`memory.formula_weights_per_rank`) stays
the fallback where no headers can be read. This module reads the headers; the split per
rank is `memory.weights_from_headers`.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liftdeploy.errors import PlanError, first_line

HEADERS_FILE = "safetensors-headers.json"
"""What the Hub's headers leave in liftdeploy's cache, beside config.json."""
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
HEADERS_SOURCE = "the checkpoint's safetensors headers"
FORMULA_SOURCE = "the architecture formula (config.json shapes)"

DTYPE_BYTES = {
    "F64": 8,
    "I64": 8,
    "U64": 8,
    "F32": 4,
    "I32": 4,
    "U32": 4,
    "F16": 2,
    "BF16": 2,
    "I16": 2,
    "U16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,
    "F4": 0.5,
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
        return {
            "source": self.source,
            "tensors": {name: [dtype, list(shape)] for name, dtype, shape in self.tensors},
        }


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


def fetch(
    model_id: str, revision: str | None, target: Path, endpoint: str
) -> CheckpointTensors | None:
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
            model_id, revision=revision or "main", token=token
        )
    except Exception:  # noqa: BLE001 - not a safetensors repo, a parse error, the network
        return None
    headers: dict[str, Any] = {}
    for file in meta.files_metadata.values():
        headers.update(
            {name: {"dtype": t.dtype, "shape": t.shape} for name, t in file.tensors.items()}
        )
    found = _from_headers(headers, f"{endpoint}/{model_id}")
    if found is not None:
        try:
            (target / HEADERS_FILE).write_text(json.dumps(found.to_json()), encoding="utf-8")
        except OSError as exc:
            raise PlanError(
                f"cannot cache {model_id}'s safetensors headers in {target}: "
                f"{first_line(exc)}; check the directory's permissions"
            ) from None
    return found


# -- per rank ----------------------------------------------------------------------------------
