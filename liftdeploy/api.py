"""The Python API: what the CLI does, for a spec object or a spec file, with the CLI's messages.

    import liftdeploy
    from liftdeploy import ModelDeployment

    spec = ModelDeployment(name="my-llama", model={"id": "org/model", "max_model_len": 8192},
                           gpu={"type": "L4"})
    print(liftdeploy.format_plan(liftdeploy.plan(spec, env="production")))
    liftdeploy.api.render(spec, "services/my-llama")   # the service directory, as `render -o`
    text = spec.to_yaml()                               # a spec file `liftdeploy` reads back

A `spec` is a ModelDeployment, a spec file's path (or a rendered service directory), or the
parsed mapping of one. Bad input raises SpecError with the CLI's one-line message.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from liftdeploy.errors import SpecError

if TYPE_CHECKING:
    from liftdeploy.planner.report import Plan
    from liftdeploy.spec.model import ModelDeployment, ResolvedDeployment

SpecLike = Union["ModelDeployment", str, Path, Mapping[str, Any]]


def load(spec: SpecLike) -> ModelDeployment:
    """The spec as a validated ModelDeployment (files and mappings migrated as on the CLI)."""
    from liftdeploy.planner.checks import check_layouts
    from liftdeploy.spec.model import ModelDeployment, ResolvedDeployment
    from liftdeploy.spec.specfile import load_spec, spec_from_data

    if isinstance(spec, ModelDeployment):
        check_layouts(spec)
        return spec
    if isinstance(spec, ResolvedDeployment):
        raise SpecError(
            f"{spec.app_name} is one resolved environment ({spec.environment}), not a spec; pass "
            f"the ModelDeployment (or its file) it was resolved from"
        )
    if isinstance(spec, str | Path):
        loaded = load_spec(_spec_file(spec))
    elif isinstance(spec, Mapping):
        loaded = spec_from_data(dict(spec))
    else:
        raise SpecError(
            f"expected a ModelDeployment, a spec file's path or a mapping; got "
            f"{type(spec).__name__}"
        )
    check_layouts(loaded)
    return loaded


def resolve(spec: SpecLike | ResolvedDeployment, env: str | None = None) -> ResolvedDeployment:
    """One environment of the spec (default: production), overlay applied and validated."""
    from liftdeploy.spec.model import ResolvedDeployment

    if isinstance(spec, ResolvedDeployment):
        if env is not None and env != spec.environment:
            raise SpecError(
                f"{spec.app_name} is already resolved for {spec.environment!r}, not {env!r}; "
                f"pass the ModelDeployment to choose the environment"
            )
        return spec
    return load(spec).resolve(env)


def plan(spec: SpecLike | ResolvedDeployment, env: str | None = None, **options: Any) -> Plan:
    """`liftdeploy plan`: size one environment (default: production). `options` are those of
    liftdeploy.planner.report.plan (gpu_hour_usd, arch, price_source)."""
    from liftdeploy.planner.report import plan as plan_resolved

    return plan_resolved(resolve(spec, env), **options)


def render(spec: SpecLike, out_dir: str | Path, **options: Any) -> Path:
    """`liftdeploy render SPEC -o OUT_DIR`: the service directory, written or regenerated
    (hand edits kept). `options` are those of liftdeploy.render.service.render."""
    from liftdeploy.render.service import render as render_file

    if isinstance(spec, str | Path):
        return render_file(_spec_file(spec), out_dir, **options)
    text = to_yaml(load(spec))
    with tempfile.TemporaryDirectory(prefix="liftdeploy-spec-") as directory:
        source = Path(directory) / "deployment.yaml"
        source.write_text(text, encoding="utf-8")
        return render_file(source, out_dir, **options)


def to_yaml(spec: SpecLike) -> str:
    """The spec as a spec file's text: the current version and the values that were set (the
    others take their defaults again when it is read back)."""
    from liftdeploy.spec.model import SECTIONS, SPEC_VERSION
    from liftdeploy.spec.specfile import dump_yaml

    deployment = load(spec)
    values = deployment.model_dump(mode="json", exclude_unset=True)
    order = ("name", "description", *SECTIONS, "environments")
    data = {"version": SPEC_VERSION, **{key: values[key] for key in order if key in values}}
    return dump_yaml(data)


def _spec_file(path: str | Path) -> Path:
    """A spec file, or the deployment.yaml of a service directory (as the CLI takes SPEC)."""
    from liftdeploy.spec.specfile import SPEC_FILE

    path = Path(path)
    return path / SPEC_FILE if path.is_dir() else path
