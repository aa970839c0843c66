"""`bootstrap`: create the Volumes, Dicts and Secrets an environment needs, through Modal's SDK.

Idempotent: it lists what exists in the environment's Modal environment and creates only what
is missing (`allow_existing=True` as well, so a race with another bootstrap is harmless); it
never changes an existing object. Secret values come only from the user's environment
variables or a hidden prompt and go straight into `modal.Secret.objects.create`: never onto a
command line, into a report, a log or a file. The Secrets in storage.secrets hold keys only
their owner knows: bootstrap lists a missing one with the command to create it, and creates
nothing in its place. Every name is the environment's own (the spec resolves the
`-<env>` suffixes), so bootstrapping staging creates nothing production uses, and the reverse.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from liftdeploy.errors import OpsError, first_line
from liftdeploy.render.vllm_args import OTLP_HEADERS_ENV
from liftdeploy.runtime.errortracking import DSN_ENV
from liftdeploy.runtime.monitor import ALERT_WEBHOOK_ENV
from liftdeploy.spec.model import HF_TOKEN_ENV, ResolvedDeployment

Kind = Literal["volume", "dict", "secret"]
KINDS: tuple[Kind, ...] = ("volume", "dict", "secret")

HF_TOKEN = HF_TOKEN_ENV
"""Key of the Hugging Face token in model.hf_token_secret (read by huggingface_hub)."""
API_KEY = "VLLM_API_KEY"
"""Key of the API key in auth.api_key_secret (read by vLLM's server)."""


@dataclass(frozen=True)
class Resource:
    """One named Modal object the environment needs.

    For a Secret, `secret_keys` are keys whose values the user supplies (environment variable
    of the same name, or a prompt); a Secret of storage.secrets with no such key is the user's
    own to create (`user_created`).
    """

    kind: Kind
    name: str
    secret_keys: tuple[str, ...] = ()
    modal_environment: str | None = None

    @property
    def user_created(self) -> bool:
        return self.kind == "secret" and not self.secret_keys

    @property
    def create_hint(self) -> str:
        """The command that creates a user's own Secret."""
        where = f" --env {self.modal_environment}" if self.modal_environment else ""
        return f"modal secret create {self.name} KEY=VALUE ...{where}"

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


def required_resources(resolved: ResolvedDeployment) -> list[Resource]:
    """Everything `resolved` mounts or injects, in a stable order, by the environment's own names.

    model.hf_token_secret holds HF_TOKEN and auth.api_key_secret VLLM_API_KEY; observability's
    Secrets SENTRY_DSN, OTEL_EXPORTER_OTLP_TRACES_HEADERS and (the monitor's own)
    LIFTDEPLOY_ALERT_WEBHOOK_URL. A name used for several purposes gets all their keys; the
    other storage.secrets are the user's own.
    """
    observability = resolved.observability
    keys_of: dict[str, list[str]] = {}
    for owner, key in (
        (resolved.model.hf_token_secret, HF_TOKEN),
        (resolved.auth.api_key_secret, API_KEY),
        (observability.sentry_dsn_secret, DSN_ENV),
        (observability.otlp_headers_secret, OTLP_HEADERS_ENV),
    ):
        if owner:
            keys_of.setdefault(owner, []).append(key)
    modal_env = resolved.modal_environment
    resources = [
        Resource(
            kind,
            name,
            modal_environment=modal_env,
            secret_keys=tuple(keys_of.get(name, ())) if kind == "secret" else (),
        )
        for kind, name in resolved.named_resources
    ]
    if alerts := observability.alerts:  # the monitor's own Secret, not the server's
        resources.append(
            Resource(
                "secret",
                alerts.webhook_secret,
                modal_environment=modal_env,
                secret_keys=(ALERT_WEBHOOK_ENV,),
            )
        )
    return resources


@dataclass(frozen=True)
class BootstrapRow:
    """What bootstrap found or did for one resource. Never holds a secret value."""

    resource: Resource
    state: Literal["exists", "missing", "unknown", "created"]
    value_sources: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.resource.kind,
            "name": self.resource.name,
            "state": self.state,
            "user_created": self.resource.user_created,
            "secret_keys": {
                key: self.value_sources.get(key, "") for key in self.resource.secret_keys
            },
        }

    def format(self) -> str:
        action = {
            "exists": "exists, left as is",
            "missing": "missing, would create",
            "unknown": "would check, and create if missing",
            "created": "created",
        }[self.state]
        if self.resource.user_created and self.state != "exists":
            action = ("missing" if self.state == "missing" else "if missing") + (
                f", yours to create: {self.resource.create_hint}"
            )
        line = f"{self.resource.label}: {action}"
        if self.state != "exists":
            keys = [
                f"{k} ({self.value_sources.get(k, 'value supplied')})"
                for k in self.resource.secret_keys
            ]
            if keys:
                line += f" [{', '.join(keys)}]"
        return line


