"""The `ModelDeployment` spec: one declarative description of a model service.

Pydantic v2, strict about shape (unknown keys are errors), every field documented (the docstring
under a field becomes its description in the JSON schema). Field validators normalise, model
validators check across fields; every message names the field, the value and the fix.
Derived figures (memory, KV cache, cost) belong to the planner, not here.

This module puts the whole spec together: `DeploymentSettings` (the sections an environment may
change), `ModelDeployment` (settings plus environments) and `ResolvedDeployment` (one
environment applied). The parts live beside it: `specmodel` (the base class), `names` (name
rules), `sections`, `environments` (overlays and per-environment names) and `policy` (checks
across sections, advisories). Their public names are importable from here too.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from liftdeploy.errors import EnvironmentNotFound, SpecError
from liftdeploy.spec import catalog
from liftdeploy.spec.argv import check_passthrough
from liftdeploy.spec.environments import (
    DEFAULT_ENVIRONMENTS,
    EnvironmentOverlay,
    apply_overlay,
    environment_app_name,
    environment_name,
)
from liftdeploy.spec.messages import format_validation_error
from liftdeploy.spec.names import (
    DNS_NAME,
    MAX_APP_NAME,
    check_modal_name,
    is_modal_name,
    revision_problem,
    suggest_name,
)
from liftdeploy.spec.policy import (
    advisories,
    check_budget,
    check_heads_divide,
    pinning_problem,
    revision_warnings,
)
from liftdeploy.spec.sections import (
    COMPILE_CACHE_DIR,
    HF_TOKEN_ENV,
    HOURS,
    HOURS_PER_MONTH,
    MINUTES,
    MODAL_MAX_EXIT_GRACE_S,
    MODAL_MAX_TIMEOUT_S,
    SECTIONS,
    WEIGHTS_DIR,
    AlertsSection,
    AuthSection,
    BudgetSection,
    CorsSection,
    EngineSection,
    GpuSection,
    ModelSection,
    ObservabilitySection,
    PricingSection,
    ReleaseSection,
    RuntimeSection,
    StorageSection,
    VolumeMount,
    WorkloadSection,
)
from liftdeploy.spec.specmodel import SpecModel

__all__ = [  # defined here, and the parts' public names that callers import from here
    "SPEC_VERSION",
    "DeploymentSettings",
    "ModelDeployment",
    "ResolvedDeployment",
    "DEFAULT_ENVIRONMENTS",
    "EnvironmentOverlay",
    "environment_app_name",
    "environment_name",
    "MAX_APP_NAME",
    "check_modal_name",
    "is_modal_name",
    "revision_problem",
    "advisories",
    "pinning_problem",
    "revision_warnings",
    "COMPILE_CACHE_DIR",
    "HF_TOKEN_ENV",
    "HOURS",
    "HOURS_PER_MONTH",
    "MINUTES",
    "MODAL_MAX_EXIT_GRACE_S",
    "MODAL_MAX_TIMEOUT_S",
    "SECTIONS",
    "WEIGHTS_DIR",
    "AlertsSection",
    "AuthSection",
    "BudgetSection",
    "CorsSection",
    "EngineSection",
    "GpuSection",
    "ModelSection",
    "ObservabilitySection",
    "PricingSection",
    "ReleaseSection",
    "RuntimeSection",
    "StorageSection",
    "VolumeMount",
    "WorkloadSection",
    "SpecModel",
]

SPEC_VERSION = 2
"""The spec format version this liftdeploy writes and reads."""


class DeploymentSettings(SpecModel):
    """Everything an environment overlay may change."""

    # Never validated itself, only through its two subclasses: skip building its validator.
    model_config = ConfigDict(defer_build=True)

    model: ModelSection
    """The model to serve."""
    gpu: GpuSection
    """GPUs per container and parallelism."""
    runtime: RuntimeSection = Field(default_factory=RuntimeSection)
    """Timeouts, scaling and concurrency."""
    storage: StorageSection = Field(default_factory=StorageSection)
    """Volumes, Dicts and Secret names."""
    cors: CorsSection = Field(default_factory=CorsSection)
    """Allowed browser origins."""
    engine: EngineSection = Field(default_factory=EngineSection)
    """vLLM version and structured-output settings."""
    auth: AuthSection = Field(default_factory=AuthSection)
    """Endpoint authentication."""
    budget: BudgetSection = Field(default_factory=BudgetSection)
    """Spending limits."""
    pricing: PricingSection = Field(default_factory=PricingSection)
    """Price overrides."""
    workload: WorkloadSection = Field(default_factory=WorkloadSection)
    """Typical request size."""
    observability: ObservabilitySection = Field(default_factory=ObservabilitySection)
    """Error tracking, traces and alerts (all off by default)."""
    release: ReleaseSection = Field(default_factory=ReleaseSection)
    """Safe releases of production: candidate share, bake time and verdict thresholds."""

    @model_validator(mode="after")
    def _check_across_sections(self) -> DeploymentSettings:
        check_heads_divide(self)
        check_passthrough(self)
        check_budget(self)
        return self

    @property
    def gpu_hour_usd(self) -> float:
        return self.pricing.gpu_hour_usd or catalog.gpu(self.gpu.type).price_usd_hour

    def container_hour_usd(self, gpu_hour_usd: float | None = None) -> float:
        """One container running for an hour, all its GPUs billed: at `gpu_hour_usd` (a live
        or --price rate), else the spec's price. Every cost liftdeploy shows starts here."""
        return self.gpu.count * (self.gpu_hour_usd if gpu_hour_usd is None else gpu_hour_usd)

    @property
    def always_on_monthly_usd(self) -> float:
        """What min_containers cost per month of 730 hours, billed 24/7."""
        return self.runtime.min_containers * self.container_hour_usd() * HOURS_PER_MONTH


