"""The vLLM server argv each spec field becomes, and the check that vLLM reads it as written.

One table from spec field to flag (`sourced_args`): `render.vllm_args.server_args` builds the
argv from it, and validation maps every token back to its field, so a value that vLLM would read
as a flag (vLLM rewrites any token that starts with '-' and holds a '.') is refused with the
field's name. It lives in the spec part because validating a spec needs it; the values that
need a plan (the shutdown timeout) are passed in.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from liftdeploy.spec.model import ResolvedDeployment

SERVER_PORT = 8000
"""Port vLLM listens on inside the container (Modal's `port=`)."""

GUARD_MIDDLEWARE = "liftdeploy.runtime.guard.StructuredOutputGuard"
"""ASGI middleware (always on) that checks every JSON-constrained answer before it is returned."""

AUTH_MIDDLEWARE = "liftdeploy.runtime.auth.ApiKeyGate"
"""ASGI middleware (always on) that asks for the API key on every route, not only /v1, and caps
request bodies. Listed after the guard: Starlette runs the last-added middleware first."""

LIFECYCLE_MIDDLEWARE = "liftdeploy.runtime.lifecycle.RequestLifecycle"
"""ASGI middleware (always on) that stops a request past runtime.request_timeout_s (504) and
drains the server when the container stops (503 to new requests). Listed last, so it runs
first: its time limit covers the guard's check too."""

SPEC_OWNED_FLAGS: dict[str, str] = {
    "--model": "model.id",
    "--revision": "model.revision",
    "--served-model-name": "model.served_model_name",
    "--dtype": "model.dtype",
    "--quantization": "model.quantization",
    "--kv-cache-dtype": "model.kv_cache_dtype",
    "--max-model-len": "model.max_model_len",
    "--trust-remote-code": "model.trust_remote_code",
    "--tensor-parallel-size": "gpu.tensor_parallel_size",
    "--pipeline-parallel-size": "gpu.pipeline_parallel_size",
    "--enable-expert-parallel": "gpu.expert_parallel",
    "--gpu-memory-utilization": "gpu.memory_utilization",
    "--max-num-seqs": "runtime.max_concurrent_requests",
    "--enforce-eager": "engine.enforce_eager",
    "--structured-outputs-config": "engine.structured_output_backend",
    "--allowed-origins": "cors.allowed_origins",
    "--api-key": "auth.api_key_secret",
    "--load-format": "the dummy-weights switch (LIFTDEPLOY_DUMMY_WEIGHTS=1 at deploy time)",
    "--middleware": "liftdeploy's middleware (output guard, API-key gate, request lifecycle)",
    "--shutdown-timeout": "runtime.exit_grace_period_s",
    "--enable-request-id-headers": "liftdeploy (always on)",
    "--host": "liftdeploy (the server listens on 0.0.0.0 in the container)",
    "--port": "liftdeploy (SERVER_PORT)",
    "--config": "the spec itself (every setting is rendered onto the command line)",
    "--otlp-traces-endpoint": "observability.otlp_traces_endpoint",
}
"""The one table of the flags liftdeploy writes and what owns each: the spec field whose value
it carries (`sourced_args` maps every value token back to it) or liftdeploy itself.
`engine.extra_args` may not set any of them a second time, in any spelling."""


OWN_VALUE = "liftdeploy"
"""The source of an argv value liftdeploy itself writes (a middleware, the host, the port)."""


def structured_outputs_config(deployment: ResolvedDeployment) -> dict[str, object]:
    """vLLM's --structured-outputs-config for the spec's backend."""
    return {
        "backend": deployment.engine.structured_output_backend,
        "disable_any_whitespace": deployment.engine.disable_any_whitespace,
    }


def sourced_args(
    deployment: ResolvedDeployment, *, port: int, host: str, load_format: str | None,
    shutdown_timeout: int,
) -> list[tuple[str, str]]:
    """The server argv, each token with where it comes from: "" for a flag liftdeploy writes,
    OWN_VALUE for a value liftdeploy writes itself, else the spec field (`engine.extra_args[i]`
    for a passed-through token)."""
    model, gpu, runtime, engine = (
        deployment.model, deployment.gpu, deployment.runtime, deployment.engine,
    )
    args: list[tuple[str, str]] = []

    def option(flag: str, value: object = None, field: str | None = None) -> None:
        args.append((flag, ""))
        if value is not None:
            args.append((str(value), field or SPEC_OWNED_FLAGS[flag]))

    def own(flag: str, value: object) -> None:  # a value liftdeploy writes itself
        option(flag, value, OWN_VALUE)

    option("--model", model.id)
    if model.revision:
        option("--revision", model.revision)
    option("--served-model-name", model.name_for_clients,
           None if model.served_model_name else "model.id")
    option("--dtype", model.dtype)
    option("--max-model-len", model.max_model_len)
    option("--kv-cache-dtype", model.kv_cache_dtype)
    if model.quantization:
        option("--quantization", model.quantization)
    if model.trust_remote_code:
        option("--trust-remote-code")
    option("--tensor-parallel-size", gpu.tp)
    if gpu.pipeline_parallel_size > 1:
        option("--pipeline-parallel-size", gpu.pipeline_parallel_size)
    if gpu.expert_parallel:
        option("--enable-expert-parallel")
    option("--gpu-memory-utilization", f"{gpu.memory_utilization:g}")
    option("--max-num-seqs", runtime.max_concurrent_requests)
    if engine.enforce_eager:
        option("--enforce-eager")
    option("--structured-outputs-config",
           json.dumps(structured_outputs_config(deployment), separators=(",", ":")))
    if deployment.cors.allowed_origins:
        option("--allowed-origins", json.dumps(deployment.cors.allowed_origins))
    if deployment.observability.otlp_traces_endpoint:
        # Headers (credentials) reach vLLM's exporter as OTLP_HEADERS_ENV from a Secret.
        option("--otlp-traces-endpoint", deployment.observability.otlp_traces_endpoint)
    if load_format:
        own("--load-format", load_format)
    for middleware in (GUARD_MIDDLEWARE, AUTH_MIDDLEWARE, LIFECYCLE_MIDDLEWARE):
        own("--middleware", middleware)
    # A SIGTERM that reaches vLLM directly still lets the requests in flight finish.
    option("--shutdown-timeout", shutdown_timeout)
    option("--enable-request-id-headers")
    own("--host", host)
    own("--port", port)
    args += [(arg, f"engine.extra_args[{i}]") for i, arg in enumerate(engine.extra_args)]
    return args


def argv_problem(deployment: ResolvedDeployment) -> str | None:
    """Why vLLM's parser would not read this deployment's argv as written, or None.

    The whole argv, every token mapped back to its spec field: a value vLLM would read as a
    flag (`--allowed-origins.*` as a served model name turns on CORS for every origin), or a
    flag the pinned vLLM's option table lacks. extra_args' own flags and values are read by
    `spec.model.check_passthrough` with the same rules.
    """
    from liftdeploy.spec import catalog
    from liftdeploy.spec.messages import shown
    from liftdeploy.spec.model import reads_as_flag

    table = catalog.vllm_server_options()
    same_vllm = deployment.engine.vllm_version == table["vllm_version"]
    # The plan's grace period is a whole number like this one; validation needs no plan.
    grace = deployment.runtime.exit_grace_period_s or deployment.runtime.request_timeout_s
    for token, field in sourced_args(deployment, port=SERVER_PORT, host="0.0.0.0",
                                      load_format=None, shutdown_timeout=grace):
        if not field and same_vllm and token not in table["options"]:
            return (f"vLLM {table['vllm_version']}'s server has no option {token}, which "
                    f"liftdeploy writes; pin engine.vllm_version to {table['vllm_version']}")
        if field not in ("", OWN_VALUE) and not field.startswith("engine.extra_args") \
                and reads_as_flag(token):
            return (
                f"{field} {shown(token)} would reach vLLM's command line as a flag (vLLM reads "
                f"any argument that starts with '-', other than a whole number, as an option); "
                f"use a value that does not start with '-'"
            )
    return None
