"""The vLLM server argv each spec field becomes, and the check that vLLM reads it as written.

One table from spec field to flag (`sourced_args`): `render.vllm_args.server_args` builds the
argv from it, and validation maps every token back to its field, so a value that vLLM would read
as a flag (vLLM rewrites any token that starts with '-' and holds a '.') is refused with the
field's name. It lives in the spec part because validating a spec needs it; the values that
need a plan (the shutdown timeout) are passed in.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from liftdeploy.spec import catalog
from liftdeploy.spec.messages import shown

if TYPE_CHECKING:
    from liftdeploy.spec.model import DeploymentSettings, ResolvedDeployment

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
    deployment: ResolvedDeployment,
    *,
    port: int,
    host: str,
    load_format: str | None,
    shutdown_timeout: int,
) -> list[tuple[str, str]]:
    """The server argv, each token with where it comes from: "" for a flag liftdeploy writes,
    OWN_VALUE for a value liftdeploy writes itself, else the spec field (`engine.extra_args[i]`
    for a passed-through token)."""
    model, gpu, runtime, engine = (
        deployment.model,
        deployment.gpu,
        deployment.runtime,
        deployment.engine,
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
    option(
        "--served-model-name",
        model.name_for_clients,
        None if model.served_model_name else "model.id",
    )
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
    option(
        "--structured-outputs-config",
        json.dumps(structured_outputs_config(deployment), separators=(",", ":")),
    )
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
    `check_passthrough` with the same rules.
    """
    table = catalog.vllm_server_options()
    same_vllm = deployment.engine.vllm_version == table["vllm_version"]
    # The plan's grace period is a whole number like this one; validation needs no plan.
    grace = deployment.runtime.exit_grace_period_s or deployment.runtime.request_timeout_s
    for token, field in sourced_args(
        deployment, port=SERVER_PORT, host="0.0.0.0", load_format=None, shutdown_timeout=grace
    ):
        if not field and same_vllm and token not in table["options"]:
            return (
                f"vLLM {table['vllm_version']}'s server has no option {token}, which "
                f"liftdeploy writes; pin engine.vllm_version to {table['vllm_version']}"
            )
        if (
            field not in ("", OWN_VALUE)
            and not field.startswith("engine.extra_args")
            and reads_as_flag(token)
        ):
            return (
                f"{field} {shown(token)} would reach vLLM's command line as a flag (vLLM reads "
                f"any argument that starts with '-', other than a whole number, as an option); "
                f"use a value that does not start with '-'"
            )
    return None


# Flags whose value is a credential: on the command line it would show in `ps`, logs and files.
_SECRET_FLAG_SUFFIXES = ("-token", "-key", "-password", "-secret")
_NEGATIVE_INTEGER = re.compile(r"^-\d+$")
_NO_SUCH_OPTION = "has no such option"


def reads_as_flag(token: str) -> bool:
    """Whether vLLM's server reads this argv token as an option rather than a value.

    Any token that starts with '-': argparse takes it as an option unless it is a negative
    number or '-' alone, and vLLM first rewrites every token that starts with '-' and holds a
    '.' (values included: `-1.5`, `--allowed-origins.*`) into its nested `--flag.key` form.
    So only a whole negative number and '-' stay values."""
    return token.startswith("-") and token != "-" and not _NEGATIVE_INTEGER.match(token)


def server_option(token: str) -> tuple[str, bool] | None:
    """The vLLM server option an `engine.extra_args` token sets, read the way vLLM's parser reads
    it, as (the option's full name, whether the token spelled it out), or None for a value.

    vLLM first turns `_` into `-` up to the first `.`, takes `--flag.key value` as JSON for
    `--flag`, and `-O3` as `--optimization-level`; then argparse (allow_abbrev) takes any unique
    prefix of an option (`--allowed-orig`) and a short option with its value attached (`-qfp8`).
    The option table comes from vLLM's own parser (catalog.vllm_server_options). Raises
    ValueError for a token that is no option or could be several."""
    if not reads_as_flag(token):
        return None
    options: dict[str, str] = catalog.vllm_server_options()["options"]
    if token.startswith("--"):
        name = "--" + token.split("=", 1)[0].split(".", 1)[0][2:].replace("_", "-")
    elif token.startswith("-O"):
        name = "--optimization-level"
    else:
        name = token.split("=", 1)[0]
    if name in options:
        return options[name], True
    matches = {options[o] for o in options if o.startswith(name)}
    if not token.startswith("--") and token[:2] in options:
        matches.add(options[token[:2]])  # `-qfp8`: the short option `-q` with its value
    if len(matches) == 1:
        return matches.pop(), False
    if matches:
        raise ValueError(f"could read it as any of {', '.join(sorted(matches))}")
    raise ValueError(_NO_SUCH_OPTION)


