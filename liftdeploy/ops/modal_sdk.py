"""`bootstrap`: create the Volumes, Dicts and Secrets an environment needs, through Modal's SDK.

Idempotent: it lists what exists in the environment's Modal environment and creates only what
is missing (`allow_existing=True` as well, so a race with another bootstrap is harmless); it
never changes an existing object. Secret values come only from the user's environment
variables or a hidden prompt and go straight into `modal.Secret.objects.create`: never onto a
command line, into a report, a log or a file. Non-secret settings (ENVIRONMENT, VLLM_EAGER)
come from the spec.
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
from liftdeploy.spec.model import ResolvedDeployment

Kind = Literal["volume", "dict", "secret"]
KINDS: tuple[Kind, ...] = ("volume", "dict", "secret")

HF_TOKEN = "HF_TOKEN"
"""Key of the Hugging Face token in model.hf_token_secret (read by huggingface_hub)."""
API_KEY = "VLLM_API_KEY"
"""Key of the API key in auth.api_key_secret (read by vLLM's server)."""


@dataclass(frozen=True)
class Resource:
    """One named Modal object the environment needs.

    For a Secret, `settings` are non-secret values taken from the spec (safe to show) and
    `secret_keys` are keys whose values the user supplies (environment variable of the same
    name, or a prompt).
    """

    kind: Kind
    name: str
    settings: dict[str, str] = field(default_factory=dict)
    secret_keys: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


def required_resources(resolved: ResolvedDeployment) -> list[Resource]:
    """Everything `resolved` mounts or injects, in a stable order.

    storage.secrets are the environment's settings Secrets (as in the original plan's
    prod-modal-secrets: ENVIRONMENT and VLLM_EAGER); model.hf_token_secret holds HF_TOKEN and
    auth.api_key_secret VLLM_API_KEY; observability's Secrets SENTRY_DSN,
    OTEL_EXPORTER_OTLP_TRACES_HEADERS and LIFTDEPLOY_ALERT_WEBHOOK_URL. A name used for several
    purposes gets all their keys.
    """
    resources = [Resource("volume", v.name) for v in resolved.volumes]
    resources += [Resource("dict", name) for name in resolved.storage.dicts]
    settings = {
        "ENVIRONMENT": resolved.environment,
        "VLLM_EAGER": "1" if resolved.engine.enforce_eager else "0",
    }
    for name in resolved.secret_names:
        keys = []
        if name == resolved.model.hf_token_secret:
            keys.append(HF_TOKEN)
        if name == resolved.auth.api_key_secret:
            keys.append(API_KEY)
        if name == resolved.observability.sentry_dsn_secret:
            keys.append(DSN_ENV)
        if name == resolved.observability.otlp_headers_secret:
            keys.append(OTLP_HEADERS_ENV)
        in_storage = name in resolved.storage.secrets
        resources.append(Resource(
            "secret", name, settings=dict(settings) if in_storage else {}, secret_keys=tuple(keys),
        ))
    if alerts := resolved.observability.alerts:  # the monitor's own Secret, not the server's
        resources.append(Resource("secret", alerts.webhook_secret,
                                  secret_keys=(ALERT_WEBHOOK_ENV,)))
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
            "settings": self.resource.settings,
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
        line = f"{self.resource.label}: {action}"
        if self.state != "exists":
            keys = [f"{k}={v}" for k, v in self.resource.settings.items()]
            keys += [f"{k} ({self.value_sources.get(k, 'value supplied')})"
                     for k in self.resource.secret_keys]
            if keys:
                line += f" [{', '.join(keys)}]"
        return line


@dataclass(frozen=True)
class BootstrapReport:
    environment: str
    modal_environment: str | None
    rows: list[BootstrapRow]
    dry_run: bool
    offline_reason: str | None = None
    """Why existence could not be checked (no Modal token), in a dry run."""

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
        for call in creation_calls(missing, modal_env, environ=environ, prompt=prompt):
            call.run()
    done: Literal["missing", "created"] = "missing" if dry_run else "created"
    rows = [
        BootstrapRow(r, done, _value_sources(r, environ)) if r in missing
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
    """Secret contents (settings and secret values); None for Volumes and Dicts."""

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
            _modal_call(f"creating {self.kind} {self.name}",
                        lambda: manager.create(self.name, **options))
        else:
            _modal_call(f"creating {self.kind} {self.name}",
                        lambda: manager.create(self.name, self.env_dict, **options))


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
            r.kind, r.name, modal_env,
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
    contents = dict(resource.settings)
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


def _modal_call(what: str, call: Callable[[], Any]) -> Any:
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
        objects = _modal_call(
            f"listing {kind}s in {where}",
            lambda kind=kind: _sdk_class(kind).objects.list(environment_name=modal_env or ""),
        )
        names[kind] = {obj.name for obj in objects}
    return names
