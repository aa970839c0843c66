"""Rendering: a spec in, a Modal service directory out, and drift checks against it.

`service` drives the Copier template (render, check, scaffold for `init`), `copier_ext` is the
thin Jinja extension that hands the template a `view.ServiceView` of ready-made values,
`literals` is the one escaping path every spec value takes into a generated file, `answers`
maps Copier's answers to and from a spec, `presets` writes the blank preset's spec from the
answers, `regenerate` merges a fresh render into a service that has hand edits, and
`vllm_args` is the one function that computes the vLLM argv and env for a spec. It imports
the spec and planner parts; copier is imported only inside functions.
"""

from liftdeploy._lazy import lazy_exports

_EXPORTS = {
    "render": "liftdeploy.render.service",
    "check": "liftdeploy.render.service",
    "is_service": "liftdeploy.render.service",
    "template_source": "liftdeploy.render.template_version",
    "scaffold": "liftdeploy.render.service",
    "server_args": "liftdeploy.render.vllm_args",
    "server_env": "liftdeploy.render.vllm_args",
}

__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
