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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import pass_context
from jinja2.ext import Extension
from jinja2.runtime import Context

from liftdeploy import __version__
from liftdeploy.planner.ci import CiTimeouts, CiWarmup, ci_timeouts, ci_warmup
from liftdeploy.planner.download import UNSIZED_DOWNLOAD, DownloadEstimate
from liftdeploy.planner.memory import Reservation
from liftdeploy.planner.report import Plan, planned, reservation
from liftdeploy.planner.timeouts import Lifecycle, lifecycle
from liftdeploy.render import template_version
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
INT_QUESTIONS = ("gpu_count", "min_containers", "max_containers", "max_concurrent_requests")
BLANK_PRESET = "blank"
"""The clean start for a model that is not one of the examples (liftdeploy.render.presets)."""
CUSTOM_PRESET = "custom"
"""The preset `liftdeploy render` records for a spec that is not one of the examples."""
HOOK_MODULES = ("server", "weights")
"""liftdeploy.runtime modules the app itself imports (the others are named by the argv)."""


class LiftdeployExtension(Extension):
    """Adds `liftdeploy_service()`, `liftdeploy_preset()`, `liftdeploy_default_preset()`,
    `liftdeploy_problem()` and the filters the templates write values with (`py`, `docstring`,
    `comment`, `python_module`, `runtime_source`) to Copier's Jinja environment."""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        environment.globals["liftdeploy_service"] = _service_from_context
        environment.globals["liftdeploy_preset"] = preset_value
        environment.globals["liftdeploy_default_preset"] = default_preset
        environment.globals["liftdeploy_problem"] = _problem_from_context
        environment.globals["liftdeploy_install_source"] = template_version.install_source
        environment.globals["liftdeploy_install_fix"] = template_version.LOCAL_SOURCE_FIX
        environment.filters["runtime_source"] = runtime_source
        environment.filters["py"] = py
        environment.filters["docstring"] = docstring_text
        environment.filters["comment"] = comment_text
        environment.filters["python_module"] = python_module


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
class Service:
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
        values = {env: APP_VALUES[value](resolved, self.sized(env))
                  for env, resolved in self.resolved.items()}
        literal = _duration if value.endswith("_s") else py
        return _by_environment(values, literal, indent)

    def container_env(self) -> str:
        """The `env=` of the containers: the library's server_env per environment, with the
        environment's own name written as ENVIRONMENT."""
        return _dict_items({env: _server_env(resolved) for env, resolved in self.resolved.items()})

    def tags(self) -> str:
        """The items of `TAGS` (`modal.App(tags=...)`): service, environment, liftdeploy release,
        from `liftdeploy.render.tags`, so billing can be split by them."""
        from liftdeploy.render.tags import app_tags

        return _dict_items({env: app_tags(resolved) for env, resolved in self.resolved.items()})

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

        per_env = {env: _argv_lines(server_args(resolved, self.sized(env).lifecycle),
                                    self._shared_constants())
                   for env, resolved in self.resolved.items()}
        return _merged_lines(per_env)

    def _shared_constants(self) -> dict[str, tuple[str, str]]:
        """Flag -> (its value as text, the app's constant that holds it) for the constants every
        environment agrees on."""
        found = {"--port": (str(self.port), "str(VLLM_PORT)")}
        for flag, (value, name) in ARGV_CONSTANTS.items():
            values = {str(APP_VALUES[value](r, self.sized(env))) for env, r in self.resolved.items()}
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
        return ["__init__.py", *sorted(f"{m}.py" for m in _with_runtime_imports(modules))]

    def _argv_runtime_modules(self) -> set[str]:
        from liftdeploy.render.vllm_args import server_args

        modules = set()
        prefix = RUNTIME_PACKAGE + "."
        shipped = {path.stem for path in _runtime_dir().glob("*.py")}
        for env, resolved in self.resolved.items():
            for arg in server_args(resolved, self.sized(env).lifecycle):
                module = arg[len(prefix):].split(".")[0] if arg.startswith(prefix) else ""
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
        return ci_timeouts([s.download for s in sized],
                           [s.lifecycle.startup_timeout_s for s in sized])

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
    return {"webhook_secret": alerts.webhook_secret, "check_every_s": alerts.check_every_s,
            "thresholds": thresholds}


