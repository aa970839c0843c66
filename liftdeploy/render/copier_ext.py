"""The Copier template's window onto liftdeploy: the template reads the spec through this module.

`copier.yml` names `LiftdeployExtension` in `_jinja_extensions` (hence `--trust`). The template
never re-implements spec logic in Jinja: it calls `liftdeploy_service()`, which builds the spec
from the answers (a preset from `examples/` with the few values `copier copy` asks, or the whole
spec text that `liftdeploy render` passes; liftdeploy.render.answers), validates it with the
spec's own models and returns a `ServiceView` (liftdeploy.render.view) whose attributes are
ready-made Python literals and names for the templates; values are written with the filters of
liftdeploy.render.literals.

An invalid spec raises copier's `UserMessageError` with the spec's own message, so `copier copy`
prints one line and removes the directory it was creating.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from jinja2 import pass_context
from jinja2.ext import Extension
from jinja2.runtime import Context

from liftdeploy.planner.report import planned
from liftdeploy.render import template_version
from liftdeploy.render.answers import (
    QUESTION_FIELDS,
    default_preset,
    preset_answer,
    spec_text_from_answers,
    validated_spec,
)
from liftdeploy.render.literals import comment_text, docstring_text, py, python_module
from liftdeploy.render.runtime_files import runtime_source
from liftdeploy.render.view import ServiceView


class LiftdeployExtension(Extension):
    """Adds `liftdeploy_service()`, `liftdeploy_preset()`, `liftdeploy_default_preset()`,
    `liftdeploy_problem()` and the filters the templates write values with (`py`, `docstring`,
    `comment`, `python_module`, `runtime_source`) to Copier's Jinja environment."""

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        environment.globals["liftdeploy_service"] = _service_from_context
        environment.globals["liftdeploy_preset"] = _preset_from_context
        environment.globals["liftdeploy_default_preset"] = default_preset
        environment.globals["liftdeploy_problem"] = _problem_from_context
        environment.globals["liftdeploy_install_source"] = template_version.install_source
        environment.globals["liftdeploy_install_fix"] = template_version.LOCAL_SOURCE_FIX
        environment.filters["runtime_source"] = runtime_source
        environment.filters["py"] = py
        environment.filters["docstring"] = docstring_text
        environment.filters["comment"] = comment_text
        environment.filters["python_module"] = python_module


@functools.lru_cache(maxsize=32)
def _service(text: str) -> ServiceView:
    spec = validated_spec(text, "deployment.yaml")
    resolved = {env: spec.resolve(env) for env in spec.environments}
    plans = {env: planned(r) for env, r in resolved.items()}
    return ServiceView(spec=spec, spec_text=text, resolved=resolved, plans=plans)


def _answers(context: Context) -> dict[str, Any]:
    # requests_per_minute: no question, the blank preset's demand from `init` (Copier data).
    keys = ["spec_yaml", "preset", *QUESTION_FIELDS, "dicts", "requests_per_minute"]
    return {key: context[key] for key in keys if key in context}


def _template_root(context: Context) -> Path:
    return Path(str(context["_copier_conf"]["src_path"]))


@pass_context
def _preset_from_context(context: Context, preset: str, question: str) -> Any:
    """The preset's value for one question: the default `copier copy` offers."""
    return preset_answer(preset, question, _template_root(context), _answers(context))


@pass_context
def _service_from_context(context: Context) -> ServiceView:
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
