"""`plan --suggest`: settings that fit the workload, each with a reason, applied by `set`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from liftdeploy.planner.advice import suggest
from liftdeploy.planner.report import plan
from liftdeploy.spec.specfile import load_spec, spec_from_data

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
CODER_32B = REPO / "examples" / "qwen25-coder-32b.yaml"


def liftdeploy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "liftdeploy.cli.main", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def data_of(path: Path) -> dict[str, Any]:
    return YAML(typ="safe").load(path.read_text())


def warnings_of(path: Path, env: str) -> list[str]:
    p = plan(load_spec(path).resolve(env))
    return [v.message for v in p.verdicts if v.level != "ok"]


# The warnings an example keeps on purpose: a scale-to-zero environment's budget below one
# container all month, so `spend` has something to watch. The spec explains each in a comment.
BUDGET_WARNING = "busy all month) is above budget.max_monthly_usd"
BUDGET_COMMENT = "below one container all month: `plan` warns, `spend` watches"
EXPLAINED = {("lift-sys-inference", "staging"), ("lift-sys-inference", "development")}  # 32B


def unexplained_warnings(path: Path, env: str) -> list[str]:
    found = warnings_of(path, env)
    if (load_spec(path).name, env) not in EXPLAINED:
        return found
    assert any(BUDGET_WARNING in w for w in found), f"{path.name} [{env}] no longer warns: {found}"
    return [w for w in found if BUDGET_WARNING not in w]


def test_every_example_plans_without_an_unexplained_warning_and_needs_no_advice() -> None:
    for path in EXAMPLES:
        spec = load_spec(path)
        for env in spec.environments:
            assert unexplained_warnings(path, env) == [], f"{path.name} [{env}]"
            assert suggest(spec.resolve(env)) == [], f"{path.name} [{env}]"
    commented = [line for line in CODER_32B.read_text().splitlines() if BUDGET_COMMENT in line]
    assert len(commented) == len(EXPLAINED)


def test_suggestions_for_the_original_32b_plan_are_accepted_by_plan(tmp_path: Path) -> None:
    original = (
        CODER_32B.read_text()
        .replace("max_concurrent_requests: 13", "max_concurrent_requests: 20")
        .replace("target_concurrent_requests: 10", "target_concurrent_requests: 16")
    )
    spec = tmp_path / "deployment.yaml"
    spec.write_text(original)
    assert any("max_concurrent_requests 20" in w for w in warnings_of(spec, "production"))
    done = liftdeploy("plan", str(spec), "--suggest", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    keys = {s["key"]: s for s in report["suggestions"]}
    assert set(keys) == {"runtime.max_concurrent_requests", "runtime.target_concurrent_requests"}
    assert all(s["reason"] for s in report["suggestions"])
    assert keys["runtime.max_concurrent_requests"]["current"] == 20
    text = liftdeploy("plan", str(spec), "--suggest").stdout
    line = next(row for row in text.splitlines() if "apply with: liftdeploy set" in row)
    assert line.split("liftdeploy ", 1)[1].split() == ["set", str(spec), *report["set"]]
    applied = liftdeploy("set", str(spec), *report["set"])
    assert applied.returncode == 0, applied.stderr
    for env in load_spec(spec).environments:
        assert unexplained_warnings(spec, env) == [], env
    assert "# The original plan's 20" in spec.read_text()  # comments kept by set


def test_fp8_kv_cache_and_memory_share_where_the_kv_cache_is_short() -> None:
    data = data_of(CODER_32B)
    data["gpu"] = {"type": "H100", "count": 1, "memory_utilization": 0.85}
    data["model"]["max_model_len"] = 8192
    data["runtime"]["max_concurrent_requests"] = 40
    data["runtime"]["target_concurrent_requests"] = 30
    data["budget"]["max_monthly_usd"] = 8000  # two H100s all month fit; only the fit is judged
    resolved = spec_from_data(data, source="test").resolve()
    found = {s.key: s for s in suggest(resolved)}
    assert found["model.kv_cache_dtype"].value == "fp8"
    assert "H100 computes FP8 natively" in found["model.kv_cache_dtype"].reason
    assert found["gpu.memory_utilization"].value == 0.9
    # Applying them all leaves a plan without a warning.
    for key, suggestion in found.items():
        section, field = key.split(".")
        data[section][field] = suggestion.value
    after = plan(spec_from_data(data, source="test").resolve())
    assert {v.level for v in after.verdicts} == {"ok"}


def test_a_spec_that_does_not_fit_gets_the_first_of_the_plans_fixes_that_fits(
    tmp_path: Path,
) -> None:
    """--suggest used to print the plan's error and then "none: the settings fit"."""
    data = data_of(CODER_32B)
    data["gpu"]["type"] = "L4"  # the weights do not load: another layout
    resolved = spec_from_data(data, source="test").resolve()
    found = {s.key: s.value for s in suggest(resolved)}
    assert not plan(resolved).fits and "gpu.type" in found, found
    data["gpu"].update(type=found["gpu.type"], count=found.get("gpu.count", data["gpu"]["count"]))
    assert plan(spec_from_data(data, source="test").resolve()).fits
    # The KV cache cannot hold one 32k sequence on an L4: the fix's first option, applied.
    data = data_of(CODER_32B)
    data["model"] = {"id": "meta-llama/Llama-3.1-8B-Instruct", "max_model_len": 32768}
    data["gpu"] = {"type": "L4", "count": 1}
    spec = tmp_path / "deployment.yaml"
    YAML().dump(data, spec)
    done = liftdeploy("plan", str(spec), "--suggest")
    assert done.returncode == 1 and "cannot hold one 32,768-token sequence" in done.stdout
    assert (
        "none: the settings fit" not in done.stdout
        and "gpu.memory_utilization: 0.9 ->" in done.stdout
    ), done.stdout
    line = next(row for row in done.stdout.splitlines() if "apply with: liftdeploy set" in row)
    assert liftdeploy(*line.split("liftdeploy ", 1)[1].split()).returncode == 0
    assert liftdeploy("plan", str(spec)).returncode == 0


