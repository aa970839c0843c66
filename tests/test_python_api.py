"""The Python API a user would guess: `plan(spec, env=...)` on a spec object, `render(spec,
out_dir)`, `spec.to_yaml()`, and the CLI's messages for mistakes made in Python."""

from __future__ import annotations

from pathlib import Path

import pytest

import liftdeploy
from liftdeploy import ModelDeployment, SpecError
from liftdeploy.spec.specfile import load_spec, parse_yaml, spec_from_data

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "qwen25-coder-32b.yaml"


def _spec(**changes: object) -> ModelDeployment:
    fields: dict[str, object] = {
        "name": "my-coder",
        "model": {"id": "Qwen/Qwen2.5-Coder-32B-Instruct", "max_model_len": 8192},
        "gpu": {"type": "H100"},
        "environments": {"production": {"production": True}, "staging": {}},
    }
    return ModelDeployment(**{**fields, **changes})


def test_plan_takes_a_spec_object_and_an_environment() -> None:
    spec = _spec()
    production = liftdeploy.plan(spec)
    staging = liftdeploy.plan(spec, env="staging")
    assert (production.environment, production.app_name) == ("production", "my-coder")
    assert (staging.environment, staging.app_name) == ("staging", "my-coder-staging")
    # The same as planning the already resolved environment.
    assert liftdeploy.plan(spec.resolve("staging")) == staging
    assert liftdeploy.format_plan(staging).startswith("my-coder-staging [staging]")


def test_plan_takes_a_file_and_refuses_a_mismatched_environment() -> None:
    assert liftdeploy.plan(EXAMPLE, env="staging").app_name == "lift-sys-inference-staging"
    with pytest.raises(SpecError, match="already resolved for 'production', not 'staging'"):
        liftdeploy.plan(load_spec(EXAMPLE).resolve(), env="staging")
    with pytest.raises(SpecError, match="unknown environment 'prod'.*production, staging"):
        liftdeploy.plan(_spec(), env="prod")


def test_a_typo_in_python_gets_the_clis_did_you_mean() -> None:
    with pytest.raises(SpecError) as caught:
        _spec(modell={"id": "x/y"})
    assert str(caught.value) == (
        "modell: unknown field 'modell'; remove it or check the spelling (did you mean 'model'?)"
    )
    with pytest.raises(SpecError, match=r"^model.max_model_len: 1 is out of range"):
        _spec(model={"id": "Qwen/Qwen2.5-Coder-32B-Instruct", "max_model_len": 1})
    from liftdeploy.spec.model import GpuSection

    with pytest.raises(SpecError, match="unknown field 'cuont'.*did you mean 'count'"):
        GpuSection(type="H100", cuont=2)


def test_to_yaml_reads_back_as_the_same_spec() -> None:
    spec = _spec(runtime={"max_containers": 3}, budget={"max_monthly_usd": 500})
    text = spec.to_yaml()
    assert text.startswith("version: 2\nname: my-coder\nmodel:\n")
    assert spec_from_data(parse_yaml(text)) == spec
    assert liftdeploy.to_yaml(EXAMPLE) == load_spec(EXAMPLE).to_yaml()
    assert spec_from_data(parse_yaml(load_spec(EXAMPLE).to_yaml())) == load_spec(EXAMPLE)


def test_render_writes_a_service_from_a_spec_object(tmp_path: Path) -> None:
    from liftdeploy.api import render
    from liftdeploy.render.service import check

    out = render(_spec(), tmp_path / "my-coder")
    assert (out / "app.py").is_file()
    assert load_spec(out / "deployment.yaml") == _spec()
    assert check(out) == []
    with pytest.raises(SpecError, match="one resolved environment"):
        render(_spec().resolve(), tmp_path / "other")