def check_passthrough(settings: DeploymentSettings) -> None:
    """Read engine.extra_args as vLLM's parser reads them: every token is a flag the pinned
    vLLM's server has (not one the spec owns, not a credential, not one that prints and exits,
    written in full) or a value of the flag before it; nothing else."""
    table = catalog.vllm_server_options()
    table_version = table["vllm_version"]
    room: int | str = 0  # values the flag before may still take: a count, "?" or "+"
    forced = False  # a dotted `--flag.key` takes the next token whatever it is
    for index, arg in enumerate(settings.engine.extra_args):
        passes = f"engine.extra_args[{index}] {shown(arg)}"
        if arg != arg.strip():
            raise ValueError(
                f"{passes} has leading or trailing whitespace, which vLLM reads as a stray "
                f"argument; write each flag and each value as its own list item without spaces"
            )
        if forced or not reads_as_flag(arg):
            if not forced and room == 0:
                raise ValueError(
                    f"{passes} is no flag and follows no flag that takes a value (vLLM would "
                    f"read it as the model to serve); remove it or put its flag before it"
                )
            room = room - 1 if isinstance(room, int) else ("+" if room.startswith("+") else 0)
            forced = False
            continue
        if room not in (0, "?", "+"):
            raise ValueError(
                f"engine.extra_args[{index - 1}] needs a value before {shown(arg)}; "
                f"add it{_dash_value_hint(arg)}"
            )
        name = arg.split("=", 1)[0]
        if name in ("-h", "--help", "--version") or name in table.get("exits", ()):
            raise ValueError(
                f"{passes} makes vLLM print and exit instead of serving; remove it (run "
                f"`python -m vllm.entrypoints.openai.api_server --help` yourself to read it)"
            )
        try:
            option = server_option(arg)
        except ValueError as exc:
            if str(exc) == _NO_SUCH_OPTION and settings.engine.vllm_version != table_version:
                room = "+"  # another vLLM release may have it; its own parser will tell
                continue
            raise ValueError(
                f"engine.extra_args passes {arg!r}: vLLM {table_version}'s server {exc}; write "
                f"the full flag as `python -m vllm.entrypoints.openai.api_server --help` lists "
                f"it{_dash_value_hint(arg)}"
            ) from None
        assert option is not None  # reads_as_flag(arg)
        flag, spelled_out = option
        if flag in SPEC_OWNED_FLAGS:
            owner = SPEC_OWNED_FLAGS[flag]
            raise ValueError(
                f"engine.extra_args passes {arg!r}, but {flag} is set by {owner}; "
                f"remove it from extra_args"
                + (f" and change {owner} instead" if "." in owner and " " not in owner else "")
            )
        if flag.endswith(_SECRET_FLAG_SUFFIXES):
            raise ValueError(
                f"engine.extra_args passes {flag}, which would put a secret on the command line; "
                f"remove it and put the value in a Modal Secret listed in storage.secrets "
                f"(vLLM reads VLLM_API_KEY and HF_TOKEN from the environment)"
            )
        if not spelled_out:
            raise ValueError(
                f"engine.extra_args passes {arg!r}, which vLLM reads as {flag}; write {flag} in "
                f"full (an abbreviation can mean another flag in the next vLLM release)"
            )
        room, forced = _values_after(arg, flag, table)
    if room not in (0, "?", "+") or forced:
        raise ValueError(
            f"engine.extra_args ends with {shown(settings.engine.extra_args[-1])}, "
            f"which needs a value; add it"
        )


def _dash_value_hint(arg: str) -> str:
    """For a token that looks like a number but is read as a flag: how to pass it."""
    if arg[1:2].isdigit() or arg[1:2] == ".":
        return (
            " (vLLM reads a value that starts with '-' as a flag unless it is a whole "
            "number; attach it to its flag instead: --flag=VALUE)"
        )
    return ""


def _values_after(arg: str, flag: str, table: dict[str, Any]) -> tuple[int | str, bool]:
    """How many tokens after `arg` vLLM reads as its values, and whether it takes the next one
    whatever it is (vLLM's dotted `--flag.key value`)."""
    if "=" in arg or (arg.startswith("-O") and arg != "-O"):
        return 0, False  # the value is attached
    if "." in arg:
        return 1, True
    takes = table.get("values", {}).get(flag, 1)
    return ("+!" if takes == "+" else takes), False  # "+!": one or more, none yet
