"""The GPU and model-architecture catalogs: one place for hardware and model facts.

The data lives in `liftdeploy/spec/data/*.yaml` with the source of every entry; this module only
loads it (lazily, once) and answers questions about it.
"""

from __future__ import annotations

import functools
import json
import os
import zlib
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
    may_be_served_as: str = ""
    """A type Modal may substitute unless the request pins this one (`H100!`)."""

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
    """One catalog file's data, from a JSON copy in the user's cache when there is one.

    Pure-Python YAML parsing of the catalog costs more than the rest of what `liftdeploy
    validate` does itself; the copy is named by the file's content, so an edited catalog is
    never served stale. No writable cache just means parsing every time.
    """
    text = (DATA_DIR / name).read_text(encoding="utf-8")
    content = text.encode()
    # crc32 + length: cheap to compute (hashlib's import alone costs more) and plenty to tell
    # one revision of a small file from another; this is a cache key, not a security check.
    key = f"{Path(name).stem}-{len(content)}-{zlib.crc32(content):08x}.json"
    cache = _cache_dir()
    if cache is not None:
        try:
            return json.loads((cache / key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass
    data = YAML(typ="safe").load(text)
    copy = json.dumps(data)
    if cache is not None and json.loads(copy) == data:  # only plain JSON types survive a copy
        try:
            cache.mkdir(parents=True, exist_ok=True)
            partial = cache / f"{key}.{os.getpid()}.tmp"
            partial.write_text(copy, encoding="utf-8")
            partial.replace(cache / key)  # atomic: a concurrent reader never sees half a file
        except OSError:
            pass
    return data


def _cache_dir() -> Path | None:
    try:
        return cache_root() / "catalog"
    except RuntimeError:  # no home directory to be found
        return None


def cache_root() -> Path:
    """liftdeploy's per-user cache (~/.cache/liftdeploy, or under XDG_CACHE_HOME)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "liftdeploy"


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


@functools.cache
def vllm_server_options() -> dict[str, Any]:
    """vLLM's server option table (`vllm_version`, `options`: every option string -> the option
    it sets), generated from vLLM's own parser by `python -m liftdeploy.render.vllm_options`."""
    return json.loads((DATA_DIR / "vllm_server_options.json").read_text(encoding="utf-8"))


def gpu_names() -> tuple[str, ...]:
    return tuple(gpus())


def prices_source() -> str:
    data = _gpu_data()
    return f"{data['prices_source']} ({data['prices_date']})"


def cpu_memory_prices() -> dict[str, Any]:
    """Modal's price per physical core-second and GiB-second, a Function's default request and
    scaledown window, with their source and date (gpus.yaml `cpu_memory_prices`)."""
    return dict(_gpu_data()["cpu_memory_prices"])


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


def has_fp8(name: str) -> bool:
    """Whether this GPU type computes in FP8 natively (an fp8 KV cache is worth suggesting)."""
    return name in _gpu_data().get("fp8_gpus", [])


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
