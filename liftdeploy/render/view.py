"""What the template shows about one spec: `ServiceView`, its names, per-environment values and
ready-made literals, built from the resolved spec and each environment's plan.

The Copier extension (liftdeploy.render.copier_ext) builds one per render and hands it to the
template as `liftdeploy_service()`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from liftdeploy import __version__
from liftdeploy.planner.ci import CiTimeouts, CiWarmup, ci_timeouts, ci_warmup
from liftdeploy.planner.download import UNSIZED_DOWNLOAD, DownloadEstimate
from liftdeploy.planner.memory import Reservation
from liftdeploy.planner.report import Plan, reservation
from liftdeploy.planner.timeouts import Lifecycle, lifecycle
from liftdeploy.render.expressions import (
    argv_lines,
    by_environment,
    dict_items,
    duration,
    merged_lines,
)
from liftdeploy.render.literals import py
from liftdeploy.render.runtime_files import (
    HOOK_MODULES,
    RUNTIME_PACKAGE,
    runtime_dir,
    with_runtime_imports,
)
from liftdeploy.spec.model import (
    COMPILE_CACHE_DIR,
    WEIGHTS_DIR,
    ModelDeployment,
    ResolvedDeployment,
)


@dataclass(frozen=True)
class Sized:
    """What the plan settles for one environment's app; a model the planner cannot size gets
    the planner's defaults for an unknown model."""

    lifecycle: Lifecycle
    reservation: Reservation
    """The server container's host CPU and memory."""
    download: DownloadEstimate

    @classmethod
    def of(cls, resolved: ResolvedDeployment, plan: Plan | None) -> Sized:
        if plan is None:
            return cls(lifecycle(resolved), reservation(resolved, None), UNSIZED_DOWNLOAD)
        return cls(plan.lifecycle, plan.reservation, plan.download)


