"""The blank preset: a new service's spec derived from the answers alone.

The examples are lift-sys's own services (their Volumes, Dicts, CORS origins and Secrets);
copying one for another model would reuse them. The blank preset instead names everything
after the new service: the served name after the model, Volumes `<name>-weights` and
`<name>-compile-cache`, Dicts only when asked (`<name>-<short name>`), no CORS origins, the
HF token Secret `<name>-huggingface`, and no planner figures in comments (they would go stale
after `set`; `liftdeploy plan` shows them). Its defaults follow `plan --suggest`, so a new service plans without a warning.
"""

from __future__ import annotations

import functools
import json
import math
import re
from typing import Any

from liftdeploy.errors import LiftdeployError, PlanError

MARKER = "# Scaffolded from liftdeploy's blank preset: every name below is this service's own."
"""The blank spec's second line; how a spec is recognised as the blank preset's."""
DEFAULT_MAX_MODEL_LEN = 8192
DEFAULT_MAX_CONCURRENT = 16
"""The spec's own default; a new service takes less when its KV cache serves fewer."""
DEFAULT_MAX_CONTAINERS = 2
FALLBACK_GPU = "L4"
"""The GPU offered when the planner cannot size the model (it then says why at validation)."""
QUESTIONS = (
    "model_id",
    "name",
    "description",
    "model_revision",
    "requests_per_minute",
    "gpu_type",
    "gpu_count",
    "min_containers",
    "max_containers",
    "max_concurrent_requests",
    "dicts",
)
"""The questions the blank preset reads, in the order defaults depend on each other
(`requests_per_minute` is no Copier question: `init --requests-per-minute` passes it as data)."""
_MAX_NAME = 40  # leaves room for "-development" within Modal's 64 characters


def served_name(model_id: str) -> str:
    """What clients put in `model=`: the model's own name, lowercased (org and path dropped)."""
    name = model_id.rstrip("/").rsplit("/", 1)[-1].lower()
    return re.sub(r"[^a-z0-9._-]+", "-", name).strip("-.") or "model"


def service_name(model_id: str) -> str:
    """A DNS-safe app name from the model's name (Llama-3.1-8B-Instruct: llama-3-1-8b-instruct)."""
    name = re.sub(r"[^a-z0-9]+", "-", served_name(model_id)).strip("-")
    if not name[:1].isalpha():
        name = "svc-" + name
    return name[:_MAX_NAME].rstrip("-")


def dict_names(name: str, answer: str) -> list[str]:
    """The `dicts` answer (short names, comma-separated) as Modal Dict names of this service."""
    shorts = [part.strip() for part in answer.split(",") if part.strip()]
    return [short if short.startswith(f"{name}-") else f"{name}-{short}" for short in shorts]


def dicts_answer(name: str, dicts: list[str]) -> str:
    """The inverse of dict_names, for recording a blank spec's answers."""
    return ",".join(d.removeprefix(f"{name}-") for d in dicts)


def default(question: str, answers: dict[str, Any]) -> Any:
    """The blank preset's default for one question, given the answers so far."""
    model_id = str(answers.get("model_id") or "")
    if question == "model_id":
        return ""
    if question == "name":
        return service_name(model_id) if model_id else ""
    if question == "description":
        return f"{model_id} with constrained JSON output." if model_id else ""
    if question in ("model_revision", "dicts"):
        return ""
    if question == "requests_per_minute":
        return None
    if question == "min_containers":
        return 0
    if question == "max_containers":
        return DEFAULT_MAX_CONTAINERS
    if question in ("gpu_type", "gpu_count"):
        layout = _cheapest_layout(
            model_id,
            str(answers.get("model_revision") or ""),
            answers.get("gpu_type") if question == "gpu_count" else None,
            answers.get("requests_per_minute"),
        )
        return layout[0] if question == "gpu_type" else layout[1]
    if question == "max_concurrent_requests":
        return _concurrency(answers)
    raise KeyError(question)


