"""The Copier template's window onto liftdeploy: the template reads the spec through this module.

`copier.yml` names `LiftdeployExtension` in `_jinja_extensions` (hence `--trust`). The template
never re-implements spec logic in Jinja: it calls `liftdeploy_service()`, which builds the spec
from the answers (a preset from `examples/` with the few values `copier copy` asks, or the whole
spec text that `liftdeploy render` passes), validates it with the spec's own models and returns a
`Service` whose attributes are ready-made Python literals and names for the templates.

An invalid spec raises copier's `UserMessageError` with the spec's own message, so `copier copy`
prints one line and removes the directory it was creating.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import pass_context
from jinja2.ext import Extension
from jinja2.runtime import Context

from liftdeploy import __version__
from liftdeploy.spec.model import COMPILE_CACHE_DIR, WEIGHTS_DIR, ModelDeployment, ResolvedDeployment

RUNTIME_PACKAGE = "liftdeploy.runtime"
"""The stdlib-only package whose files travel into the Modal image (liftdeploy_runtime/)."""

# Answers `copier copy` asks after the preset, and where each lands in the spec.
QUESTION_FIELDS: dict[str, str] = {
    "name": "name",
    "description": "description",
    "model_id": "model.id",
    "model_revision": "model.revision",
    "gpu_type": "gpu.type",
    "gpu_count": "gpu.count",
    "min_containers": "runtime.min_containers",
    "max_containers": "runtime.max_containers",
    "max_concurrent_requests": "runtime.max_concurrent_requests",
}
# Answers that stand for "not set" (None in the spec): Copier answers are typed str/int.
UNSET_ANSWERS: dict[str, Any] = {"model_revision": "", "max_containers": 0}
CUSTOM_PRESET = "custom"
"""The preset `liftdeploy render` records for a spec that is not one of the examples."""
MODAL_MAX_EXIT_GRACE_S = 3600
"""Longest `exit_grace_period` modal 1.6 accepts for `@app.server`."""


class LiftdeployExtension(Extension):
    """Adds `liftdeploy_service()`, `liftdeploy_preset()`, `liftdeploy_problem()` and the
    `runtime_source` filter to Copier's Jinja environment."""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        environment.globals["liftdeploy_service"] = _service_from_context
        environment.globals["liftdeploy_preset"] = preset_value
        environment.globals["liftdeploy_problem"] = _problem_from_context
        environment.filters["runtime_source"] = runtime_source


