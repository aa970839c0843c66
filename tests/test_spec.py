"""The ModelDeployment spec: every validation rule fails with a message naming field, value, fix."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from liftdeploy.errors import EnvironmentNotFound, SpecError
from liftdeploy.spec.model import MODAL_MAX_TIMEOUT_S, ModelDeployment, advisories
from liftdeploy.spec.specfile import load_spec, spec_from_data

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))

QWEN_32B = "Qwen/Qwen2.5-Coder-32B-Instruct"  # 40 attention heads in the catalog
QWEN_480B = "Qwen/Qwen3-Coder-480B-A35B-Instruct-FP8"  # 96 attention heads

BASE: dict[str, Any] = {
    "version": 2,
    "name": "svc",
    "model": {"id": QWEN_32B, "max_model_len": 8192},
    "gpu": {"type": "H100", "count": 1},
    "environments": {"production": {"production": True}, "staging": {}},
}


def spec(**sections: Any) -> dict[str, Any]:
    """BASE with sections updated field by field; `environments` is replaced whole."""
    data = copy.deepcopy(BASE)
    for key, value in sections.items():
        if key != "environments" and isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def error_of(data: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as caught:
        spec_from_data(data, source="spec.yaml")
    message = str(caught.value)
    assert message.startswith("spec.yaml: ")
    assert "\n" not in message, "errors are one line"
    return message


def test_base_is_valid() -> None:
    deployment = spec_from_data(spec())
    assert deployment.gpu.tp == 1
    assert deployment.resolve().app_name == "svc"


# --- examples ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_validates_in_every_environment(path: Path) -> None:
    deployment = load_spec(path)
    assert deployment.version == 2
    assert len(deployment.environments) >= 2
    for env in deployment.environments:
        resolved = deployment.resolve(env)
        assert resolved.model.max_model_len > 0


# Values from DESIGN.md's table (memory utilisation is the planner's to tune). The 32B serves
# 13 at once, not the original plan's 20: its KV cache holds 13 typical requests (issue 18).
DESIGN_TABLE = {
    "qwen25-coder-32b": ("Qwen/Qwen2.5-Coder-32B-Instruct", "A100-80GB", 1, 1, 1200, 13, 600),
    "qwen3-next-80b": ("Qwen/Qwen3-Next-80B-A3B-Instruct-FP8", "H100", 2, 2, 1800, 10, 600),
    "qwen3-coder-480b": (QWEN_480B, "H100", 8, 8, 3600, 3, 600),
}


@pytest.mark.parametrize("stem", sorted(DESIGN_TABLE))
def test_examples_carry_the_design_values_in_production(stem: str) -> None:
    production = load_spec(ROOT / "examples" / f"{stem}.yaml").resolve()
    model, gpu, count, tp, timeout_s, max_concurrent, scaledown_s = DESIGN_TABLE[stem]
    assert production.production and production.app_name == production.name
    assert (production.model.id, production.gpu.type, production.gpu.count) == (model, gpu, count)
    assert production.gpu.tp == tp
    assert production.runtime.request_timeout_s == timeout_s
    assert production.runtime.max_concurrent_requests == max_concurrent
    assert production.runtime.scaledown_window_s == scaledown_s


def test_480b_example_uses_expert_parallel() -> None:
    assert load_spec(ROOT / "examples" / "qwen3-coder-480b.yaml").gpu.expert_parallel


def test_liftdeploy_examples_are_the_yaml_files() -> None:
    from liftdeploy import examples

    assert examples.QWEN3_CODER_480B == load_spec(ROOT / "examples" / "qwen3-coder-480b.yaml")
    assert examples.QWEN25_CODER_32B.name == "lift-sys-inference"
    assert examples.QWEN3_NEXT_80B.gpu.count == 2
    with pytest.raises(AttributeError):
        examples.NOT_AN_EXAMPLE  # noqa: B018


# --- GPU -----------------------------------------------------------------------------------


def test_gpu_count_above_eight() -> None:
    message = error_of(spec(gpu={"type": "H100", "count": 9}))
    assert "gpu.count: 9 is out of range; use a value of at most 8" in message


def test_a10_count_above_four_also_through_its_alias() -> None:
    for name in ("A10", "A10G", "a10g"):
        message = error_of(spec(gpu={"type": name, "count": 5}))
        assert "gpu.count 5 is more than Modal offers for A10 (at most 4 per container)" in message
        assert "lower gpu.count or choose another type" in message


def test_fallback_types_obey_the_count_limit_too() -> None:
    message = error_of(spec(gpu={"type": "H100", "count": 8, "fallback": ["A10G"]}))
    assert "gpu.count 8 is more than Modal offers for A10" in message


def test_unknown_gpu_type_lists_the_catalog() -> None:
    message = error_of(spec(gpu={"type": "X100"}))
    assert "gpu.type" in message and "'X100'" in message and "'H100'" in message


def test_alias_is_normalised() -> None:
    assert spec_from_data(spec(gpu={"type": "A10G"})).gpu.type == "A10"


def test_tensor_parallel_must_match_the_gpu_count() -> None:
    message = error_of(spec(gpu={"count": 4, "tensor_parallel_size": 2}))
    assert (
        "gpu.tensor_parallel_size 2 x gpu.pipeline_parallel_size 1 = 2, but gpu.count is 4"
        in message
    )
    assert "make tensor x pipeline equal the GPU count" in message


def test_tensor_times_pipeline_equal_to_count_is_fine() -> None:
    gpu = spec_from_data(spec(gpu={"count": 4, "pipeline_parallel_size": 2})).gpu
    assert gpu.tp == 2
    assert gpu.modal_gpu == "H100!:4"


@pytest.mark.parametrize(
    ("gpu", "expected"),
    [
        ({"type": "H100"}, "H100!"),  # exact by default: Modal may otherwise serve an H200
        ({"type": "H100!", "count": 2}, "H100!:2"),
        ({"type": "H100", "exact": False, "count": 8}, "H100:8"),
        ({"type": "A100-80GB"}, "A100-80GB"),  # no substitute to pin against
        ({"type": "H100", "fallback": ["A100-80GB", "H200"]}, ["H100!", "A100-80GB", "H200"]),
    ],
)
def test_gpu_types_are_exact_unless_the_spec_allows_a_substitute(
    gpu: dict[str, Any], expected: str | list[str]
) -> None:
    from modal._utils.function_utils import parse_gpu_config

    section = spec_from_data(spec(gpu=gpu)).gpu
    assert section.modal_gpu == expected
    assert section.type == gpu["type"].rstrip("!")  # the plan prices and sizes the bare type
    first = expected if isinstance(expected, str) else expected[0]
    parsed = parse_gpu_config(first)  # what modal sends for it
    assert (parsed.gpu_type, parsed.count) == (first.split(":")[0], gpu.get("count", 1))


def test_tensor_parallel_must_divide_the_attention_heads() -> None:
    message = error_of(spec(gpu={"count": 3}))
    assert (
        f"gpu.tensor_parallel_size 3 does not divide {QWEN_32B}'s 40 attention heads; "
        f"use one of [1, 2, 4, 5, 8]"
    ) in message
    message = error_of(spec(model={"id": QWEN_480B}, gpu={"count": 5}))
    assert "96 attention heads; use one of [1, 2, 3, 4, 6, 8]" in message


def test_memory_utilization_is_a_share() -> None:
    message = error_of(spec(gpu={"memory_utilization": 1.0}))
    assert "gpu.memory_utilization: 1.0 is out of range; use a value below 1.0" in message


# --- runtime -------------------------------------------------------------------------------


def test_target_concurrency_above_max() -> None:
    message = error_of(
        spec(runtime={"max_concurrent_requests": 8, "target_concurrent_requests": 9})
    )
    assert (
        "runtime.target_concurrent_requests 9 is above runtime.max_concurrent_requests 8; "
        "lower the target or raise the maximum"
    ) in message


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("request_timeout_s", MODAL_MAX_TIMEOUT_S + 1, "use a value of at most 86400 s (24 h)"),
        ("request_timeout_s", 0, "use a value of at least 1 s"),
        ("exit_grace_period_s", 3601, "use a value of at most 3600 s (1 h)"),
        ("startup_timeout_s", 2 * MODAL_MAX_TIMEOUT_S, "use a value of at most 86400 s (24 h)"),
        ("scaledown_window_s", 1, "use a value of at least 2 s"),
        ("scaledown_window_s", 7200, "use a value of at most 3600 s (1 h)"),
    ],
)
def test_timeouts_outside_modals_range(field: str, value: int, expected: str) -> None:
    message = error_of(spec(runtime={field: value}))
    assert f"runtime.{field}: {value} is out of range; {expected}" in message


def test_min_containers_above_max() -> None:
    message = error_of(spec(runtime={"min_containers": 3, "max_containers": 2}))
    assert "runtime.min_containers 3 is above runtime.max_containers 2" in message


# --- secrets, storage, CORS, passthrough ---------------------------------------------------


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("model", "hf_token_secret", "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
        ("auth", "api_key_secret", "sk-proj-abcdefghijklmnop"),
        ("auth", "api_key_secret", "my secret value"),
        ("auth", "api_key_secret", "Zx8Kq2Lm9Np4Rt6Vw1Yb3Cd5Fg7Hj0Ks2Q"),
    ],
)
def test_secret_values_are_refused_and_not_echoed(section: str, field: str, value: str) -> None:
    message = error_of(spec(**{section: {field: value}}))
    assert (
        f"{section}.{field} '{value[:3]}…' looks like a secret value, not a secret name" in message
    )
    assert "modal secret create NAME KEY=..." in message
    assert value not in message, "an error message must not repeat a secret"


def test_storage_secret_entries_are_names() -> None:
    message = error_of(spec(storage={"secrets": ["ghp_0123456789abcdef"]}))
    assert "storage.secrets entry 'ghp…' looks like a secret value" in message


def test_duplicate_mount_paths() -> None:
    volumes = [
        {"name": "weights", "mount_path": "/root/.cache/huggingface"},
        {"name": "other", "mount_path": "/root/.cache/huggingface"},
    ]
    message = error_of(spec(storage={"volumes": volumes}))
    assert (
        "storage.volumes mounts 'weights' and 'other' at the same path "
        "'/root/.cache/huggingface'; give each volume its own mount_path"
    ) in message


def test_default_volumes_are_named_after_the_app() -> None:
    resolved = spec_from_data(spec()).resolve()
    assert [(v.name, v.mount_path) for v in resolved.volumes] == [
        ("svc-weights", "/root/.cache/huggingface"),
        ("svc-compile-cache", "/root/.cache/vllm"),
    ]


def test_cors_origin_without_scheme() -> None:
    message = error_of(spec(cors={"allowed_origins": ["app.example.com/path"]}))
    assert "cors.allowed_origins entry 'app.example.com/path' is not an origin" in message


@pytest.mark.parametrize(
    ("extra_args", "flag", "owner"),
    [
        (["--max-num-seqs", "8"], "--max-num-seqs", "runtime.max_concurrent_requests"),
        (["--max_num_seqs=8"], "--max-num-seqs", "runtime.max_concurrent_requests"),
        (["-tp", "2"], "--tensor-parallel-size", "gpu.tensor_parallel_size"),
        (["--no-enforce-eager"], "--enforce-eager", "engine.enforce_eager"),
        (["--gpu-memory-utilization=0.5"], "--gpu-memory-utilization", "gpu.memory_utilization"),
    ],
)
def test_passthrough_contradicting_a_spec_field(
    extra_args: list[str], flag: str, owner: str
) -> None:
    message = error_of(spec(engine={"extra_args": extra_args}))
    assert f"engine.extra_args passes {extra_args[0]!r}, but {flag} is set by {owner}" in message
    assert f"remove it from extra_args and change {owner} instead" in message


def test_passthrough_secret_flags_are_refused() -> None:
    message = error_of(spec(engine={"extra_args": ["--hf-token=hf_secretvalue"]}))
    assert (
        "engine.extra_args passes --hf-token, which would put a secret on the command line"
        in message
    )
    assert "hf_secretvalue" not in message


def test_passthrough_of_flags_the_spec_does_not_own_is_kept() -> None:
    args = ["--max-num-batched-tokens=8192", "--enable-prefix-caching", "--block-size", "16"]
    assert spec_from_data(spec(engine={"extra_args": args})).engine.extra_args == args


# --- shape: unknown keys, types, names, versions -------------------------------------------


def test_unknown_keys_are_errors_with_a_suggestion() -> None:
    message = error_of(spec(runtime={"request_timeot_s": 60}, replicas=2))
    assert (
        "runtime.request_timeot_s: unknown field 'request_timeot_s'; remove it or check the spelling "
        "(did you mean 'request_timeout_s'?)"
    ) in message
    assert "replicas: unknown field 'replicas'" in message


def test_missing_required_fields() -> None:
    data = spec()
    del data["model"]["max_model_len"]
    assert "model.max_model_len: required field is missing; add it" in error_of(data)


def test_values_are_typed_not_coerced() -> None:
    message = error_of(spec(gpu={"count": "2"}, model={"trust_remote_code": "yes"}))
    assert "gpu.count: expected a whole number, got '2'; write it without quotes" in message
    assert "model.trust_remote_code: expected true or false, got 'yes'" in message
    message = error_of(spec(engine={"vllm_version": 0.33}))
    assert 'engine.vllm_version: expected a string, got 0.33; put it in quotes ("0.33")' in message


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("My_Service", "my-service"),
        ("lift--sys", "lift-sys"),
        ("9lives", "svc-9lives"),
        ("svc-", "svc"),
    ],
)
def test_dns_unsafe_names(name: str, suggestion: str) -> None:
    message = error_of(spec(name=name))
    assert f"name {name!r} is not DNS-safe" in message
    assert f"(e.g. {suggestion!r})" in message


def test_environment_names_are_dns_safe_and_app_names_short() -> None:
    message = error_of(spec(environments={"production": {"production": True}, "Stage_1": {}}))
    assert "environments key 'Stage_1' is not a valid environment name" in message
    long_name = "a" * 60
    message = error_of(spec(name=long_name))
    assert (
        f"app name '{long_name}-staging' for environment 'staging' is longer than Modal's 64"
        in message
    )


def test_newer_version_asks_for_an_upgrade() -> None:
    message = error_of(spec(version=3))
    assert "version 3 is newer than this liftdeploy understands (2); upgrade liftdeploy" in message


def test_python_construction_of_an_old_version_points_at_the_loader() -> None:
    with pytest.raises(ValueError, match="load the file with liftdeploy.load_spec"):
        ModelDeployment.model_validate({**spec(), "version": 0})


# --- environments --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "environments",
    [
        {"production": {}, "staging": {}},
        {"production": {"production": True}, "live": {"production": True}},
    ],
)
def test_exactly_one_production_environment(environments: dict[str, Any]) -> None:
    message = error_of(spec(environments=environments))
    assert "environments: exactly one must have production: true" in message
    assert "mark one environment as production" in message


def test_two_productions_are_named() -> None:
    environments = {"production": {"production": True}, "live": {"production": True}}
    assert "found 2 (production, live)" in error_of(spec(environments=environments))


def test_unknown_environment_lists_the_valid_ones() -> None:
    deployment = spec_from_data(spec())
    with pytest.raises(EnvironmentNotFound) as caught:
        deployment.resolve("prod")
    assert str(caught.value) == (
        "unknown environment 'prod'; this spec defines: production, staging; pick one of them "
        "or add 'prod' under environments"
    )


def test_default_environment_is_production() -> None:
    data = spec()
    del data["environments"]
    deployment = spec_from_data(data)
    assert list(deployment.environments) == ["production"]
    assert deployment.resolve().environment == "production"


def test_overlays_resolve_app_names_and_deep_merge() -> None:
    data = spec(
        storage={"secrets": ["base-a", "base-b"], "dicts": ["tokens"]},
        runtime={"min_containers": 1, "max_containers": 4},
        environments={
            "live": {"production": True, "modal_environment": "main"},
            "staging": {
                "modal_environment": "staging",
                "gpu": {"type": "A100-80GB"},
                "runtime": {"min_containers": 0},
                "storage": {"secrets": ["staging-only"]},
                "engine": {"enforce_eager": True},
            },
            "dev": None,  # an environment that changes nothing
        },
    )
    deployment = spec_from_data(data)
    live, staging, dev = (deployment.resolve(env) for env in ("live", "staging", "dev"))
    assert deployment.resolve().environment == "live"
    assert (live.app_name, staging.app_name, dev.app_name) == ("svc", "svc-staging", "svc-dev")
    assert (live.modal_environment, staging.modal_environment, dev.modal_environment) == (
        "main",
        "staging",
        None,
    )
    # deep merge: the overlay's keys win, the base's other keys stay
    assert (staging.gpu.type, staging.gpu.count) == ("A100-80GB", 1)
    assert (staging.runtime.min_containers, staging.runtime.max_containers) == (0, 4)
    assert staging.engine.enforce_eager and not live.engine.enforce_eager
    # lists replace, they do not append
    assert staging.storage.secrets == ["staging-only"]
    assert staging.storage.dicts == ["tokens-staging"]  # inherited: the environment's own name
    assert live.storage.secrets == ["base-a", "base-b"]
    assert dev.storage.secrets == ["base-a-dev", "base-b-dev"]
    assert dev.model_dump(
        exclude={"environment", "production", "modal_environment", "storage"}
    ) == live.model_dump(exclude={"environment", "production", "modal_environment", "storage"})


def test_overlay_errors_name_the_environment() -> None:
    data = spec(
        environments={
            "production": {"production": True},
            "staging": {"gpu": {"count": 3, "typo": 1}},
        }
    )
    message = error_of(data)
    assert "in environment 'staging' (base spec + environments.staging): " in message
    assert "gpu.typo: unknown field 'typo'" in message and "(did you mean 'type'?)" in message


def test_overlay_unknown_section_is_an_error() -> None:
    message = error_of(spec(environments={"production": {"production": True, "gpus": {}}}))
    assert "environments.production.gpus: unknown field 'gpus'" in message
    assert "(did you mean 'gpu'?)" in message


def test_overlay_that_breaks_a_cross_field_rule_is_caught_at_load() -> None:
    data = spec(
        environments={
            "production": {"production": True},
            "staging": {"gpu": {"type": "A10", "count": 6}},
        }
    )
    assert "gpu.count 6 is more than Modal offers for A10" in error_of(data)


# --- budget, cost, advisories --------------------------------------------------------------


def test_budget_exceeded_shows_the_figure() -> None:
    data = spec(
        gpu={"type": "A100-80GB"},
        runtime={"min_containers": 1},
        budget={"max_monthly_always_on_usd": 1000},
    )
    message = error_of(data)
    assert "always-on capacity costs $1,825/month" in message
    assert "(runtime.min_containers 1 x 1 A100-80GB x $2.50/h x 730 h)" in message
    assert (
        "above budget.max_monthly_always_on_usd $1,000; lower min_containers or raise the budget"
        in message
    )


def test_budget_checks_each_environment() -> None:
    data = spec(
        budget={"max_monthly_always_on_usd": 0},
        environments={"production": {"production": True, "runtime": {"min_containers": 1}}},
    )
    assert "in environment 'production'" in error_of(data)


def test_price_override_feeds_the_cost() -> None:
    data = spec(runtime={"min_containers": 2}, pricing={"gpu_hour_usd": 1.0})
    assert spec_from_data(data).always_on_monthly_usd == 2 * 1.0 * 730


def test_advisories_warn_about_unpinned_and_branch_revisions() -> None:
    unpinned = advisories(spec_from_data(spec()).resolve())
    assert any("model.revision is not set" in note for note in unpinned)
    branch = advisories(spec_from_data(spec(model={"revision": "main"})).resolve())
    assert any("model.revision 'main' is a branch or tag name" in note for note in branch)
    pinned = advisories(spec_from_data(spec(model={"revision": "a" * 40})).resolve())
    assert not any("model.revision" in note for note in pinned)


# --- the catalog's parse cache -------------------------------------------------------------


def test_catalog_cache_is_never_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from liftdeploy.spec import catalog

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    source = data_dir / "gpus.yaml"
    source.write_text(
        (catalog.DATA_DIR / "gpus.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    monkeypatch.setattr(catalog, "DATA_DIR", data_dir)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    first = catalog._load("gpus.yaml")
    assert first["gpus"]["H100"]["price_usd_hour"] == 3.95
    assert len(list((tmp_path / "cache" / "liftdeploy" / "catalog").glob("gpus-*.json"))) == 1
    assert catalog._load("gpus.yaml") == first, "the cached copy holds the same data"

    source.write_text(source.read_text(encoding="utf-8").replace("3.95", "4.25"), encoding="utf-8")
    assert catalog._load("gpus.yaml")["gpus"]["H100"]["price_usd_hour"] == 4.25


def test_catalog_works_without_a_writable_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from liftdeploy.spec import catalog

    blocked = tmp_path / "not-a-directory"
    blocked.write_text("", encoding="utf-8")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    assert catalog._load("models.yaml")["models"][QWEN_32B]["num_attention_heads"] == 40


def test_volumes_must_name_exactly_one_weights_volume() -> None:
    cache_only = [{"name": "c", "mount_path": "/root/.cache/vllm", "purpose": "compile-cache"}]
    for volumes in ([], cache_only):
        with pytest.raises(SpecError, match="purpose 'weights'.*name exactly one"):
            spec_from_data(spec(storage={"volumes": volumes}))


@pytest.mark.parametrize(
    "arg",
    [
        "--middleware=my.Thing",
        "--structured-outputs-config.backend=xgrammar",
        "--load-format",
        "--enable-request-id-headers",
        "--port=9000",
    ],
)
def test_passthrough_of_a_flag_liftdeploy_sets_is_refused(arg: str) -> None:
    with pytest.raises(SpecError, match="is set by"):
        spec_from_data(spec(engine={"extra_args": [arg]}))


def test_every_flag_of_the_argv_function_is_owned_by_the_spec() -> None:
    """SPEC_OWNED_FLAGS is what extra_args may not repeat; it must cover every flag the one argv
    function can emit (here with every optional flag switched on)."""
    from liftdeploy.render.vllm_args import server_args
    from liftdeploy.spec.argv import SPEC_OWNED_FLAGS

    data = spec(
        model={"revision": "a" * 40, "quantization": "fp8", "trust_remote_code": True},
        gpu={"count": 4, "pipeline_parallel_size": 2, "expert_parallel": True},
        engine={"enforce_eager": True},
        cors={"allowed_origins": ["https://a.example"]},
    )
    args = server_args(spec_from_data(data).resolve(), load_format="dummy")
    flags = {arg for arg in args if arg.startswith("--")}
    assert flags - set(SPEC_OWNED_FLAGS) == set()


def test_quantization_none_means_unquantized() -> None:
    assert spec_from_data(spec(model={"quantization": "none"})).model.quantization is None