def spec_text(answers: dict[str, Any]) -> str:
    """The blank preset's deployment.yaml for these answers; PlanError/LiftdeployError when the
    model cannot be sized or does not fit (the caller shows the message)."""
    from liftdeploy.planner.advice import TARGET_SHARE
    from liftdeploy.planner.report import plan
    from liftdeploy.spec.model import SPEC_VERSION

    a: dict[str, Any] = {"model_id": answers.get("model_id", "")}
    for question in QUESTIONS[1:]:  # in order: later defaults read earlier answers
        a[question] = answers[question] if question in answers else default(question, a)
    a["max_containers"] = a["max_containers"] or None  # Copier's 0 means "not set"
    model_id = str(a["model_id"] or "").strip()
    if not model_id:
        raise LiftdeployError(
            "model_id is empty; give the Hugging Face model id (org/name) of the model to serve"
        )
    a["model_id"] = model_id
    name = str(a["name"] or service_name(model_id))
    arch = _architecture(model_id, str(a["model_revision"] or ""))
    max_len = _max_model_len(arch)
    provisional = _resolved(a, name, max_len)
    p = plan(provisional, arch=arch)
    if not p.fits:
        error = next(v for v in p.verdicts if v.level == "error")
        raise PlanError(
            f"{model_id} on {a['gpu_type']} x{a['gpu_count']}: {error.message}; {error.fix}"
        )
    max_concurrent = int(a["max_concurrent_requests"])
    target = max(1, math.floor(max_concurrent * TARGET_SHARE))
    revision = (
        f"  revision: {_scalar(a['model_revision'])}\n"
        if a["model_revision"]
        else "  # Pin a commit hash here before going to production (a branch can move "
        "under you).\n"
    )
    dicts = dict_names(name, str(a["dicts"] or ""))
    rpm = a["requests_per_minute"]
    workload = (
        []
        if not rpm
        else [
            "",
            "workload:",
            f"  requests_per_minute: {_scalar(rpm)}  # busiest demand: GPUs are ranked by $ per "
            f"million tokens at it",
        ]
    )
    lines = [
        "# A liftdeploy model service.",
        MARKER,
        "# What it fits and costs: `liftdeploy plan deployment.yaml` (figures are not copied",
        "# here: they would go stale after `set` or an update).",
        f"version: {SPEC_VERSION}",
        f"name: {_scalar(name)}",
        f"description: {_scalar(a['description'])}",
        "",
        "model:",
        f"  id: {_scalar(model_id)}",
        revision.rstrip("\n"),
        f"  served_model_name: {_scalar(served_name(model_id))}  # what clients put in model=",
        f"  max_model_len: {max_len}  # longest prompt + completion; it sizes the KV cache",
        f"  hf_token_secret: {name}-huggingface  # Modal Secret with HF_TOKEN (gated models)",
        "",
        "gpu:",
        f"  type: {a['gpu_type']}",
        f"  count: {a['gpu_count']}",
        "  memory_utilization: 0.90",
        "",
        "runtime:",
        "  scaledown_window_s: 600  # 10 min idle before scale-down: the cost/latency dial",
        f"  min_containers: {a['min_containers']}  # each is billed 24/7 (plan: always-on cost)",
        "  # Callers wait out a cold start (`liftdeploy plan`: lifecycle; liftdeploy's client",
        "  # retries its 503s that long): plan warns if a change makes it longer.",
        f"  cold_start_patience_s: {p.startup_timeout_s}",
        f"  max_containers: {_scalar(a['max_containers'])}  # caps the bill (plan: worst case)",
        f"  max_concurrent_requests: {max_concurrent}  # at most what the KV cache holds (plan)",
        f"  target_concurrent_requests: {target}  # Modal adds a container here, before the "
        f"cap's 429",
        "",
        "storage:",
        "  volumes:",
        f"    - {{name: {name}-weights, mount_path: /root/.cache/huggingface, purpose: weights}}",
        f"    - {{name: {name}-compile-cache, mount_path: /root/.cache/vllm, "
        f"purpose: compile-cache}}",
        *([f"  dicts: [{', '.join(map(_scalar, dicts))}]"] if dicts else []),
        *workload,
        "",
        "environments:",
        "  production:",
        "    production: true",
        "  # Staging and development keep production's GPU (the same argv and kernels) and save",
        "  # with one container at most and eager mode (faster start, no compile).",
        "  staging:",
        "    runtime: {max_containers: 1}",
        "    engine: {enforce_eager: true}",
        "  development:",
        "    runtime: {max_containers: 1, scaledown_window_s: 120}",
        "    engine: {enforce_eager: true}",
    ]
    return "\n".join(lines) + "\n"