@dataclass(frozen=True)
class Service:
    """What the template shows about one spec: names, per-environment values and literals."""

    spec: ModelDeployment
    spec_text: str
    resolved: dict[str, ResolvedDeployment] = field(repr=False)
    liftdeploy_version: str = __version__

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
    def default_environment(self) -> str:
        """The environment a bare `modal deploy` picks: development if defined, else production.
        Never production when a development overlay exists, so a forgotten variable is cheap."""
        return "development" if "development" in self.spec.environments else self.production

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
        values = {env: APP_VALUES[value](resolved) for env, resolved in self.resolved.items()}
        literal = _duration if value.endswith("_s") else py
        return _by_environment(values, literal, indent)

    def container_env(self) -> str:
        """The `env=` of the containers: the library's server_env per environment, with the
        environment's own name written as ENVIRONMENT."""
        from liftdeploy.render.vllm_args import server_env

        per_env = {env: server_env(resolved) for env, resolved in self.resolved.items()}
        keys = list(dict.fromkeys(key for env_vars in per_env.values() for key in env_vars))
        lines = []
        for key in keys:
            values = {env: env_vars.get(key) for env, env_vars in per_env.items()}
            if all(v == env for env, v in values.items()):
                lines.append(f"    {py(key)}: ENVIRONMENT,")
            else:
                lines.append(f"    {py(key)}: {_by_environment(values, py, 4)},")
        return "\n".join(lines)

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
        """`VLLM_ARGS` for the app module: each environment's argv from the library's one argv
        function, rendered literally with one flag and its value per line."""
        from liftdeploy.render.vllm_args import server_args

        blocks = []
        for env, resolved in self.resolved.items():
            lines = "".join(f"\n        {line}" for line in _argv_lines(server_args(resolved)))
            blocks.append(f"\n    {py(env)}: [{lines}\n    ],")
        return "{" + "".join(blocks) + "\n}[ENVIRONMENT]"

    @property
    def python_version(self) -> str:
        from liftdeploy.versions import PYTHON_VERSION

        return PYTHON_VERSION

    @property
    def port(self) -> int:
        from liftdeploy.render.vllm_args import SERVER_PORT

        return SERVER_PORT

    @property
    def runtime_files(self) -> list[str]:
        """Files of liftdeploy.runtime the image needs: the package, its server process wrapper
        (the enter hook), every runtime module an environment's argv names (e.g. middleware)
        and the observability modules the spec turns on."""
        modules = {"server", *self._argv_runtime_modules()}
        if self.error_tracking:
            modules.add("errortracking")
        if self.alerts:
            modules.add("monitor")
        return ["__init__.py", *sorted(f"{m}.py" for m in modules)]

    def _argv_runtime_modules(self) -> set[str]:
        from liftdeploy.render.vllm_args import server_args

        modules = set()
        prefix = RUNTIME_PACKAGE + "."
        for resolved in self.resolved.values():
            for arg in server_args(resolved):
                if arg.startswith(prefix):
                    modules.add(arg[len(prefix):].split(".")[0])
        return modules

    def cost_usd(self, resolved: ResolvedDeployment, *, hours: float) -> str:
        """Cost of running one container for `hours` hours, formatted as dollars."""
        return f"${resolved.gpu.count * resolved.gpu_hour_usd * hours:,.2f}"


def _mount_path(resolved: ResolvedDeployment, purpose: str, default: str) -> str:
    return next((v.mount_path for v in resolved.volumes if v.purpose == purpose), default)


# The values the app module shows, by the constant's meaning; each from the resolved spec.
APP_VALUES: dict[str, Callable[[ResolvedDeployment], Any]] = {
    "app_name": lambda r: r.app_name,
    "server_env": lambda r: _server_env(r),
    "vllm_version": lambda r: r.engine.vllm_version,
    "model_id": lambda r: r.model.id,
    "model_revision": lambda r: r.model.revision,
    "weights_dir": lambda r: _mount_path(r, "weights", WEIGHTS_DIR),
    "compile_cache_dir": lambda r: _mount_path(r, "compile-cache", COMPILE_CACHE_DIR),
    "volumes": lambda r: {v.mount_path: v.name for v in r.volumes},
    "secrets": lambda r: r.secret_names,
    "hf_token_secrets": lambda r: [r.model.hf_token_secret] if r.model.hf_token_secret else [],
    "gpu": lambda r: r.gpu.modal_gpu,
    "timeout_s": lambda r: r.runtime.timeout_s,
    "startup_timeout_s": lambda r: r.startup_timeout_s,
    "scaledown_window_s": lambda r: r.runtime.scaledown_window_s,
    "min_containers": lambda r: r.runtime.min_containers,
    "max_containers": lambda r: r.runtime.max_containers,
    "buffer_containers": lambda r: r.runtime.buffer_containers,
    "max_concurrency": lambda r: r.runtime.max_concurrent_requests,
    "target_concurrency": lambda r: (
        r.runtime.target_concurrent_requests or r.runtime.max_concurrent_requests
    ),
    "unauthenticated": lambda r: not r.auth.proxy_auth,
    # In-flight requests may finish during a rolling deploy or scale-down: up to the request
    # timeout, within Modal's limit for servers.
    "exit_grace_period_s": lambda r: min(r.runtime.timeout_s, MODAL_MAX_EXIT_GRACE_S),
    "alerts": lambda r: _alerts(r),
}


