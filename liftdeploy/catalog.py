"""The GPU and model-architecture catalogs: one place for hardware and model facts.

The data lives in `liftdeploy/data/*.yaml` with the source of every entry; this module only
loads it (lazily, once) and answers questions about it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML


@dataclass(frozen=True)
class GpuInfo:
    """One GPU type as Modal names it."""

    name: str
    memory_gb: float
    bandwidth_gb_s: float
    price_usd_hour: float
    max_count: int
    aliases: tuple[str, ...] = ()
    note: str = ""

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gb * 1e9)


@dataclass(frozen=True)
class ModelArch:
    """Architecture facts of one model, as in its config.json (plus parameter counts)."""

    model_id: str
    source: str
    config: dict[str, Any] = field(repr=False)

    def get(self, key: str, default: Any = None) -> Any:
        return self.config.get(key, default)

    @property
    def num_attention_heads(self) -> int:
        return int(self.config["num_attention_heads"])

    @property
    def num_key_value_heads(self) -> int:
        return int(self.config.get("num_key_value_heads", self.num_attention_heads))


DATA_DIR = Path(__file__).resolve().parent / "data"
"""The catalog's YAML files (package data, shipped in the wheel)."""


def _load(name: str) -> dict[str, Any]:
    return YAML(typ="safe").load((DATA_DIR / name).read_text(encoding="utf-8"))


@functools.cache
def _gpu_data() -> dict[str, Any]:
    return _load("gpus.yaml")


@functools.cache
def gpus() -> dict[str, GpuInfo]:
    """All GPU types by Modal name, in catalog order."""
    return {
        name: GpuInfo(name=name, **{**entry, "aliases": tuple(entry.get("aliases", ()))})
        for name, entry in _gpu_data()["gpus"].items()
    }


def gpu_names() -> tuple[str, ...]:
    return tuple(gpus())


def prices_source() -> str:
    data = _gpu_data()
    return f"{data['prices_source']} ({data['prices_date']})"


@functools.cache
def _aliases() -> dict[str, str]:
    table = {}
    for info in gpus().values():
        table[info.name.upper()] = info.name
        for alias in info.aliases:
            table[alias.upper()] = info.name
    return table


def cuda_memory_gib(name: str) -> float:
    """Memory CUDA reports for one GPU of this type, in GiB (what vLLM's utilization applies to)."""
    reported = _gpu_data().get("cuda_memory_gib", {}).get(name)
    return float(reported) if reported else gpu(name).memory_bytes / 2**30


def normalize_gpu_name(value: str) -> str | None:
    """Modal's name for a GPU type or a common alias (A10G -> A10), or None if unknown."""
    return _aliases().get(value.strip().upper().replace(" ", "-"))


def gpu(name: str) -> GpuInfo:
    return gpus()[name]


@functools.cache
def models() -> dict[str, ModelArch]:
    entries = _load("models.yaml")["models"]
    return {
        model_id: ModelArch(model_id=model_id, source=entry.get("source", ""), config=dict(entry))
        for model_id, entry in entries.items()
    }


def model_arch(model_id: str) -> ModelArch | None:
    """The catalog entry for a Hugging Face model id (case-insensitive), or None."""
    wanted = model_id.lower()
    for known, arch in models().items():
        if known.lower() == wanted:
            return arch
    return None