def _scalar(value: Any) -> str:
    """A YAML scalar: plain when that reads back as the same string, else JSON's quoting."""
    if value is None:
        return "null"
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    text = str(value)
    if text and "\n" not in text and text == text.strip() and text[0].isalnum():
        from ruamel.yaml import YAML

        try:
            if YAML(typ="safe").load(text) == text:
                return text
        except Exception:  # noqa: BLE001 - any parse problem just means: quote it
            pass
    return json.dumps(text)


@functools.lru_cache(maxsize=16)
def _architecture(model_id: str, revision: str) -> Any:
    from liftdeploy.planner.arch import load_architecture

    return load_architecture(model_id, revision or None)


def _max_model_len(arch: Any) -> int:
    limit = arch.max_position_embeddings
    return min(DEFAULT_MAX_MODEL_LEN, int(limit)) if limit else DEFAULT_MAX_MODEL_LEN


def _resolved(a: dict[str, Any], name: str, max_len: int) -> Any:
    """The answers as a resolved spec; a bad answer is the spec's own one-line SpecError."""
    from liftdeploy.spec.specfile import spec_from_data

    spec = spec_from_data(
        {
            "name": name,
            "model": {
                "id": a["model_id"],
                "max_model_len": max_len,
                "revision": a.get("model_revision") or None,
            },
            "gpu": {
                "type": a.get("gpu_type") or FALLBACK_GPU,
                "count": int(a.get("gpu_count") or 1),
            },
            "runtime": {
                "max_concurrent_requests": int(
                    a.get("max_concurrent_requests") or DEFAULT_MAX_CONCURRENT
                ),
                "max_containers": a.get("max_containers") or None,
            },
            "workload": {"requests_per_minute": a.get("requests_per_minute") or None},
        },
        source="deployment.yaml",
    )
    return spec.resolve()


def _cheapest_layout(
    model_id: str, revision: str, gpu_type: Any, requests_per_minute: Any = None
) -> tuple[str, int]:
    """The cheapest GPU (or the smallest count of the chosen one) that holds the model: per
    million output tokens at `requests_per_minute` when given, else per hour
    (checks.fitting_layouts ranks; vLLM's refusals are never offered)."""
    from liftdeploy.planner.checks import fitting_layouts

    if not model_id:
        return (str(gpu_type or FALLBACK_GPU), 1)
    try:
        arch = _architecture(model_id, revision)
        resolved = _resolved(
            {"model_id": model_id, "requests_per_minute": requests_per_minute},
            service_name(model_id),
            _max_model_len(arch),
        )
        fits = fitting_layouts(resolved, arch, gpu_types=[str(gpu_type)] if gpu_type else None)
    except LiftdeployError:  # validation says why; a default only has to be a fair start
        return (str(gpu_type or FALLBACK_GPU), 1)
    if not fits:
        return (str(gpu_type or FALLBACK_GPU), 1)
    return (fits[0].gpu, fits[0].count)


def _concurrency(answers: dict[str, Any]) -> int:
    """The spec's default concurrency, or what the KV cache serves when that is less."""
    from liftdeploy.planner.report import plan

    model_id = str(answers.get("model_id") or "")
    if not model_id:
        return DEFAULT_MAX_CONCURRENT
    try:
        arch = _architecture(model_id, str(answers.get("model_revision") or ""))
        a = {**answers, "max_concurrent_requests": DEFAULT_MAX_CONCURRENT}
        p = plan(_resolved(a, service_name(model_id), _max_model_len(arch)), arch=arch)
    except LiftdeployError:
        return DEFAULT_MAX_CONCURRENT
    if not p.fits:
        return DEFAULT_MAX_CONCURRENT
    return max(1, min(DEFAULT_MAX_CONCURRENT, int(p.memory.concurrency_at(p.workload_tokens))))