def _server_env(resolved: ResolvedDeployment) -> dict[str, str]:
    from liftdeploy.render.vllm_args import server_env

    return server_env(resolved)


def _dict_items(per_env: dict[str, dict[str, str]]) -> str:
    """Items of a dict literal whose values may differ by environment: one line per key, the
    environment's own name written as ENVIRONMENT."""
    keys = list(dict.fromkeys(key for items in per_env.values() for key in items))
    lines = []
    for key in keys:
        values = {env: items.get(key) for env, items in per_env.items()}
        if all(v == env for env, v in values.items()):
            lines.append(f"    {py(key)}: ENVIRONMENT,")
        else:
            lines.append(f"    {py(key)}: {_by_environment(values, py, 4)},")
    return "\n".join(lines)


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


# ## The one escaping path
#
# `app.py` is code that `modal deploy` imports where the deploy token lives, so no spec value
# reaches it as raw text: values become literals through `py` (repr's escaping), text in the
# module docstring goes through `docstring_text` and text in a comment through `comment_text`.
# `python_module` then refuses the whole file unless it compiles.


def py(value: Any, indent: int = 0) -> str:
    """A Python literal for plain data, strings in double quotes as in Modal's examples; dicts
    and lists that would make a long line are written one item per line."""
    if isinstance(value, str):
        # JSON inside a string reads better without escapes
        quote = "'" if '"' in value and "'" not in value else '"'
        return quote + _escaped(value, quote) + quote
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


def _escaped(text: str, quotes: str, *, keep: str = "") -> str:
    """repr's escaping: backslashes, the given quote characters and every character that is not
    printable (newlines, U+2028 and other line separators, controls, bidi overrides) become
    escape sequences; characters in `keep` stay as they are."""
    out = []
    for char in text:
        if char == "\\" or char in quotes:
            out.append("\\" + char)
        elif char.isprintable() or char in keep:
            out.append(char)
        else:
            out.append(repr(char)[1:-1])
    return "".join(out)


def docstring_text(text: str) -> str:
    """Text for inside a (non-raw) triple-quoted docstring: its lines stay lines, while every
    quote and backslash is escaped, so nothing in it can end the docstring or form an escape."""
    return _escaped(str(text), '"', keep="\n")


def comment_text(text: str) -> str:
    """Text for after a `#`: one line, whatever it holds (line breaks written as escapes)."""
    return _escaped(str(text), "")