def _alerts(resolved: ResolvedDeployment) -> dict[str, Any] | None:
    """The monitor's settings: the webhook Secret's name, the period and the thresholds
    (liftdeploy.runtime.monitor.Thresholds' fields)."""
    alerts = resolved.observability.alerts
    if alerts is None:
        return None
    thresholds = alerts.model_dump(exclude={"webhook_secret", "check_every_s"})
    return {"webhook_secret": alerts.webhook_secret, "check_every_s": alerts.check_every_s,
            "thresholds": thresholds}


def _server_env(resolved: ResolvedDeployment) -> dict[str, str]:
    from liftdeploy.render.vllm_args import server_env

    return server_env(resolved)


def _by_environment(values: dict[str, Any], literal: Callable[..., str], indent: int) -> str:
    first = next(iter(values.values()))
    if all(v == first for v in values.values()):
        return literal(first, indent)
    pad = " " * indent
    items = "".join(f"\n{pad}    {py(env)}: {literal(v, indent + 4)}," for env, v in values.items())
    return "{" + items + f"\n{pad}}}[ENVIRONMENT]"


def _duration(seconds: Any, indent: int = 0) -> str:
    if isinstance(seconds, int) and seconds >= 60 and seconds % 60 == 0:
        return f"{seconds // 60} * MINUTES"
    return py(seconds, indent)


def py(value: Any, indent: int = 0) -> str:
    """A Python literal for plain data, strings in double quotes as in Modal's examples; dicts
    and lists that would make a long line are written one item per line."""
    if isinstance(value, str):
        if '"' in value and "'" not in value and "\\" not in value:
            return f"'{value}'"  # JSON inside a string reads better without escapes
        return json.dumps(value)
    if isinstance(value, bool) or value is None or isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        items = [py(v, indent + 4) for v in value]
        brackets = "[]"
    elif isinstance(value, dict):
        items = [f"{py(k)}: {py(v, indent + 4)}" for k, v in value.items()]
        brackets = "{}"
    else:
        raise TypeError(f"no Python literal for {type(value).__name__}")
    one_line = brackets[0] + ", ".join(items) + brackets[1]
    if len(one_line) + indent <= 72 or not items:
        return one_line
    pad = " " * (indent + 4)
    return brackets[0] + "".join(f"\n{pad}{item}," for item in items) + f"\n{' ' * indent}" + brackets[1]


def _argv_lines(argv: list[str]) -> list[str]:
    """Group a flag with the values that follow it: `"--model", "Qwen/...",` per line."""
    groups: list[list[str]] = []
    for token in argv:
        if token.startswith("--") or not groups:
            groups.append([token])
        else:
            groups[-1].append(token)
    return [", ".join(py(t) for t in group) + "," for group in groups]


def runtime_source(filename: str) -> str:
    """The text of one liftdeploy.runtime file, copied verbatim into the service."""
    import importlib.util

    spec = importlib.util.find_spec(RUNTIME_PACKAGE)
    assert spec is not None and spec.origin is not None
    path = Path(spec.origin).parent / filename
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        _fail(f"liftdeploy.runtime has no {filename}; reinstall liftdeploy")


PRESETS_DIR = "examples"
"""Presets live in the template root's examples/ (the checkout's, or the wheel's copy), so a
template version always renders its own presets."""


def preset_path(template_root: Path, preset: str) -> Path:
    return template_root / PRESETS_DIR / f"{preset}.yaml"


def presets(template_root: Path) -> list[str]:
    return sorted(path.stem for path in (template_root / PRESETS_DIR).glob("*.yaml"))


@pass_context
def preset_value(context: Context, preset: str, question: str) -> Any:
    """The preset's value for one question: the default `copier copy` offers."""
    from liftdeploy.spec.specfile import read_yaml

    node: Any = read_yaml(preset_path(_template_root(context), preset))
    for key in QUESTION_FIELDS[question].split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return UNSET_ANSWERS.get(question, "") if node is None else node


