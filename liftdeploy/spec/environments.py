"""Environments: the overlay one environment applies to the base spec, the deep merge, and
the names each environment gets (its app name, its own `-<env>` Dicts, Secrets and Volumes)."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from liftdeploy.spec.messages import shown
from liftdeploy.spec.names import MODAL_ENVIRONMENT
from liftdeploy.spec.sections import SECTIONS
from liftdeploy.spec.specmodel import SpecModel


class EnvironmentOverlay(SpecModel):
    """Changes one environment makes to the base spec (deep-merged, section by section)."""

    production: bool = False
    """Exactly one environment is production; it gets the bare app name."""
    modal_environment: str | None = None
    """Modal environment (workspace partition) to deploy into; None uses the profile default."""

    @field_validator("modal_environment")
    @classmethod
    def _modal_environment_name(cls, value: str | None) -> str | None:
        if value is not None and (
            not MODAL_ENVIRONMENT.match(value) or value.lower().startswith("en-")
        ):
            raise ValueError(
                f"modal_environment {shown(value)} is not a Modal environment name; use 1-64 "
                f"letters, digits, '_' or '-', starting with a letter or digit, not 'en-'"
            )
        return value

    model: dict[str, Any] | None = None
    """Overrides for `model`."""
    gpu: dict[str, Any] | None = None
    """Overrides for `gpu`."""
    runtime: dict[str, Any] | None = None
    """Overrides for `runtime`."""
    storage: dict[str, Any] | None = None
    """Overrides for `storage`."""
    cors: dict[str, Any] | None = None
    """Overrides for `cors`."""
    engine: dict[str, Any] | None = None
    """Overrides for `engine`."""
    auth: dict[str, Any] | None = None
    """Overrides for `auth`."""
    budget: dict[str, Any] | None = None
    """Overrides for `budget`."""
    pricing: dict[str, Any] | None = None
    """Overrides for `pricing`."""
    workload: dict[str, Any] | None = None
    """Overrides for `workload`."""
    observability: dict[str, Any] | None = None
    """Overrides for `observability`."""
    release: dict[str, Any] | None = None
    """Overrides for `release`."""


DEFAULT_ENVIRONMENTS: dict[str, EnvironmentOverlay] = {
    "production": EnvironmentOverlay(production=True),
}


def environment_app_name(name: str, environment: str, production: bool) -> str:
    """Modal app name of an environment: the bare name in production, `name-<env>` elsewhere."""
    return name if production else environment_name(name, environment)


def environment_name(name: str, environment: str) -> str:
    """A Dict, Secret or Volume name of a non-production environment: `<name>-<env>`, the
    suffix its app name has."""
    return f"{name}-{environment}"


def apply_overlay(sections: dict[str, Any], overlay: EnvironmentOverlay, env: str) -> None:
    """Deep-merge one environment's overlay into the base spec's `sections`, in place, and give
    a non-production environment its own names (`_own_names`)."""
    for section in SECTIONS:
        changes = getattr(overlay, section)
        if changes:
            sections[section] = _deep_merge(sections[section], changes)
    if not overlay.production:
        _own_names(sections, overlay, env)


def _own_names(merged: dict[str, Any], overlay: EnvironmentOverlay, env: str) -> None:
    """Give every Dict, Secret and Volume name the environment inherits from the base spec its
    own `-<env>` name, in place; names the overlay sets, names in storage.shared and the
    weights Volume (keyed by revision inside) stay as they are."""
    storage, listed = merged["storage"], merged["storage"].get("shared")
    # Not yet validated: a wrong-typed `shared` is the model's to report, in one line.
    shared = (
        {name for name in listed if isinstance(name, str)} if isinstance(listed, list) else set()
    )
    own = overlay.storage or {}

    def rename(name: str | None) -> str | None:
        return name if name is None or name in shared else environment_name(name, env)

    for key in ("dicts", "secrets"):
        if key not in own:
            storage[key] = [rename(name) for name in storage[key]]
    if storage.get("volumes") is not None and "volumes" not in own:
        storage["volumes"] = [
            volume if volume["purpose"] == "weights" else {**volume, "name": rename(volume["name"])}
            for volume in storage["volumes"]
        ]
    for section, key in (("model", "hf_token_secret"), ("auth", "api_key_secret")):
        if key not in (getattr(overlay, section) or {}):
            merged[section][key] = rename(merged[section][key])


def _deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