def python_module(source: str, filename: str = "app.py") -> str:
    """The rendered module itself, unless it does not compile: then the render stops with the
    reason and nothing is written (Copier removes what it was creating)."""
    try:
        compile(source, filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        where = f", line {exc.lineno}" if isinstance(exc, SyntaxError) and exc.lineno else ""
        _fail(f"the rendered {filename} would not be valid Python ({exc.args[0]}{where}); this is "
              f"a liftdeploy bug, please report it with the spec. Nothing was written.")
    return source


# Flags whose value the app also holds in a named constant: (APP_VALUES key, how the argv
# writes the constant).
ARGV_CONSTANTS = {
    "--model": ("model_id", "MODEL_ID"),
    "--revision": ("model_revision", "MODEL_REVISION"),
    "--max-num-seqs": ("max_concurrency", "str(MAX_CONCURRENCY)"),
}


def _argv_lines(argv: list[str], constants: dict[str, tuple[str, str]]) -> list[str]:
    """Group a flag with the values that follow it: `"--model", MODEL_ID,` per line, a value
    written as its constant where `constants` (flag -> (value, code)) names one."""
    groups: list[list[str]] = []
    for token in argv:
        if token.startswith("--") or not groups:
            groups.append([token])
        else:
            groups[-1].append(token)
    lines = []
    for group in groups:
        flag, *values = group
        shared = constants.get(flag)
        if shared and values == [shared[0]]:
            lines.append(f"{py(flag)}, {shared[1]},")
        else:
            lines.append(", ".join(py(t) for t in group) + ",")
    return lines


def _list_of_lines(lines: list[str]) -> str:
    """A list literal of argv lines inside the per-environment dict: one line when short."""
    one_line = "[" + " ".join(lines).rstrip(",") + "]"
    if len(one_line) <= 72:
        return one_line
    return "[" + "".join(f"\n            {line}" for line in lines) + "\n        ]"


def _merged_lines(per_env: dict[str, list[str]]) -> str:
    """One list literal from each environment's argv lines: the lines every environment has,
    in order, once; between them, what each environment adds as a dict indexed by
    ARGV_ENVIRONMENT and unpacked in place."""
    import difflib

    envs = list(per_env)
    common = per_env[envs[0]]
    for env in envs[1:]:  # the lines all environments share, in argv order
        matcher = difflib.SequenceMatcher(a=common, b=per_env[env], autojunk=False)
        common = [line for block in matcher.get_matching_blocks()
                  for line in common[block.a:block.a + block.size]]
    out: list[str] = []
    positions = {env: 0 for env in envs}
    for line in [*common, None]:
        extra = {}
        for env in envs:
            lines = per_env[env]
            end = lines.index(line, positions[env]) if line is not None else len(lines)
            extra[env] = lines[positions[env]:end]
            positions[env] = end + 1
        if any(extra.values()):
            items = "".join(f"\n        {py(env)}: {_list_of_lines(lines)},"
                            for env, lines in extra.items())
            out.append(f"*{{{items}\n    }}[ARGV_ENVIRONMENT],")
        if line is not None:
            out.append(line)
    return "[" + "".join(f"\n    {line}" for line in out) + "\n]"


def runtime_source(filename: str) -> str:
    """The text of one liftdeploy.runtime file, copied verbatim into the service."""
    path = _runtime_dir() / filename
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        _fail(f"liftdeploy.runtime has no {filename}; reinstall liftdeploy")


def _with_runtime_imports(modules: set[str]) -> set[str]:
    """`modules` and every liftdeploy.runtime module they import, read from their source, so a
    module the guard starts importing (say) is shipped without anyone listing it."""
    import ast

    needed, todo = set(), list(modules)
    while todo:
        module = todo.pop()
        if module in needed:
            continue
        needed.add(module)
        tree = ast.parse((_runtime_dir() / f"{module}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            todo += [name[len(RUNTIME_PACKAGE) + 1:].split(".")[0] for name in names
                     if name.startswith(RUNTIME_PACKAGE + ".")]
    return needed


def _runtime_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec(RUNTIME_PACKAGE)
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent


PRESETS_DIR = "examples"
"""Presets live in the template root's examples/ (the checkout's, or the wheel's copy), so a
template version always renders its own presets."""


def preset_path(template_root: Path, preset: str) -> Path:
    return template_root / PRESETS_DIR / f"{preset}.yaml"


def presets(template_root: Path) -> list[str]:
    return sorted(path.stem for path in (template_root / PRESETS_DIR).glob("*.yaml"))


def default_preset() -> str:
    """Always blank, even for an example's model: an example preset carries that service's
    Volumes, Dicts, Secrets and CORS origins, so it is used only when asked for by name."""
    return BLANK_PRESET


@pass_context
def preset_value(context: Context, preset: str, question: str) -> Any:
    """The preset's value for one question: the default `copier copy` offers."""
    from liftdeploy.spec.specfile import read_yaml

    if preset == BLANK_PRESET:
        from liftdeploy.render import presets as blank

        return blank.default(question, {q: context[q] for q in blank.QUESTIONS if q in context})
    path = preset_path(_template_root(context), preset)
    if not path.is_file():  # custom or a typo: the render stops with one line that says so
        return 0 if question in INT_QUESTIONS else ""
    node: Any = read_yaml(path)
    for key in QUESTION_FIELDS[question].split("."):
        node = node.get(key) if isinstance(node, dict) else None
    return UNSET_ANSWERS.get(question, "") if node is None else node


def spec_text_from_answers(answers: dict[str, Any], template_root: Path) -> str:
    """deployment.yaml's text: the text `liftdeploy render` passed, else the preset's file with
    the asked values set in place (comments and layout kept; unchanged when nothing differs)."""
    if answers.get("spec_yaml"):
        return str(answers["spec_yaml"])
    from liftdeploy.spec.specfile import dump_yaml, parse_yaml, read_text

    preset = str(answers.get("preset") or "")
    if preset == BLANK_PRESET:
        return _blank_text(answers)
    if preset == CUSTOM_PRESET:
        _fail("this service was rendered by `liftdeploy render` from a spec of its own, which "
              "Copier's answers do not hold; regenerate it with `liftdeploy render .`")
    path = preset_path(template_root, preset)
    if not path.is_file():
        _fail(f"preset {preset!r} is not one of the examples; choose one of "
              f"{', '.join([*presets(template_root), BLANK_PRESET])}")
    text = read_text(path)
    data = parse_yaml(text, source=str(path))
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
    if not matching and _is_blank(text):
        from copier.errors import UserMessageError

        from liftdeploy.render.presets import dicts_answer

        blank = {**answers, "dicts": dicts_answer(spec.name, spec.storage.dicts)}
        try:
            if _blank_text({**blank, "preset": BLANK_PRESET}) == text:
                return {"preset": BLANK_PRESET, **blank}
        except UserMessageError:  # not sizeable here (offline, say): record the whole spec
            pass
    return {"preset": matching[0] if matching else CUSTOM_PRESET, **answers}


def _is_blank(text: str) -> bool:
    from liftdeploy.render.presets import MARKER

    return MARKER in text.splitlines()[:3]


def _blank_text(answers: dict[str, Any]) -> str:
    """The blank preset's spec for the answers; the planner's or the spec's message stops Copier."""
    from liftdeploy.errors import LiftdeployError
    from liftdeploy.render import presets as blank

    try:
        return blank.spec_text({q: answers[q] for q in blank.QUESTIONS if q in answers})
    except LiftdeployError as exc:
        _fail(str(exc))


def _spec_value(question: str, value: Any) -> Any:
    """The spec value for an answer: the question's "not set" answer becomes None."""
    if question in UNSET_ANSWERS and value in (UNSET_ANSWERS[question], None):
        return None
    return value


@functools.lru_cache(maxsize=32)
def _service(text: str) -> Service:
    spec = _validate(text, "deployment.yaml")
    resolved = {env: spec.resolve(env) for env in spec.environments}
    plans = {env: planned(r) for env, r in resolved.items()}
    return Service(spec=spec, spec_text=text, resolved=resolved, plans=plans)


def _validate(text: str, source: str) -> ModelDeployment:
    from liftdeploy.errors import SpecError
    from liftdeploy.spec.specfile import parse_yaml, spec_from_data

    try:
        return spec_from_data(parse_yaml(text, source=source), source=source)
    except SpecError as exc:
        _fail(str(exc))


def _answers(context: Context) -> dict[str, Any]:
    # requests_per_minute: no question, the blank preset's demand from `init` (Copier data).
    keys = ["spec_yaml", "preset", *QUESTION_FIELDS, "dicts", "requests_per_minute"]
    return {key: context[key] for key in keys if key in context}


def _template_root(context: Context) -> Path:
    return Path(str(context["_copier_conf"]["src_path"]))


@pass_context
def _service_from_context(context: Context) -> Service:
    return _service(spec_text_from_answers(_answers(context), _template_root(context)))


@pass_context
def _problem_from_context(context: Context, question: str = "max_concurrent_requests") -> str:
    """For the last question's validator: the spec's own message for the answers, else ''.
    Only when asking interactively (the user can correct the answer); with --defaults or
    --data the render stops with the same message as one line instead of a traceback."""
    from copier.errors import UserMessageError

    conf = context["_copier_conf"]
    if conf["defaults"] or question in conf["data"]:
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