def spec_text_from_answers(answers: dict[str, Any], template_root: Path) -> str:
    """deployment.yaml's text: the text `liftdeploy render` passed, else the preset's file with
    the asked values set in place (comments and layout kept; unchanged when nothing differs)."""
    if answers.get("spec_yaml"):
        return str(answers["spec_yaml"])
    from liftdeploy.spec.specfile import dump_yaml, read_yaml

    preset = str(answers.get("preset") or "")
    if preset == CUSTOM_PRESET:
        _fail("this service was rendered by `liftdeploy render` from a spec of its own, which "
              "Copier's answers do not hold; regenerate it with `liftdeploy render .`")
    path = preset_path(template_root, preset)
    if not path.is_file():
        _fail(f"preset {preset!r} is not one of the examples; choose one of "
              f"{', '.join(presets(template_root))}")
    text = path.read_text(encoding="utf-8")
    data = read_yaml(path)
    changed = False
    for question, dotted in QUESTION_FIELDS.items():
        if question not in answers:
            continue
        value = _spec_value(question, answers[question])
        *parents, last = dotted.split(".")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        if node.get(last) != value and not (value is None and last not in node):
            node[last] = value
            changed = True
    return dump_yaml(data) if changed else text


def answers_for_spec(text: str, source: str, template_root: Path) -> dict[str, Any]:
    """The answers `copier copy` would record for this spec: its preset (or custom) and the
    asked values, so both ways of rendering write the same answers file."""
    spec = _validate(text, source)
    base = spec.model_dump(include={"name", "description", "model", "gpu", "runtime"})
    answers: dict[str, Any] = {}
    for question, dotted in QUESTION_FIELDS.items():
        node: Any = base
        for key in dotted.split("."):
            node = node.get(key)
        answers[question] = UNSET_ANSWERS.get(question, "") if node is None else node
    matching = [
        name for name in presets(template_root)
        if spec_text_from_answers({**answers, "preset": name}, template_root) == text
    ]
    return {"preset": matching[0] if matching else CUSTOM_PRESET, **answers}


def _spec_value(question: str, value: Any) -> Any:
    """The spec value for an answer: the question's "not set" answer becomes None."""
    if question in UNSET_ANSWERS and value in (UNSET_ANSWERS[question], None):
        return None
    return value


@functools.lru_cache(maxsize=32)
def _service(text: str) -> Service:
    spec = _validate(text, "deployment.yaml")
    resolved = {env: spec.resolve(env) for env in spec.environments}
    return Service(spec=spec, spec_text=text, resolved=resolved)


def _validate(text: str, source: str) -> ModelDeployment:
    from liftdeploy.errors import SpecError
    from liftdeploy.spec.specfile import parse_yaml, spec_from_data

    try:
        return spec_from_data(parse_yaml(text, source=source), source=source)
    except SpecError as exc:
        _fail(str(exc))


def _answers(context: Context) -> dict[str, Any]:
    keys = ["spec_yaml", "preset", *QUESTION_FIELDS]
    return {key: context[key] for key in keys if key in context}


def _template_root(context: Context) -> Path:
    return Path(str(context["_copier_conf"]["src_path"]))


@pass_context
def _service_from_context(context: Context) -> Service:
    return _service(spec_text_from_answers(_answers(context), _template_root(context)))


@pass_context
def _problem_from_context(context: Context) -> str:
    """For the last question's validator: the spec's own message for the answers, else ''.
    Only when asking interactively (the user can correct the answer); with --defaults or
    --data the render stops with the same message as one line instead of a traceback."""
    from copier.errors import UserMessageError

    conf = context["_copier_conf"]
    if conf["defaults"] or "max_concurrent_requests" in conf["data"]:
        return ""
    try:
        _service(spec_text_from_answers(_answers(context), _template_root(context)))
    except UserMessageError as exc:
        return str(exc)
    return ""


def _fail(message: str) -> Any:
    """Stop Copier with one plain line (it removes the directory it was creating)."""
    from copier.errors import UserMessageError

    raise UserMessageError(message)