class ResolvedDeployment(DeploymentSettings):
    """A spec with one environment's overlay applied: what gets rendered, planned and served."""

    model_config = ConfigDict(defer_build=False)

    name: str
    """Base app name from the spec."""
    description: str = ""
    """Human description from the spec."""
    environment: str
    """The environment this was resolved for."""
    production: bool
    """Whether this environment is production."""
    modal_environment: str | None = None
    """Modal environment to deploy into, if the overlay names one."""

    @model_validator(mode="after")
    def _shared_names_exist(self) -> ResolvedDeployment:
        used = {name for _, name in self.named_resources}
        for name in self.storage.shared:
            if name not in used:
                raise ValueError(
                    f"storage.shared names {name!r}, which no Dict, Secret or Volume of this "
                    f"spec uses ({', '.join(sorted(used))}); fix the name or remove it"
                )
        return self

    @model_validator(mode="after")
    def _argv_reads_as_written(self) -> ResolvedDeployment:
        from liftdeploy.spec.argv import argv_problem

        if problem := argv_problem(self):
            raise ValueError(problem)
        return self

    @property
    def app_name(self) -> str:
        """Modal app name: the bare name in production, `name-<env>` elsewhere."""
        return environment_app_name(self.name, self.environment, self.production)

    @property
    def volumes(self) -> list[VolumeMount]:
        """Explicit volumes, or the default weights and compile-cache volumes (the compile
        cache with the environment suffix outside production)."""
        if self.storage.volumes is not None:
            return self.storage.volumes
        compile_cache = f"{self.name}-compile-cache"
        if not self.production and compile_cache not in self.storage.shared:
            compile_cache = environment_name(compile_cache, self.environment)
        return [
            VolumeMount(name=f"{self.name}-weights", mount_path=WEIGHTS_DIR, purpose="weights"),
            VolumeMount(name=compile_cache, mount_path=COMPILE_CACHE_DIR, purpose="compile-cache"),
        ]

    @property
    def named_resources(self) -> list[tuple[str, str]]:
        """(kind, name) of every Modal Volume, Dict and Secret this environment uses."""
        return (
            [("volume", v.name) for v in self.volumes]
            + [("dict", name) for name in self.storage.dicts]
            + [("secret", name) for name in self.secret_names]
        )

    @property
    def secret_names(self) -> list[str]:
        """Every Modal Secret the container needs, in a stable order."""
        names = list(self.storage.secrets)
        for extra in (
            self.model.hf_token_secret,
            self.auth.api_key_secret,
            *self.observability.secret_names,
        ):
            if extra and extra not in names:
                names.append(extra)
        return names