@dataclass(frozen=True)
class ServiceView:
    """What the template shows about one spec: names, per-environment values and literals."""

    spec: ModelDeployment
    spec_text: str
    resolved: dict[str, ResolvedDeployment] = field(repr=False)
    plans: dict[str, Plan | None] = field(repr=False)
    """Each environment's plan, run once per render (None: a model the planner cannot size)."""
    liftdeploy_version: str = __version__

    def sized(self, env: str) -> Sized:
        return Sized.of(self.resolved[env], self.plans[env])

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def environments(self) -> list[str]:
        return list(self.spec.environments)

    @property
    def production(self) -> str:
        return self.spec.production_environment

    @property
    def default_environment(self) -> str | None:
        """The environment a bare `modal deploy` picks: development if defined, else the first
        non-production one; None when production is the only one (the variable is then
        required). Never production, so a forgotten variable never deploys it."""
        others = [env for env in self.spec.environments if env != self.production]
        return "development" if "development" in others else next(iter(others), None)

    @property
    def staging(self) -> str | None:
        """The environment CI deploys on every push: `staging` when the spec defines it."""
        return "staging" if "staging" in self.spec.environments else None

    def env(self, name: str) -> ResolvedDeployment:
        return self.resolved[name]

    @property
    def prod(self) -> ResolvedDeployment:
        return self.resolved[self.production]

    def per_env(self, value: str, *, indent: int = 0) -> str:
        """A Python expression for one of APP_VALUES: the literal when every environment agrees,
        else a dict literal indexed by ENVIRONMENT (a reader sees every environment's value).
        Durations (names ending in _s) are written in MINUTES where they divide evenly."""
        values = {
            env: APP_VALUES[value](resolved, self.sized(env))
            for env, resolved in self.resolved.items()
        }
        literal = duration if value.endswith("_s") else py
        return by_environment(values, literal, indent)

    def container_env(self) -> str:
        """The `env=` of the containers: the library's server_env per environment, with the
        environment's own name written as ENVIRONMENT."""
        return dict_items({env: _server_env(resolved) for env, resolved in self.resolved.items()})

    def tags(self) -> str:
        """The items of `TAGS` (`modal.App(tags=...)`): service, environment, liftdeploy release,
        from `liftdeploy.render.tags`, so billing can be split by them."""
        from liftdeploy.render.tags import app_tags

        return dict_items({env: app_tags(resolved) for env, resolved in self.resolved.items()})

    @property
    def extra_runtime_files(self) -> list[str]:
        """Runtime modules the vLLM command line loads (besides the server wrapper)."""
        return sorted(f"{m}.py" for m in self._argv_runtime_modules())

    @property
    def error_tracking(self) -> bool:
        """Whether any environment reports errors to Sentry (the image then has sentry-sdk)."""
        return any(r.observability.sentry_dsn_secret for r in self.resolved.values())

    @property
    def alerts(self) -> bool:
        """Whether any environment has alerts (the app then has the scheduled monitor)."""
        return any(r.observability.alerts for r in self.resolved.values())

    @property
    def alerts_everywhere(self) -> bool:
        """Whether every environment has alerts (else the app guards the monitor with
        `if ALERTS is not None`)."""
        return all(r.observability.alerts for r in self.resolved.values())

    @property
    def sentry_sdk_version(self) -> str:
        from liftdeploy.versions import SENTRY_SDK_VERSION

        return SENTRY_SDK_VERSION

    def vllm_args(self) -> str:
        """The app module's `VLLM_ARGS` expression: each environment's argv from the library's
        one argv function, written once. A value every environment shares and a named constant
        holds is written as that constant; what differs is a dict indexed by ARGV_ENVIRONMENT
        (a rehearsal runs another environment's argv, so per-environment constants, which
        follow ENVIRONMENT, never stand in for its values)."""
        from liftdeploy.render.vllm_args import server_args

        per_env = {
            env: argv_lines(
                server_args(resolved, self.sized(env).lifecycle), self._shared_constants()
            )
            for env, resolved in self.resolved.items()
        }
        return merged_lines(per_env)

    def _shared_constants(self) -> dict[str, tuple[str, str]]:
        """Flag -> (its value as text, the app's constant that holds it) for the constants every
        environment agrees on."""
        found = {"--port": (str(self.port), "str(VLLM_PORT)")}
        for flag, (value, name) in ARGV_CONSTANTS.items():
            values = {
                str(APP_VALUES[value](r, self.sized(env))) for env, r in self.resolved.items()
            }
            if len(values) == 1:
                found[flag] = (values.pop(), name)
        return found

    @property
    def python_version(self) -> str:
        from liftdeploy.versions import PYTHON_VERSION

        return PYTHON_VERSION

    @property
    def uv_version(self) -> str:
        from liftdeploy.versions import UV_VERSION

        return UV_VERSION

    @property
    def port(self) -> int:
        from liftdeploy.render.vllm_args import SERVER_PORT

        return SERVER_PORT

    @property
    def runtime_files(self) -> list[str]:
        """Files of liftdeploy.runtime the image needs: the package, the modules the enter hook
        imports (HOOK_MODULES), every runtime module an environment's argv names (e.g.
        middleware) and the observability modules the spec turns on."""
        modules = {*HOOK_MODULES, *self._argv_runtime_modules()}
        if self.error_tracking:
            modules.add("errortracking")
        if self.alerts:
            modules.add("monitor")
        return ["__init__.py", *sorted(f"{m}.py" for m in with_runtime_imports(modules))]

    def _argv_runtime_modules(self) -> set[str]:
        from liftdeploy.render.vllm_args import server_args

        modules = set()
        prefix = RUNTIME_PACKAGE + "."
        shipped = {path.stem for path in runtime_dir().glob("*.py")}
        for env, resolved in self.resolved.items():
            for arg in server_args(resolved, self.sized(env).lifecycle):
                module = arg[len(prefix) :].split(".")[0] if arg.startswith(prefix) else ""
                if module in shipped:  # an argv value never names a file to copy
                    modules.add(module)
        return modules

    def exit_grace(self, env: str) -> int:
        """Seconds a stopping container of `env` lets requests in flight finish."""
        return self.sized(env).lifecycle.exit_grace_period_s

    def startup_timeout(self, env: str) -> int:
        """Seconds a new container of `env` may take to start serving."""
        return self.sized(env).lifecycle.startup_timeout_s

    @property
    def download_mb_per_s(self) -> int:
        from liftdeploy.planner.download import DOWNLOAD_MB_PER_S

        return DOWNLOAD_MB_PER_S

    @property
    def download_reservation(self) -> Any:
        """The download container's CPU and memory (liftdeploy.planner.memory)."""
        from liftdeploy.planner.memory import DOWNLOAD_RESERVATION

        return DOWNLOAD_RESERVATION

    @property
    def download_retries(self) -> int:
        from liftdeploy.planner.download import DOWNLOAD_RETRIES

        return DOWNLOAD_RETRIES

    def download(self, resolved: ResolvedDeployment) -> DownloadEstimate:
        """The weights download of one environment (size, limit, retries) from its plan."""
        return self.sized(resolved.environment).download

    def shared(self, env: str) -> dict[str, list[str]]:
        """`"<kind> <name>"` -> other environments using the same Modal object."""
        return self.spec.shared_resources(env)

    def ci_warmup(self, name: str) -> CiWarmup:
        """Whether a push's CI run starts a container of `name` to check it, what that costs
        (the plan's cold start) and why."""
        return ci_warmup(self.resolved[name], self.startup_timeout(name))

    def ci_timeouts(self) -> CiTimeouts:
        """The workflow's step and job limits: the longest download and start of any
        environment."""
        sized = [self.sized(env) for env in self.resolved]
        return ci_timeouts(
            [s.download for s in sized], [s.lifecycle.startup_timeout_s for s in sized]
        )

    def cost_usd(self, resolved: ResolvedDeployment, *, hours: float) -> str:
        """Cost of running one container for `hours` hours, formatted as dollars."""
        return f"${resolved.container_hour_usd() * hours:,.2f}"