def test_no_fp8_advice_on_a_gpu_without_fp8() -> None:
    data = data_of(CODER_32B)
    data["runtime"]["max_concurrent_requests"] = 40
    data["runtime"]["target_concurrent_requests"] = 30
    keys = [s.key for s in suggest(spec_from_data(data, source="test").resolve())]
    assert "model.kv_cache_dtype" not in keys  # A100: no FP8
    assert "runtime.max_concurrent_requests" in keys


def test_a_bill_without_a_ceiling_gets_max_containers() -> None:
    data = data_of(CODER_32B)
    del data["runtime"]["max_containers"]
    found = {s.key: s for s in suggest(spec_from_data(data, source="test").resolve())}
    assert found["runtime.max_containers"].value == 2
    assert "$5.00/h" in found["runtime.max_containers"].reason


def test_an_overlay_key_is_suggested_in_the_overlay(tmp_path: Path) -> None:
    spec = tmp_path / "deployment.yaml"
    spec.write_text(
        CODER_32B.read_text().replace(
            "runtime: {min_containers: 0, max_containers: 1}",
            "runtime: {min_containers: 0, max_containers: 2, max_concurrent_requests: 30}",
        )
    )
    done = liftdeploy("plan", str(spec), "--env", "staging", "--suggest", "--json")
    sets = json.loads(done.stdout)["set"]
    assert sets == ["environments.staging.runtime.max_concurrent_requests=15"]


COLD_START_WARNING = "longer than runtime.cold_start_patience_s"


def test_a_cold_start_longer_than_the_patience_is_a_warning_with_its_fix() -> None:
    """The examples scale to zero and set a patience that covers their planned cold start (the
    callers wait for it: liftdeploy's client retries 503s that long); without it plan warns."""
    data = data_of(CODER_32B)
    del data["runtime"]["cold_start_patience_s"]  # the default: 5 minutes
    resolved = spec_from_data(data, source="test").resolve()
    startup = plan(resolved).startup_timeout_s
    assert startup > resolved.runtime.cold_start_patience_s == 300
    warned = [v for v in plan(resolved).verdicts if COLD_START_WARNING in v.message]
    assert len(warned) == 1 and f"up to {startup:,} s" in warned[0].message
    assert warned[0].fix and "runtime.min_containers: 1" in warned[0].fix
    assert f"runtime.cold_start_patience_s: {startup}" in warned[0].fix
    # An always-warm container has no cold start for callers to wait out.
    data["runtime"]["min_containers"] = 1
    data["budget"]["max_monthly_always_on_usd"] = 5000
    warm = plan(spec_from_data(data, source="test").resolve())
    assert not any(COLD_START_WARNING in v.message for v in warm.verdicts)
    assert warm.cold_start_wait_s == 0


def test_every_scale_to_zero_example_sets_a_patience_that_covers_its_cold_start() -> None:
    for path in EXAMPLES:
        spec = load_spec(path)
        for env in spec.environments:
            resolved = spec.resolve(env)
            p = plan(resolved)
            assert resolved.runtime.min_containers == 0, f"{path.name} [{env}]"
            assert p.cold_start_wait_s == p.startup_timeout_s
            assert p.startup_timeout_s <= resolved.runtime.cold_start_patience_s, path.name