class ModelDeployment(DeploymentSettings):
    """One model service: the base settings plus named environment overlays."""

    model_config = ConfigDict(defer_build=False)

    version: int = SPEC_VERSION
    """Spec format version; older files are migrated on load or refused with the step to take."""
    name: str
    """App name, DNS-safe (lowercase letters, digits, '-'); Modal calls the production app this,
    other environments `name-<env>`."""
    description: str = ""
    """What this service is for, in a sentence."""
    environments: dict[str, EnvironmentOverlay] = Field(
        default_factory=lambda: dict(DEFAULT_ENVIRONMENTS)
    )
    """Named overlays (development, staging, production by convention). Exactly one has
    `production: true`."""

    @field_validator("version")
    @classmethod
    def _current_version(cls, value: int) -> int:
        if value > SPEC_VERSION:
            raise ValueError(
                f"version {value} is newer than this liftdeploy understands ({SPEC_VERSION}); "
                f"upgrade liftdeploy (pip install -U liftdeploy)"
            )
        if value < SPEC_VERSION:  # files are migrated before they get here (specfile.migrate)
            raise ValueError(
                f"version {value} is older than the current format {SPEC_VERSION}; load the file "
                f"with liftdeploy.load_spec, which migrates old versions or says what to change"
            )
        return value

    @field_validator("environments", mode="before")
    @classmethod
    def _empty_overlays(cls, value: Any) -> Any:
        # `staging:` with nothing under it reads as null: an environment that changes nothing.
        if isinstance(value, dict):
            return {env: {} if overlay is None else overlay for env, overlay in value.items()}
        return value

    @field_validator("name")
    @classmethod
    def _dns_safe(cls, value: str) -> str:
        if not DNS_NAME.match(value) or "--" in value:
            raise ValueError(
                f"name {value!r} is not DNS-safe; use lowercase letters, digits and single '-', "
                f"starting with a letter (e.g. {suggest_name(value)!r})"
            )
        return value

    @model_validator(mode="after")
    def _check_environments(self) -> ModelDeployment:
        producers = [env for env, overlay in self.environments.items() if overlay.production]
        if len(producers) != 1:
            raise ValueError(
                f"environments: exactly one must have production: true, found "
                f"{len(producers)} ({', '.join(producers) or 'none'}); mark one environment as "
                f"production"
            )
        for env, overlay in self.environments.items():
            if not DNS_NAME.match(env) or "--" in env:
                raise ValueError(
                    f"environments key {env!r} is not a valid environment name; use lowercase "
                    f"letters, digits and single '-', starting with a letter "
                    f"(e.g. {suggest_name(env)!r})"
                )
            app_name = environment_app_name(self.name, env, overlay.production)
            if len(app_name) > MAX_APP_NAME:
                raise ValueError(
                    f"app name {app_name!r} for environment {env!r} is longer than Modal's "
                    f"{MAX_APP_NAME} characters; shorten name or the environment name"
                )
            check_modal_name(app_name, f"app name for environment {env!r}")
        for env in self.environments:
            try:
                self.resolve(env)  # surfaces overlay errors at load time, named by environment
            except SpecError as exc:
                raise ValueError(str(exc)) from None
        return self

    def to_yaml(self) -> str:
        """This spec as a spec file's text (liftdeploy.api.to_yaml)."""
        from liftdeploy.api import to_yaml

        return to_yaml(self)

    def shared_resources(self, environment: str) -> dict[str, list[str]]:
        """`"<kind> <name>"` -> the other environments that use the same Modal object, for
        each object of `environment` that is not its own (the weights Volume, `shared`)."""
        mine = self.resolve(environment).named_resources
        others = {
            env: set(self.resolve(env).named_resources)
            for env in self.environments
            if env != environment
        }
        shared = {
            f"{kind} {name}": [env for env, used in others.items() if (kind, name) in used]
            for kind, name in mine
        }
        return {label: envs for label, envs in shared.items() if envs}

    @property
    def production_environment(self) -> str:
        return next(env for env, overlay in self.environments.items() if overlay.production)

    def resolve(self, environment: str | None = None) -> ResolvedDeployment:
        """Apply one environment's overlay (default: production) and validate the result.

        Overlays deep-merge into the base sections: mappings merge key by key, any other value
        (lists included) replaces the base value. Raises EnvironmentNotFound for a name the spec
        does not define and SpecError when the merged result is invalid.
        """
        env = environment or self.production_environment
        if env not in self.environments:
            raise EnvironmentNotFound(
                f"unknown environment {env!r}; this spec defines: "
                f"{', '.join(self.environments)}; pick one of them or add {env!r} under "
                f"environments"
            )
        overlay = self.environments[env]
        merged = self.model_dump(include=set(SECTIONS), exclude_unset=False)
        apply_overlay(merged, overlay, env)
        merged.update(
            name=self.name,
            description=self.description,
            environment=env,
            production=overlay.production,
            modal_environment=overlay.modal_environment,
        )
        try:
            return ResolvedDeployment.model_validate(merged)
        except ValidationError as exc:
            raise SpecError(
                f"in environment {env!r} (base spec + environments.{env}): "
                + format_validation_error(exc, (ResolvedDeployment,))
            ) from None