@dataclass(frozen=True)
class BootstrapReport:
    """What bootstrap found and did for one environment."""

    environment: str
    modal_environment: str | None
    rows: list[BootstrapRow]
    dry_run: bool
    offline_reason: str | None = None
    """Why existence could not be checked (no Modal token), in a dry run."""

    @property
    def left_to_user(self) -> list[BootstrapRow]:
        """Missing Secrets whose keys only the user knows (bootstrap does not invent them)."""
        return [row for row in self.rows if row.state == "missing" and row.resource.user_created]

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "modal_environment": self.modal_environment,
            "dry_run": self.dry_run,
            "checked_existing": self.offline_reason is None,
            "offline_reason": self.offline_reason,
            "resources": [row.to_dict() for row in self.rows],
        }


Prompt = Callable[[str], str]


def bootstrap(
    resolved: ResolvedDeployment,
    *,
    dry_run: bool = False,
    environ: dict[str, str] | None = None,
    prompt: Prompt | None = None,
) -> BootstrapReport:
    """Create what `resolved` needs and is missing; with `dry_run`, only report.

    `environ` (default: os.environ) supplies secret values by key name; `prompt` (default: a
    hidden getpass prompt when stdin is a terminal) asks for the rest.
    """
    environ = dict(os.environ) if environ is None else environ
    resources = required_resources(resolved)
    modal_env = resolved.modal_environment
    try:
        existing = _existing_names(modal_env)
    except OpsError as exc:
        if not dry_run:
            raise
        rows = [BootstrapRow(r, "unknown", _value_sources(r, environ)) for r in resources]
        return BootstrapReport(resolved.environment, modal_env, rows, True, offline_reason=str(exc))

    missing = [r for r in resources if r.name not in existing[r.kind]]
    if not dry_run:
        creatable = [r for r in missing if not r.user_created]
        for call in creation_calls(creatable, modal_env, environ=environ, prompt=prompt):
            call.run()
    done: Literal["missing", "created"] = "missing" if dry_run else "created"
    rows = [
        BootstrapRow(r, "missing" if r.user_created else done, _value_sources(r, environ))
        if r in missing
        else BootstrapRow(r, "exists")
        for r in resources
    ]
    return BootstrapReport(resolved.environment, modal_env, rows, dry_run)