def _mount_path(resolved: ResolvedDeployment, purpose: str, default: str) -> str:
    return next((v.mount_path for v in resolved.volumes if v.purpose == purpose), default)


# The values the app module shows, by the constant's meaning: each from the resolved spec
# or what its plan settled.
APP_VALUES: dict[str, Callable[[ResolvedDeployment, Sized], Any]] = {
    "app_name": lambda r, s: r.app_name,
    "server_env": lambda r, s: _server_env(r),
    "vllm_version": lambda r, s: r.engine.vllm_version,
    "image_builder_version": lambda r, s: r.engine.image_builder_version,
    "model_id": lambda r, s: r.model.id,
    "model_revision": lambda r, s: r.model.revision,
    "weights_dir": lambda r, s: _mount_path(r, "weights", WEIGHTS_DIR),
    "compile_cache_dir": lambda r, s: _mount_path(r, "compile-cache", COMPILE_CACHE_DIR),
    "volumes": lambda r, s: {v.mount_path: v.name for v in r.volumes},
    "secrets": lambda r, s: r.secret_names,
    "hf_token_secrets": lambda r, s: [r.model.hf_token_secret] if r.model.hf_token_secret else [],
    "gpu": lambda r, s: r.gpu.modal_gpu,
    "request_timeout_s": lambda r, s: r.runtime.request_timeout_s,
    "startup_timeout_s": lambda r, s: s.lifecycle.startup_timeout_s,
    "healthy_within_s": lambda r, s: s.lifecycle.healthy_within_s,
    "download_timeout_s": lambda r, s: s.download.timeout_s,
    "scaledown_window_s": lambda r, s: r.runtime.scaledown_window_s,
    "min_containers": lambda r, s: r.runtime.min_containers,
    "max_containers": lambda r, s: r.runtime.max_containers,
    "buffer_containers": lambda r, s: r.runtime.buffer_containers,
    "max_concurrency": lambda r, s: r.runtime.max_concurrent_requests,
    "target_concurrency": lambda r, s: (
        r.runtime.target_concurrent_requests or r.runtime.max_concurrent_requests
    ),
    "unauthenticated": lambda r, s: not r.auth.proxy_auth,
    "nonpreemptible": lambda r, s: r.runtime.nonpreemptible,
    "exit_grace_period_s": lambda r, s: s.lifecycle.exit_grace_period_s,
    "drain_s": lambda r, s: s.lifecycle.drain_s,
    "cpu": lambda r, s: s.reservation.cpu,
    "memory_mib": lambda r, s: s.reservation.memory_mib,
    "alerts": lambda r, s: _alerts(r),
}


def _alerts(resolved: ResolvedDeployment) -> dict[str, Any] | None:
    """The monitor's settings: the webhook Secret's name, the period and the thresholds
    (liftdeploy.runtime.monitor.Thresholds' fields)."""
    alerts = resolved.observability.alerts
    if alerts is None:
        return None
    thresholds = alerts.model_dump(exclude={"webhook_secret", "check_every_s"})
    return {
        "webhook_secret": alerts.webhook_secret,
        "check_every_s": alerts.check_every_s,
        "thresholds": thresholds,
    }


def _server_env(resolved: ResolvedDeployment) -> dict[str, str]:
    from liftdeploy.render.vllm_args import server_env

    return server_env(resolved)


# Flags whose value the app also holds in a named constant: (APP_VALUES key, how the argv
# writes the constant).
ARGV_CONSTANTS = {
    "--model": ("model_id", "MODEL_ID"),
    "--revision": ("model_revision", "MODEL_REVISION"),
    "--max-num-seqs": ("max_concurrency", "str(MAX_CONCURRENCY)"),
}