@dataclass(frozen=True)
class CreateCall:
    """One `modal.<Kind>.objects.create(...)` call. Its repr never shows secret values."""

    kind: Kind
    name: str
    environment_name: str | None
    env_dict: dict[str, str] | None = field(default=None, repr=False)
    """Secret contents (the secret values); None for Volumes and Dicts."""

    def describe(self) -> str:
        """The call as Python, with Secret keys but not their values."""
        cls = {"volume": "Volume", "dict": "Dict", "secret": "Secret"}[self.kind]
        args = [repr(self.name)]
        if self.env_dict is not None:
            args.append("{" + ", ".join(f"{k!r}: ..." for k in self.env_dict) + "}")
        args += ["allow_existing=True", f"environment_name={self.environment_name!r}"]
        return f"modal.{cls}.objects.create({', '.join(args)})"

    def run(self) -> None:
        manager = _sdk_class(self.kind).objects
        options = {"allow_existing": True, "environment_name": self.environment_name}
        if self.env_dict is None:
            modal_call(
                f"creating {self.kind} {self.name}", lambda: manager.create(self.name, **options)
            )
        else:
            modal_call(
                f"creating {self.kind} {self.name}",
                lambda: manager.create(self.name, self.env_dict, **options),
            )


def creation_calls(
    missing: list[Resource],
    modal_env: str | None,
    *,
    environ: dict[str, str],
    prompt: Prompt | None = None,
) -> list[CreateCall]:
    """The SDK calls that create `missing`, secret values already gathered.

    Every value is collected before anything is created, so a missing one leaves nothing
    half-made.
    """
    return [
        CreateCall(
            r.kind,
            r.name,
            modal_env,
            env_dict=_secret_contents(r, environ, prompt) if r.kind == "secret" else None,
        )
        for r in missing
    ]


def _value_sources(resource: Resource, environ: dict[str, str]) -> dict[str, str]:
    """Where each secret key's value comes from, described without the value."""
    return {
        key: f"from ${key}" if environ.get(key) else f"${key} not set: prompted in a terminal"
        for key in resource.secret_keys
    }


def _secret_contents(
    resource: Resource, environ: dict[str, str], prompt: Prompt | None
) -> dict[str, str]:
    contents = {}
    for key in resource.secret_keys:
        value = environ.get(key) or _ask(key, resource.name, prompt)
        contents[key] = value
    return contents


def _ask(key: str, secret_name: str, prompt: Prompt | None) -> str:
    if prompt is None:
        if not sys.stdin.isatty():
            raise OpsError(
                f"Modal Secret {secret_name!r} needs {key}, which is not set; export {key} in "
                f"this shell (it is read from the environment, never from the command line) or "
                f"run bootstrap in a terminal to be prompted"
            )
        prompt = getpass.getpass
    value = prompt(f"{key} for Modal Secret {secret_name!r} (input hidden): ").strip()
    if not value:
        raise OpsError(f"no value given for {key}; Modal Secret {secret_name!r} was not created")
    return value


def modal_call(what: str, call: Callable[[], Any]) -> Any:
    """Run one SDK call; Modal's errors become an OpsError naming the call and the fix."""
    import modal.exception

    try:
        return call()
    except modal.exception.AuthError as exc:
        raise OpsError(
            f"{what}: not logged in to Modal ({_first_line(exc)}); run `modal token new` or set "
            f"MODAL_TOKEN_ID and MODAL_TOKEN_SECRET"
        ) from None
    except (modal.exception.Error, ConnectionError, OSError) as exc:
        raise OpsError(f"{what} failed: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    """The first sentence of an SDK error (Modal's auth error goes on for three more)."""
    return first_line(exc).split(". ")[0].rstrip(".")


def _sdk_class(kind: Kind) -> Any:
    import modal

    return {"volume": modal.Volume, "dict": modal.Dict, "secret": modal.Secret}[kind]


def _existing_names(modal_env: str | None) -> dict[Kind, set[str]]:
    """Names of every Volume, Dict and Secret in the Modal environment."""
    where = f"Modal environment {modal_env!r}" if modal_env else "the default Modal environment"
    names: dict[Kind, set[str]] = {}
    for kind in KINDS:
        objects = modal_call(
            f"listing {kind}s in {where}",
            lambda kind=kind: _sdk_class(kind).objects.list(environment_name=modal_env or ""),
        )
        names[kind] = {obj.name for obj in objects}
    return names
